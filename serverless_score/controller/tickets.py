"""The controller's side of the ticket queue (``runner/pull.py`` is the groups' side): offer each
attempt as a numbered ticket, learn who claimed it and how it ended, and close the queue.

Every controller run gets its own queue folder, so a ticket an earlier, dead controller offered
can never be claimed now (its groups were deleted before this run created any). Attempt numbers
still go past every attempt ever claimed (``layout.stored_attempts`` counts claims), so one
(task, attempt) never names two attempts' files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from ..layout import JobLayout
from ..planning.tasks import Task
from ..runner.contract import Claim, QueueOrder, TaskOrder, Ticket
from ..storage import Store, is_local

log = logging.getLogger(__name__)



class QueueAccess(Protocol):
    """SAS URLs for workers that have no other access to the store (``[azure] worker_access``
    = "sas"): what one attempt touches, and reads of the queue's own files."""

    def attempt(self, order: TaskOrder) -> Mapping[str, str]: ...

    def read(self, uri: str) -> str: ...
WITHDRAWN = "(withdrawn by the controller)"


@dataclass
class Offer:
    """A ticket as the controller tracks it."""

    ticket: Ticket
    copy: bool = False  # a second attempt of a straggler, not a retry
    group: str | None = None  # who claimed it
    claimed_at: float | None = None  # controller clock, when it first saw the claim
    ended: bool = False

    @property
    def task(self) -> Task:
        return self.ticket.order.task

    @property
    def attempt(self) -> int:
        return self.ticket.order.attempt

    @property
    def running(self) -> bool:
        return self.group is not None and not self.ended


class TicketBook:
    """The tickets of one controller run, in the order they were offered. Indexed so that a
    look at the queue costs what is open (waiting or running), not what was ever offered."""

    def __init__(self, store: Store, layout: JobLayout, run: str, *,
                 access: QueueAccess | None = None, poll: float = 0.5,
                 linger: float = 20.0) -> None:
        self.store = store
        self.layout = layout
        self.folder = layout.queue_dir(run)
        self.access = access
        self.poll = poll
        self.linger = linger
        self.offers: list[Offer] = []  # offers[seq - 1]
        self._waiting: dict[int, Offer] = {}  # seq -> offer nobody was seen to claim yet
        self._running: dict[int, Offer] = {}  # seq -> claimed, not ended
        self._by_task: dict[str, list[Offer]] = {}  # task id -> its open offers
        self._head_written: tuple[int, tuple[int, ...]] = (0, ())
        self._pending = 0  # made, not yet written
        self.stride = 1  # the fleet's size: each group walks its own stripe first
        self._groups = 0

    @property
    def open(self) -> bool:
        """Whether any offer is still waiting or running."""
        return bool(self._waiting or self._running)

    def queue(self) -> QueueOrder:
        """What the next group is told: start at the lowest ticket not seen claimed, on the
        next stripe."""
        return QueueOrder(self.folder, start=self._lowest_waiting(), poll=self.poll,
                          linger=self.linger, stride=self.stride,
                          offset=self._groups % max(1, self.stride))

    def group_created(self) -> None:
        self._groups += 1

    def _lowest_waiting(self) -> int:
        return min(self._waiting, default=len(self.offers) + 1)

    def offer_many(self, items: Sequence[tuple[Task, int, bool]]) -> list[Offer]:
        """Offer (task, attempt, copy?) items in this order. The tickets are written by a few
        threads at once: on a remote store each is a request, and a job of thousands of tasks
        would otherwise wait for them one by one before its groups had anything to claim."""
        if len(items) <= 1 or is_local(self.folder):
            return [self.offer(task, attempt, copy=copy) for task, attempt, copy in items]
        made = [self._make(task, attempt, copy) for task, attempt, copy in items]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self._write, made))
        for offer in made:
            self._add(offer)
        return made

    def offer(self, task: Task, attempt: int, *, copy: bool = False) -> Offer:
        offer = self._make(task, attempt, copy)
        self._write(offer)
        self._add(offer)
        return offer

    def _write(self, offer: Offer) -> None:
        self.store.write_bytes(QueueOrder(self.folder).ticket(offer.ticket.seq),
                               offer.ticket.to_json())

    def _add(self, offer: Offer) -> None:
        self._pending -= 1
        self.offers.append(offer)
        self._waiting[offer.ticket.seq] = offer
        self._by_task.setdefault(offer.task.id, []).append(offer)

    def _make(self, task: Task, attempt: int, copy: bool) -> Offer:
        seq = len(self.offers) + 1 + self._pending
        self._pending += 1
        order = TaskOrder.of(self.layout, task, attempt)
        queue = QueueOrder(self.folder)
        grants: dict[str, str] = {}
        if self.access is not None:  # this attempt's files, and a read of the next ticket
            # (and reads of the next tickets, up to the next of the same stripe)
            grants = {**self.access.attempt(order),
                      **{queue.ticket(n): self.access.read(queue.ticket(n))
                         for n in range(seq + 1, seq + 1 + max(1, self.stride))}}
            grants = {u: g for u, g in grants.items() if g}  # local files need none
        return Offer(Ticket(seq, order, grants), copy=copy)

    def unclaimed(self) -> list[Offer]:
        return list(self._waiting.values())

    def running(self) -> list[Offer]:
        return list(self._running.values())

    def others(self, offer: Offer) -> list[Offer]:
        """The other open offers of the same task."""
        return [o for o in self._by_task.get(offer.task.id, []) if o is not offer]

    def claimed(self, offer: Offer, group: str, now: float) -> None:
        if offer.ended or offer.group is not None:
            return
        offer.group, offer.claimed_at = group, now
        self._waiting.pop(offer.ticket.seq, None)
        self._running[offer.ticket.seq] = offer

    def end(self, offer: Offer) -> None:
        offer.ended = True
        seq = offer.ticket.seq
        self._waiting.pop(seq, None)
        self._running.pop(seq, None)
        same = self._by_task.get(offer.task.id, [])
        if offer in same:
            same.remove(offer)
        if not same:
            self._by_task.pop(offer.task.id, None)

    def see_claims(self, now: float, lookahead: int) -> list[Offer]:
        """Read the claims of the lowest waiting tickets (groups take them in order, so
        ``lookahead`` past the first waiting one finds every new claim but a straggling
        reader's); return the offers newly seen claimed."""
        seen = []
        for seq in sorted(self._waiting)[:lookahead]:
            offer = self._waiting[seq]
            claim = self.read_claim(offer)
            if claim is not None:
                self.claimed(offer, claim.group, now)
                seen.append(offer)
        self._write_head()
        return seen

    def claims_of(self, group: str, now: float) -> list[Offer]:
        """Every open offer ``group`` claimed, the ones not seen yet included (read again: a
        group that ended may have claimed a ticket after the last look)."""
        for offer in list(self._waiting.values()):
            claim = self.read_claim(offer)
            if claim is not None:
                self.claimed(offer, claim.group, now)
            else:
                break  # groups claim in order: nothing after an unclaimed one, but stragglers
        return [o for o in self._running.values() if o.group == group]

    def read_claim(self, offer: Offer) -> Claim | None:
        try:
            return Claim.from_json(self.store.read_bytes(offer.ticket.claim))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable claim %s: treated as taken", offer.ticket.claim)
            return Claim("(unreadable)", offer.ticket.seq, "")

    def withdraw(self, offer: Offer, now: float) -> bool:
        """Take back an offer nobody has claimed (its task finished meanwhile) by claiming it
        in the controller's name: False when a group got there first (it is then running)."""
        claim = Claim(WITHDRAWN, offer.ticket.seq, "")
        try:
            with self.store.open_atomic(offer.ticket.claim, overwrite=False) as out:
                out.write(claim.to_json())
        except FileExistsError:
            got = self.read_claim(offer)
            self.claimed(offer, got.group if got is not None else "(unknown)", now)
            return False
        self.end(offer)
        return True

    def group_grants(self) -> dict[str, str]:
        """What a group created now needs to find its first ticket: reads of the queue's head,
        its closed mark and the ticket it starts at."""
        if self.access is None:
            return {}
        queue = self.queue()
        grants = {uri: self.access.read(uri) for uri in (
            queue.head, queue.closed, queue.ticket(queue.start),
            queue.ticket(queue.start + queue.offset))}
        return {u: g for u, g in grants.items() if g}

    def _write_head(self) -> None:
        """``head.json``: the lowest ticket still waiting (a group past it skips ahead), and the
        second attempts of stragglers still waiting (``urgent``: a group looks at them after
        each task, before its own next ticket, so they run at once)."""
        seq = self._lowest_waiting()
        urgent = tuple(sorted(n for n, o in self._waiting.items() if o.copy))
        if (seq, urgent) == self._head_written or not self.offers:
            return
        queue = QueueOrder(self.folder)
        grants = {}
        for n in (seq, *urgent):
            grant = self.access.read(queue.ticket(n)) if self.access else ""
            if grant:
                grants[queue.ticket(n)] = grant
        self.store.write_bytes(queue.head, json.dumps(
            {"seq": seq, "urgent": list(urgent), "grants": grants}).encode())
        self._head_written = (seq, urgent)

    def close(self) -> None:
        """Every task has its result: groups waiting for a ticket exit now."""
        self.store.write_bytes(QueueOrder(self.folder).closed, b"closed\n")
