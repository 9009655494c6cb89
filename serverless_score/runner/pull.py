"""A pulling group's side of the ticket queue: take the next ticket nobody has claimed, until the
queue is closed or stays empty for ``linger`` seconds.

Tickets are numbered 1, 2, 3, ... in the order the controller offers them (first attempts in
input order, then retries, repairs and second attempts of stragglers). A group walks them in that
order and claims one by creating its attempt's ``claim.json`` only if absent: a local ``O_EXCL``
file or a blob created with ``If-None-Match: *``. Whoever creates it runs the attempt; everyone
else moves on. Nothing else is shared, so any number of groups can pull from one queue without
a lock, and a group that dies loses only the attempt it had claimed (the controller sees the
group gone and offers that task again under a new attempt number).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ..storage import Store, StoreConfig, get_store
from .contract import Claim, QueueOrder, Ticket


@dataclass
class TicketQueue:
    """Claims tickets of one queue for one group. ``config`` is the worker's store access;
    a ticket's own grants (SAS URLs, for workers that have no other access) are added to it for
    that ticket's attempt and for reading the next ticket."""

    queue: QueueOrder
    group: str
    config: StoreConfig
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _seq: int = 0
    _grants: dict[str, str] = field(default_factory=dict, repr=False)
    _tried: set[int] = field(default_factory=set)  # urgent tickets already tried


    @property
    def current(self) -> StoreConfig:
        """The store access for the ticket in hand (and the next ticket's read)."""
        if not self._grants:
            return self.config
        from ..secrets import Secret

        merged = {**{u: s for u, s in self.config.grants}, **{u: Secret(v) for u, v in self._grants.items()}}
        return replace(self.config, grants=tuple(sorted(merged.items())))

    def _store(self, uri: str) -> Store:
        return get_store(uri, self.current)

    def _read(self, uri: str) -> bytes | None:
        try:
            return self._store(uri).read_bytes(uri)
        except FileNotFoundError:
            return None

    def _head(self) -> dict[str, Any]:
        data = self._read(self.queue.head)
        try:
            head = json.loads(data) if data is not None else {}
        except ValueError:
            return {}
        return head if isinstance(head, dict) else {}

    def _skip_to_head(self, head: dict[str, Any] | None = None) -> None:
        """Jump over tickets the controller has already seen claimed (a group that joins late,
        or comes back from a long task, need not read each of them)."""
        head = self._head() if head is None else head
        try:
            seq = int(head["seq"])
        except (KeyError, TypeError, ValueError):
            return
        if seq > self._seq:
            self._seq = seq
            self._grants.update(head.get("grants") or {})

    def _urgent(self, head: dict[str, Any]) -> Iterator[Ticket]:
        """Second attempts of stragglers the head names: claimed before any other ticket."""
        for seq in head.get("urgent") or []:
            if not isinstance(seq, int) or seq in self._tried:
                continue
            self._tried.add(seq)
            self._grants.update(head.get("grants") or {})
            data = self._read(self.queue.ticket(seq))
            if data is None:
                continue
            ticket = Ticket.from_json(data)
            saved = self._grants
            self._grants = {**saved, **ticket.grants}
            if self._claim(ticket):
                yield ticket
            self._grants = saved

    def _claim(self, ticket: Ticket) -> bool:
        claim = Claim(self.group, ticket.seq,
                      datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))
        try:
            with self._store(ticket.claim).open_atomic(ticket.claim, overwrite=False) as out:
                out.write(claim.to_json())
        except FileExistsError:
            return False
        return True

    def claims(self) -> Iterator[Ticket]:
        """Each ticket this group claimed: first those of its own stripe, then any left (from
        the lowest the controller has seen unclaimed); ends when the queue is closed, or has had
        no new ticket for ``linger`` seconds."""
        stride = max(1, self.queue.stride)
        self._seq = max(1, self.queue.start) + max(0, self.queue.offset)
        while stride > 1:  # the stripe: seldom contended, so a claim is one read and one write
            data = self._read(self.queue.ticket(self._seq))
            if data is None:
                break  # past the last ticket: help the others from here on
            ticket = Ticket.from_json(data)
            self._grants = dict(ticket.grants)
            if self._claim(ticket):
                yield ticket
                yield from self._urgent(self._head())
            self._seq += stride  # its grants hold the read of the next ticket of the stripe
        self._seq = max(1, self.queue.start)
        yield from self._sequential()

    def _sequential(self) -> Iterator[Ticket]:
        idle_since: float | None = None
        self._skip_to_head()
        while True:
            data = self._read(self.queue.ticket(self._seq))
            if data is None:
                if self._read(self.queue.closed) is not None:
                    return
                took = False
                for ticket in self._urgent(self._head()):
                    took = True
                    yield ticket
                if took:
                    idle_since = None
                    continue
                now = self.clock()
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= self.queue.linger:
                    return
                self.sleep(self.queue.poll)
                continue
            idle_since = None
            ticket = Ticket.from_json(data)
            self._grants = dict(ticket.grants)  # this attempt's, and the next ticket's read
            self._seq += 1
            if self._claim(ticket):
                yield ticket
            # Past what the controller has seen taken: many groups walking every ticket
            # would cost a read and a refused claim per ticket per group.
            head = self._head()
            yield from self._urgent(head)
            self._skip_to_head(head)
