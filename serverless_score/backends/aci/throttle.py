"""Staying under ARM's read limits, and the wait after a throttled call.

A token bucket rations the backend's reads (``polling.PollSchedule``); creates and deletes have
windows of their own (``pacer.py``). A 429 is answered by ``backoff``: its ``Retry-After`` is
honoured but capped for blocking calls (the SDK would sleep whatever the server says, 300 s
included, blocking the whole controller) and jittered, so many calls throttled together do not
come back together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

RETRY_AFTER_CAP = 60.0  # never wait longer than this on one Retry-After
BASE_BACKOFF = 1.0


class TokenBucket:
    """``rate_per_minute`` tokens a minute, at most ``capacity`` saved up. ``take`` never sleeps:
    it says whether a token was there, and ``wait_time`` how long until one is."""

    def __init__(self, rate_per_minute: float, capacity: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_minute / 60.0
        self.capacity = float(capacity if capacity is not None else rate_per_minute)
        self.clock = clock
        self._tokens = self.capacity
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def take(self) -> bool:
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def wait_time(self) -> float:
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate


def backoff(attempt: int, retry_after: float | None, *, cap: float = RETRY_AFTER_CAP,
            rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the ``attempt``-th retry (1-based): the server's Retry-After,
    capped and stretched by up to 25 % jitter; without one, capped exponential backoff with
    full jitter around it."""
    if retry_after is not None and retry_after > 0:
        return min(retry_after, cap) * (1.0 + 0.25 * rng())
    return min(cap, BASE_BACKOFF * 2 ** max(0, attempt - 1)) * (0.5 + rng())


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (ARM sends seconds; an HTTP date is rare there and
    then treated as absent)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
