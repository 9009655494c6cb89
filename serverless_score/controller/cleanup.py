"""``cleanup``: delete groups no controller is watching any more, found by their labels (job id,
expiry), on any backend. Pure selection, then one awaited delete per group.

A group of a job whose lease is held by a live controller (``storage/lease.py``) is that
controller's: it is skipped, and said so, unless it is past its expiry or ``force`` is given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..backends import Backend
from ..backends.base import GroupInfo
from ..errors import ScoreError


def expires_at(group: GroupInfo) -> datetime | None:
    text = group.expires
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def select(groups: Sequence[GroupInfo], *, job_id: str | None, expired: bool,
           now: datetime) -> list[GroupInfo]:
    """Groups of ``job_id`` (any job if None) and, with ``expired``, only those whose
    ``expires`` label is in the past (a group without one is never taken for expired)."""
    chosen = []
    for group in groups:
        if job_id is not None and group.job_id != job_id:
            continue
        if expired:
            when = expires_at(group)
            if when is None or when > now:
                continue
        chosen.append(group)
    return chosen


@dataclass(frozen=True)
class Deleted:
    name: str
    job_id: str
    expires: str | None
    deleted: bool  # False on a dry run
    error: str | None = None
    skipped: str | None = None  # why it was left alone (its job's controller is alive)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "job_id": self.job_id, "expires": self.expires,
                "deleted": self.deleted, "error": self.error, "skipped": self.skipped}


def cleanup(backend: Backend, *, job_id: str | None, expired: bool, dry_run: bool,
            now: datetime | None = None, live: Mapping[str, str] | None = None,
            force: bool = False) -> list[Deleted]:
    """``live``: job id -> who holds its lease (a live controller), for the jobs whose lease
    could be read; their groups are skipped unless expired or ``force``."""
    now = now or datetime.now(UTC)
    chosen = select(backend.list_all_groups(), job_id=job_id, expired=expired, now=now)
    done = []
    for group in chosen:
        holder = (live or {}).get(group.job_id)
        when = expires_at(group)
        if holder and not force and (when is None or when > now):
            done.append(Deleted(group.name, group.job_id, group.expires, False,
                                skipped=f"its controller is running: {holder}"))
            continue
        if dry_run:
            done.append(Deleted(group.name, group.job_id, group.expires, False))
            continue
        try:
            backend.delete_group(group.name)
        except (ScoreError, OSError) as err:  # report every survivor; the CLI then fails
            done.append(Deleted(group.name, group.job_id, group.expires, False, str(err)))
            continue
        done.append(Deleted(group.name, group.job_id, group.expires, True))
    return done
