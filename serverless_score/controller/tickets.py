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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ..layout import JobLayout
from ..planning.tasks import Task
from ..runner.contract import Claim, QueueOrder, TaskOrder, Ticket
from ..storage import Store

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
    """The tickets of one controller run, in the order they were offered."""

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
        self._unclaimed_from = 0  # index of the lowest offer not yet seen claimed
        self._head_written = 0

    def queue(self) -> QueueOrder:
        """What a group created now is told: start at the lowest ticket not seen claimed."""
        return QueueOrder(self.folder, start=self._unclaimed_from + 1, poll=self.poll,
                          linger=self.linger)

    def offer(self, task: Task, attempt: int, *, copy: bool = False) -> Offer:
        seq = len(self.offers) + 1
        order = TaskOrder.of(self.layout, task, attempt)
        queue = QueueOrder(self.folder)
        grants: dict[str, str] = {}
        if self.access is not None:  # this attempt's files, and a read of the next ticket
            grants = {**self.access.attempt(order),
                      queue.ticket(seq + 1): self.access.read(queue.ticket(seq + 1))}
            grants = {u: g for u, g in grants.items() if g}  # local files need none
        ticket = Ticket(seq, order, grants)
        self.store.write_bytes(queue.ticket(seq), ticket.to_json())
        offer = Offer(ticket, copy=copy)
        self.offers.append(offer)
        return offer

    def unclaimed(self) -> list[Offer]:
        return [o for o in self.offers[self._unclaimed_from:] if o.group is None and not o.ended]

    def running(self) -> list[Offer]:
        return [o for o in self.offers if o.running]

    def see_claims(self, now: float, lookahead: int) -> list[Offer]:
        """Read the claims of the lowest unclaimed tickets (groups take them in order, so
        ``lookahead`` past the first unclaimed one finds every new claim but a straggling
        reader's); return the offers newly seen claimed."""
        seen = []
        checked = 0
        for offer in self.offers[self._unclaimed_from:]:
            if checked >= lookahead:
                break
            if offer.group is not None or offer.ended:
                continue
            checked += 1
            claim = self.read_claim(offer)
            if claim is not None:
                offer.group, offer.claimed_at = claim.group, now
                seen.append(offer)
        while (self._unclaimed_from < len(self.offers)
               and (self.offers[self._unclaimed_from].group is not None
                    or self.offers[self._unclaimed_from].ended)):
            self._unclaimed_from += 1
        self._write_head()
        return seen

    def claims_of(self, group: str, now: float) -> list[Offer]:
        """Every unended offer ``group`` claimed, the ones not seen yet included (read again:
        a group that ended may have claimed a ticket after the last look)."""
        found = []
        for offer in self.offers[self._unclaimed_from:]:
            if offer.group is None and not offer.ended:
                claim = self.read_claim(offer)
                if claim is not None:
                    offer.group, offer.claimed_at = claim.group, now
        for offer in self.offers:
            if offer.group == group and not offer.ended:
                found.append(offer)
        return found

    def read_claim(self, offer: Offer) -> Claim | None:
        try:
            return Claim.from_json(self.store.read_bytes(offer.ticket.claim))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable claim %s: treated as taken", offer.ticket.claim)
            return Claim("(unreadable)", offer.ticket.seq, "")

    def withdraw(self, offer: Offer) -> bool:
        """Take back an offer nobody has claimed (its task finished meanwhile) by claiming it
        in the controller's name: False when a group got there first (it is then running)."""
        claim = Claim(WITHDRAWN, offer.ticket.seq, "")
        try:
            with self.store.open_atomic(offer.ticket.claim, overwrite=False) as out:
                out.write(claim.to_json())
        except FileExistsError:
            got = self.read_claim(offer)
            offer.group = got.group if got is not None else "(unknown)"
            return False
        offer.ended = True
        return True

    def group_grants(self) -> dict[str, str]:
        """What a group created now needs to find its first ticket: reads of the queue's head,
        its closed mark and the ticket it starts at."""
        if self.access is None:
            return {}
        queue = self.queue()
        grants = {uri: self.access.read(uri) for uri in (queue.head, queue.closed,
                                                         queue.ticket(queue.start))}
        return {u: g for u, g in grants.items() if g}

    def _write_head(self) -> None:
        seq = self._unclaimed_from + 1
        if seq <= self._head_written or seq > len(self.offers):
            return
        queue = QueueOrder(self.folder)
        grant = self.access.read(queue.ticket(seq)) if self.access else ""
        grants = {queue.ticket(seq): grant} if grant else {}
        self.store.write_bytes(queue.head, json.dumps({"seq": seq, "grants": grants}).encode())
        self._head_written = seq

    def close(self) -> None:
        """Every task has its result: groups waiting for a ticket exit now."""
        self.store.write_bytes(QueueOrder(self.folder).closed, b"closed\n")
