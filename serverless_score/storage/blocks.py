"""Block arithmetic of Azure block blobs (pure): how a composed output is cut into blocks.

A block blob holds at most 50,000 committed blocks of at most 4000 MiB each (Put Block and Put
Block From URL alike, service version 2019-12-12 and later). A merge stages every block of the
output and commits the list once, so the output appears whole or not at all. One block per part
fits only 50,000 - 1 parts (the header takes a block); ``plan_compose`` fits any number:

* a part bigger than a block is cut into ranged blocks (``source_offset`` / ``source_length``);
* when the blocks would still be too many, runs of consecutive small parts are first composed into
  *intermediate* blobs in the work folder, each of which is then one block of the output (and, past
  50,000 x 50,000 parts, intermediates are grouped again: a hierarchy of any depth).

Why intermediates (composed server-side) and not blocks made of several parts downloaded and
concatenated by the controller: both cost one request per part (a part is fetched by the service
or by us, never fewer), plus two per intermediate (commit, copy into the output) against one per
concatenated block, so round trips are the same to within a few. But concatenating pulls every
grouped byte through the controller (a laptop or a small controller container, possibly far from
the account) and holds blocks in its memory, while intermediates keep the merge server-side with no
bytes through the controller and no memory that grows with part sizes, and the same plan serves
parts of any size. The cost is a second server-side copy of the grouped bytes only: the plan groups
no more parts than it must, and only parts that together fit one block, while it can.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MiB = 1024 * 1024
MAX_BLOCKS = 50_000
MAX_BLOCK_BYTES = 4000 * MiB  # Put Block / Put Block From URL, service version 2019-12-12 and later
SERVER_BLOCK_BYTES = MAX_BLOCK_BYTES  # server-side copies: as few blocks as the service allows
FALLBACK_BLOCK_BYTES = 16 * MiB  # download-and-stage: what the controller holds per block in flight


def block_size_for(total: int, preferred: int, max_blocks: int = MAX_BLOCKS) -> int:
    """``preferred``, or the smallest doubling of it (at most MAX_BLOCK_BYTES) that cuts ``total``
    bytes into at most half of ``max_blocks`` blocks: the other half leaves ``plan_compose`` room
    for parts that do not fill their blocks.

    >>> block_size_for(100, 16, max_blocks=10), block_size_for(1000, 16, max_blocks=10)
    (32, 256)
    """
    size = preferred
    while math.ceil(total / size) > max(1, max_blocks // 2) and size < MAX_BLOCK_BYTES:
        size = min(MAX_BLOCK_BYTES, size * 2)
    return size


@dataclass(frozen=True)
class Piece:
    """A block to stage: bytes ``[offset, offset + length)`` of source ``source``, where sources
    ``0 .. parts - 1`` are the parts and ``parts + k`` is intermediate blob ``k``."""

    source: int
    offset: int
    length: int


@dataclass(frozen=True)
class Composed:
    """One blob to compose: its blocks in order. ``level`` 1 reads only parts; level n reads parts
    and intermediates of lower levels, so each level is composed after the one before."""

    blocks: tuple[Piece, ...]
    size: int
    level: int = 0


@dataclass(frozen=True)
class ComposePlan:
    parts: int
    intermediates: tuple[Composed, ...]  # intermediate k is source ``parts + k``
    output: Composed  # the output's blocks after the header's (if any)

    def levels(self) -> list[list[int]]:
        """Intermediates by level, lowest first: what can be composed at the same time."""
        levels: dict[int, list[int]] = {}
        for k, blob in enumerate(self.intermediates):
            levels.setdefault(blob.level, []).append(k)
        return [levels[level] for level in sorted(levels)]


class TooBigError(ValueError):
    """No hierarchy fits: the output needs more blocks of the largest size than a blob holds."""


def plan_compose(sizes: Sequence[int], *, header: bool = False, block_bytes: int = MAX_BLOCK_BYTES,
                 max_blocks: int = MAX_BLOCKS) -> ComposePlan:
    """The blobs to compose so that the output is the header (one block, staged by the caller)
    then the parts of ``sizes`` in order, each blob within ``max_blocks`` blocks of at most
    ``block_bytes``. Empty parts are left out; with few enough blocks there is no intermediate.

    Three parts of 1 byte and one of 6, blocks of 4 bytes, at most 3 blocks a blob: one
    intermediate holds the three small parts, then the output is it plus the big part's 2 blocks.

    >>> plan = plan_compose([1, 1, 1, 0, 6], block_bytes=4, max_blocks=3)
    >>> [(p.source, p.offset, p.length) for p in plan.intermediates[0].blocks]
    [(0, 0, 1), (1, 0, 1), (2, 0, 1)]
    >>> [(p.source, p.offset, p.length) for p in plan.output.blocks]
    [(5, 0, 3), (4, 0, 4), (4, 4, 2)]
    """
    if not 0 < block_bytes <= MAX_BLOCK_BYTES:
        raise ValueError(f"block size must be 1..{MAX_BLOCK_BYTES} bytes; got {block_bytes}")
    if max_blocks < 2:
        raise ValueError(f"a blob must be allowed at least 2 blocks; got {max_blocks}")
    budget = max_blocks - (1 if header else 0)
    sizes = list(sizes)  # and then the intermediates'
    parts, total = len(sizes), sum(sizes)
    intermediates: list[Composed] = []
    current = [s for s in range(parts) if sizes[s] > 0]
    level = 0
    while True:
        blocks = sum(_pieces(sizes[s], block_bytes) for s in current)
        if blocks <= budget:
            return ComposePlan(parts, tuple(intermediates),
                               Composed(_cut(current, sizes, block_bytes), sum(sizes[s] for s in current)))
        level += 1
        runs = _small_runs(current, sizes, block_bytes, max_blocks, need=blocks - budget)
        if all(len(run) == 1 for run in runs):
            runs = [kept for run in _runs_of_blocks(current, sizes, block_bytes, max_blocks)
                    for kept in ([run] if _gain([run], sizes, block_bytes) > 0 else [[s] for s in run])]
        if all(len(run) == 1 for run in runs):
            raise TooBigError(
                f"{total} bytes in {parts} parts do not fit one blob of {max_blocks} blocks "
                f"of at most {block_bytes} bytes")
        current = []
        for run in runs:
            if len(run) == 1:
                current.append(run[0])
                continue
            blob = Composed(_cut(run, sizes, block_bytes), sum(sizes[s] for s in run), level)
            intermediates.append(blob)
            sizes.append(blob.size)
            current.append(len(sizes) - 1)


def plan_assembled(sizes: Sequence[int], *, header: bool = False,
                   block_bytes: int = MAX_BLOCK_BYTES,
                   max_blocks: int = MAX_BLOCKS) -> tuple[tuple[Piece, ...], ...]:
    """Where the controller downloads and stages the blocks itself (the service cannot copy), the
    bytes pass through it anyway, so a block is simply the next ``block_bytes`` of the parts read
    in order, from as many parts as it takes: ``ceil(total / block_bytes)`` blocks, one request per
    block and one per piece, no intermediate.

    >>> [[(p.source, p.offset, p.length) for p in block] for block in plan_assembled([3, 0, 6, 1], block_bytes=4)]
    [[(0, 0, 3), (2, 0, 1)], [(2, 1, 4)], [(2, 5, 1), (3, 0, 1)]]
    """
    if not 0 < block_bytes <= MAX_BLOCK_BYTES:
        raise ValueError(f"block size must be 1..{MAX_BLOCK_BYTES} bytes; got {block_bytes}")
    blocks: list[tuple[Piece, ...]] = []
    block: list[Piece] = []
    room = block_bytes
    for source, size in enumerate(sizes):
        offset = 0
        while offset < size:
            take = min(room, size - offset)
            block.append(Piece(source, offset, take))
            offset, room = offset + take, room - take
            if room == 0:
                blocks.append(tuple(block))
                block, room = [], block_bytes
    if block:
        blocks.append(tuple(block))
    if len(blocks) + (1 if header else 0) > max_blocks:
        raise TooBigError(f"{sum(sizes)} bytes in {len(sizes)} parts do not fit one blob of "
                          f"{max_blocks} blocks of at most {block_bytes} bytes")
    return tuple(blocks)


def _pieces(size: int, block_bytes: int) -> int:
    return math.ceil(size / block_bytes)


def _cut(sources: Sequence[int], sizes: Sequence[int], block_bytes: int) -> tuple[Piece, ...]:
    return tuple(Piece(s, offset, min(block_bytes, sizes[s] - offset))
                 for s in sources for offset in range(0, sizes[s], block_bytes))


def _gain(runs: Sequence[Sequence[int]], sizes: Sequence[int], block_bytes: int) -> int:
    """Blocks saved by composing each run of several sources into one blob first."""
    return sum(sum(_pieces(sizes[s], block_bytes) for s in run)
               - _pieces(sum(sizes[s] for s in run), block_bytes)
               for run in runs if len(run) > 1)


def _small_runs(current: Sequence[int], sizes: Sequence[int], block_bytes: int, max_blocks: int,
                need: int) -> list[list[int]]:
    """Runs of consecutive sources that together fit one block (each run of n saves n - 1
    blocks), from the first, until ``need`` blocks are saved: the rest stays as it is, so no more
    bytes than needed are copied twice. Greedy packing of consecutive items is optimal here: no
    other cut into runs of at most one block each makes fewer runs."""
    runs: list[list[int]] = []
    run: list[int] = []
    run_bytes = saved = 0
    for s in current:
        if (run and run_bytes + sizes[s] <= block_bytes and len(run) < max_blocks
                and saved + len(run) - 1 < need):
            run.append(s)
            run_bytes += sizes[s]
            continue
        if run:
            runs.append(run)
            saved += len(run) - 1
        run, run_bytes = [s], sizes[s]
    if run:
        runs.append(run)
    return runs


def _runs_of_blocks(current: Sequence[int], sizes: Sequence[int], block_bytes: int,
                    max_blocks: int) -> list[list[int]]:
    """Where no two neighbours fit one block (parts of nearly a block or more, a case for
    outputs of ~100 TB): runs of up to ``max_blocks`` blocks, recut into full blocks by the next
    level; the blocks a run saves are the ones its sources left part-empty."""
    runs: list[list[int]] = []
    run: list[int] = []
    run_blocks = 0
    for s in current:
        count = _pieces(sizes[s], block_bytes)
        if run and run_blocks + count <= max_blocks:
            run.append(s)
            run_blocks += count
            continue
        if run:
            runs.append(run)
        run, run_blocks = [s], count
    if run:
        runs.append(run)
    return runs


def block_id(nonce: str, index: int) -> str:
    """Block ids of one blob must all have the same length (index < 1,000,000 here, as a blob
    holds 50,000 blocks); the nonce keeps two writers of the same blob from mixing their
    uncommitted blocks."""
    return f"{nonce}-{index:06d}"
