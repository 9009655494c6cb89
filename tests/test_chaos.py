"""The fault campaign (bench/chaos.py) does not rot: its checks catch what they are for, the ACI
emulator's chaos knobs do what they say, and two real trials on the local backend run end to end
(the full campaign, hundreds of trials, is `make chaos`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.mgmt.containerinstance import models as m

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from chaos_checks import (  # noqa: E402
    attempts_run_by_their_claimers,
    compare_outputs,
    two_groups_for_one_attempt,
)

REFERENCE = b"id,score\nr1,0.25\nr2,0.5000000000000001\n"


@pytest.mark.parametrize(("got", "same", "identical"), [
    (REFERENCE, True, True),
    (b"id,score\nr1,0.25\nr2,0.5000000000000002\n", True, False),  # 1 ulp: within 1e-12
    (b"id,score\nr1,0.25\nr2,0.5000001\n", False, False),
    (b"id,score\nr2,0.5000000000000001\nr1,0.25\n", False, False),  # order
    (b"id,score\nr1,0.25\n", False, False),  # a row lost
    (None, False, False),  # no output at all
])
def test_outputs_compare_ids_exactly_and_scores_to_1e_12(got: bytes | None, same: bool,
                                                         identical: bool) -> None:
    ok, exact, why = compare_outputs(REFERENCE, got)
    assert (ok, exact) == (same, identical)
    assert bool(why) == (not same)


def _put(name: str, at: float, status: int, body: str, orders: list[tuple[str, int]]) -> dict[str, Any]:
    return {"name": name, "at": at, "status": status, "body_sha256": body, "orders": orders,
            "answered": True}


def test_two_groups_for_one_attempt_from_the_create_journal() -> None:
    replayed = [_put("j-t00000-1", 1, 201, "a", [("t00000", 1)]),
                _put("j-t00000-1", 2, 200, "a", [("t00000", 1)])]
    assert two_groups_for_one_attempt([], replayed) == []  # an identical PUT: the same group
    again = [*replayed, _put("j-t00000-1", 3, 201, "a", [("t00000", 1)])]
    assert two_groups_for_one_attempt([], again) == [
        "group j-t00000-1 was created again after it was deleted"]
    other = [_put("j-t00000-1", 1, 201, "a", [("t00000", 1), ("t00001", 1)]),
             _put("j-t00000-1", 2, 200, "b", [("t00000", 1), ("t00001", 1)]),
             _put("j-t00001-1", 3, 201, "c", [("t00001", 1)])]
    assert two_groups_for_one_attempt([], other) == [
        "group j-t00000-1 was replaced by a different PUT",
        "t00001 attempt 1 ran in 2 groups: j-t00000-1, j-t00001-1"]


def test_two_groups_for_one_attempt_from_worker_starts() -> None:
    starts = [("j-t00000-1", 10, [("t00000", 1)]), ("j-t00000-1", 10, []),
              ("j-t00001-2", 11, [("t00001", 2)])]
    assert two_groups_for_one_attempt(starts, []) == []
    starts.append(("j-t00000-1", 12, [("t00000", 1)]))
    assert two_groups_for_one_attempt(starts, []) == [
        "group j-t00000-1 was started 2 times (pids 10, 12)"]


def _group(emu: Any, work: str) -> m.ContainerGroup:
    variables = [m.EnvironmentVariable(name="SERVERLESS_SCORE_WORK", value=work)]
    return m.ContainerGroup(location=emu.location, os_type="Linux", restart_policy="Never",
                            containers=[m.Container(
                                name="main", image="emu/shell", command=["sh", "-c", "sleep 30"],
                                environment_variables=variables,
                                resources=m.ResourceRequirements(
                                    requests=m.ResourceRequests(cpu=1.0, memory_in_gb=1.0)))])


@pytest.mark.aci
def test_a_lost_create_answer_still_creates_the_group_and_a_slow_delete_waits(
        aci_emulator: Any) -> None:
    client = aci_emulator.client(retry_total=0)  # the SDK must not replay the PUT here
    work = '{"orders": [{"task": {"index": 3}, "attempt": 2}]}'
    aci_emulator.drop_answers(1)
    with pytest.raises(ServiceResponseError):
        client.container_groups.begin_create_or_update(
            aci_emulator.resource_group, "lost-1", _group(aci_emulator, work), polling=False)
    assert aci_emulator.group_names() == ["lost-1"]  # applied, though never answered
    [made] = aci_emulator.chaos.created()
    assert (made.name, made.status, made.answered, made.orders) == ("lost-1", 201, False,
                                                                    (("t00003", 2),))
    client.container_groups.begin_create_or_update(  # the next answer arrives: a replay
        aci_emulator.resource_group, "lost-1", _group(aci_emulator, work), polling=False)
    replay = aci_emulator.chaos.created()[1]
    assert (replay.status, replay.answered, replay.body_sha256) == (200, True, made.body_sha256)
    aci_emulator.slow_requests(0.6, times=1)
    started = time.monotonic()
    client.container_groups.begin_delete(aci_emulator.resource_group, "lost-1",
                                         polling_interval=0.05).result()
    assert time.monotonic() - started >= 0.6
    assert aci_emulator.group_names() == []


@pytest.mark.slow
def test_two_local_trials_of_the_campaign_run_end_to_end(tmp_path: Path) -> None:
    import chaos
    from chaos_env import live_pids

    outcomes = chaos.main(["--backend", "local", "--trials", "2", "--seed", "3", "--rows", "400",
                           "--chunks", "4", "--score-sleep", "0.05", "--kinds", "kill9,worker_kill",
                           "--dir", str(tmp_path / "campaign")])
    assert [o.index for o in outcomes] == [0, 1]
    for outcome in outcomes:
        assert outcome.kinds and set(outcome.kinds) <= {"kill9", "worker_kill"}
        assert outcome.runs and outcome.runs[0]["run"] == "run0"
        # what today's controller keeps under these faults (issue 12 tracks the rest)
        assert not {"did not finish", "output differs", "orphan group",
                    "leftover process"} & set(outcome.broken), outcome
    summary = (tmp_path / "campaign" / "summary.md").read_text()
    assert "| fault kind | trials | injected | passed | failed |" in summary
    for outcome in outcomes:  # the harness leaves nothing of a trial running
        assert live_pids(outcome.job + "-", outcome.job) == {}


def test_an_attempt_run_by_a_group_that_did_not_claim_it_is_found() -> None:
    claim = b'{"group": "j-g001", "seq": 3, "claimed_at": ""}'
    files = {"tasks/t00002/attempt-1/claim.json": claim,
             "tasks/t00002/attempt-1/status.json": b'{"group": "j-g001", "outcome": "succeeded"}',
             "tasks/t00003/attempt-1/claim.json": claim.replace(b"g001", b"g002"),
             "tasks/t00003/attempt-1/status.json": b'{"group": "j-g004", "outcome": "failed"}',
             "tasks/t00004/attempt-2/status.json": b'{"group": "j-g005", "outcome": "failed"}'}
    assert attempts_run_by_their_claimers(files) == [
        "tasks/t00003/attempt-1 was claimed by j-g002 but its status is j-g004's"]
