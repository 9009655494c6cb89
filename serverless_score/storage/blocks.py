"""Block arithmetic of Azure block blobs (pure): how a composed output is cut into blocks.

A block blob holds at most 50,000 committed blocks of at most 4000 MiB each. The merge copies each
part into one or more blocks (a part bigger than a block is split), so the output of a job needs
``1 (header) + sum(ceil(part / block))`` blocks: a job whose tasks alone exceed the limit is
refused before it runs.
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


@dataclass(frozen=True)
class BlockSource:
    """Block ``index`` of the output is bytes ``[offset, offset + length)`` of part ``part``."""

    index: int
    part: int
    offset: int
    length: int


def plan_blocks(sizes: Sequence[int], block_bytes: int, *, first_index: int = 0) -> list[BlockSource]:
    """Cut parts of ``sizes`` bytes into blocks of at most ``block_bytes``, in order; empty parts
    give no block.

    >>> [(b.part, b.offset, b.length) for b in plan_blocks([5, 0, 3], 4)]
    [(0, 0, 4), (0, 4, 1), (2, 0, 3)]
    """
    if not 0 < block_bytes <= MAX_BLOCK_BYTES:
        raise ValueError(f"block size must be 1..{MAX_BLOCK_BYTES} bytes; got {block_bytes}")
    blocks: list[BlockSource] = []
    for part, size in enumerate(sizes):
        for offset in range(0, size, block_bytes):
            blocks.append(BlockSource(first_index + len(blocks), part, offset,
                                      min(block_bytes, size - offset)))
    return blocks


def block_size_for(sizes: Sequence[int], preferred: int, header_blocks: int = 1) -> int:
    """``preferred``, or the smallest larger size that keeps the blob within MAX_BLOCKS (a part
    smaller than a block still takes one block of its own)."""
    size = preferred
    while header_blocks + sum(math.ceil(s / size) for s in sizes) > MAX_BLOCKS and size < MAX_BLOCK_BYTES:
        size = min(MAX_BLOCK_BYTES, size * 2)
    return size


def block_id(nonce: str, index: int) -> str:
    """Block ids of one blob must all have the same length; the nonce keeps two writers of the
    same blob from mixing their uncommitted blocks."""
    return f"{nonce}-{index:06d}"
