"""The create/delete pacer (backends/aci/pacer.py) on a fake clock: ACI's two windows at once,
deletes apart from creates, in-flight and answered operations, Retry-After learnt by every
backend on one subscription; and the [azure] create_rate / delete_rate keys."""

from __future__ import annotations

import bisect
from typing import Any

import pytest

from serverless_score.backends.aci.pacer import (
    ACI_WINDOWS,
    Pacer,
    RateWindow,
    SendLog,
    forget_shared,
    shared_log,
    take_turn,
    windows,
)
from serverless_score.errors import SpecError
from serverless_score.spec import spec_from_dict

ACI = windows(ACI_WINDOWS)  # 100 per 300 s and 300 per 3600 s


def _greedy(pacer: Pacer, start: float, until: float) -> list[float]:
    """Send as early as the pacer allows, from ``start`` to ``until``: the send times."""
    sent, now = [], start
    while now < until:
        wait = pacer.wait_time(now)
        if wait > 0:
            now += wait
            continue
        assert pacer.reserve(now)
        pacer.settle(now)
        sent.append(now)
    return sent


def _most_in_any(sent: list[float], seconds: float) -> int:
    """The most sends inside any window of ``seconds`` (a window (t - seconds, t])."""
    return max(bisect.bisect_right(sent, t) - bisect.bisect_right(sent, t - seconds)
               for t in sent)


def test_one_window_lets_count_go_then_waits_for_the_oldest_to_leave() -> None:
    pacer = Pacer([RateWindow(3, 10.0)])
    for t in (0.0, 1.0, 2.0):
        assert pacer.wait_time(t) == 0.0
        pacer.record(t)
    assert pacer.wait_time(2.0) == pytest.approx(8.0)  # the one sent at 0 leaves at 10
    assert not pacer.reserve(9.99)
    assert pacer.reserve(10.0)  # exactly when it leaves, as ARM counts (t - 10, t]


def test_both_aci_windows_hold_over_two_hours_and_the_budget_is_used() -> None:
    sent = _greedy(Pacer(ACI), 0.0, 7200.0)
    assert _most_in_any(sent, 300.0) == 100 and _most_in_any(sent, 3600.0) == 300
    # 100 at once, 100 more each time the 5-minute window empties, then the hour is spent
    assert sent[0] == sent[99] == 0.0 and sent[100] == sent[199] == 300.0
    assert sent[200] == sent[299] == 600.0 and sent[300] == 3600.0
    # a window of 15 a minute alone would allow 900 an hour; with ACI's windows it keeps 300
    with_minute = _greedy(Pacer((*ACI, RateWindow(15, 60.0))), 0.0, 3600.0)
    assert len(with_minute) == 300 and _most_in_any(with_minute, 60.0) == 15


def test_wait_counts_the_ones_waiting_before_it() -> None:
    pacer = Pacer([RateWindow(2, 10.0)])
    pacer.record(0.0)
    assert pacer.wait_time(1.0, ahead=0) == 0.0
    # two per 10 s: the ones in line go at 1, 10, 11, 20... (sent at 0 and 1 leave at 10, 11)
    assert [pacer.wait_time(1.0, ahead=k) for k in range(1, 5)] == \
        pytest.approx([9.0, 10.0, 19.0, 20.0])


def test_in_flight_counts_as_now_and_an_answer_counts_from_when_it_came() -> None:
    pacer = Pacer([RateWindow(1, 10.0)])
    assert pacer.reserve(0.0)
    assert not pacer.reserve(5.0) and pacer.wait_time(5.0) == pytest.approx(10.0)
    pacer.settle(4.0)  # ARM counted it somewhere before 4: our window ends at 14, not 10
    assert pacer.wait_time(5.0) == pytest.approx(9.0)
    assert not pacer.reserve(13.9) and pacer.reserve(14.0)


def test_deletes_are_paced_apart_from_creates() -> None:
    forget_shared()
    try:
        creates = Pacer(ACI, shared_log("create", "https://management.azure.com", "SUB", "westeurope"))
        deletes = Pacer(ACI, shared_log("delete", "https://management.azure.com", "SUB", "westeurope"))
        assert _greedy(creates, 0.0, 1.0) == [0.0] * 100
        assert creates.wait_time(1.0) == pytest.approx(299.0)
        assert deletes.wait_time(1.0) == 0.0 and len(_greedy(deletes, 1.0, 2.0)) == 100
    finally:
        forget_shared()


def test_backends_on_one_subscription_share_a_log_and_its_windows_add_up() -> None:
    forget_shared()
    try:
        log = shared_log("create", "https://management.azure.com/", "SUB", "westeurope")
        assert shared_log("create", "https://MANAGEMENT.azure.com", "sub", "WestEurope") is log
        assert shared_log("create", "https://management.usgovcloudapi.net", "sub", "westeurope") \
            is not log
        assert shared_log("create", "https://management.azure.com", "sub", "northeurope") is not log
        job_a = Pacer(ACI, log)
        job_b = Pacer((*ACI, RateWindow(15, 60.0)), log)  # a job with creates_per_minute = 15
        for t in range(10):
            job_a.record(float(t))
        assert job_b.wait_time(10.0) == 0.0
        for t in range(5):
            job_b.record(10.0 + t)
        assert job_b.wait_time(15.0) == pytest.approx(45.0)  # 15 in the last minute, by both
        assert job_a.wait_time(15.0) == 0.0  # job a has no such cap of its own
        assert len(log.sent) == 15
    finally:
        forget_shared()


def test_retry_after_holds_every_pacer_on_the_log_and_is_capped() -> None:
    log = SendLog()
    one, other = Pacer(ACI, log), Pacer(ACI, log)
    one.learn(100.0, 42.0)
    assert other.wait_time(100.0) == pytest.approx(42.0) and not other.reserve(141.9)
    assert other.reserve(142.0)
    # no rate window asks for more than its longest: a longer Retry-After is capped there
    short = Pacer([RateWindow(5, 2.0)])
    short.learn(0.0, 10_000.0)
    assert short.wait_time(0.0) == pytest.approx(2.0)
    capped = Pacer(ACI)
    capped.learn(0.0, 300.0, cap=60.0)
    assert capped.wait_time(0.0) == pytest.approx(60.0)
    capped.learn(0.0, 10.0)  # a shorter hold never shortens one already learnt
    assert capped.wait_time(0.0) == pytest.approx(60.0)


def test_only_what_a_window_can_see_is_kept() -> None:
    pacer = Pacer([RateWindow(2, 10.0)])
    for t in range(100):
        pacer.record(float(t))
    assert pacer.log.sent == [90.0, 91.0, 92.0, 93.0, 94.0, 95.0, 96.0, 97.0, 98.0, 99.0]


def test_take_turn_blocks_in_small_steps_until_the_window_has_room() -> None:
    clock = [0.0]
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # a Ctrl-C would land between these
        naps.append(seconds)
        clock[0] += seconds

    pacer = Pacer([RateWindow(2, 3.0)])
    pacer.record(0.0)
    pacer.record(0.0)
    take_turn(pacer, "delete g", lambda: clock[0], sleep)
    assert clock[0] == pytest.approx(3.0) and naps == [0.5] * 6
    assert pacer.reserve(3.0) and not pacer.reserve(3.0)  # two in flight fill the window
    pacer.settle(3.5)
    pacer.settle(3.5)  # answered at 3.5: they count from then
    take_turn(pacer, "delete h", lambda: clock[0], sleep)
    assert clock[0] == pytest.approx(6.5)


@pytest.mark.parametrize("bad", [(0, 10.0), (5, 0.0), (5, -1.0), (5, float("inf"))])
def test_a_window_needs_a_count_and_a_time(bad: tuple[int, float]) -> None:
    with pytest.raises(ValueError, match="rate window"):
        RateWindow(*bad)


BASE: dict[str, Any] = {"name": "job", "runtime": "command", "scorer": "cat", "input": "in.csv",
                        "output": "out.csv"}


def test_rate_keys_read_durations_and_default_to_acis_windows() -> None:
    azure = spec_from_dict({**BASE, "azure": {"create_rate": [[50, "5m"], [200, "1h"]],
                                               "delete_rate": [[5, 2]]}}).azure
    assert azure.create_rate == ((50, 300.0), (200, 3600.0))
    assert azure.delete_rate == ((5, 2.0),)
    default = spec_from_dict(BASE).azure
    assert default.create_rate == default.delete_rate == ACI_WINDOWS


@pytest.mark.parametrize(("value", "expected"), [
    ([], "azure.create_rate: expected [[count, duration], ...]"),
    ([[100, 300], [1, 2], [1, 2], [1, 2], [1, 2]], "1 to 4 windows"),
    ([[100]], "[100] is not a [count, duration] pair"),
    ([[0, 300]], "count is a whole number >= 1, not 0"),
    ([[1.5, 300]], "count is a whole number >= 1, not 1.5"),
    ([[100, "soon"]], "expected a duration like '90s'"),
    ([[100, "2d"]], "at most a day, not '2d'"),
    ([[100, 90000]], "at most a day, not 90000"),
])
def test_bad_rate_windows_say_what_is_expected(value: Any, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict({**BASE, "azure": {"create_rate": value}})
    assert expected in err.value.message and f"got {value!r}" in err.value.message
