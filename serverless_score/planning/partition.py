"""Pure planning: input files -> tasks -> groups, and the boundary chain check.

No I/O here: the caller lists the input (sizes, row groups) and these functions decide. Tasks come
out in input order with deterministic indices, which is what makes resume possible.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .tasks import InputFile, Shard, Task

DEFAULT_CHUNK_BYTES = 64 * 10**6


def even_cuts(size: int, pieces: int) -> list[int]:
    """``pieces + 1`` offsets splitting ``[0, size)`` into nearly equal, non-empty ranges."""
    pieces = max(1, min(pieces, size))
    return [size * k // pieces for k in range(pieces + 1)]


def choose_task_count(total_bytes: int, *, chunk_size: int | None, chunks: int | None,
                      max_parallel: int) -> int:
    """How many byte-range tasks to make. Explicit settings win; the default aims at
    ~64 MB tasks, rounded up to a multiple of ``max_parallel`` so workers finish together."""
    if chunks is not None:
        return chunks
    if chunk_size is not None:
        return max(1, math.ceil(total_bytes / chunk_size))
    count = max(1, math.ceil(total_bytes / DEFAULT_CHUNK_BYTES))
    return math.ceil(count / max_parallel) * max_parallel


def plan_byte_tasks(files: Sequence[InputFile], *, chunk_size: int | None = None,
                    chunks: int | None = None, max_parallel: int = 1) -> list[Task]:
    """Split each file into byte ranges of about ``total / count`` bytes; every file gets at least
    one task so a task never spans two files (each file has its own header and boundaries)."""
    total = sum(f.size for f in files)
    count = choose_task_count(total, chunk_size=chunk_size, chunks=chunks, max_parallel=max_parallel)
    target = max(1, math.ceil(total / count))
    tasks: list[Task] = []
    for file_index, f in enumerate(files):
        if f.size == 0:
            continue
        pieces = max(1, round(f.size / target)) if len(files) > 1 else count
        cuts = even_cuts(f.size, pieces)
        for start, end in itertools.pairwise(cuts):
            tasks.append(Task(index=len(tasks), kind="bytes", path=f.path, file_index=file_index,
                              start=start, end=end, size=end - start, file_size=f.size))
    return tasks


def plan_rowgroup_tasks(files: Sequence[InputFile], *, chunk_size: int | None = None,
                        chunks: int | None = None, max_parallel: int = 1) -> list[Task]:
    """Parquet: runs of consecutive row groups of about ``total / count`` bytes (a row group is
    never split). Each row group goes to the task its byte midpoint falls in, which balances
    tasks better than filling each one greedily, and a task never spans two files."""
    total = sum(sum(f.row_group_bytes or ()) for f in files)
    count = choose_task_count(total, chunk_size=chunk_size, chunks=chunks, max_parallel=max_parallel)
    n_groups = sum(len(f.row_group_bytes or ()) for f in files)
    target = total / min(count, max(1, n_groups)) if total else 1.0
    tasks: list[Task] = []
    offset = 0  # bytes of all row groups before the current one, across files
    for file_index, f in enumerate(files):
        sizes = f.row_group_bytes or ()
        rows = f.row_group_rows or (0,) * len(sizes)
        buckets = []
        for size in sizes:
            buckets.append(int((offset + size / 2) // target))
            offset += size
        start = 0
        for i in range(len(sizes)):
            if i == len(sizes) - 1 or buckets[i + 1] != buckets[i]:
                tasks.append(Task(index=len(tasks), kind="rowgroups", path=f.path,
                                  file_index=file_index, start=start, end=i + 1,
                                  size=sum(sizes[start : i + 1]), file_size=f.size,
                                  rows_hint=sum(rows[start : i + 1])))
                start = i + 1
    return tasks


def plan_shards(shards: int, bins: int) -> list[Task]:
    """Contiguous, balanced bin ranges; every bin in ``0..bins-1`` to exactly one shard."""
    if bins < shards:
        raise ValueError(f"bins ({bins}) must be >= shards ({shards})")
    cuts = even_cuts(bins, shards)
    return [
        Task(index=i, kind="shard", shard=Shard(i, shards, cuts[i], cuts[i + 1] - 1), size=1)
        for i in range(shards)
    ]


def pack_groups(tasks: Sequence[Task], tasks_per_group: int) -> list[list[Task]]:
    """Contiguous runs of ``tasks_per_group`` tasks (a group's container runs them one after another,
    loading the model once: that amortises start-up)."""
    per = max(1, tasks_per_group)
    return [list(tasks[i : i + per]) for i in range(0, len(tasks), per)]


@dataclass(frozen=True)
class Span:
    """Where a finished byte task says its records begin and end."""

    task_index: int
    file_index: int
    begin: int
    end: int


def chain_breaks(spans: Sequence[Span], anchored: set[int]) -> list[tuple[int, int]]:
    """Find wrong boundary guesses: ``(task_index, correct_begin)`` for each task whose ``begin``
    differs from the ``end`` of the task before it in the same file, where that predecessor is
    *anchored* (its own begin is known to be right). The first task of a file is always anchored:
    it begins at the header end. Returns only breaks whose fix is certain; the caller re-runs them,
    anchors them and calls again until nothing is returned."""
    breaks: list[tuple[int, int]] = []
    ordered = sorted(spans, key=lambda s: s.task_index)
    for prev, cur in itertools.pairwise(ordered):
        if prev.file_index != cur.file_index or prev.task_index not in anchored:
            continue
        if cur.begin != prev.end:
            breaks.append((cur.task_index, prev.end))
    return breaks


def anchored_tasks(spans: Sequence[Span], pinned: set[int]) -> set[int]:
    """Tasks whose begin is known to be right: the first of each file, any pinned task, and any task
    that meets an anchored predecessor exactly."""
    anchored: set[int] = set()
    ordered = sorted(spans, key=lambda s: s.task_index)
    for i, span in enumerate(ordered):
        first_in_file = i == 0 or ordered[i - 1].file_index != span.file_index
        if first_in_file or span.task_index in pinned or (ordered[i - 1].task_index in anchored and ordered[i - 1].end == span.begin):
            anchored.add(span.task_index)
    return anchored
