"""Planning: byte ranges, row groups, shards, groups, and the boundary chain check."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serverless_score.errors import BoundaryError
from serverless_score.planning.partition import (
    DEFAULT_CHUNK_BYTES,
    Link,
    chain_repairs,
    choose_task_count,
    even_cuts,
    exact_begins,
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
def _links(ranges: list[tuple[int, int]], reports: dict[int, tuple[int, int]],
           pins: dict[int, int] | None = None, file_index: int = 0, first: int = 0) -> list[Link]:
    pins = pins or {}
    return [Link(first + i, file_index, start, stop, pins.get(first + i),
                 *reports.get(first + i, (None, None)))
            for i, (start, stop) in enumerate(ranges)]


RANGES = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]


def test_chain_that_meets_has_no_repairs() -> None:
    links = _links(RANGES, {0: (5, 12), 1: (12, 25), 2: (25, 33), 3: (33, 45), 4: (45, 50)})
    assert exact_begins(links) == {0: 5, 1: 12, 2: 25, 3: 33, 4: 45}
    assert chain_repairs(links) == []


def test_a_wrong_guess_is_repaired_and_the_task_after_it_waits_for_the_rerun() -> None:
    links = _links(RANGES[:3], {0: (5, 12), 1: (15, 22), 2: (22, 30)})
    assert exact_begins(links) == {0: 5, 1: 12}  # task 2 meets task 1, whose begin is wrong
    assert chain_repairs(links) == [(1, 12)]
    rerun = _links(RANGES[:3], {0: (5, 12), 1: (12, 21), 2: (22, 30)}, pins={1: 12})
    assert chain_repairs(rerun) == [(2, 21)]
    whole = _links(RANGES[:3], {0: (5, 12), 1: (12, 21), 2: (21, 30)}, pins={1: 12, 2: 21})
    assert chain_repairs(whole) == []


def test_a_field_spanning_many_tasks_is_healed_in_one_step() -> None:
    # task 0's last record runs to byte 43: tasks 1-3 lie inside it, task 4 begins at 43
    guesses = {0: (5, 43), 1: (11, 14), 2: (21, 33), 3: (33, 41), 4: (41, 50)}
    links = _links(RANGES, guesses)
    assert exact_begins(links) == {0: 5, 1: 43, 2: 43, 3: 43, 4: 43}
    assert chain_repairs(links) == [(1, 43), (2, 43), (3, 43), (4, 43)]
    # even before tasks 1-4 finish (or when they failed) their begins are proven
    assert exact_begins(_links(RANGES, {0: (5, 43)})) == {0: 5, 1: 43, 2: 43, 3: 43, 4: 43}
    # re-run pinned, the tasks inside the field own nothing and end where they begin
    pins = {1: 43, 2: 43, 3: 43, 4: 43}
    healed = _links(RANGES, {0: (5, 43), 1: (43, 43), 2: (43, 43), 3: (43, 43), 4: (43, 50)}, pins)
    assert chain_repairs(healed) == []


def test_a_pinned_task_past_its_stop_proves_the_next_begin_before_it_runs() -> None:
    links = _links(RANGES, {0: (5, 12)}, pins={1: 12, 2: 35})
    assert exact_begins(links) == {0: 5, 1: 12, 2: 35, 3: 35}


def test_an_unfinished_task_stops_what_is_certain() -> None:
    links = _links(RANGES, {0: (5, 12), 2: (25, 33), 3: (33, 45)})
    assert exact_begins(links) == {0: 5, 1: 12}
    assert chain_repairs(links) == []
    assert exact_begins([links[0], links[2], links[3]]) == {0: 5}  # task 1 left out: a gap


def test_a_new_file_starts_a_new_chain_and_order_does_not_matter() -> None:
    links = [*_links(RANGES[:2], {0: (5, 12), 1: (12, 20)}),
             *_links([(0, 9), (9, 20)], {2: (3, 11), 3: (13, 20)}, file_index=1, first=2)]
    assert exact_begins(links[::-1]) == {0: 5, 1: 12, 2: 3, 3: 11}
    assert chain_repairs(links[::-1]) == [(3, 11)]


def test_a_pin_the_chain_contradicts_is_an_error_not_a_loop() -> None:
    links = _links(RANGES[:2], {0: (5, 12), 1: (15, 20)}, pins={1: 15})
    with pytest.raises(BoundaryError, match=r"pinned to begin at byte 15.*begin at byte 12"):
        exact_begins(links)


@st.composite
def chains(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int]], int]:
    """True record starts of a file (the first at the header end; the file size as a sentinel),
    and a random cutting of it into task ranges."""
    size = draw(st.integers(1, 120))
    starts = sorted(draw(st.sets(st.integers(0, size - 1), min_size=1, max_size=10)))
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=12))) if size > 1 else []
    bounds = [0, *cuts, size]
    return [*starts, size], list(pairwise(bounds)), draw(st.integers(0, 2**32))


@FAST
@given(chains(), st.data())
def test_repairs_are_never_wrong_and_end_with_a_whole_chain(
        chain: tuple[list[int], list[tuple[int, int]], int], data: st.DataObject) -> None:
    """Play the controller on a model of a file: a task reports its true begin and end when it
    begins right (pinned or a right guess), anything at or past its start otherwise. Some tasks
    have not finished at each step. Whatever is proven is true, repairs never touch a task twice,
    and once every task finishes the repairs end with every task beginning where it must."""
    records, ranges, _ = chain

    def true_begin(i: int) -> int:
        start = ranges[i][0]
        return records[0] if i == 0 else min(r for r in records if r >= start)

    def report(i: int, begin: int) -> tuple[int, int]:
        if begin == true_begin(i):
            return begin, min(r for r in records if r >= max(ranges[i][1], begin))
        return begin, data.draw(st.integers(max(begin, ranges[i][1]), records[-1] + 5))

    def guess(i: int) -> int:
        right = data.draw(st.booleans())
        return true_begin(i) if i == 0 or right else data.draw(
            st.integers(ranges[i][0], records[-1]))

    n = len(ranges)
    pins: dict[int, int] = {}
    reports: dict[int, tuple[int, int]] = {}
    for _ in range(3 * n + 3):
        for i in range(n):  # some unfinished tasks finish (the last round finishes them all)
            if i not in reports and data.draw(st.booleans()):
                reports[i] = report(i, pins.get(i, guess(i)))
        links = _links(ranges, reports, pins)
        for i, begin in exact_begins(links).items():
            assert begin == true_begin(i), (i, begin)
        repairs = chain_repairs(links)
        for i, begin in repairs:
            assert i not in pins, "a pinned task was repaired again"
            pins[i] = begin
            del reports[i]
        if not repairs and len(reports) == n:
            break
    else:
        for i in range(n):
            reports.setdefault(i, report(i, pins.get(i, guess(i))))
        for _ in range(n + 1):
            repairs = chain_repairs(_links(ranges, reports, pins))
            for i, begin in repairs:
                pins[i] = begin
                reports[i] = report(i, begin)
            if not repairs:
                break
    assert chain_repairs(_links(ranges, reports, pins)) == []
    assert [reports[i][0] for i in range(n)] == [true_begin(i) for i in range(n)]
    for i in range(1, n):
        assert reports[i][0] == reports[i - 1][1]
