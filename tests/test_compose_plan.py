"""The compose plan (storage/blocks.py) on its own, no storage: every blob within the block limit,
every block within the block size, the output's bytes the header then the parts in order, no more
parts copied twice than needed; by cases at the limits and by properties (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serverless_score.storage.blocks import (
    MAX_BLOCK_BYTES,
    MAX_BLOCKS,
    ComposePlan,
    TooBigError,
    block_size_for,
    plan_assembled,
    plan_compose,
)


def contents(sizes: list[int]) -> list[bytes]:
    """Bytes that tell every part, and every offset in it, apart."""
    return [bytes((part * 31 + i) % 251 for i in range(size)) for part, size in enumerate(sizes)]


def materialize(plan: ComposePlan, parts: list[bytes]) -> bytes:
    """What the store would commit: each intermediate from its blocks, in order, then the output."""
    sources = list(parts)
    for blob in plan.intermediates:
        data = b"".join(sources[p.source][p.offset:p.offset + p.length] for p in blob.blocks)
        assert len(data) == blob.size
        sources.append(data)
    return b"".join(sources[p.source][p.offset:p.offset + p.length] for p in plan.output.blocks)


def check(plan: ComposePlan, sizes: list[int], *, header: bool, block: int, limit: int) -> None:
    """Everything the service would refuse, or that would give another output, fails here."""
    assert plan.parts == len(sizes)
    assert (1 if header else 0) + len(plan.output.blocks) <= limit
    all_sizes = list(sizes) + [blob.size for blob in plan.intermediates]
    used: list[int] = []
    for k, blob in enumerate(plan.intermediates):
        assert 0 < len(blob.blocks) <= limit
        for piece in blob.blocks:  # only parts and intermediates of lower levels
            assert piece.source < plan.parts or (
                piece.source < plan.parts + k
                and plan.intermediates[piece.source - plan.parts].level < blob.level)
    for blob in [*plan.intermediates, plan.output]:
        for piece in blob.blocks:
            assert 0 < piece.length <= block
            assert piece.offset >= 0 and piece.offset + piece.length <= all_sizes[piece.source]
            used.append(piece.source)
    intermediates = set(range(plan.parts, plan.parts + len(plan.intermediates)))
    assert intermediates <= set(used)  # no intermediate is composed for nothing
    data = contents(sizes)
    assert materialize(plan, data) == b"".join(data)
    assert plan.output.size == sum(sizes)
    levels = plan.levels()
    assert sorted(k for level in levels for k in level) == list(range(len(plan.intermediates)))
    assert [plan.intermediates[level[0]].level for level in levels] == list(range(1, len(levels) + 1))


def grouped_parts(plan: ComposePlan) -> set[int]:
    """Parts that are copied twice (into an intermediate first)."""
    return {p.source for blob in plan.intermediates for p in blob.blocks if p.source < plan.parts}


# -- cases ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [[], [0], [0, 0, 0]])
def test_nothing_to_copy_gives_an_output_of_no_blocks(sizes: list[int]) -> None:
    plan = plan_compose(sizes, header=True, block_bytes=4, max_blocks=2)
    assert plan.output.blocks == () and plan.intermediates == ()
    check(plan, sizes, header=True, block=4, limit=2)


def test_one_part_is_one_block() -> None:
    plan = plan_compose([7], block_bytes=10, max_blocks=2)
    assert [(p.source, p.offset, p.length) for p in plan.output.blocks] == [(0, 0, 7)]
    assert plan.intermediates == ()


@pytest.mark.parametrize(("size", "cuts"), [
    (9, [(0, 9)]), (10, [(0, 10)]), (11, [(0, 10), (10, 1)]),
    (20, [(0, 10), (10, 10)]), (21, [(0, 10), (10, 10), (20, 1)]), (29, [(0, 10), (10, 10), (20, 9)]),
])
def test_a_part_bigger_than_a_block_is_cut_exactly_at_block_boundaries(size: int, cuts: list[tuple[int, int]]) -> None:
    plan = plan_compose([size], header=True, block_bytes=10, max_blocks=10)
    assert [(p.offset, p.length) for p in plan.output.blocks] == cuts
    check(plan, [size], header=True, block=10, limit=10)


def test_exactly_the_limit_needs_no_intermediate_and_one_more_groups_just_two_parts() -> None:
    limit = 10
    for header, parts in ((True, limit - 1), (False, limit)):
        plan = plan_compose([1] * parts, header=header, block_bytes=4, max_blocks=limit)
        assert plan.intermediates == () and len(plan.output.blocks) == parts
    for header, parts in ((True, limit), (False, limit + 1)):
        sizes = [1] * parts
        plan = plan_compose(sizes, header=header, block_bytes=4, max_blocks=limit)
        check(plan, sizes, header=header, block=4, limit=limit)
        assert len(plan.intermediates) == 1 and grouped_parts(plan) == {0, 1}
        assert (1 if header else 0) + len(plan.output.blocks) == limit


def test_the_real_limit_with_a_header_and_50000_parts() -> None:
    """50,000 parts + the header are one block too many: two parts are composed first."""
    sizes = [100] * MAX_BLOCKS
    plan = plan_compose(sizes, header=True)
    assert len(plan.intermediates) == 1 and grouped_parts(plan) == {0, 1}
    assert 1 + len(plan.output.blocks) == MAX_BLOCKS
    assert [p.source for p in plan.output.blocks[:2]] == [MAX_BLOCKS, 2]  # order kept


def test_120000_tiny_parts_at_the_real_limits() -> None:
    sizes = [i % 50 for i in range(120_000)]  # some empty
    plan = plan_compose(sizes, header=True, block_bytes=MAX_BLOCK_BYTES, max_blocks=MAX_BLOCKS)
    assert 1 + len(plan.output.blocks) <= MAX_BLOCKS
    assert all(len(blob.blocks) <= MAX_BLOCKS for blob in plan.intermediates)
    assert len(plan.intermediates) <= 3  # runs of up to 50,000 parts: a handful of blobs
    ranges = []  # the parts in order, each whole, once
    for piece in plan.output.blocks:
        if piece.source < plan.parts:
            ranges.append(piece.source)
        else:
            ranges += [p.source for p in plan.intermediates[piece.source - plan.parts].blocks]
    assert ranges == [i for i, size in enumerate(sizes) if size]


def test_deep_hierarchy_with_a_small_limit() -> None:
    sizes = [1 + i % 3 for i in range(1000)]
    plan = plan_compose(sizes, header=True, block_bytes=1500, max_blocks=4)
    check(plan, sizes, header=True, block=1500, limit=4)
    assert len(plan.levels()) >= 3


def test_parts_that_never_share_a_block_are_grouped_and_recut() -> None:
    """Parts of 6 bytes, blocks of 10: no two fit one block, but four of them composed into a
    24-byte blob are 3 blocks instead of 4."""
    sizes = [6] * 5
    plan = plan_compose(sizes, block_bytes=10, max_blocks=4)
    check(plan, sizes, header=False, block=10, limit=4)
    assert len(plan.output.blocks) == 4


def test_an_output_too_big_for_one_blob_is_an_error() -> None:
    with pytest.raises(TooBigError, match="do not fit one blob of 4 blocks"):
        plan_compose([10] * 5, block_bytes=10, max_blocks=4)
    with pytest.raises(TooBigError):
        plan_compose([41], block_bytes=10, max_blocks=4)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="block size"):
        plan_compose([1], block_bytes=0)
    with pytest.raises(ValueError, match="block size"):
        plan_compose([1], block_bytes=MAX_BLOCK_BYTES + 1)
    with pytest.raises(ValueError, match="at least 2 blocks"):
        plan_compose([1], max_blocks=1)


def test_block_size_grows_only_when_the_output_needs_it() -> None:
    assert block_size_for(10 * 2**20 * 25_000, 4 * 2**20) == 16 * 2**20  # 250 GB in 25,000-block half
    assert block_size_for(1000, 4 * 2**20) == 4 * 2**20
    assert block_size_for(10**20, 4 * 2**20) == MAX_BLOCK_BYTES  # capped: plan_compose then refuses


# -- properties ----------------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), max_size=60), header=st.booleans(),
       block=st.integers(1, 12), limit=st.integers(2, 7))
def test_any_plan_is_valid_and_fits_when_half_the_blocks_are_enough(
        sizes: list[int], header: bool, block: int, limit: int) -> None:
    budget = limit - (1 if header else 0)
    needed = math.ceil(sum(sizes) / block)
    try:
        plan = plan_compose(sizes, header=header, block_bytes=block, max_blocks=limit)
    except TooBigError:
        assert 2 * needed + 1 > budget, "refused an output that fits in half the blocks"
        return
    check(plan, sizes, header=header, block=block, limit=limit)
    direct = sum(math.ceil(s / block) for s in sizes)
    if direct <= budget:
        assert plan.intermediates == ()  # nothing is copied twice when it need not be


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=300), st.integers(3, 12))
def test_tiny_parts_group_no_more_than_needed_at_the_first_level(sizes: list[int], limit: int) -> None:
    """Parts that all fit one block together: the first level groups only enough of them."""
    plan = plan_compose(sizes, block_bytes=10**6, max_blocks=limit)
    check(plan, sizes, header=False, block=10**6, limit=limit)
    if len(sizes) <= limit:
        assert plan.intermediates == ()
    elif len(sizes) <= limit * limit - limit + 1:  # one level suffices
        first = [b for b in plan.intermediates if b.level == 1]
        assert sum(len(b.blocks) - 1 for b in first) == len(sizes) - limit


# -- the download path: blocks assembled from as many parts as they take -------------------------
@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), max_size=60), block=st.integers(1, 12))
def test_assembled_blocks_are_full_but_the_last_and_hold_the_parts_in_order(
        sizes: list[int], block: int) -> None:
    blocks = plan_assembled(sizes, block_bytes=block, max_blocks=10**6)
    assert len(blocks) == math.ceil(sum(sizes) / block)
    lengths = [sum(p.length for p in b) for b in blocks]
    assert all(length == block for length in lengths[:-1]) and all(0 < n <= block for n in lengths)
    data = contents(sizes)
    assert b"".join(data[p.source][p.offset:p.offset + p.length] for b in blocks for p in b) == b"".join(data)


def test_50001_tiny_parts_make_one_downloaded_block() -> None:
    blocks = plan_assembled([5] * (MAX_BLOCKS + 1), header=True, block_bytes=16 * 2**20)
    assert len(blocks) == 1 and len(blocks[0]) == MAX_BLOCKS + 1


def test_assembled_blocks_past_the_limit_are_an_error() -> None:
    with pytest.raises(TooBigError, match="do not fit one blob of 3 blocks"):
        plan_assembled([10, 10, 1], header=True, block_bytes=10, max_blocks=3)
