"""The pure parts of the ACI backend, row by row: ARM's view of a group -> GroupState (from REST
JSON deserialized by the real SDK models), GroupSpec -> the PUT body the SDK sends, settings from
the job and the environment, the creation token bucket and backoff, the poll schedule's ARM
budget, the quota check and the packing decision."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.containerinstance.models import ContainerGroup, Usage

from serverless_score.backends.aci import AciBackend, AciSettings
from serverless_score.backends.aci.groups import build_group
from serverless_score.backends.aci.polling import PollSchedule
from serverless_score.backends.aci.quota import fitting_parallel, shortfalls
from serverless_score.backends.aci.settings import arm_endpoint, builtin_image
from serverless_score.backends.aci.states import CreateOutcome, group_state, wants_outcome
from serverless_score.backends.aci.throttle import TokenBucket, backoff, parse_retry_after
from serverless_score.backends.base import GroupSpec, Phase
from serverless_score.errors import SpecError
from serverless_score.spec import spec_from_dict

IMAGE = "myreg.azurecr.io/serverless-score-python:0.1.0"
IDENTITY = ("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/"
            "userAssignedIdentities/scorer")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- state machine ---------------------------------------------------------------------------
def _group(provisioning: str = "Succeeded", state: str | None = None, current: dict | None = None,
           previous: dict | None = None, restarts: int = 0, events: list | None = None,
           group_events: list | None = None) -> ContainerGroup:
    container: dict[str, Any] = {"name": "runner", "properties": {
        "image": IMAGE, "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}}}}
    if current is not None or events or restarts:
        container["properties"]["instanceView"] = {
            "restartCount": restarts, "currentState": current or {"state": "Waiting"},
            "previousState": previous, "events": events or []}
    body: dict[str, Any] = {"name": "g", "location": "westeurope", "properties": {
        "provisioningState": provisioning, "osType": "Linux", "containers": [container]}}
    if state is not None or group_events:
        body["properties"]["instanceView"] = {"state": state, "events": group_events or []}
    return ContainerGroup.deserialize(body)


def _ev(name: str, message: str, type_: str = "Normal") -> dict[str, Any]:
    return {"name": name, "message": message, "type": type_, "count": 1}


def test_provisioned_is_not_finished() -> None:
    """The trap: provisioning Succeeded with a running container is running, not done."""
    state = group_state("g", _group("Succeeded", "Running", {"state": "Running"}))
    assert state.phase is Phase.RUNNING and not state.phase.finished


def test_created_without_instance_view_is_starting() -> None:
    assert group_state("g", _group("Succeeded")).phase is Phase.STARTING
    assert group_state("g", _group("Creating", "Pending", {"state": "Waiting"})).phase is Phase.STARTING


def test_terminated_container_exit_code_decides() -> None:
    ok = group_state("g", _group("Succeeded", "Running",
                                 {"state": "Terminated", "exitCode": 0, "detailStatus": "Completed"}))
    assert ok.phase is Phase.SUCCEEDED and ok.exit_code == 0
    bad = group_state("g", _group("Succeeded", "Failed",
                                  {"state": "Terminated", "exitCode": 1, "detailStatus": "Error"}))
    assert bad.phase is Phase.FAILED and bad.exit_code == 1 and bad.detail == "exited with code 1"
    oom = group_state("g", _group("Succeeded", "Failed",
                                  {"state": "Terminated", "exitCode": 137, "detailStatus": "OOMKilled"}))
    assert oom.phase is Phase.FAILED and "memory_gb" in oom.detail and "OOMKilled" in oom.detail


def test_a_finished_group_carries_its_billed_seconds_from_the_pull() -> None:
    group = _group("Succeeded", "Succeeded",
                   {"state": "Terminated", "exitCode": 0, "startTime": "2026-11-29T10:00:20Z",
                    "finishTime": "2026-11-29T10:01:50Z"},
                   events=[{"name": "Pulling", "message": "pulling image", "type": "Normal",
                            "firstTimestamp": "2026-11-29T10:00:00Z"}])
    state = group_state("g", group)
    assert state.finished_at is not None and state.started_at is not None
    assert state.finished_at - state.started_at == 110.0
    # A running group: billed since it started, until it stops or is deleted (no end yet).
    running = _group("Succeeded", "Running", {"state": "Running", "startTime": "2026-11-29T10:00:20Z"})
    still = group_state("g", running)
    assert still.finished_at is None and still.started_at == state.started_at + 20


def test_group_state_alone_finishes_it() -> None:
    assert group_state("g", _group("Succeeded", "Succeeded")).phase is Phase.SUCCEEDED
    failed = group_state("g", _group("Succeeded", "Failed", group_events=[
        _ev("Killing", "container runner was terminated", "Warning")]))
    assert failed.phase is Phase.FAILED and "was terminated" in failed.detail
    stopped = group_state("g", _group("Succeeded", "Stopped"))
    assert stopped.phase is Phase.FAILED and "stopped" in stopped.detail


def test_restart_under_never_is_a_failure_with_the_previous_exit() -> None:
    state = group_state("g", _group("Succeeded", "Running", {"state": "Running"},
                                    previous={"state": "Terminated", "exitCode": 137}, restarts=2))
    assert state.phase is Phase.FAILED and state.exit_code == 137
    assert "restarted 2 times" in state.detail and "memory" in state.detail


def test_a_restarted_spot_group_was_evicted_and_costs_no_retry() -> None:
    evicted = _group("Succeeded", "Running", {"state": "Running"},
                     previous={"state": "Terminated", "exitCode": 137}, restarts=1)
    evicted.priority = "Spot"
    state = group_state("g", evicted)
    assert state.phase is Phase.FAILED and state.evicted and state.retryable
    assert "evicted" in state.detail
    regular = group_state("g", _group("Succeeded", "Running", {"state": "Running"},
                                      previous={"state": "Terminated", "exitCode": 137},
                                      restarts=1))
    assert not regular.evicted and "restarted 1 time" in regular.detail


def test_the_pull_time_is_read_from_the_pulling_and_pulled_events() -> None:
    pulling = {**_ev("Pulling", 'pulling image "x"'), "firstTimestamp": "2026-12-01T10:00:00Z",
               "lastTimestamp": "2026-12-01T10:00:00Z"}
    pulled = {**_ev("Pulled", 'Successfully pulled image "x"'),
              "firstTimestamp": "2026-12-01T10:00:42Z", "lastTimestamp": "2026-12-01T10:00:42Z"}
    state = group_state("g", _group("Succeeded", "Running", {"state": "Running"},
                                    events=[pulling, pulled]))
    assert state.pull_seconds == 42.0


_FAILED_PULL = _ev("Failed", 'Failed to pull image "x": rpc error: code = DeadlineExceeded desc = '
                   "context deadline exceeded", "Warning")
_BACKOFF = _ev("BackOff", 'Back-off pulling image "x"', "Warning")
_WAITING = {"state": "Waiting", "detailStatus": "ErrImagePull"}
_RAN_OK = {"state": "Terminated", "exitCode": 0, "detailStatus": "Completed"}
_CAPACITY = CreateOutcome("ServiceUnavailable", "The requested resource with '1' CPU and '1.5' GB "
                          "memory is not available in the location 'westeurope' at this moment.")


def _timed(event: dict[str, Any], first: str, last: str) -> dict[str, Any]:
    return {**event, "firstTimestamp": first, "lastTimestamp": last}


# (row, the GET answer, the create operation's outcome, phase, retryable, words the detail has)
PULL_AND_PROVISIONING_ROWS: list[tuple[str, ContainerGroup, CreateOutcome | None, Phase, bool,
                                       tuple[str, ...]]] = [
    ("unauthorized while waiting: permanent, names the image and the role",
     _group("Succeeded", "Pending", _WAITING, events=[
         _ev("Pulling", "pulling image"),
         _ev("Failed", 'Failed to pull image "x": unauthorized: authentication required', "Warning")]),
     None, Phase.FAILED, False, (IMAGE, "unauthorized", "AcrPull", "image name and tag")),
    ("not found while waiting: permanent",
     _group("Succeeded", "Pending", _WAITING, events=[_ev(
         "Failed", 'Failed to pull image "x": rpc error: code = NotFound desc = failed to resolve '
         'reference "x": not found', "Warning"), _BACKOFF]),
     None, Phase.FAILED, False, (IMAGE, "not found")),
    ("manifest unknown while waiting: permanent",
     _group("Succeeded", "Pending", _WAITING, events=[_ev(
         "Failed", 'Failed to pull image "x": manifest unknown: manifest tagged by "9" is not found',
         "Warning")]),
     None, Phase.FAILED, False, (IMAGE, "manifest unknown")),
    ("an InaccessibleImage event: permanent",
     _group("Succeeded", "Pending", {"state": "Waiting"},
            events=[_ev("InaccessibleImage", "The image is not accessible", "Warning")]),
     None, Phase.FAILED, False, (IMAGE, "AcrPull")),
    ("an invalid image name: permanent",
     _group("Succeeded", "Pending", {"state": "Waiting", "detailStatus": "InvalidImageName"}),
     None, Phase.FAILED, False, (IMAGE, "InvalidImageName")),
    ("a transient pull failure while waiting: Azure pulls again, not a failure yet",
     _group("Succeeded", "Pending", _WAITING, events=[_ev("Pulling", "pulling image"),
                                                      _FAILED_PULL, _BACKOFF]),
     None, Phase.STARTING, True, (IMAGE, "context deadline exceeded")),
    ("a bare ImagePullBackOff: Azure pulls again",
     _group("Succeeded", "Pending", {"state": "Waiting", "detailStatus": "ImagePullBackOff"}),
     None, Phase.STARTING, True, ("ImagePullBackOff",)),
    ("a pull failing for over 10 minutes: retried in a new group",
     _group("Succeeded", "Pending", _WAITING, events=[
         _timed(_FAILED_PULL, "2026-11-29T10:00:00Z", "2026-11-29T10:11:00Z"),
         _timed(_BACKOFF, "2026-11-29T10:00:01Z", "2026-11-29T10:11:00Z")]),
     None, Phase.FAILED, True, (IMAGE, "failed for 11 minutes", "context deadline exceeded")),
    ("an old pull failure, then the pull worked and it runs: running",
     _group("Succeeded", "Running", {"state": "Running"}, events=[
         _ev("Pulling", "pulling image"), _FAILED_PULL, _BACKOFF, _ev("Pulled", "pulled"),
         _ev("Started", "started")]),
     None, Phase.RUNNING, True, ()),
    ("an old pull failure, then it ran and exited 0: succeeded",
     _group("Succeeded", "Succeeded", _RAN_OK, events=[_FAILED_PULL, _ev("Pulled", "pulled")]),
     None, Phase.SUCCEEDED, True, ()),
    ("an old unauthorized pull, then it ran and exited 0: succeeded",
     _group("Succeeded", "Succeeded", _RAN_OK, events=[
         _ev("Failed", 'Failed to pull image "x": unauthorized', "Warning"), _ev("Pulled", "p")]),
     None, Phase.SUCCEEDED, True, ()),
    ("provisioning failed after transient pull failures: Azure gave up, retried in a new group",
     _group("Failed", "Pending", _WAITING, events=[_FAILED_PULL, _BACKOFF]),
     None, Phase.FAILED, True, (IMAGE, "gave up", "context deadline exceeded")),
    ("provisioning failed, the reason in a group event",
     _group("Failed", "Pending", group_events=[
         _ev("Scheduling", "scheduling"),
         _ev("Failed", "The requested resource with 4 CPU and 16.0 GB memory is not available",
             "Warning")]),
     None, Phase.FAILED, True, ("could not be provisioned by Azure: ", "16.0 GB")),
    ("provisioning failed, no event: Azure's code and message from the create operation",
     _group("Failed", "Pending", {"state": "Waiting"}), _CAPACITY, Phase.FAILED, True,
     ("could not be provisioned by Azure: ServiceUnavailable: The requested resource with '1' "
      "CPU and '1.5' GB memory is not available in the location 'westeurope'",)),
    ("provisioning failed, no event, the operation says InaccessibleImage: permanent",
     _group("Failed", "Pending", {"state": "Waiting"}),
     CreateOutcome("InaccessibleImage", "The image 'x' in container group 'g' is not accessible."),
     Phase.FAILED, False, (IMAGE, "InaccessibleImage", "AcrPull")),
    ("provisioning failed, no event, the operation could not be read: says so",
     _group("Failed", "Pending"), CreateOutcome(unreadable="429 throttled"), Phase.FAILED, True,
     ("could not be provisioned by Azure", "429 throttled", "Activity log")),
    ("provisioning failed, no event, a group this process did not create: where to look",
     _group("Failed", "Pending"), None, Phase.FAILED, True,
     ("could not be provisioned by Azure", "process that created the group", "Activity log")),
]


@pytest.mark.parametrize("group, outcome, phase, retryable, words",
                         [row[1:] for row in PULL_AND_PROVISIONING_ROWS],
                         ids=[row[0] for row in PULL_AND_PROVISIONING_ROWS])
def test_pull_and_provisioning_failures(group, outcome, phase, retryable, words) -> None:
    state = group_state("g", group, outcome)
    assert (state.phase, state.retryable) == (phase, retryable), state
    for word in words:
        assert word in state.detail, (word, state.detail)
    if phase in (Phase.RUNNING, Phase.SUCCEEDED):
        assert state.detail == ""


def test_the_create_operation_is_wanted_only_when_no_event_says_why() -> None:
    assert wants_outcome(_group("Failed", "Pending", {"state": "Waiting"}))
    assert wants_outcome(_group("Failed"))
    assert not wants_outcome(_group("Failed", "Pending", group_events=[
        _ev("Failed", "no capacity", "Warning")]))
    assert not wants_outcome(_group("Failed", "Pending", _WAITING, events=[_FAILED_PULL]))
    assert not wants_outcome(_group("Succeeded", "Running", {"state": "Running"}))


def test_a_normal_pull_is_not_a_failure() -> None:
    state = group_state("g", _group("Succeeded", "Pending", {"state": "Waiting"},
                                    events=[_ev("Pulling", "pulling image"), _ev("Pulled", "pulled")]))
    assert state.phase is Phase.STARTING


def test_unhealthy_fails() -> None:
    state = group_state("g", _group("Unhealthy", "Running", {"state": "Running"}))
    assert state.phase is Phase.FAILED and "Unhealthy" in state.detail


# -- group builder ---------------------------------------------------------------------------
def _settings(**kw: Any) -> AciSettings:
    base = {"subscription_id": "s1", "resource_group": "rg", "location": "westeurope",
            "image": IMAGE, "identity": IDENTITY}
    return AciSettings(**{**base, **kw})


def _spec(**kw: Any) -> GroupSpec:
    base: dict[str, Any] = {
        "name": "job-t00000-1", "job_id": "job", "task_ids": ("t00000",),
        "env": {"SERVERLESS_SCORE_WORK": "{}", "SERVERLESS_SCORE_GROUP": "job-t00000-1"},
        "cpu": 2.0, "memory_gb": 3.5,
        "labels": {"job": "job", "tasks": "t00000", "expires": "2026-11-29T12:00:00Z"},
        "secure_env": {"SERVERLESS_SCORE_SECRETS": "https://a.blob/x?sig=SECRET"}}
    return GroupSpec(**{**base, **kw})


def test_group_body_has_never_tags_resources_and_secrets_only_as_secure_values() -> None:
    body = build_group(_spec(), _settings()).serialize()
    props = body["properties"]
    assert props["restartPolicy"] == "Never" and props["osType"] == "Linux"
    assert body["location"] == "westeurope"
    assert body["tags"] == {"job": "job", "tasks": "t00000", "expires": "2026-11-29T12:00:00Z"}
    (container,) = props["containers"]
    assert container["properties"]["image"] == IMAGE
    assert container["properties"]["resources"] == {"requests": {"cpu": 2.0, "memoryInGB": 3.5}}
    env = {e["name"]: e for e in container["properties"]["environmentVariables"]}
    assert env["SERVERLESS_SCORE_GROUP"] == {"name": "SERVERLESS_SCORE_GROUP", "value": "job-t00000-1"}
    assert env["SERVERLESS_SCORE_SECRETS"] == {"name": "SERVERLESS_SCORE_SECRETS",
                                               "secureValue": "https://a.blob/x?sig=SECRET"}
    assert env["SERVERLESS_SCORE_WORKER_IDENTITY"]["value"] == IDENTITY  # the runner's blob identity
    assert body["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}}
    assert props["imageRegistryCredentials"] == [{"server": "myreg.azurecr.io", "identity": IDENTITY}]


def test_a_spot_job_puts_priority_spot_on_its_groups() -> None:
    assert build_group(_spec(), _settings()).serialize()["properties"]["priority"] == "Regular"
    spot = build_group(_spec(), _settings(priority="Spot")).serialize()
    assert spot["properties"]["priority"] == "Spot"


@pytest.mark.parametrize(("cpu", "threads"), [(2.0, "2"), (1.0, "1"), (0.5, "1"), (3.5, "3")])
def test_thread_pools_are_sized_to_the_group_not_the_host(cpu: float, threads: str) -> None:
    body = build_group(_spec(cpu=cpu), _settings()).serialize()
    (container,) = body["properties"]["containers"]
    env = {e["name"]: e.get("value") for e in container["properties"]["environmentVariables"]}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert env[name] == threads, name


def test_no_identity_means_no_registry_credential_and_long_tags_are_cut() -> None:
    labels = {"job": "job", "tasks": "t" * 300, "expires": "x"}
    body = build_group(_spec(labels=labels), _settings(identity=None)).serialize()
    assert "identity" not in body and "imageRegistryCredentials" not in body["properties"]
    assert len(body["tags"]["tasks"]) == 256


# -- settings ------------------------------------------------------------------------------
def _job(**kw: Any) -> Any:
    base = {"name": "j", "model": "az://models/model.joblib", "input": "az://data/in.csv",
            "output": "az://scores/out.csv", "backend": "aci"}
    return spec_from_dict({**base, **kw}, base=Path("/tmp"))


def test_missing_location_settings_are_named_together() -> None:
    with pytest.raises(SpecError) as err:
        AciSettings.resolve(_job(image=IMAGE), {}, "0.1.0")
    for key in ("azure.subscription_id", "AZURE_SUBSCRIPTION_ID", "azure.resource_group",
                "SERVERLESS_SCORE_AZURE_RESOURCE_GROUP", "azure.location"):
        assert key in err.value.message


def test_settings_from_the_environment_and_the_builtin_image() -> None:
    env = {"AZURE_SUBSCRIPTION_ID": "sub", "SERVERLESS_SCORE_AZURE_RESOURCE_GROUP": "rg",
           "SERVERLESS_SCORE_AZURE_LOCATION": "West Europe",
           "SERVERLESS_SCORE_AZURE_REGISTRY": "myreg.azurecr.io"}
    settings = AciSettings.resolve(_job(runtime="r", model="az://models/m.rds", scorer="predict"),
                                   env, "0.1.0")
    assert (settings.subscription_id, settings.resource_group, settings.location) == (
        "sub", "rg", "westeurope")
    assert settings.image == "myreg.azurecr.io/serverless-score-r:0.1.0"
    assert settings.arm_endpoint == "https://management.azure.com"
    job_wins = AciSettings.resolve(_job(image=IMAGE, azure={
        "subscription_id": "mine", "resource_group": "g", "location": "eastus"}), env, "0.1.0")
    assert job_wins.subscription_id == "mine" and job_wins.image == IMAGE
    assert builtin_image("command", "r.azurecr.io/", "1") == "r.azurecr.io/serverless-score-python:1"


def test_local_paths_are_refused_naming_each() -> None:
    env = {"AZURE_SUBSCRIPTION_ID": "s", "SERVERLESS_SCORE_AZURE_RESOURCE_GROUP": "rg",
           "SERVERLESS_SCORE_AZURE_LOCATION": "westeurope"}
    settings = AciSettings.resolve(_job(image=IMAGE, input="data/in.csv", output="out/x.csv"),
                                   env, "1")  # enough for status and cleanup...
    with pytest.raises(SpecError) as err:
        settings.check_job()  # ...not for running the job
    assert "input = '/tmp/data/in.csv'" in err.value.message and "output" in err.value.message
    assert "model" not in err.value.message.split(":")[0]
    assert "az://" in err.value.message


def test_an_image_or_a_registry_is_needed_and_identity_must_be_a_resource_id() -> None:
    env = {"AZURE_SUBSCRIPTION_ID": "s", "SERVERLESS_SCORE_AZURE_RESOURCE_GROUP": "rg",
           "SERVERLESS_SCORE_AZURE_LOCATION": "westeurope"}
    with pytest.raises(SpecError, match="needs an image"):
        AciSettings.resolve(_job(), env, "1").check_job()
    AciSettings.resolve(_job(image=IMAGE), env, "1").check_job()
    with pytest.raises(SpecError, match=r"azure\.identity"):
        AciSettings.resolve(_job(image=IMAGE, azure={"identity": "scorer"}), env, "1")


def test_arm_endpoint_https_or_loopback_http_only() -> None:
    assert arm_endpoint({}) == "https://management.azure.com"
    assert arm_endpoint({"SERVERLESS_SCORE_ARM_ENDPOINT": "https://management.usgovcloudapi.net/"}) \
        == "https://management.usgovcloudapi.net"
    assert arm_endpoint({"SERVERLESS_SCORE_ARM_ENDPOINT": "http://127.0.0.1:8443"}) == "http://127.0.0.1:8443"
    with pytest.raises(SpecError, match="SERVERLESS_SCORE_ARM_ENDPOINT"):
        arm_endpoint({"SERVERLESS_SCORE_ARM_ENDPOINT": "http://arm.example.com"})


# -- throttling ------------------------------------------------------------------------------
def test_token_bucket_caps_calls_per_minute() -> None:
    clock = FakeClock()
    bucket = TokenBucket(3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time() == pytest.approx(20.0)
    clock.now += 20
    assert bucket.take() and not bucket.take()
    # over 5 minutes at 15 per minute at most 15 + 5 x 15 = 90 calls
    fifteen = TokenBucket(15, clock=clock)
    taken = 0
    for _ in range(300 * 10):
        clock.now += 0.1
        taken += fifteen.take()
    assert taken <= 90


def test_backoff_caps_retry_after_and_jitters() -> None:
    assert backoff(1, 300.0, rng=lambda: 0.0) == 60.0
    assert backoff(1, 300.0, rng=lambda: 1.0) == 75.0
    assert backoff(1, 5.0, rng=lambda: 0.5) == pytest.approx(5.625)
    assert backoff(1, None, rng=lambda: 0.0) == 0.5 and backoff(4, None, rng=lambda: 1.0) == 12.0
    assert backoff(20, None, rng=lambda: 1.0) == 90.0  # capped at 60, plus jitter
    assert parse_retry_after("7") == 7.0 and parse_retry_after("Wed, 21 Oct 2015") is None


# -- polling ---------------------------------------------------------------------------------
def test_polling_grows_with_age_and_not_with_polls() -> None:
    clock = FakeClock()
    schedule = PollSchedule(clock=clock, rng=lambda: 0.5)
    schedule.add("g")
    gets = []
    while clock.now < 1000.0 + 600:  # the scheduler asks every 0.2 s for 10 minutes
        if schedule.due(["g"]):
            gets.append(clock.now - 1000.0)
            schedule.checked("g")
        clock.now += 0.2
    assert gets[0] == pytest.approx(2.0, abs=0.2)
    assert 20 <= len(gets) <= 45, len(gets)  # instead of 3000 GETs
    gaps = [b - a for a, b in itertools.pairwise(gets)]
    assert gaps[-1] == pytest.approx(30.0, abs=0.3) and gaps[2] < 2.0


def test_read_budget_caps_gets_across_many_groups_and_429_pauses() -> None:
    clock = FakeClock()
    schedule = PollSchedule(clock=clock, reads_per_minute=60, rng=lambda: 0.5)
    names = [f"g{i}" for i in range(100)]
    for name in names:
        schedule.add(name)
    clock.now += 5
    first = schedule.due(names)
    assert len(first) == 10  # the burst: 10 s of budget
    for name in first:
        schedule.checked(name)
    assert schedule.due(names) == []
    clock.now += 3
    assert len(schedule.due(names)) == 3
    schedule.pause(30)
    clock.now += 20
    assert schedule.due(names) == [] and not schedule.list_due()
    clock.now += 11
    assert schedule.due(names) and schedule.list_due()


# -- quota and packing -------------------------------------------------------------------
def _usage(name: str, current: int, limit: int) -> Usage:
    return Usage.deserialize({"name": {"value": name}, "currentValue": current, "limit": limit,
                              "unit": "Count"})


def test_quota_shortfalls_say_what_is_short() -> None:
    usages = [_usage("ContainerGroups", 97, 100), _usage("StandardCores", 90, 100),
              _usage("StandardK80Cores", 0, 0)]
    short = shortfalls(usages, groups=4, cpu=2)
    assert short == ["ContainerGroups: 4 needed (4 groups), 3 of 100 free",
                     "StandardCores: 8 needed (4 groups x 2 cores), 10 of 100 free"][:1]
    assert fitting_parallel(usages, cpu=2) == 3
    assert shortfalls(usages, groups=3, cpu=2) == []
    assert shortfalls(usages, groups=3, cpu=4) == [
        "StandardCores: 12 needed (3 groups x 4 cores), 10 of 100 free"]


def test_packing_runs_each_slots_share_in_one_container() -> None:
    packing = AciBackend.packing(10, 4)
    assert (packing.tasks_per_group, packing.groups) == (3, 4)
    assert "cold start" in packing.why and "10 tasks in 4 container groups" in packing.why
    assert (AciBackend.packing(3, 10).tasks_per_group, AciBackend.packing(3, 10).groups) == (1, 3)
    waves = AciBackend.packing(1000, 4)  # capped: groups of 50, 4 at a time
    assert (waves.tasks_per_group, waves.groups) == (50, 20) and "at most 4 at once" in waves.why


def test_a_worker_with_a_group_identity_asks_for_that_identity(monkeypatch) -> None:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    from serverless_score.storage import azure_auth

    monkeypatch.setenv("SERVERLESS_SCORE_WORKER_IDENTITY", IDENTITY)
    azure_auth.default_credential.cache_clear()
    try:
        credential = azure_auth.default_credential()
        assert isinstance(credential, ManagedIdentityCredential)
        monkeypatch.delenv("SERVERLESS_SCORE_WORKER_IDENTITY")
        azure_auth.default_credential.cache_clear()
        chain = azure_auth.default_credential()
        assert isinstance(chain, azure_auth.FailFastCredential)
        assert isinstance(chain.inner, DefaultAzureCredential)
    finally:
        azure_auth.default_credential.cache_clear()


def test_plan_shows_the_aci_packing_and_why_without_azure_settings(job_dir, make_job, cli,
                                                                    monkeypatch) -> None:
    for name in ("AZURE_SUBSCRIPTION_ID", "SERVERLESS_SCORE_AZURE_SUBSCRIPTION_ID",
                 "SERVERLESS_SCORE_AZURE_RESOURCE_GROUP", "SERVERLESS_SCORE_AZURE_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    (job_dir / "in.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(500)))
    job = make_job(job_dir, name="p", runtime="command", scorer="cat", input="in.csv",
                   output="out.csv", chunks=10, max_parallel=4, backend="aci")
    planned = cli("plan", job, "--json")
    assert planned.code == 0, planned
    assert [len(g) for g in planned.json["groups"]] == [3, 3, 3, 1]
    assert planned.json["estimate"]["packing"].startswith(
        "10 tasks in 4 container groups of up to 3 tasks run one after another: one cold start")


def test_an_operation_url_off_the_arm_endpoint_is_not_sent_the_token() -> None:
    """The create's Azure-AsyncOperation URL is followed with our bearer token: only on ARM."""
    from serverless_score.backends.aci.client import AciClient, Refused

    class NoToken:
        def get_token(self, *scopes: str, **kw: Any) -> Any:
            raise AssertionError("a token was asked for")

        def get_token_info(self, *scopes: str, options: Any = None) -> Any:
            raise AssertionError("a token was asked for")

    client = AciClient(_settings(), NoToken())
    for url in ("https://evil.example/subscriptions/s1/providers/Microsoft.ContainerInstance/"
                "locations/westeurope/operations/1?api-version=2023-05-01",
                "http://management.azure.com/x", "https://management.azure.com:8443/x", "/x"):
        with pytest.raises(Refused, match=r"not on https://management\.azure\.com"):
            client.operation(url)
    assert client.calls == {}
