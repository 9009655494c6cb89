"""Faults below ARM's answers, for the fault campaign (``bench/chaos.py``), and a journal of every
group a PUT made.

* **Lost answer**: the request is applied (a PUT creates its group), then the connection is
  dropped without an answer, as when a response is lost on the way or the client times out.
* **Slow answer**: the request waits ``seconds`` before it is handled (a slow delete).
* **Journal**: every PUT that created (201) or replaced (200) a group, with a digest of its body
  (a replayed PUT sends the same bytes) and the (task, attempt) pairs of its work order, so a
  campaign can tell whether one attempt ever got two groups.

The HTTP handler (``server._Handler``) calls ``Chaos.answer`` around each ARM request. Rules match
on method and route kind: ``group`` (one container group) is the only kind told apart here;
``kind=None`` matches every request.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

_GROUP = re.compile(r"/containerGroups/([^/?]+)$", re.I)
WORK_ENV = "SERVERLESS_SCORE_WORK"  # runner.contract.ENV_WORK (the emulator imports no product)
# A task's id is "t" + its index in 5 digits (planning.tasks.Task.id); the order carries the index.


class _Answer(Protocol):
    status: int


A = TypeVar("A", bound=_Answer)


@dataclass
class _Rule:
    method: str | None
    kind: str | None
    remaining: int
    seconds: float = 0.0

    def take(self, method: str, kind: str | None) -> bool:
        if self.remaining <= 0 or (self.method is not None and self.method != method) or \
                (self.kind is not None and self.kind != kind):
            return False
        self.remaining -= 1
        return True


@dataclass(frozen=True)
class Created:
    """One PUT that made a group: ``status`` 201 (new) or 200 (it replaced one of that name)."""

    at: float  # time.monotonic()
    name: str
    status: int
    body_sha256: str
    orders: tuple[tuple[str, int], ...]  # (task id, attempt) of its work order
    answered: bool  # False: the answer was dropped (the client never heard of it)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "name": self.name, "status": self.status,
                "body_sha256": self.body_sha256, "orders": [list(o) for o in self.orders],
                "answered": self.answered}


def kind_of(path: str) -> tuple[str | None, str | None]:
    """(``"group"``, name) for one container group's path; (None, None) otherwise."""
    match = _GROUP.search(path.split("?", 1)[0].rstrip("/"))
    return ("group", match.group(1)) if match else (None, None)


def work_orders(body: bytes) -> tuple[tuple[str, int], ...]:
    """(task id, attempt) of the work order a group's PUT body carries in its environment."""
    try:
        group = json.loads(body)
        for container in group["properties"]["containers"]:
            for var in container["properties"].get("environmentVariables") or []:
                if var.get("name") == WORK_ENV and var.get("value"):
                    work = json.loads(var["value"])
                    return tuple((f"t{int(o['task']['index']):05d}", int(o["attempt"]))
                                 for o in work["orders"])
    except (ValueError, KeyError, TypeError):
        pass
    return ()


class Chaos:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._drops: list[_Rule] = []
        self._delays: list[_Rule] = []
        self._created: list[Created] = []

    # -- the knobs -----------------------------------------------------------------------------
    def drop_answers(self, times: int = 1, *, method: str | None = "PUT",
                     kind: str | None = "group", delay: float = 0.0) -> None:
        """The next ``times`` matching requests are applied, then (after ``delay`` seconds) their
        connection is closed without an answer."""
        with self.lock:
            self._drops.append(_Rule(method, kind, times, delay))

    def slow_requests(self, seconds: float, *, times: int = 1, method: str | None = "DELETE",
                      kind: str | None = "group") -> None:
        """The next ``times`` matching requests wait ``seconds`` before they are handled."""
        with self.lock:
            self._delays.append(_Rule(method, kind, times, seconds))

    def clear(self) -> None:
        with self.lock:
            self._drops.clear()
            self._delays.clear()

    def created(self) -> list[Created]:
        with self.lock:
            return list(self._created)

    def reset_journal(self) -> None:
        with self.lock:
            self._created.clear()

    # -- the server's side ---------------------------------------------------------------------
    def answer(self, method: str, path: str, body: bytes, handle: Callable[[], A]) -> A | None:
        """Handle one request under the rules: the answer, or None when it is to be lost (the
        caller closes the connection without writing anything)."""
        if path.startswith("/_emulator/"):  # the test's remote control: never a fault
            return handle()
        kind, name = kind_of(path)
        with self.lock:
            delay = next((r.seconds for r in self._delays if r.take(method, kind)), None)
        if delay:
            time.sleep(delay)
        response = handle()
        with self.lock:
            drop = next((r for r in self._drops if r.take(method, kind)), None)
            if method == "PUT" and kind == "group" and name and response.status in (200, 201):
                self._created.append(Created(
                    time.monotonic(), name, response.status, hashlib.sha256(body).hexdigest(),
                    work_orders(body), answered=drop is None))
        if drop is None:
            return response
        if drop.seconds:
            time.sleep(drop.seconds)
        return None
