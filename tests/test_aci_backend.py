"""The ACI backend against the local ACI emulator (real HTTPS, the real SDK, an unmodified
DefaultAzureCredential reaching the emulator's managed-identity endpoint): lifecycle, the state
machine on real answers, faults (429 storms, quota, inaccessible images, restarts, provisioning
failures) and how many ARM calls it spends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from serverless_score.backends.aci import AciBackend, AciSettings
from serverless_score.backends.aci.pacer import forget_shared
from serverless_score.backends.aci.polling import PollSchedule
from serverless_score.backends.base import GroupSpec, GroupState, PacesCreates, Phase
from serverless_score.controller.watch import lost_attempt
from serverless_score.errors import ScoreError

pytestmark = [pytest.mark.aci]

SHELL = "emu/test-shell"


@pytest.fixture
def emu(aci_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in aci_emulator.CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in aci_emulator.env().items():
        monkeypatch.setenv(name, value)
    yield aci_emulator
    forget_shared()  # the next test's emulator may get this one's port, not its history


def _backend(emu: Any, image: str = SHELL, **kw: Any) -> AciBackend:
    rates = {key: kw.pop(key) for key in ("create_rate", "delete_rate") if key in kw}
    settings = AciSettings(
        subscription_id=emu.subscription_id, resource_group=emu.resource_group,
        location=emu.location, image=image, arm_endpoint=emu.base_url,
        creates_per_minute=kw.pop("creates_per_minute", 60), max_parallel=kw.pop("max_parallel", 4),
        **rates)
    return AciBackend(settings, **kw)


def _group(name: str, **kw: Any) -> GroupSpec:
    return GroupSpec(name=name, job_id="job1", task_ids=("t00000",),
                     env={"SERVERLESS_SCORE_GROUP": name, "GREETING": "hello"},
                     labels={"job": "job1", "tasks": "t00000", "expires": "2099-01-01T00:00:00Z"},
                     secure_env={"SERVERLESS_SCORE_SECRETS": "s3cr3t-value"}, **kw)


def wait_for(condition: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def _wait(backend: AciBackend, names: list[str], timeout: float = 30) -> dict[str, GroupState]:
    """Poll like the scheduler does: every 0.2 s until every group is finished."""
    deadline = time.monotonic() + timeout
    while True:
        states = backend.get_states(names)
        if all(s.phase.finished for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def test_lifecycle_create_poll_logs_delete(emu) -> None:
    emu.add_image(SHELL, ["sh", "-c", 'echo "$GREETING from $SERVERLESS_SCORE_GROUP"; sleep 1'])
    backend = _backend(emu)
    backend.begin_create_group(_group("job1-t00000-1"))
    first = backend.get_states(["job1-t00000-1"])["job1-t00000-1"]
    assert not first.phase.finished  # created is not finished
    state = _wait(backend, ["job1-t00000-1"])["job1-t00000-1"]
    assert (state.phase, state.exit_code, state.detail) == (Phase.SUCCEEDED, 0, "")
    assert state.started_at is not None and state.finished_at is not None
    assert 1.0 <= state.finished_at - state.started_at < 10  # billed: pull to finish
    assert backend.list_groups("job1") == ["job1-t00000-1"]
    assert backend.list_groups("other") == []
    (info,) = backend.list_all_groups()
    assert info.job_id == "job1" and info.expires == "2099-01-01T00:00:00Z"
    assert backend.get_logs("job1-t00000-1") == "hello from job1-t00000-1\n"
    sent = {v["name"]: v for v in emu.group("job1-t00000-1").containers[0].spec["environmentVariables"]}
    assert sent["SERVERLESS_SCORE_SECRETS"] == {"name": "SERVERLESS_SCORE_SECRETS",
                                                "secureValue": "s3cr3t-value"}
    raw = backend.client._sdk.container_groups.get(emu.resource_group, "job1-t00000-1")
    env = {e.name: e for e in raw.containers[0].environment_variables}
    assert env["SERVERLESS_SCORE_SECRETS"].value is None and env["SERVERLESS_SCORE_SECRETS"].secure_value is None
    assert raw.restart_policy == "Never" and raw.tags["job"] == "job1"
    backend.delete_group("job1-t00000-1")
    assert emu.group_names() == [] and backend.list_groups("job1") == []
    backend.delete_group("job1-t00000-1")  # gone already: still fine
    assert emu.token_resources and all("management" in r for r in emu.token_resources)


def test_exit_code_and_restart_loop_and_provisioning_failure(emu) -> None:
    emu.add_image("emu/exit3*", ["sh", "-c", "echo boom >&2; exit 3"])
    emu.add_image("emu/loop*", ["sh", "-c", "exit 137"])
    emu.restart_container("emu/loop*", times=5)
    emu.add_image(SHELL, ["sh", "-c", "exit 0"])
    emu.fail_provisioning("*-prov-*")
    backend = _backend(emu)
    specs = {"job1-exit-1": "emu/exit3", "job1-loop-1": "emu/loop", "job1-prov-1": SHELL}
    for name, image in specs.items():
        backend.settings = AciSettings(**{**backend.settings.__dict__, "image": image})
        backend.begin_create_group(_group(name))
    states = _wait(backend, list(specs))
    assert states["job1-exit-1"].phase is Phase.FAILED
    assert states["job1-exit-1"].detail == "exited with code 3" and states["job1-exit-1"].exit_code == 3
    assert "boom" in backend.get_logs("job1-exit-1")
    loop = states["job1-loop-1"]
    assert loop.phase is Phase.FAILED and "restarted" in loop.detail and "memory_gb" in loop.detail
    prov = states["job1-prov-1"]
    assert prov.phase is Phase.FAILED and prov.detail.startswith("could not be provisioned")
    for name in specs:
        backend.delete_group(name)
    assert emu.group_names() == []


@pytest.mark.parametrize("at", ["create", "pull"])
def test_inaccessible_image_fails_the_group_with_what_to_check(emu, at) -> None:
    emu.inaccessible_image("*private*", at=at)
    backend = _backend(emu, image="myreg.azurecr.io/private:1")
    backend.begin_create_group(_group("job1-img-1"))
    state = _wait(backend, ["job1-img-1"])["job1-img-1"]
    assert state.phase is Phase.FAILED
    assert "could not pull its image 'myreg.azurecr.io/private:1'" in state.detail
    assert "AcrPull" in state.detail and not state.retryable  # retrying cannot help
    backend.delete_group("job1-img-1")
    assert emu.group_names() == []


def test_a_pull_that_failed_once_then_worked_is_not_a_failure(emu) -> None:
    """The bug: an old 'Failed to pull' Warning event, after which the image was pulled and the
    container ran, failed the task for good. Seen while the pull is retried, while it runs and
    once it has finished: never a failure, one create, no retry."""
    emu.add_image("emu/flaky*", ["sh", "-c", "sleep 1; echo scored"])
    emu.flaky_pull("emu/flaky*", seconds=1.0)
    backend = _backend(emu, image="emu/flaky:1")
    backend.begin_create_group(_group("job1-fp-1"))
    container = emu.group("job1-fp-1").containers[0]
    assert wait_for(lambda: container.current.get("detailStatus") == "ErrImagePull", 10)
    retrying = _backend(emu).get_states(["job1-fp-1"])["job1-fp-1"]  # reads it now
    assert retrying.phase is Phase.STARTING, retrying
    assert "context deadline exceeded" in retrying.detail and "again" in retrying.detail
    assert emu.wait_for_state("job1-fp-1", ["Running"]) == "Running"
    assert _backend(emu).get_states(["job1-fp-1"])["job1-fp-1"].phase is Phase.RUNNING
    state = _wait(backend, ["job1-fp-1"])["job1-fp-1"]
    assert (state.phase, state.detail) == (Phase.SUCCEEDED, ""), state
    raw = backend.client._sdk.container_groups.get(emu.resource_group, "job1-fp-1")
    assert "Failed" in [e.name for e in raw.containers[0].instance_view.events]  # still there
    assert backend.get_logs("job1-fp-1") == "scored\n"
    assert emu.calls[("PUT", "group")] == 1
    backend.delete_group("job1-fp-1")


def test_a_failed_provisioning_without_events_gives_azures_code_and_message(emu) -> None:
    """No event says why: the reason is read, once, from the create's Azure-AsyncOperation
    document; a group this process did not create says where to look instead."""
    message = ("The requested resource with '1' CPU and '1.5' GB memory is not available in the "
               "location 'westeurope' at this moment. Please retry with a different resource "
               "request or in another location.")
    emu.add_image(SHELL, ["sh", "-c", "exit 0"])
    emu.fail_provisioning("job1-sp-*", times=2, code="ServiceUnavailable", message=message,
                          event=False)
    backend = _backend(emu, schedule=PollSchedule(first=0.2, min_interval=0.2))
    backend.begin_create_group(_group("job1-sp-1"))
    state = _wait(backend, ["job1-sp-1"])["job1-sp-1"]
    assert state.phase is Phase.FAILED and state.retryable
    assert state.detail == f"could not be provisioned by Azure: ServiceUnavailable: {message}"
    assert emu.calls[("GET", "operation")] == 1
    lost = lost_attempt("t00000", 1, "job1-sp-1", state)  # what the task's error says
    reason, retryable = lost.reason, lost.retryable
    assert reason.startswith("before the task finished, the worker could not be provisioned "
                             "by Azure: ServiceUnavailable: The requested resource") and retryable
    observer = _backend(emu).get_states(["job1-sp-1"])["job1-sp-1"]  # `status`: not its create
    assert observer.phase is Phase.FAILED and "Activity log" in observer.detail
    # The operation read is throttled: one try, and the detail says why there is no reason.
    emu.fail_requests(429, "TooManyRequests", "slow down", method="GET", kind="operation",
                      retry_after=1)
    backend.begin_create_group(_group("job1-sp-2"))
    state = _wait(backend, ["job1-sp-2"])["job1-sp-2"]
    assert state.phase is Phase.FAILED and state.retryable, state
    assert ("(no event says why; reading Azure's reason from the create operation failed: 429 "
            "TooManyRequests slow down)") in state.detail
    assert emu.calls[("GET", "operation")] == 2
    for name in ("job1-sp-1", "job1-sp-2"):
        backend.delete_group(name)
    assert emu.group_names() == []


def test_a_429_storm_on_creates_is_waited_out_without_blocking_polls(emu) -> None:
    emu.add_image(SHELL, ["sh", "-c", "exit 0"])
    emu.throttle(times=3, retry_after=1)
    backend = _backend(emu)
    started = time.monotonic()
    backend.begin_create_group(_group("job1-a-1"))
    assert time.monotonic() - started < 1.0  # a 429 does not block the scheduler's loop
    state = backend.get_states(["job1-a-1"])["job1-a-1"]
    assert state.phase is Phase.STARTING and "throttling" in state.detail
    state = _wait(backend, ["job1-a-1"], timeout=40)["job1-a-1"]
    assert state.phase is Phase.SUCCEEDED
    assert backend.arm_calls["create"] == 4  # three refused, one accepted
    assert emu.calls[("PUT", "group")] == 4
    backend.delete_group("job1-a-1")


def test_a_create_429_holds_every_backend_on_the_subscription_until_retry_after(emu) -> None:
    """Retry-After on a create is learnt whole (not capped as a blocking wait is): no create from
    this process before it has passed, and the scheduler is told, not blocked."""
    emu.add_image(SHELL, ["sh", "-c", "exit 0"])
    emu.throttle(times=1, retry_after=120)  # another client filled the window
    backend = _backend(emu)
    assert isinstance(backend, PacesCreates) and backend.create_delay() == 0.0
    started = time.monotonic()
    backend.begin_create_group(_group("job1-b-1"))
    assert time.monotonic() - started < 1.0
    state = backend.get_states(["job1-b-1"])["job1-b-1"]
    assert state.phase is Phase.STARTING and "throttling" in state.detail
    assert 115 < backend.create_delay() <= 120
    other = _backend(emu)  # another job of this process, on the same subscription and region
    assert 115 < other.create_delay() <= 120
    other.begin_create_group(_group("job1-c-1"))
    for _ in range(5):  # the scheduler keeps polling: nothing more is sent
        backend.get_states(["job1-b-1"])
        other.get_states(["job1-c-1"])
        time.sleep(0.2)
    assert emu.calls[("PUT", "group")] == 1


def test_creates_wait_their_turn_and_deletes_block_until_theirs_with_no_429(emu) -> None:
    """The emulator enforces 3 creates and 3 deletes per 1.5 s; the backend, told the same, is
    never refused: creates queue (STARTING, never blocking), deletes wait."""
    emu.add_image(SHELL, ["sh", "-c", "exit 0"])
    emu.set_rate_limits(creates=[(3, 1.5)], deletes=[(3, 1.5)])
    backend = _backend(emu, create_rate=((3, 1.5),), delete_rate=((3, 1.5),))
    names = [f"job1-r{i}-1" for i in range(7)]
    started = time.monotonic()
    for name in names:
        backend.begin_create_group(_group(name))
    assert time.monotonic() - started < 1.0  # five groups queued, none blocking
    assert emu.calls[("PUT", "group")] == 3
    assert 1.0 < backend.create_delay() <= 3.0  # the 8th comes after 4 more: two windows on
    waiting = backend.get_states(names)[names[-1]]
    assert waiting.phase is Phase.STARTING and "waiting for its turn" in waiting.detail
    assert "3 per 1.5s" in waiting.detail
    states = _wait(backend, names, timeout=30)
    assert all(s.phase is Phase.SUCCEEDED for s in states.values())
    for name in names:
        backend.delete_group(name)
    assert emu.group_names() == []
    answers = emu.answers
    assert answers[("PUT", "group", 201)] == 7 and answers[("DELETE", "group", 200)] == 7
    assert answers[("PUT", "group", 429)] == 0 and answers[("DELETE", "group", 429)] == 0
    calls = emu.group_calls()
    assert all(calls[n][("PUT", "group")] == 1 and calls[n][("DELETE", "group")] == 1
               for n in names)


def test_quota_short_before_starting_says_what_is_short(emu) -> None:
    emu.set_quota(standard_cores=3)
    backend = _backend(emu, max_parallel=4)
    backend.tasks_per_group(8, 4)
    with pytest.raises(ScoreError) as err:
        backend.begin_create_group(_group("job1-q-1", cpu=1.0))
    assert "StandardCores: 4 needed (4 groups x 1 core), 3 of 3 free" in err.value.message
    assert "max_parallel = 3" in err.value.hint
    assert emu.group_names() == []


def test_quota_reached_waits_then_fails_clearly(emu) -> None:
    emu.add_image(SHELL, ["sh", "-c", "exit 0"])
    backend = _backend(emu, quota_wait=1.0)
    emu.set_quota(container_groups=0)
    backend._check_quota = False  # the quota ran out after the start-up check
    backend.begin_create_group(_group("job1-q-1"))
    state = backend.get_states(["job1-q-1"])["job1-q-1"]
    assert state.phase is Phase.STARTING and "quota" in state.detail
    with pytest.raises(ScoreError) as err:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            backend.get_states(["job1-q-1"])
            time.sleep(0.2)
    assert "quota" in err.value.message and "ContainerGroupQuotaReached" not in err.value.hint
    assert "request a quota increase" in err.value.hint
    assert emu.group_names() == []


def test_polling_spends_few_arm_calls(emu) -> None:
    """Ten groups of 6 s, polled every 0.2 s: without a policy that is ~40 GETs per group."""
    emu.add_image(SHELL, ["sh", "-c", "sleep 6"])
    backend = _backend(emu, max_parallel=10)
    names = [f"job1-p{i}-1" for i in range(10)]
    for name in names:
        backend.begin_create_group(_group(name))
    emu.reset_calls()
    states = _wait(backend, names, timeout=60)
    assert all(s.phase is Phase.SUCCEEDED for s in states.values())
    gets = emu.calls[("GET", "group")]
    assert gets <= 10 * 6, gets  # first after 2 s, then every 25 % of the group's age (~4 each)
    assert emu.calls[("GET", "list_rg")] <= 1
    for name in names:
        backend.delete_group(name)
    assert emu.group_names() == []


def test_async_delete_is_awaited_and_lists_are_paged(tmp_path, monkeypatch) -> None:
    from aci_emulator import AciEmulator

    with AciEmulator(work_dir=tmp_path / "emu", delete_mode="async") as emu:
        for name in emu.CREDENTIAL_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in emu.env().items():
            monkeypatch.setenv(name, value)
        emu.api.list_page_size = 1
        emu.add_image(SHELL, ["sh", "-c", "sleep 30"])
        backend = _backend(emu)
        names = ["job1-d1-1", "job1-d2-1", "job1-d3-1"]
        for name in names:
            backend.begin_create_group(_group(name))
        assert backend.list_groups("job1") == names  # three pages, followed
        backend.delete_group("job1-d1-1")
        assert emu.group_names() == ["job1-d2-1", "job1-d3-1"]  # gone when delete returns
        assert emu.calls[("DELETE", "group")] == 1 and emu.calls[("GET", "operation")] >= 1
        for name in names[1:]:
            backend.delete_group(name)
        assert emu.group_names() == []


def test_a_group_deleted_behind_the_jobs_back_is_reported_gone(emu) -> None:
    emu.add_image(SHELL, ["sh", "-c", "sleep 30"])
    backend = _backend(emu)
    backend.begin_create_group(_group("job1-v-1"))
    emu.wait_for_state("job1-v-1", ["Running"])
    emu.client().container_groups.begin_delete(emu.resource_group, "job1-v-1").result()
    state = _wait(backend, ["job1-v-1"], timeout=30)["job1-v-1"]
    assert state.phase is Phase.FAILED and "no longer exists" in state.detail
    backend.delete_group("job1-v-1")


def test_another_process_reads_the_states_of_groups_it_did_not_create(emu) -> None:
    """What `status` does: a fresh backend, given names found by their tags, reads them at once."""
    emu.add_image("emu/quick*", ["sh", "-c", "echo done"])
    emu.add_image("emu/slow*", ["sh", "-c", "sleep 30"])
    creator = _backend(emu, image="emu/quick")
    creator.begin_create_group(_group("job1-q-1"))
    creator.settings = AciSettings(**{**creator.settings.__dict__, "image": "emu/slow"})
    creator.begin_create_group(_group("job1-s-1"))
    emu.wait_for_state("job1-q-1", ["Succeeded"])
    emu.wait_for_state("job1-s-1", ["Running"])
    observer = _backend(emu)
    names = observer.list_groups("job1")
    states = observer.get_states([*names, "job1-gone-1"])
    assert states["job1-q-1"].phase is Phase.SUCCEEDED and states["job1-q-1"].finished_at is not None
    assert states["job1-s-1"].phase is Phase.RUNNING
    assert states["job1-gone-1"].phase is Phase.FAILED and "no longer exists" in states["job1-gone-1"].detail
    assert observer.get_logs("job1-q-1") == "done\n"
    for name in names:
        observer.delete_group(name)
    assert emu.group_names() == []


def test_an_unhealthy_group_fails_with_a_reason_and_is_deleted(emu) -> None:
    emu.add_image("emu/sick*", ["sh", "-c", "sleep 60"])
    backend = _backend(emu, image="emu/sick")
    backend.begin_create_group(_group("job1-sick-1"))
    assert emu.wait_for_state("job1-sick-1", ["Running"]) == "Running"
    emu.unhealthy("job1-sick-1")
    state = _wait(backend, ["job1-sick-1"])["job1-sick-1"]
    assert state.phase is Phase.FAILED and "Unhealthy" in state.detail
    backend.delete_group("job1-sick-1")
    assert emu.group_names() == [] and emu.live_pids() == []
