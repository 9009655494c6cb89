"""When to spend an ARM call on which group. The scheduler asks for states every 0.2 s; turning
that into a GET per group per poll would be ~5 reads per second per group and get the
subscription throttled within minutes. Instead (pure, clock injected):

* **Per group, an interval that grows with its age**: the first GET ``first`` seconds after the
  create, then every ``growth`` x its age (at least ``min_interval``, at most ``max_interval``),
  jittered by +-10 % so groups created together spread out. A group of age *a* is seen finished
  at most ~``growth`` x *a* late (25 % by default), and a group living *T* seconds costs about
  log(T / first) / log(1 + growth) GETs, then T / max_interval: polling grows with time, not
  with tasks x time.
* **A read budget for the whole job** (``reads_per_minute``, a token bucket): with many groups
  the due ones are served oldest-due first and the rest wait for the next round, so the ARM read
  rate has a ceiling whatever ``max_parallel`` is.
* **One list call per ``list_every`` seconds** for all groups together: list answers carry no
  instance view, but they do carry ``provisioningState`` and show which groups exist, so a group
  that failed provisioning or vanished is GET right away instead of at its next due time.
* **A 429 on a read** pauses every read for the capped, jittered Retry-After.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .throttle import TokenBucket


@dataclass
class _Entry:
    created: float
    due: float
    gets: int = 0


class PollSchedule:
    def __init__(self, *, first: float = 2.0, growth: float = 0.25, min_interval: float = 1.0,
                 max_interval: float = 30.0, reads_per_minute: float = 120.0,
                 list_every: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.first = first
        self.growth = growth
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.list_every = list_every
        self.clock = clock
        self.rng = rng
        self.reads = TokenBucket(reads_per_minute, capacity=max(1.0, reads_per_minute / 6),
                                 clock=clock)
        self._groups: dict[str, _Entry] = {}
        self._paused_until = 0.0
        self._next_list = clock() + list_every

    def add(self, name: str) -> None:
        now = self.clock()
        self._groups[name] = _Entry(created=now, due=now + self.first)

    def forget(self, name: str) -> None:
        self._groups.pop(name, None)

    def interval(self, age: float) -> float:
        base = min(self.max_interval, max(self.min_interval, age * self.growth))
        return base * (0.9 + 0.2 * self.rng())

    def due(self, names: Iterable[str]) -> list[str]:
        """Which of ``names`` to GET now: due ones, oldest due first, within the read budget."""
        now = self.clock()
        if now < self._paused_until:
            return []
        ready = sorted((e.due, n) for n in names if (e := self._groups.get(n)) and e.due <= now)
        chosen = []
        for _, name in ready:
            if not self.reads.take():
                break
            chosen.append(name)
        return chosen

    def checked(self, name: str) -> None:
        entry = self._groups.get(name)
        if entry is not None:
            now = self.clock()
            entry.gets += 1
            entry.due = now + self.interval(now - entry.created)

    def urgent(self, name: str) -> None:
        """Look at it at the next chance (a list call showed something worth a GET)."""
        entry = self._groups.get(name)
        if entry is not None:
            entry.due = min(entry.due, self.clock())

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self.clock() + seconds)
        self._next_list = max(self._next_list, self._paused_until)

    def list_due(self) -> bool:
        now = self.clock()
        return now >= self._next_list and now >= self._paused_until and bool(self._groups)

    def listed(self) -> None:
        self._next_list = self.clock() + self.list_every

    def age(self, name: str) -> float:
        entry = self._groups.get(name)
        return self.clock() - entry.created if entry else 0.0
