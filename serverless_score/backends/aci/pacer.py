"""Staying inside ACI's create and delete windows: a sliding-window pacer (pure: times passed in;
``take_turn`` blocks, on the clock and sleep it is given).

ACI allows, per subscription and region, 100 creates per 5 minutes *and* 300 per hour, and the
same again for deletes, counted apart. A token bucket smooths one rate but cannot keep two windows
(15 a minute fits 5 minutes, yet is 900 an hour); a sliding window is exact: an operation may go
when, in every window, fewer than ``count`` went in the last ``seconds``.

* **Shared by the process**: the limit is the subscription's, so every backend of this process on
  one ARM endpoint, subscription and region writes to one ``SendLog`` (``shared_log``); each
  backend's ``Pacer`` reads it through its own windows (a job's ``creates_per_minute`` among them).
* **Counted from the answer**: ARM counts a request when it arrives, somewhere between our send
  and its answer. An operation counts from when it was answered (``reserve`` then ``settle``), so
  our window never ends before ARM's does; while it is in flight it counts as sent now.
* **Retry-After learnt**: a 429 means another client (another process, another tool) used the
  window; ``learn`` holds every backend on the log until Retry-After has passed.

Not known here: what other processes sent. Their share shows up as a 429, which is learnt.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)
STEP = 0.5  # a blocked caller sleeps in steps this long (a Ctrl-C lands between them)
# ACI's default limits per subscription and region (creates and deletes alike).
ACI_WINDOWS: tuple[tuple[int, float], ...] = ((100, 300.0), (300, 3600.0))


@dataclass(frozen=True)
class RateWindow:
    """At most ``count`` operations in any ``seconds``."""

    count: int
    seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or not (0 < self.seconds < math.inf):
            raise ValueError(f"a rate window needs count >= 1 and 0 < seconds < inf; got "
                             f"{self.count} per {self.seconds}")

    def __str__(self) -> str:
        return f"{self.count} per {self.seconds:g}s"


def windows(pairs: Iterable[tuple[int, float]]) -> tuple[RateWindow, ...]:
    return tuple(RateWindow(int(count), float(seconds)) for count, seconds in pairs)


class SendLog:
    """When operations of one kind were sent to one subscription and region, by this process:
    answered ones (times), those still in flight, and a hold learnt from a Retry-After."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[float] = []  # sorted; only what some window can still see is kept
        self.in_flight = 0
        self.hold = -math.inf  # nothing before this time (a Retry-After)
        self.horizon = 0.0  # the longest window of any pacer on this log

    def trim(self, now: float) -> None:
        cut = bisect.bisect_right(self.sent, now - self.horizon)
        del self.sent[:cut]


class Pacer:
    """``windows`` over a ``SendLog`` (a private one unless given). Every method takes the
    current time, so a fake clock tests it."""

    def __init__(self, rate: Sequence[RateWindow], log: SendLog | None = None) -> None:
        if not rate:
            raise ValueError("a pacer needs at least one rate window")
        self.windows = tuple(rate)
        self.log = log if log is not None else SendLog()
        self.longest = max(w.seconds for w in self.windows)
        with self.log.lock:
            self.log.horizon = max(self.log.horizon, self.longest)

    def wait_time(self, now: float, ahead: int = 0) -> float:
        """Seconds until one more operation may go (0: now), after ``ahead`` others that are
        waiting for their turn before it go as early as they may."""
        with self.log.lock:
            return self._earliest(now, ahead) - now

    def record(self, now: float) -> None:
        """One operation was sent and answered at ``now`` (without a reservation)."""
        with self.log.lock:
            bisect.insort(self.log.sent, now)
            self.log.trim(now)

    def reserve(self, now: float) -> bool:
        """If one may go now, count it as in flight and say True; ``settle`` it once answered."""
        with self.log.lock:
            if self._earliest(now, 0) > now:
                return False
            self.log.in_flight += 1
            return True

    def settle(self, now: float) -> None:
        """The reserved operation was answered (or failed) at ``now``: it counts from then."""
        with self.log.lock:
            self.log.in_flight = max(0, self.log.in_flight - 1)
            bisect.insort(self.log.sent, now)
            self.log.trim(now)

    def learn(self, now: float, retry_after: float, cap: float | None = None) -> None:
        """The service answered 429 with ``retry_after``: none before it has passed, for every
        pacer on this log. Capped at the longest window (no rate here can ask for longer, so a
        longer one is a broken answer, not a reason to stop for ever) and at ``cap`` if given."""
        wait = min(max(0.0, retry_after), self.longest, cap if cap is not None else math.inf)
        with self.log.lock:
            self.log.hold = max(self.log.hold, now + wait)

    def describe(self) -> str:
        return ", ".join(str(w) for w in self.windows)

    def _earliest(self, now: float, ahead: int) -> float:
        # In flight: counted as sent now. Each window (count c, seconds s) lets the next one go
        # once the c-th most recent has left it: at times[-c] + s. Later times only empty windows,
        # so the latest of the windows' answers satisfies all of them.
        times = sorted([*self.log.sent, *[now] * self.log.in_flight])
        at = max(now, self.log.hold)
        for step in range(ahead + 1):
            for w in self.windows:
                if len(times) >= w.count:
                    at = max(at, times[-w.count] + w.seconds)
            if step < ahead:
                times.append(at)
        return at


def take_turn(pacer: Pacer, what: str, clock: Callable[[], float],
              sleep: Callable[[float], None]) -> None:
    """Block until ``pacer`` lets one more go and reserve it (``settle`` it once answered): for
    calls that must happen now (a delete), where a create would rather wait in line."""
    said = False
    while not pacer.reserve(now := clock()):
        wait = pacer.wait_time(now)
        if not said:
            log.info("%s: waiting %.1fs for its turn (ACI allows %s per subscription and region)",
                     what, wait, pacer.describe())
            said = True
        sleep(min(max(wait, 0.01), STEP))


_SHARED: dict[tuple[str, ...], SendLog] = {}
_SHARED_LOCK = threading.Lock()


def shared_log(kind: str, endpoint: str, subscription: str, location: str) -> SendLog:
    """The one log of ``kind`` ("create", "delete") operations this process sends to a
    subscription's region on an ARM endpoint."""
    key = (kind, endpoint.rstrip("/").lower(), subscription.lower(), location.lower())
    with _SHARED_LOCK:
        return _SHARED.setdefault(key, SendLog())


def forget_shared() -> None:
    """Drop every shared log (tests: one emulator's history and holds must not reach the next
    test's emulator, which may get the same port)."""
    with _SHARED_LOCK:
        _SHARED.clear()
