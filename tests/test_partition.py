"""Planning: byte ranges, row groups, shards, groups, and the boundary chain check."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serverless_score.planning.partition import (
    DEFAULT_CHUNK_BYTES,
    Span,
    anchored_tasks,
    chain_breaks,
    choose_task_count,
    even_cuts,
    pack_groups,
    plan_byte_tasks,
    plan_rowgroup_tasks,
    plan_shards,
)
from serverless_score.planning.tasks import InputFile, Shard, Task

FAST = settings(max_examples=200, deadline=None)


# -- even_cuts ----------------------------------------------------------------------------------
@FAST
@given(st.integers(1, 10**9), st.integers(1, 5000))
def test_even_cuts_split_into_nearly_equal_nonempty_ranges(size: int, pieces: int) -> None:
    cuts = even_cuts(size, pieces)
    assert cuts[0] == 0
    assert cuts[-1] == size
    assert len(cuts) == min(pieces, size) + 1
    lengths = [b - a for a, b in pairwise(cuts)]
    assert min(lengths) >= 1
    assert max(lengths) - min(lengths) <= 1


def test_even_cuts_examples() -> None:
    assert even_cuts(10, 3) == [0, 3, 6, 10]
    assert even_cuts(10, 1) == [0, 10]
    assert even_cuts(2, 5) == [0, 1, 2]  # never more pieces than bytes
    assert even_cuts(7, 0) == [0, 7]  # at least one piece
    assert even_cuts(0, 4) == [0, 0]


# -- byte tasks ---------------------------------------------------------------------------------
def _check_byte_plan(files: list[InputFile], tasks: list[Task]) -> None:
    assert [t.index for t in tasks] == list(range(len(tasks)))
    assert len({t.id for t in tasks}) == len(tasks)
    assert all(t.id == f"t{t.index:05d}" for t in tasks)
    assert all(t.kind == "bytes" and t.pinned_begin is None for t in tasks)
    # file order is kept, and each file's tasks are one contiguous run
    order = [t.file_index for t in tasks]
    assert order == sorted(order)
    for file_index, f in enumerate(files):
        mine = [t for t in tasks if t.file_index == file_index]
        if f.size == 0:
            assert mine == []
            continue
        assert mine, f"file {f.path} has no task"
        assert all(t.path == f.path and t.file_size == f.size for t in mine)
        assert mine[0].start == 0
        assert mine[-1].end == f.size
        for prev, cur in pairwise(mine):
            assert prev.end == cur.start
        assert all(t.start < t.end and t.size == t.end - t.start for t in mine)
    assert sum(t.size for t in tasks) == sum(f.size for f in files)


file_lists = st.lists(st.integers(0, 10**6), min_size=1, max_size=6).map(
    lambda sizes: [InputFile(f"data/part-{i}.csv", size) for i, size in enumerate(sizes)]
)


@FAST
@given(file_lists, st.one_of(
    st.fixed_dictionaries({"chunks": st.integers(1, 300)}),
    st.fixed_dictionaries({"chunk_size": st.integers(5000, 2 * 10**6)}),  # <= 1200 tasks
    st.fixed_dictionaries({"max_parallel": st.integers(1, 64)}),
))
def test_byte_tasks_cover_every_file_exactly(files: list[InputFile], options: dict[str, int]) -> None:
    tasks = plan_byte_tasks(files, **options)
    _check_byte_plan(files, tasks)
    assert plan_byte_tasks(files, **options) == tasks  # deterministic
    assert [t.to_dict() for t in plan_byte_tasks(files, **options)] == [t.to_dict() for t in tasks]


@FAST
@given(st.integers(1, 10**7), st.integers(1, 500))
def test_chunks_gives_that_many_tasks_for_one_big_enough_file(size: int, chunks: int) -> None:
    files = [InputFile("big.csv", size)]
    tasks = plan_byte_tasks(files, chunks=chunks)
    _check_byte_plan(files, tasks)
    assert len(tasks) == min(chunks, size)


@FAST
@given(st.data(), st.integers(1, 10**7))
def test_chunk_size_on_one_file(data: st.DataObject, size: int) -> None:
    chunk_size = data.draw(st.integers(max(1, size // 500), 2 * size))  # <= ~500 tasks
    tasks = plan_byte_tasks([InputFile("a.csv", size)], chunk_size=chunk_size)
    assert len(tasks) == math.ceil(size / chunk_size)
    assert max(t.size for t in tasks) <= chunk_size


def test_default_task_count_rounds_up_to_max_parallel() -> None:
    size = 200 * 10**6  # four ~64 MB pieces
    assert choose_task_count(size, chunk_size=None, chunks=None, max_parallel=1) == 4
    assert choose_task_count(size, chunk_size=None, chunks=None, max_parallel=3) == 6
    assert choose_task_count(10, chunk_size=None, chunks=None, max_parallel=8) == 8
    assert choose_task_count(0, chunk_size=None, chunks=None, max_parallel=1) == 1
    assert choose_task_count(size, chunk_size=10**8, chunks=None, max_parallel=3) == 2
    assert choose_task_count(size, chunk_size=None, chunks=5, max_parallel=3) == 5
    assert len(plan_byte_tasks([InputFile("a", size)], max_parallel=3)) == 6
    assert len(plan_byte_tasks([InputFile("a", DEFAULT_CHUNK_BYTES)])) == 1


def test_files_never_share_a_task() -> None:
    files = [InputFile("a.csv", 10), InputFile("b.csv", 0), InputFile("c.csv", 1000)]
    tasks = plan_byte_tasks(files, chunks=1)
    _check_byte_plan(files, tasks)
    assert [(t.path, t.start, t.end) for t in tasks] == [("a.csv", 0, 10), ("c.csv", 0, 1000)]
    assert [t.file_index for t in tasks] == [0, 2]


def test_byte_tasks_balance_across_files() -> None:
    files = [InputFile("a", 100), InputFile("b", 300)]
    tasks = plan_byte_tasks(files, chunks=4)
    assert [(t.path, t.start, t.end) for t in tasks] == [
        ("a", 0, 100), ("b", 0, 100), ("b", 100, 200), ("b", 200, 300),
    ]


def test_no_files_or_only_empty_files_gives_no_tasks() -> None:
    assert plan_byte_tasks([]) == []
    assert plan_byte_tasks([InputFile("a", 0), InputFile("b", 0)]) == []


def test_task_round_trip_and_description() -> None:
    task = Task(index=3, kind="bytes", path="a.csv", start=10, end=20, size=10, file_size=99)
    pinned = task.pinned(15)
    assert pinned.pinned_begin == 15 and task.pinned_begin is None
    assert pinned.id == task.id == "t00003"
    assert Task.from_dict(pinned.to_dict()) == pinned
    assert pinned.describe() == "a.csv bytes 10..20 (from byte 15)"
    shard = plan_shards(2, 10)[1]
    assert Task.from_dict(shard.to_dict()) == shard
    assert shard.describe() == "shard 1/2 bins 5..9"


# -- row groups ---------------------------------------------------------------------------------
parquet_files = st.lists(
    st.lists(st.tuples(st.integers(1, 10**6), st.integers(0, 10**4)), max_size=12),
    min_size=1, max_size=4,
).map(lambda files: [
    InputFile(f"p{i}.parquet", sum(b for b, _ in groups) + 8,
              tuple(b for b, _ in groups), tuple(r for _, r in groups))
    for i, groups in enumerate(files)
])


@FAST
@given(parquet_files, st.one_of(
    st.fixed_dictionaries({"chunks": st.integers(1, 50)}),
    st.fixed_dictionaries({"chunk_size": st.integers(1, 5 * 10**6)}),
    st.fixed_dictionaries({"max_parallel": st.integers(1, 16)}),
))
def test_rowgroup_tasks_cover_every_row_group_once(files: list[InputFile],
                                                    options: dict[str, int]) -> None:
    tasks = plan_rowgroup_tasks(files, **options)
    assert [t.index for t in tasks] == list(range(len(tasks)))
    assert all(t.kind == "rowgroups" for t in tasks)
    assert [t.file_index for t in tasks] == sorted(t.file_index for t in tasks)
    for file_index, f in enumerate(files):
        groups = f.row_group_bytes or ()
        mine = [t for t in tasks if t.file_index == file_index]
        if not groups:
            assert mine == []
            continue
        assert all(t.path == f.path and t.file_size == f.size for t in mine)
        assert mine[0].start == 0 and mine[-1].end == len(groups)
        for prev, cur in pairwise(mine):
            assert prev.end == cur.start
        for t in mine:
            assert t.start < t.end
            assert t.size == sum(groups[t.start : t.end])
            assert t.rows_hint == sum((f.row_group_rows or ())[t.start : t.end])
    assert plan_rowgroup_tasks(files, **options) == tasks


def test_rowgroup_tasks_examples() -> None:
    eight = InputFile("a.parquet", 800, (100,) * 8, (10,) * 8)
    tasks = plan_rowgroup_tasks([eight], chunks=4)
    assert [(t.start, t.end, t.size, t.rows_hint) for t in tasks] == [
        (0, 2, 200, 20), (2, 4, 200, 20), (4, 6, 200, 20), (6, 8, 200, 20),
    ]
    # a row group is never split: one group, one task, however many chunks are asked for
    one = InputFile("b.parquet", 500, (500,), (7,))
    assert [(t.start, t.end) for t in plan_rowgroup_tasks([one], chunks=10)] == [(0, 1)]
    # a task never spans two files
    tasks = plan_rowgroup_tasks([one, eight], chunks=1)
    assert [(t.path, t.start, t.end) for t in tasks] == [("b.parquet", 0, 1), ("a.parquet", 0, 8)]
    assert plan_rowgroup_tasks([InputFile("e.parquet", 8, ())]) == []


# -- shards -------------------------------------------------------------------------------------
@FAST
@given(st.data(), st.integers(1, 300))
def test_shards_cover_every_bin_exactly_once(data: st.DataObject, shards: int) -> None:
    bins = data.draw(st.integers(shards, 5000))
    tasks = plan_shards(shards, bins)
    assert len(tasks) == shards
    assert [t.index for t in tasks] == list(range(shards))
    seen: list[int] = []
    for i, task in enumerate(tasks):
        shard = task.shard
        assert shard is not None and task.kind == "shard"
        assert (shard.index, shard.count) == (i, shards)
        assert shard.bin_start <= shard.bin_end
        seen.extend(range(shard.bin_start, shard.bin_end + 1))
        assert shard.env() == {
            "SHARD_INDEX": str(i), "SHARD_COUNT": str(shards),
            "BIN_START": str(shard.bin_start), "BIN_END": str(shard.bin_end),
        }
    assert seen == list(range(bins))  # every bin once, in contiguous ascending ranges
    widths = [t.shard.bin_end - t.shard.bin_start + 1 for t in tasks if t.shard]
    assert max(widths) - min(widths) <= 1


def test_shard_examples() -> None:
    assert [t.shard for t in plan_shards(3, 10)] == [
        Shard(0, 3, 0, 2), Shard(1, 3, 3, 5), Shard(2, 3, 6, 9),
    ]
    assert [t.shard for t in plan_shards(1, 1)] == [Shard(0, 1, 0, 0)]
    with pytest.raises(ValueError, match="bins"):
        plan_shards(5, 4)


# -- groups -------------------------------------------------------------------------------------
@FAST
@given(st.integers(0, 200), st.integers(-2, 50))
def test_pack_groups_keeps_order_and_sizes(n: int, per: int) -> None:
    tasks = [Task(index=i, kind="shard") for i in range(n)]
    groups = pack_groups(tasks, per)
    assert [t for g in groups for t in g] == tasks
    size = max(1, per)
    assert len(groups) == math.ceil(n / size)
    assert all(len(g) == size for g in groups[:-1])
    assert all(1 <= len(g) <= size for g in groups)


# -- the boundary chain -------------------------------------------------------------------------
def test_chain_that_meets_has_no_breaks() -> None:
    spans = [Span(0, 0, 5, 20), Span(1, 0, 20, 40), Span(2, 0, 40, 50)]
    assert anchored_tasks(spans, set()) == {0, 1, 2}
    assert chain_breaks(spans, {0, 1, 2}) == []


def test_a_wrong_guess_is_a_break_with_the_right_begin() -> None:
    spans = [Span(0, 0, 5, 20), Span(1, 0, 18, 41), Span(2, 0, 41, 50)]
    anchored = anchored_tasks(spans, set())
    assert anchored == {0}  # task 2 meets task 1, but task 1's begin is not known to be right
    assert chain_breaks(spans, anchored) == [(1, 20)]
    # the repair: task 1 re-run from byte 20 and pinned; task 2 must now meet its new end
    spans[1] = Span(1, 0, 20, 40)
    anchored = anchored_tasks(spans, {1})
    assert anchored == {0, 1}
    assert chain_breaks(spans, anchored) == [(2, 40)]
    spans[2] = Span(2, 0, 40, 50)
    anchored = anchored_tasks(spans, {1, 2})
    assert anchored == {0, 1, 2}
    assert chain_breaks(spans, anchored) == []


def test_only_breaks_after_an_anchored_task_are_reported() -> None:
    spans = [Span(0, 0, 0, 10), Span(1, 0, 12, 30), Span(2, 0, 33, 40)]
    assert chain_breaks(spans, anchored_tasks(spans, set())) == [(1, 10)]
    # with every task taken as anchored, both mismatches show
    assert chain_breaks(spans, {0, 1, 2}) == [(1, 10), (2, 30)]


def test_a_new_file_starts_a_new_chain() -> None:
    spans = [Span(0, 0, 4, 10), Span(1, 1, 7, 20), Span(2, 1, 25, 30), Span(3, 2, 0, 9)]
    anchored = anchored_tasks(spans, set())
    assert anchored == {0, 1, 3}  # first task of each file
    assert chain_breaks(spans, anchored) == [(2, 20)]


def test_pinned_tasks_are_anchored_and_order_does_not_matter() -> None:
    spans = [Span(2, 0, 30, 40), Span(0, 0, 0, 10), Span(1, 0, 12, 30)]
    assert anchored_tasks(spans, {1}) == {0, 1, 2}
    assert chain_breaks(spans, {0}) == [(1, 10)]


@FAST
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), min_size=1, max_size=30))
def test_a_chain_that_meets_everywhere_is_anchored_everywhere(
    steps: list[tuple[int, int]],
) -> None:
    spans: list[Span] = []
    file_index, pos = 0, 0
    for i, (new_file, length) in enumerate(steps):
        if i and new_file == 0:
            file_index, pos = file_index + 1, 3  # another file, its data after a header
        spans.append(Span(i, file_index, pos, pos + length))
        pos += length
    anchored = anchored_tasks(spans, set())
    assert anchored == set(range(len(spans)))
    assert chain_breaks(spans, anchored) == []
    # move one begin: exactly that task breaks (unless it is the first of its file)
    k = len(spans) // 2
    moved = [Span(s.task_index, s.file_index, s.begin + 1, s.end) if s.task_index == k else s
             for s in spans]
    expected = [] if k == 0 or spans[k - 1].file_index != spans[k].file_index else [(k, spans[k].begin)]
    assert chain_breaks(moved, anchored_tasks(moved, set())) == expected
