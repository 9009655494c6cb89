"""The local ACI emulator, driven only through the real ``azure-mgmt-containerinstance`` client (and
``DefaultAzureCredential``), the way the ACI backend and the Logic App interpreter will use it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.mgmt.containerinstance import models as m


def wait_for(condition: Callable[[], Any], timeout: float) -> Any:
    """Poll ``condition`` until truthy; return its last value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


FAST = {"polling_interval": 0.05}  # the SDK's LRO default is 30 s: too slow for tests


def container(name: str = "main", image: str = "emu/shell", command: list[str] | None = None,
              env: dict[str, str] | None = None, secure: dict[str, str] | None = None,
              cpu: float = 1.0) -> m.Container:
    variables = [m.EnvironmentVariable(name=k, value=v) for k, v in (env or {}).items()]
    variables += [m.EnvironmentVariable(name=k, secure_value=v) for k, v in (secure or {}).items()]
    return m.Container(
        name=name, image=image, command=command, environment_variables=variables,
        resources=m.ResourceRequirements(requests=m.ResourceRequests(cpu=cpu, memory_in_gb=1.0)))


def group(emu: Any, *containers: m.Container, tags: dict[str, str] | None = None,
          restart_policy: str = "Never") -> m.ContainerGroup:
    return m.ContainerGroup(location=emu.location, os_type="Linux", restart_policy=restart_policy,
                            tags=tags, containers=list(containers or [container()]))


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def create(emu: Any, client: Any, name: str, cg: m.ContainerGroup) -> m.ContainerGroup:
    return client.container_groups.begin_create_or_update(
        emu.resource_group, name, cg, **FAST).result()


def wait_finished(emu: Any, client: Any, name: str, timeout: float = 30) -> m.ContainerGroup:
    """Poll like a careful watcher: until the group state is Succeeded/Failed."""
    deadline = time.monotonic() + timeout
    while True:
        got = client.container_groups.get(emu.resource_group, name)
        if got.instance_view is not None and got.instance_view.state in ("Succeeded", "Failed"):
            return got
        assert time.monotonic() < deadline, f"{name} did not finish: {got.instance_view}"
        time.sleep(0.05)


# -- create, get, list, logs, delete ---------------------------------------------------------
def test_create_runs_the_container_and_reports_its_exit(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    created = create(emu, client, "exit3", group(emu, container(
        command=sh("echo hello; echo oops >&2; exit 3"))))
    # The poller returns once *provisioning* succeeded, not when the container finished.
    assert created.provisioning_state == "Succeeded"
    done = wait_finished(emu, client, "exit3")
    assert done.instance_view.state == "Failed"
    state = done.containers[0].instance_view.current_state
    assert (state.state, state.exit_code, state.detail_status) == ("Terminated", 3, "Error")
    assert state.start_time is not None and state.finish_time >= state.start_time
    events = [e.name for e in done.containers[0].instance_view.events]
    assert events[:3] == ["Pulling", "Pulled", "Started"]
    assert done.containers[0].instance_view.restart_count == 0
    logs = client.containers.list_logs(emu.resource_group, "exit3", "main").content
    assert logs == "hello\noops\n"


def test_a_zero_exit_is_completed_and_the_group_succeeded(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "ok", group(emu, container(command=sh("exit 0"))))
    done = wait_finished(emu, client, "ok")
    assert done.instance_view.state == "Succeeded"
    state = done.containers[0].instance_view.current_state
    assert (state.exit_code, state.detail_status) == (0, "Completed")


def test_states_move_pending_running_terminated(tmp_path: Path) -> None:
    from aci_emulator import AciEmulator

    with AciEmulator(work_dir=tmp_path / "emu", pending_seconds=0.4) as emu:
        client = emu.client()
        emu.slow_provisioning(0.6)
        poller = client.container_groups.begin_create_or_update(
            emu.resource_group, "slow", group(emu, container(command=sh("sleep 0.7"))), **FAST)
        seen = []
        while True:
            got = client.container_groups.get(emu.resource_group, "slow")
            view = got.instance_view
            cview = got.containers[0].instance_view
            seen.append((got.provisioning_state, view and view.state,
                         cview and cview.current_state.state))
            if view is not None and view.state == "Succeeded":
                break
            time.sleep(0.03)
        assert poller.done() and poller.result().provisioning_state == "Succeeded"
    phases = list(dict.fromkeys(seen))  # distinct, in order of first sight
    # Just after the PUT there is no instance view at all; then Waiting while the image is
    # pulled and the platform provisions; Running; Terminated. A GET between the container's
    # start and the group's provisioning finishing sees it Running while provisioning is still
    # Creating (a group's containers start before it is Succeeded; a busy machine widens that
    # moment enough to be seen): allowed there, and only there.
    transient = ("Creating", "Pending", "Running")
    assert [p for p in phases if p != transient] == [
        ("Pending", None, None), ("Creating", "Pending", "Waiting"),
        ("Succeeded", "Running", "Running"), ("Succeeded", "Succeeded", "Terminated")]
    if transient in phases:
        assert phases.index(transient) == 2


def test_secure_values_reach_the_process_but_never_come_back(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    cg = group(emu, container(command=sh('echo "plain=$PLAIN secret=$TOKEN leak=${HOME_SECRET-}"'),
                              env={"PLAIN": "p"}, secure={"TOKEN": "s3cr3t-sas"}))
    created = create(emu, client, "secure", cg)
    wait_finished(emu, client, "secure")
    logs = client.containers.list_logs(emu.resource_group, "secure", "main").content
    assert logs == "plain=p secret=s3cr3t-sas leak=\n"
    for answer in (created, client.container_groups.get(emu.resource_group, "secure"),
                   *client.container_groups.list_by_resource_group(emu.resource_group),
                   *client.container_groups.list()):
        variables = {v.name: v for v in answer.containers[0].environment_variables}
        assert variables["PLAIN"].value == "p"
        assert variables["TOKEN"].secure_value is None and variables["TOKEN"].value is None
        assert "s3cr3t" not in str(answer.serialize())


def test_the_container_gets_a_clean_environment(aci_emulator: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "must-not-leak")
    create(emu, client, "clean", group(emu, container(
        command=sh('echo "conn=${AZURE_STORAGE_CONNECTION_STRING-unset} host=$HOSTNAME"'))))
    wait_finished(emu, client, "clean")
    logs = client.containers.list_logs(emu.resource_group, "clean", "main").content
    assert logs == "conn=unset host=clean\n"


def test_list_answers_carry_no_instance_view_and_tags_round_trip(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "tagged-a", group(emu, tags={"job": "j1", "tasks": "0-3"}))
    create(emu, client, "tagged-b", group(emu, tags={"job": "j2"}))
    by_rg = {g.name: g for g in client.container_groups.list_by_resource_group(emu.resource_group)}
    by_sub = {g.name: g for g in client.container_groups.list()}
    assert set(by_rg) == set(by_sub) == {"tagged-a", "tagged-b"}
    for listed in [*by_rg.values(), *by_sub.values()]:
        assert listed.instance_view is None
        assert listed.containers[0].instance_view is None
    assert by_rg["tagged-a"].tags == {"job": "j1", "tasks": "0-3"}
    got = client.container_groups.get(emu.resource_group, "tagged-a")
    assert got.tags == {"job": "j1", "tasks": "0-3"} and got.instance_view is not None
    updated = client.container_groups.update(emu.resource_group, "tagged-b",
                                             m.Resource(tags={"job": "j2", "expires": "x"}))
    assert updated.tags == {"job": "j2", "expires": "x"}
    assert client.container_groups.get(emu.resource_group, "tagged-b").tags["expires"] == "x"


def test_list_follows_next_links(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    for i in range(5):
        create(emu, client, f"page-{i}", group(emu))
    emu.api.list_page_size = 2
    emu.reset_calls()
    names = sorted(g.name for g in client.container_groups.list_by_resource_group(
        emu.resource_group))
    assert names == [f"page-{i}" for i in range(5)]
    assert emu.calls[("GET", "list_rg")] == 3


def test_logs_tail_and_timestamps(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "logs", group(emu, container(command=sh("for i in 1 2 3 4 5; do echo line$i; done"))))
    wait_finished(emu, client, "logs")
    logs = client.containers.list_logs
    assert logs(emu.resource_group, "logs", "main", tail=2).content == "line4\nline5\n"
    stamped = logs(emu.resource_group, "logs", "main", tail=1, timestamps=True).content
    stamp, _, text = stamped.partition(" ")
    assert text == "line5\n"
    assert stamp.endswith("Z") and stamp[:4].isdigit() and len(stamp) == len("2026-01-01T00:00:00.000000000Z")


def test_logs_of_a_stopped_container_keep_only_the_last_1000_lines(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "long", group(emu, container(
        command=[sys.executable, "-c", "for i in range(1500): print(i)"])))
    wait_finished(emu, client, "long")
    lines = client.containers.list_logs(emu.resource_group, "long", "main").content.splitlines()
    assert len(lines) == 1000 and lines[-1] == "1499" and lines[0] == "500"


def test_logs_of_a_stopped_container_keep_only_their_last_16_kb(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "wide", group(emu, container(
        command=[sys.executable, "-c", "for i in range(300): print(f'{i:04d}' + 'x' * 95)"])))
    wait_finished(emu, client, "wide")
    text = client.containers.list_logs(emu.resource_group, "wide", "main").content
    full = "".join(f"{i:04d}" + "x" * 95 + "\n" for i in range(300))
    assert len(text.encode()) == 16 * 1024 and full.endswith(text)  # a byte tail, mid-line start


def test_logs_are_readable_while_running(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "live", group(emu, container(command=sh("echo started; sleep 30"))))
    assert wait_for(lambda: client.containers.list_logs(
        emu.resource_group, "live", "main").content == "started\n", timeout=10)
    client.container_groups.begin_delete(emu.resource_group, "live").result()


def test_delete_kills_the_process_tree_and_then_404(aci_emulator: Any, tmp_path: Path) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    # A container whose process starts a grandchild in the background, then sleeps.
    create(emu, client, "tree", group(emu, container(command=sh("sleep 300 & sleep 300; wait"))))
    assert wait_for(lambda: len(emu.live_pids()) >= 3, timeout=10)
    pids = emu.live_pids()
    poller = client.container_groups.begin_delete(emu.resource_group, "tree")
    poller.result()
    assert poller.status() == "Succeeded"
    assert emu.live_pids() == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    with pytest.raises(ResourceNotFoundError) as err:
        client.container_groups.get(emu.resource_group, "tree")
    assert err.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.containers.list_logs(emu.resource_group, "tree", "main")
    assert "tree" not in [g.name for g in client.container_groups.list()]
    # Deleting what is gone succeeds (204), so cleanup can be retried safely.
    client.container_groups.begin_delete(emu.resource_group, "tree").result()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_a_finished_container_leaves_no_orphans(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    # The main process exits while its background child would live on: the container's end
    # takes it down, as the end of a real container does.
    create(emu, client, "orphan", group(emu, container(command=sh("sleep 300 & exit 0"))))
    wait_finished(emu, client, "orphan")
    assert wait_for(lambda: emu.live_pids() == [], timeout=5)


def test_a_delete_racing_the_start_leaves_nothing(tmp_path: Path) -> None:
    from aci_emulator import AciEmulator

    with AciEmulator(work_dir=tmp_path / "emu", pending_seconds=0, pull_seconds=0) as emu:
        client = emu.client()
        cg = group(emu, *(container(f"c{i}", command=sh("sleep 300")) for i in range(3)))
        for i in range(8):
            client.container_groups.begin_create_or_update(emu.resource_group, f"race-{i}", cg,
                                                           polling=False)
            time.sleep(0.005 * i)  # delete at different points of the start
            client.container_groups.begin_delete(emu.resource_group, f"race-{i}").result()
            assert emu.live_pids() == [], f"race-{i}"


def test_async_delete_answers_202_and_polls_an_operation(tmp_path: Path) -> None:
    from aci_emulator import AciEmulator

    with AciEmulator(work_dir=tmp_path / "emu", delete_mode="async") as emu:
        client = emu.client()
        create(emu, client, "async-del", group(emu, container(command=sh("sleep 300"))))
        emu.reset_calls()
        client.container_groups.begin_delete(emu.resource_group, "async-del", **FAST).result()
        assert emu.calls[("DELETE", "group")] == 1 and emu.calls[("GET", "operation")] >= 1
        with pytest.raises(ResourceNotFoundError):
            client.container_groups.get(emu.resource_group, "async-del")
        assert emu.live_pids() == []


def test_stop_kills_and_marks_the_group_stopped(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "stopme", group(emu, container(command=sh("sleep 300"))))
    client.container_groups.stop(emu.resource_group, "stopme")
    assert client.container_groups.get(emu.resource_group, "stopme").instance_view.state == \
        "Stopped"
    assert emu.live_pids() == []


def test_several_containers_in_one_group(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "multi", group(emu, *(container(f"task-{i}", command=sh(f"echo {i}; exit {i % 2}"))
                                              for i in range(4))))
    done = wait_finished(emu, client, "multi")
    assert done.instance_view.state == "Failed"  # two of them exited 1
    codes = {c.name: c.instance_view.current_state.exit_code for c in done.containers}
    assert codes == {"task-0": 0, "task-1": 1, "task-2": 0, "task-3": 1}
    assert client.containers.list_logs(emu.resource_group, "multi", "task-2").content == "2\n"


def test_the_runner_image_runs_the_projects_runner(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "runner", group(emu, container(
        image="myregistry.azurecr.io/serverless-score-python:1.0")))
    done = wait_finished(emu, client, "runner")
    # No work order in its environment: the runner says so and exits 1.
    assert done.containers[0].instance_view.current_state.exit_code == 1
    logs = client.containers.list_logs(emu.resource_group, "runner", "main").content
    assert "no work order" in logs


def test_racing_puts_of_one_name_leave_one_group(aci_emulator: Any) -> None:
    import threading

    emu, client = aci_emulator, aci_emulator.client()
    cg = group(emu, container(command=[sys.executable, "-c", "import time; time.sleep(300)"]))
    outcomes: list[str] = []

    def put() -> None:
        try:
            outcomes.append(create(emu, client, "race", cg).provisioning_state)
        except HttpResponseError as err:  # a PUT replaced by a later one: its operation ends
            outcomes.append(str(err.error.code if err.error else err))

    threads = [threading.Thread(target=put) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert emu.group_names() == ["race"]
    assert "Succeeded" in outcomes and len(outcomes) == 4
    # A replaced PUT ends OperationCanceled, or, if its operation had finished, with the final
    # GET the SDK makes, which can already see the next PUT's provisioning (as on ARM). Never
    # Failed, never a second group.
    assert set(outcomes) <= {"Succeeded", "OperationCanceled", "Pending", "Creating"}, outcomes
    assert wait_for(lambda: len(emu.live_pids()) == 1, timeout=10)
    client.container_groups.begin_delete(emu.resource_group, "race").result()
    assert emu.live_pids() == []


def test_locations_are_answered_by_name(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    cg = group(emu)
    cg.location = "West Europe"  # the display name, as users often write it
    assert create(emu, client, "display", cg).location == "westeurope"
    usage = {u.name.value: u for u in client.location.list_usage("westeurope")}
    assert usage["ContainerGroups"].current_value == 1


# -- validation and errors -------------------------------------------------------------------
def test_bad_requests_get_arm_error_bodies(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "Bad_Name", group(emu))
    assert err.value.status_code == 400 and err.value.error.code == "InvalidContainerGroupName"
    too_many = group(emu, *(container(f"c{i}") for i in range(61)))
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "toomany", too_many)
    assert err.value.status_code == 400
    with pytest.raises(ResourceNotFoundError) as err:
        client.container_groups.get("no-such-rg", "x")
    assert err.value.error.code == "ResourceGroupNotFound"


def test_no_token_no_entry(aci_emulator: Any) -> None:
    emu = aci_emulator
    from aci_emulator import StaticToken

    client = emu.client(credential=StaticToken("forged", int(time.time()) + 3600))
    with pytest.raises(ClientAuthenticationError) as err:
        client.container_groups.get(emu.resource_group, "x")
    assert err.value.status_code == 401
    expired = emu.client(credential=emu.credential(ttl=-10))
    with pytest.raises(ClientAuthenticationError):
        list(expired.container_groups.list())
    import requests

    plain = requests.get(f"{emu.base_url}/subscriptions/{emu.subscription_id}/providers/"
                         f"Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01",
                         verify=str(emu.ca_bundle), timeout=10)
    assert plain.status_code == 401
    assert plain.json()["error"]["code"] == "AuthenticationFailed"


def test_default_azure_credential_gets_a_token_from_the_identity_endpoint(
        aci_emulator: Any) -> None:
    """Another process with only ``emu.env()`` and an unmodified credential and client."""
    emu = aci_emulator
    create(emu, emu.client(), "seen", group(emu))
    script = (
        "import os\n"
        "from azure.identity import DefaultAzureCredential\n"
        "from azure.mgmt.containerinstance import ContainerInstanceManagementClient\n"
        "c = ContainerInstanceManagementClient(DefaultAzureCredential(),\n"
        "    os.environ['AZURE_SUBSCRIPTION_ID'],\n"
        "    base_url=os.environ['SERVERLESS_SCORE_ARM_ENDPOINT'])\n"
        "print(sorted(g.name for g in c.container_groups.list()))\n")
    env = {k: v for k, v in os.environ.items() if k not in emu.CREDENTIAL_VARS}
    env.update(emu.env())
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['seen']"
    assert emu.calls[("GET", "token")] == 1
    assert emu.token_resources == ["https://management.azure.com"]


def test_plain_http_mode_works_with_the_sdk(tmp_path: Path) -> None:
    from aci_emulator import AciEmulator

    with AciEmulator(work_dir=tmp_path / "emu", https=False) as emu:
        assert emu.base_url.startswith("http://") and "REQUESTS_CA_BUNDLE" not in emu.env()
        client = emu.client()
        create(emu, client, "plain", group(emu, container(command=sh("exit 0"))))
        assert wait_finished(emu, client, "plain").instance_view.state == "Succeeded"


# -- usage, quota, throttling ----------------------------------------------------------------
def test_usage_counts_groups_and_cores(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.set_quota(container_groups=20, standard_cores=10)
    emu.limits.usage_offset["StandardCores"] = 3
    create(emu, client, "u1", group(emu, container(command=sh("sleep 300"), cpu=2)))
    usage = {u.name.value: u for u in client.location.list_usage(emu.location)}
    assert (usage["ContainerGroups"].current_value, usage["ContainerGroups"].limit) == (1, 20)
    assert (usage["StandardCores"].current_value, usage["StandardCores"].limit) == (5, 10)
    assert usage["StandardCores"].unit == "Count"


def test_quota_reached_refuses_the_create(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.set_quota(container_groups=2)
    create(emu, client, "q1", group(emu))
    create(emu, client, "q2", group(emu))
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "q3", group(emu))
    assert err.value.error.code == "ContainerGroupQuotaReached"
    assert err.value.status_code == 409
    assert "quota 'ContainerGroups' exceeded in region 'westeurope'" in err.value.error.message
    assert "Limit: '2', Usage: '2' Requested: '1'" in err.value.error.message
    client.container_groups.begin_delete(emu.resource_group, "q1").result()
    create(emu, client, "q3", group(emu))  # room again once one is deleted


def test_core_quota(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.set_quota(standard_cores=3)
    create(emu, client, "c1", group(emu, container(command=sh("sleep 300"), cpu=2)))
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "c2", group(emu, container(cpu=2)))
    assert "quota 'StandardCores'" in err.value.error.message


def test_the_sdk_retry_honours_retry_after(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.throttle(2, retry_after=0.5)
    started = time.monotonic()
    created = create(emu, client, "throttled", group(emu))
    elapsed = time.monotonic() - started
    assert created.provisioning_state == "Succeeded"
    assert emu.calls[("PUT", "group")] == 3  # two 429s, then the create
    assert elapsed >= 1.0  # slept Retry-After twice


def test_throttling_beyond_the_sdk_retries_raises_429(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.throttle(10, retry_after=0.1)
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "never", group(emu))
    assert err.value.status_code == 429
    assert err.value.response.headers["Retry-After"] == "0.1"
    assert emu.calls[("PUT", "group")] == 4  # the first try and 3 retries
    assert "never" not in emu.group_names()


def test_create_rate_limit_answers_429_with_retry_after(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client(retry_total=0)
    emu.limits.create_windows = ((2, 300.0),)
    seen: list[dict[str, str]] = []
    client.container_groups.begin_create_or_update(
        emu.resource_group, "r1", group(emu), raw_response_hook=lambda r: seen.append(
            dict(r.http_response.headers)), **FAST).result()
    assert seen[0]["x-ms-ratelimit-remaining-subscription-resource-requests-pt5m"] == "1"
    create(emu, client, "r2", group(emu))
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "r3", group(emu))
    assert err.value.status_code == 429
    assert 290 <= int(err.value.response.headers["Retry-After"]) <= 300


def _put(emu: Any, client: Any, name: str) -> None:
    """One create, without waiting for provisioning (as the backend sends it)."""
    client.container_groups.begin_create_or_update(
        emu.resource_group, name, group(emu, container(command=sh("exit 0"))), polling=False).result()


def test_a_scaled_create_window_refuses_until_the_oldest_leaves_it(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client(retry_total=0)
    emu.set_rate_limits(creates=[(5, 3.0)])
    for i in range(5):
        _put(emu, client, f"w{i}")
    with pytest.raises(HttpResponseError) as err:
        _put(emu, client, "w5")
    assert err.value.status_code == 429 and err.value.error.code == "TooManyRequests"
    assert "request limit for create operations of 5 per 3 seconds exceeded" in err.value.error.message
    retry_after = int(err.value.response.headers["Retry-After"])  # whole seconds, as ARM's
    assert 1 <= retry_after <= 3 and f"after '{retry_after}' seconds" in err.value.error.message
    assert "w5" not in emu.group_names()

    def created() -> bool:
        try:
            _put(emu, client, "w5")
        except HttpResponseError as refused:
            assert refused.status_code == 429
            return False
        return True

    assert wait_for(created, timeout=10), "the window never had room again"
    assert emu.answers[("PUT", "group", 201)] == 6 and emu.answers[("PUT", "group", 429)] >= 1


def test_delete_rate_limit_answers_429_with_retry_after(aci_emulator: Any) -> None:
    """ACI counts deletes apart from creates (100 per 5 minutes, 300 per hour by default)."""
    emu, client = aci_emulator, aci_emulator.client(retry_total=0)
    emu.set_rate_limits(creates=[(3, 300)], deletes=[(2, 300)])
    for name in ("d1", "d2"):
        _put(emu, client, name)
    client.container_groups.begin_delete(emu.resource_group, "d1").result()
    client.container_groups.begin_delete(emu.resource_group, "never-made").result()  # 204 counts
    with pytest.raises(HttpResponseError) as err:
        client.container_groups.begin_delete(emu.resource_group, "d2").result()
    assert err.value.status_code == 429 and err.value.error.code == "TooManyRequests"
    assert "request limit for delete operations of 2 per 300 seconds" in err.value.error.message
    assert 290 <= int(err.value.response.headers["Retry-After"]) <= 300
    assert emu.group_names() == ["d2"]  # refused: still there
    _put(emu, client, "d3")  # creates have a window of their own
    emu.set_rate_limits(deletes=[])  # the rule off
    for name in ("d2", "d3"):
        client.container_groups.begin_delete(emu.resource_group, name).result()
    assert emu.group_names() == []
    assert emu.answers[("DELETE", "group", 429)] == 1 and emu.answers[("PUT", "group", 429)] == 0
    with pytest.raises(ValueError, match="delete_windows"):
        emu.set_rate_limits(deletes=[(0, 300)])


def test_answers_and_calls_per_group_are_counted(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.throttle(1, retry_after=0.1)
    create(emu, client, "g1", group(emu, container(command=sh("echo hi"))))
    wait_finished(emu, client, "g1")
    client.containers.list_logs(emu.resource_group, "g1", "main")
    client.container_groups.begin_delete(emu.resource_group, "g1").result()
    per_group = emu.group_calls()["g1"]
    assert per_group[("PUT", "group")] == 2 and per_group[("DELETE", "group")] == 1
    assert per_group[("GET", "logs")] == 1 and per_group[("GET", "group")] >= 2
    answers = emu.answers
    assert answers[("PUT", "group", 429)] == 1 and answers[("PUT", "group", 201)] == 1
    assert answers[("DELETE", "group", 200)] == 1
    emu.reset_calls()
    assert emu.answers == {} and emu.group_calls() == {}


def test_every_answer_carries_rate_limit_headers(aci_emulator: Any) -> None:
    client = aci_emulator.client()
    seen: list[dict[str, str]] = []
    list(client.container_groups.list(raw_response_hook=lambda r: seen.append(
        dict(r.http_response.headers))))
    assert int(seen[0]["x-ms-ratelimit-remaining-subscription-reads"]) > 0


def test_calls_are_counted_by_method_and_kind(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "counted", group(emu, container(command=sh("exit 0"))))
    wait_finished(emu, client, "counted")
    client.containers.list_logs(emu.resource_group, "counted", "main")
    client.container_groups.begin_delete(emu.resource_group, "counted").result()
    calls = emu.calls
    assert calls[("PUT", "group")] == 1 and calls[("DELETE", "group")] == 1
    assert calls[("GET", "logs")] == 1 and calls[("GET", "operation")] >= 1
    assert calls[("GET", "group")] >= 2  # the poller's final GET and the watcher's


# -- faults ----------------------------------------------------------------------------------
def test_inaccessible_image_at_create(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.inaccessible_image("myregistry.azurecr.io/private:*")
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "noimg", group(emu, container(image="myregistry.azurecr.io/private:1")))
    assert err.value.status_code == 400 and err.value.error.code == "InaccessibleImage"
    assert "'myregistry.azurecr.io/private:1' in container group 'noimg' is not accessible" in \
        err.value.error.message
    # An image the emulator does not know is inaccessible too.
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "unknown", group(emu, container(image="docker.io/nobody/nothing")))
    assert err.value.error.code == "InaccessibleImage"


def test_inaccessible_image_at_pull_fails_the_group(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.inaccessible_image("emu/shell:gone", at="pull")
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "pullfail", group(emu, container(image="emu/shell:gone")))
    assert "InaccessibleImage" in str(err.value)
    got = client.container_groups.get(emu.resource_group, "pullfail")
    assert got.provisioning_state == "Failed" and got.instance_view.state == "Failed"
    view = got.containers[0].instance_view
    assert view.current_state.state == "Waiting"
    failed = [e for e in view.events if e.name == "Failed"]
    assert failed and failed[0].type == "Warning" and "emu/shell:gone" in failed[0].message
    assert emu.live_pids() == []


def test_provisioning_failure_leaves_the_state_pending(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.fail_provisioning("doomed-*")
    with pytest.raises(HttpResponseError):
        create(emu, client, "doomed-1", group(emu))
    got = client.container_groups.get(emu.resource_group, "doomed-1")
    assert got.provisioning_state == "Failed"
    assert got.instance_view.state == "Pending"  # a watcher waiting on state alone hangs
    assert got.containers[0].instance_view.current_state.state == "Waiting"
    assert [e.name for e in got.containers[0].instance_view.events] == ["Pulling", "Pulled"]
    assert "not available" in got.instance_view.events[0].message
    assert emu.live_pids() == []
    create(emu, client, "doomed-2", group(emu))  # only the next one failed


def test_provisioning_failure_without_an_event_says_why_only_in_the_operation(
        aci_emulator: Any) -> None:
    """As ACI's ServiceUnavailable: no event anywhere; the PUT's Azure-AsyncOperation document
    ends {"status": "Failed", "error": {"code", "message"}}."""
    from azure.core.rest import HttpRequest

    emu, client = aci_emulator, aci_emulator.client()
    message = ("The requested resource with '1' CPU and '1.5' GB memory is not available in the "
               "location 'westeurope' at this moment. Please retry with a different resource "
               "request or in another location.")
    emu.fail_provisioning("short-*", code="ServiceUnavailable", message=message, event=False)
    poller = client.container_groups.begin_create_or_update(
        emu.resource_group, "short-1", group(emu), polling=False,
        cls=lambda response, model, headers: response.http_response.headers)
    url = poller.result()["Azure-AsyncOperation"]
    assert "/providers/Microsoft.ContainerInstance/locations/westeurope/operations/" in url
    document = wait_for(lambda: (d := client._send_request(HttpRequest("GET", url)).json())
                        ["status"] not in ("Pending", "Creating") and d, timeout=10)
    assert document["status"] == "Failed"
    assert document["error"] == {"code": "ServiceUnavailable", "message": message}
    got = client.container_groups.get(emu.resource_group, "short-1")
    assert got.provisioning_state == "Failed" and got.instance_view.events == []
    assert all(e.type == "Normal" for e in got.containers[0].instance_view.events)
    assert emu.live_pids() == []


def test_a_pull_that_fails_once_is_pulled_again_and_runs(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.flaky_pull("emu/shell:flaky", seconds=0.3)
    create(emu, client, "flaky", group(emu, container(image="emu/shell:flaky",
                                                      command=sh("echo ran"))))
    done = wait_finished(emu, client, "flaky")
    assert done.instance_view.state == "Succeeded"
    view = done.containers[0].instance_view
    assert [(e.name, e.type) for e in view.events] == [
        ("Pulling", "Normal"), ("Failed", "Warning"), ("BackOff", "Warning"),
        ("Pulled", "Normal"), ("Started", "Normal")]
    assert view.events[0].count == 2  # pulled twice
    assert 'Failed to pull image "emu/shell:flaky"' in view.events[1].message
    assert client.containers.list_logs(emu.resource_group, "flaky", "main").content == "ran\n"
    create(emu, client, "steady", group(emu, container(image="emu/shell:flaky")))
    events = client.container_groups.get(emu.resource_group, "steady").containers[0] \
        .instance_view.events
    assert "Failed" not in [e.name for e in events]  # times=1: the next pull just works


def test_a_container_restarts_even_under_never(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.restart_container("flaky", times=1)
    create(emu, client, "restarts", group(emu, container("flaky", command=sh("echo run; exit 2"))))
    done = wait_finished(emu, client, "restarts")
    view = done.containers[0].instance_view
    assert view.restart_count == 1
    assert view.previous_state.state == "Terminated" and view.previous_state.exit_code == 2
    assert view.current_state.exit_code == 2
    assert [e.count for e in view.events if e.name == "Started"] == [2]
    assert done.instance_view.state == "Failed"


def test_restart_policy_on_failure_restarts_until_success(aci_emulator: Any,
                                                          tmp_path: Path) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    marker = tmp_path / "second-run"
    create(emu, client, "onfail", group(emu, container(
        command=sh(f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 1")),
        restart_policy="OnFailure"))
    done = wait_finished(emu, client, "onfail")
    assert done.instance_view.state == "Succeeded"
    assert done.containers[0].instance_view.restart_count == 1


def test_a_hung_container_keeps_running_until_deleted(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.hang("stuck")
    create(emu, client, "hung", group(emu, container("stuck", command=sh("exit 0"))))
    time.sleep(0.5)
    got = client.container_groups.get(emu.resource_group, "hung")
    assert got.instance_view.state == "Running"
    assert got.containers[0].instance_view.current_state.state == "Running"
    client.container_groups.begin_delete(emu.resource_group, "hung").result()
    assert emu.live_pids() == []


def test_injected_errors_on_any_route(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client(retry_total=0)
    emu.fail_requests(500, "InternalServerError", "boom", method="GET", kind="logs")
    create(emu, client, "errs", group(emu))
    with pytest.raises(HttpResponseError) as err:
        client.containers.list_logs(emu.resource_group, "errs", "main")
    assert err.value.status_code == 500 and err.value.error.code == "InternalServerError"
    client.containers.list_logs(emu.resource_group, "errs", "main")  # only once


def test_stopping_the_emulator_kills_everything(tmp_path: Path) -> None:
    from aci_emulator import AciEmulator

    emu = AciEmulator(work_dir=tmp_path / "emu").start()
    client = emu.client()
    create(emu, client, "left", group(emu, container(command=sh("sleep 300 & sleep 300"))))
    assert wait_for(lambda: len(emu.live_pids()) >= 2, timeout=10)
    emu.stop()
    assert emu.live_pids() == []


def test_sigterm_ignoring_container_is_killed(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    script = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "print('ready', flush=True)\ntime.sleep(300)\n")
    create(emu, client, "stubborn", group(emu, container(command=[sys.executable, "-c", script])))
    assert wait_for(lambda: "ready" in client.containers.list_logs(
        emu.resource_group, "stubborn", "main").content, timeout=10)
    started = time.monotonic()
    client.container_groups.begin_delete(emu.resource_group, "stubborn").result()
    assert emu.live_pids() == []
    assert time.monotonic() - started < 10


# -- on a local Docker engine (where one answers at DOCKER_HOST) --------------------------------
DOCKER_IMAGE = os.environ.get("ACI_EMULATOR_DOCKER_IMAGE", "local/bookworm")


@pytest.fixture
def docker_emulator(tmp_path: Path, docker_engine: Any) -> Any:
    """The emulator on the tests' Docker engine (conftest's docker_engine: started by
    scripts/ensure-docker.sh when none answers, with local/bookworm)."""
    from aci_emulator import AciEmulator
    from aci_emulator.emulator import docker_available

    if not docker_available():
        pytest.skip("no Docker engine answers at DOCKER_HOST: the emulator runs processes")
    with AciEmulator(work_dir=tmp_path / "emu", docker=True) as emu:
        if not emu.engine.launcher.has_image(DOCKER_IMAGE):
            pytest.skip(f"the engine has no image {DOCKER_IMAGE} (scripts/ensure-docker.sh "
                        f"makes local/bookworm)")
        yield emu
    assert emu.leftovers() == []


def test_docker_containers_run_the_real_image(docker_emulator: Any) -> None:
    emu, client = docker_emulator, docker_emulator.client()
    create(emu, client, "in-docker", group(emu, container(
        image=DOCKER_IMAGE, cpu=0.5, secure={"TOKEN": "s3cr3t"},
        command=sh('echo "token=$TOKEN path=$PATH"; cat /etc/debian_version >/dev/null; exit 4'))))
    done = wait_finished(emu, client, "in-docker")
    assert done.containers[0].instance_view.current_state.exit_code == 4
    logs = client.containers.list_logs(emu.resource_group, "in-docker", "main").content
    # The image's own PATH, not the test's: it ran inside the image.
    assert logs.startswith("token=s3cr3t path=/usr/local/sbin:")
    assert emu.leftovers() == []  # a finished container is removed from the engine


def test_docker_delete_removes_the_container(docker_emulator: Any) -> None:
    emu, client = docker_emulator, docker_emulator.client()
    create(emu, client, "docker-del", group(emu, container(image=DOCKER_IMAGE,
                                                           command=["sleep", "300"])))
    assert len(emu.leftovers()) == 1
    client.container_groups.begin_delete(emu.resource_group, "docker-del").result()
    assert emu.leftovers() == []


def test_docker_missing_image_is_inaccessible(docker_emulator: Any) -> None:
    emu, client = docker_emulator, docker_emulator.client()
    with pytest.raises(HttpResponseError) as err:
        create(emu, client, "noimage", group(emu, container(image="local/not-there:1")))
    assert err.value.error.code == "InaccessibleImage"


# -- the raw protocol (what a Logic App's Http actions see) ---------------------------------------
def test_raw_put_gives_an_async_operation_that_goes_creating_then_succeeded(
        aci_emulator: Any) -> None:
    import requests

    emu = aci_emulator
    emu.slow_provisioning(0.5)
    token = emu.credential().get_token("https://management.azure.com/.default").token
    session = requests.Session()
    session.trust_env = False  # an inherited REQUESTS_CA_BUNDLE would win over session.verify
    session.verify = str(emu.ca_bundle)
    session.headers["Authorization"] = f"Bearer {token}"
    url = (f"{emu.base_url}/subscriptions/{emu.subscription_id}/resourceGroups/"
           f"{emu.resource_group}/providers/Microsoft.ContainerInstance/containerGroups/raw")
    body = {"location": emu.location, "tags": {"job": "raw"}, "properties": {
        "osType": "Linux", "restartPolicy": "Never", "containers": [{"name": "main", "properties": {
            "image": "emu/shell", "command": ["sh", "-c", "exit 0"],
            "resources": {"requests": {"cpu": 1, "memoryInGB": 1}}}}]}}
    missing = session.put(url, json=body, timeout=10)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "MissingApiVersionParameter"
    put = session.put(url, params={"api-version": "2023-05-01"}, json=body, timeout=10)
    assert put.status_code == 201
    assert put.json()["properties"]["provisioningState"] == "Pending"
    operation = put.headers["Azure-AsyncOperation"]
    assert f"/subscriptions/{emu.subscription_id}/providers/Microsoft.ContainerInstance/" \
           f"locations/{emu.location}/operations/" in operation
    statuses = []
    while not statuses or statuses[-1] not in ("Succeeded", "Failed"):
        statuses.append(session.get(operation, timeout=10).json()["status"])
        time.sleep(0.02)
    assert list(dict.fromkeys(statuses))[-2:] == ["Creating", "Succeeded"]
    again = session.put(url, params={"api-version": "2023-05-01"}, json=body, timeout=10)
    assert again.status_code == 200  # PUT of an existing group
    gone = session.delete(url, params={"api-version": "2023-05-01"}, timeout=10)
    assert gone.status_code == 200 and gone.json()["name"] == "raw"
    assert session.delete(url, params={"api-version": "2023-05-01"}, timeout=10).status_code == 204
    notfound = session.get(url, params={"api-version": "2023-05-01"}, timeout=10)
    assert notfound.status_code == 404
    assert notfound.json()["error"]["code"] == "ResourceNotFound"


def test_standalone_emulator_with_remote_fault_control(tmp_path: Path) -> None:
    """``python -m aci_emulator``: another process's emulator, steered over HTTP."""
    import requests

    proc = subprocess.Popen([sys.executable, "-m", "aci_emulator", "--delete-rate", "1/300",
                             "--quota-groups", "7"], cwd=Path(__file__).parent,
                            stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        env = {}
        for line in proc.stdout:
            if line.startswith("#"):
                break
            name, _, value = line.removeprefix("export ").strip().partition("=")
            env[name] = value.strip("'")
        token = requests.get(env["IDENTITY_ENDPOINT"], params={
            "api-version": "2019-08-01", "resource": "https://management.azure.com"},
            headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}, timeout=10).json()
        session = requests.Session()
        session.trust_env = False
        session.verify = env["REQUESTS_CA_BUNDLE"]
        session.headers["Authorization"] = f"Bearer {token['access_token']}"
        control = f"{env['SERVERLESS_SCORE_ARM_ENDPOINT']}/_emulator"
        assert session.post(f"{control}/throttle", json={"times": 1, "retry_after": 0.1},
                            timeout=10).status_code == 200
        assert session.post(f"{control}/no_such_thing", timeout=10).status_code == 400
        assert requests.post(f"{control}/throttle", verify=env["REQUESTS_CA_BUNDLE"],
                             timeout=10).status_code == 401  # no token, no control

        from aci_emulator import StaticToken
        from azure.mgmt.containerinstance import ContainerInstanceManagementClient

        client = ContainerInstanceManagementClient(
            StaticToken(token["access_token"], int(token["expires_on"])),
            env["AZURE_SUBSCRIPTION_ID"], base_url=env["SERVERLESS_SCORE_ARM_ENDPOINT"],
            connection_verify=env["REQUESTS_CA_BUNDLE"])
        cg = m.ContainerGroup(location="westeurope", os_type="Linux", restart_policy="Never",
                              containers=[container(command=sh("sleep 300"))])
        client.container_groups.begin_create_or_update(
            env["SERVERLESS_SCORE_AZURE_RESOURCE_GROUP"], "remote", cg, **FAST).result()
        calls = session.get(f"{control}/calls", timeout=10).json()["result"]
        assert {"method": "PUT", "kind": "group", "count": 2} in calls  # the 429, then the create
        assert session.get(f"{control}/groups", timeout=10).json()["result"] == ["remote"]
        usage = {u.name.value: u.limit for u in client.location.list_usage("westeurope")}
        assert usage["ContainerGroups"] == 7  # --quota-groups
        assert session.post(f"{control}/set_rate_limits", json={"creates": [[1, 300]]},
                            timeout=10).status_code == 200
        with pytest.raises(HttpResponseError) as err:  # the one create of the window is spent
            client.container_groups.begin_create_or_update(
                env["SERVERLESS_SCORE_AZURE_RESOURCE_GROUP"], "remote2", cg, polling=False,
                retry_total=0).result()
        assert err.value.status_code == 429
        rg = env["SERVERLESS_SCORE_AZURE_RESOURCE_GROUP"]
        client.container_groups.begin_delete(rg, "remote", polling_interval=0.05).result()
        with pytest.raises(HttpResponseError) as err:  # --delete-rate 1/300
            client.container_groups.begin_delete(rg, "remote", retry_total=0).result()
        assert err.value.status_code == 429
        answers = session.get(f"{control}/answers", timeout=10).json()["result"]
        assert {"method": "PUT", "kind": "group", "status": 429, "count": 2} in answers
        assert {"method": "DELETE", "kind": "group", "status": 429, "count": 1} in answers
        per_group = session.get(f"{control}/group_calls", timeout=10).json()["result"]
        assert {"method": "PUT", "kind": "group", "count": 2} in per_group["remote"]
        assert per_group["remote2"] == [{"method": "PUT", "kind": "group", "count": 1}]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    # Its group's processes went with it.
    marker = b"ACI_EMULATOR_GROUP=remote"
    leftovers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    leftovers.append(entry.name)
            except OSError:
                continue
    assert leftovers == []


# -- Spot ------------------------------------------------------------------------------------------
def test_a_spot_group_is_evicted_and_restarted_by_the_platform(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    cg = group(emu, container(command=sh("echo run; sleep 30")))
    cg.priority = "Spot"
    created = create(emu, client, "spotty", cg)
    assert created.priority == "Spot"  # echoed back as PUT
    wait_for(lambda: client.container_groups.get(emu.resource_group, "spotty").containers[0]
             .instance_view.current_state.state == "Running", 10)
    emu.evict("spotty")
    view = wait_for(lambda: (v := client.container_groups.get(emu.resource_group, "spotty")
                             .containers[0].instance_view).restart_count == 1
                    and v.current_state.state == "Running" and v, 10)
    assert view, "the evicted container was not restarted"
    assert view.previous_state.state == "Terminated"
    assert "Killing" in [e.name for e in view.events]
    assert [e.count for e in view.events if e.name == "Started"] == [2]
    client.container_groups.begin_delete(emu.resource_group, "spotty", **FAST).result()


def test_only_spot_groups_can_be_evicted_and_priority_is_validated(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    create(emu, client, "regular", group(emu, container(command=sh("sleep 30"))))
    with pytest.raises(ValueError, match="not a Spot group"):
        emu.evict("regular")
    bad = group(emu)
    bad.priority = "Cheap"
    with pytest.raises(HttpResponseError) as info:
        create(emu, client, "cheap", bad)
    assert info.value.error is not None and info.value.error.code == "PriorityNotSpecified"
    public = group(emu)
    public.priority = "Spot"
    public.ip_address = m.IpAddress(type="Public", ports=[m.Port(port=80)])
    with pytest.raises(HttpResponseError) as info:
        create(emu, client, "public", public)
    assert info.value.error.code == "SpotPriorityContainerGroupNotSupportedForInboundConnectivity"


def test_spot_cores_count_against_their_own_quota(aci_emulator: Any) -> None:
    emu, client = aci_emulator, aci_emulator.client()
    emu.set_quota(standard_cores=1)
    create(emu, client, "regular1", group(emu, container(command=sh("sleep 30"))))
    spot = group(emu, container(command=sh("sleep 30")))
    spot.priority = "Spot"
    create(emu, client, "spot1", spot)  # the Standard cores are used up, the Spot ones are not
    usage = {u.name.value: u.current_value
             for u in client.location.list_usage(emu.location)}
    assert usage["StandardCores"] == 1 and usage["StandardSpotCores"] == 1
