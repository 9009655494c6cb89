"""Pure planning: input files -> tasks -> groups, and the boundary chain check.

No I/O here: the caller lists the input (sizes, row groups) and these functions decide. Tasks come
out in input order with deterministic indices, which is what makes resume possible.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import BoundaryError
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


def fleet_size(tasks: int, tasks_per_group: int, max_parallel: int) -> int:
    """How many groups a job keeps alive while it has work: enough for ``tasks_per_group``
    each (the backend's packing: ACI amortises a group's start-up over several tasks), never
    more than ``max_parallel``. Groups pull their tasks, so this is also the number of creates
    a job needs when nothing fails."""
    if tasks <= 0:
        return 0
    return min(max(1, max_parallel), -(-tasks // max(1, tasks_per_group)))


def expected_shares(tasks: Sequence[Task], tasks_per_group: int,
                    max_parallel: int) -> list[list[Task]]:
    """What each group of the fleet can be expected to run when tasks cost about the same (for
    estimates: the real split follows who is free first)."""
    fleet = fleet_size(len(tasks), tasks_per_group, max_parallel)
    return pack_groups(tasks, -(-len(tasks) // fleet)) if fleet else []


@dataclass(frozen=True)
class Link:
    """One byte task in its file's chain: its range ``[start, stop)``, the begin the controller
    pinned it to (if any) and, once it finished, where it says its records ``begin`` and ``end``
    (``end``: the first record start at or after ``stop``)."""

    task_index: int
    file_index: int
    start: int
    stop: int
    pinned_begin: int | None = None
    begin: int | None = None  # None: not finished
    end: int | None = None


def exact_begins(links: Sequence[Link]) -> dict[int, int]:
    """Where the records of each task must begin, for every task where that is certain.

    Certain are: the first task of a file (it begins at the header end, never a guess), a pinned
    task, and any task after a task whose end is exact. An exact end ``E`` of task ``i`` is the
    first record start at or after ``stop_i``, so no record starts in ``[stop_i, E)``: every later
    task of the file whose range starts at or before ``E`` begins exactly at ``E``. That is what
    heals a quoted field spanning many tasks in one step: the tasks inside it all begin at ``E``
    (at or past their own end: they own no record) and the first task past it begins at ``E`` too.
    A task's end is exact when it finished from its exact begin, or when that begin lies at or past
    its stop (it owns nothing, and the next record start is its begin).

    Links may be given in any order and may leave tasks out (a gap stops what is certain). A pin
    that contradicts what the chain proves raises BoundaryError: the input changed under the job."""
    exact: dict[int, int] = {}
    ordered = sorted(links, key=lambda link: link.task_index)
    boundary: int | None = None  # exact record start; none starts from the current start to it
    previous: Link | None = None
    for link in ordered:
        first = previous is None or previous.file_index != link.file_index
        if not first and previous is not None and previous.task_index != link.task_index - 1:
            boundary = None  # a task left out: nothing is known across it
        proven = None if first or boundary is None or link.start > boundary else boundary
        if link.pinned_begin is not None:
            if proven is not None and proven != link.pinned_begin:
                raise BoundaryError(
                    f"task {link.task_index} was pinned to begin at byte {link.pinned_begin}, but "
                    f"the tasks before it prove its records begin at byte {proven}",
                    hint="The input file changed while the job ran: run the job again.")
            begin: int | None = link.pinned_begin
        elif first:
            begin = link.begin
        else:
            begin = proven
        if begin is not None:
            exact[link.task_index] = begin
        if begin is not None and link.begin == begin and link.end is not None:
            boundary = link.end
        elif begin is not None and begin >= link.stop:
            boundary = begin
        else:
            boundary = None
        previous = link
    return exact


def chain_repairs(links: Sequence[Link]) -> list[tuple[int, int]]:
    """Finished tasks whose records begin somewhere else than the chain proves:
    ``(task_index, exact_begin)``, in task order. Each is re-run pinned to that begin (a pinned
    task is never repaired again, so repairs end); calling again after the re-runs finds the
    repairs they made certain, until the chain is whole and nothing is returned. Once every task
    finished and nothing is returned, every task begins where the one before it ends."""
    exact = exact_begins(links)
    return [(link.task_index, exact[link.task_index])
            for link in sorted(links, key=lambda link: link.task_index)
            if link.begin is not None and link.pinned_begin is None
            and link.task_index in exact and link.begin != exact[link.task_index]]
