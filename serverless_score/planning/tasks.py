"""What a task is: an exact piece of input (a byte range of a file, a row-group range of a Parquet
file, or a shard of bins), with a deterministic id. Plain data, JSON round-trippable, so the same
task travels to a subprocess, a container's environment, or a plan file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

TaskKind = Literal["bytes", "rowgroups", "shard"]


@dataclass(frozen=True)
class InputFile:
    """One input file as seen by the planner: its size, and for Parquet its row groups' sizes."""

    path: str
    size: int
    row_group_bytes: tuple[int, ...] | None = None
    row_group_rows: tuple[int, ...] | None = None
    version: str = ""  # mtime_ns of a file, etag of a blob: what changes when the content does


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    bin_start: int  # inclusive
    bin_end: int  # inclusive

    def env(self) -> dict[str, str]:
        return {
            "SHARD_INDEX": str(self.index),
            "SHARD_COUNT": str(self.count),
            "BIN_START": str(self.bin_start),
            "BIN_END": str(self.bin_end),
        }


@dataclass(frozen=True)
class Task:
    """One unit of work. ``start``/``end`` are bytes for ``bytes`` tasks and row-group indices for
    ``rowgroups`` tasks; ``pinned_begin`` is set when the controller repaired a wrong boundary guess."""

    index: int
    kind: TaskKind
    path: str | None = None
    file_index: int = 0
    start: int = 0
    end: int = 0
    size: int = 0  # bytes, for balancing and progress
    file_size: int = 0
    shard: Shard | None = None
    pinned_begin: int | None = None
    rows_hint: int | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return f"t{self.index:05d}"

    def pinned(self, begin: int) -> Task:
        return replace(self, pinned_begin=begin)

    def to_dict(self) -> dict[str, Any]:
        """What ``asdict`` gives, without its deep copy of every field (~10x faster: job.json
        and ``plan --json`` hold every task of a plan, 100,000 of them in a big job)."""
        data = {name: getattr(self, name) for name in _TASK_FIELDS}
        if self.shard is not None:
            data["shard"] = asdict(self.shard)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        data = dict(data)
        if data.get("shard") is not None:
            data["shard"] = Shard(**data["shard"])
        return cls(**data)

    def describe(self) -> str:
        if self.kind == "shard" and self.shard:
            return f"shard {self.shard.index}/{self.shard.count} bins {self.shard.bin_start}..{self.shard.bin_end}"
        if self.kind == "rowgroups":
            return f"{self.path} row groups {self.start}..{self.end - 1}"
        pin = f" (from byte {self.pinned_begin})" if self.pinned_begin is not None else ""
        return f"{self.path} bytes {self.start}..{self.end}{pin}"


_TASK_FIELDS = tuple(f.name for f in fields(Task))
