"""Property tests of the exactly-once record reader (``serverless_score.records``).

Each test builds a file whose records it knows (it generated them, with their byte offsets; for
malformed CSV a plain byte-at-a-time reference reader says what they are), cuts it into byte
ranges, and plays the controller: scan every range, look for boundary breaks with
``chain_repairs``, re-scan broken tasks with ``pinned_begin``, and repeat until
the chain is whole. Then every record must come out exactly once, in order, in the task whose
range holds its first byte.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serverless_score.errors import BoundaryError
from serverless_score.planning.partition import Link, chain_repairs, plan_byte_tasks
from serverless_score.planning.tasks import InputFile
from serverless_score.records import (
    DEFAULT_BLOCK,
    RangeReader,
    RecordFormat,
    read_header,
    scan_range,
)
from serverless_score.records.header import first_record_end
from serverless_score.records.scan import _csv_boundaries, _quote_anchor

CSV = RecordFormat("csv")
LINES = RecordFormat("lines")
FASTQ_PATTERN = rb"@[^\n]*\n[ACGTN]*\n\+[^\n]*\n[^\n]*\n"
FASTQ = RecordFormat("regex", FASTQ_PATTERN)

PROPERTY = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# -- generated files whose records are known ----------------------------------------------------
@dataclass(frozen=True)
class Record:
    offset: int  # where its first byte is in the file
    data: bytes  # as the reader must emit it: the raw bytes, always ending in "\n"


@dataclass(frozen=True)
class Sample:
    data: bytes
    records: tuple[Record, ...]
    rows: tuple[tuple[str, ...], ...] = ()  # CSV only: the fields of each data row


def _assemble(lines: list[bytes | None], terms: list[bytes], final_newline: bool,
              header: bytes | None = None) -> tuple[bytes, tuple[Record, ...]]:
    """Join lines (``None`` = a blank line) with their terminators; return the file and the
    non-blank lines after the header as records (the last one gets "\\n" if the file lacks it)."""
    all_lines = ([header] if header is not None else []) + lines
    out = bytearray()
    records: list[Record] = []
    for i, line in enumerate(all_lines):
        last = i == len(all_lines) - 1
        term = b"" if last and not final_newline else terms[i % len(terms)]
        offset = len(out)
        out += (line or b"") + term
        if line is None or (header is not None and i == 0):
            continue
        records.append(Record(offset, line + (term or b"\n")))
    return bytes(out), tuple(records)


TERMS = st.sampled_from([[b"\n"], [b"\r\n"], [b"\n", b"\r\n", b"\r\n"]])

# Unquoted fields: no quote, comma or line end. Quoted fields: anything, quotes doubled.
_unquoted = st.text(alphabet=st.sampled_from(list("ab1 -;é")), max_size=5)
_quoted = st.one_of(
    st.text(alphabet=st.sampled_from(list('ab,"\n\r é')), max_size=8),
    st.text(alphabet=st.sampled_from(list(',"\n\r')), max_size=6),  # no quote role to read
)


@st.composite
def csv_fields(draw: st.DrawFn) -> tuple[str, bytes]:
    if draw(st.booleans()):
        value = draw(_quoted)
        return value, ('"' + value.replace('"', '""') + '"').encode()
    value = draw(_unquoted)
    return value, value.encode()


@st.composite
def csv_rows(draw: st.DrawFn) -> tuple[tuple[str, ...], bytes]:
    fields = draw(st.lists(csv_fields(), min_size=1, max_size=4))
    raw = b",".join(encoded for _, encoded in fields)
    if raw == b"":  # one empty unquoted field is a blank line, not a record: quote it
        raw = b'""'
    return tuple(value for value, _ in fields), raw


@st.composite
def csv_files(draw: st.DrawFn) -> Sample:
    _, header = draw(csv_rows())
    items = draw(st.lists(st.one_of(csv_rows(), st.just(None)), max_size=12))
    lines = [None if item is None else item[1] for item in items]
    data, records = _assemble(lines, draw(TERMS), draw(st.booleans()), header=header)
    rows = tuple(item[0] for item in items if item is not None)
    return Sample(data, records, rows)


@st.composite
def jsonl_files(draw: st.DrawFn) -> Sample:
    values = st.one_of(
        st.integers(-1000, 1000),
        st.text(alphabet=st.sampled_from(list('ab"\n\r\\{} é')), max_size=6),
        st.booleans(),
    )
    objects = st.dictionaries(st.sampled_from(["id", "x", "text"]), values, max_size=3)
    items = draw(st.lists(st.one_of(objects, st.just(None)), max_size=15))
    lines = [None if o is None else json.dumps(o, ensure_ascii=False).encode() for o in items]
    data, records = _assemble(lines, draw(TERMS), draw(st.booleans()))
    return Sample(data, records)


@st.composite
def fastq_files(draw: st.DrawFn) -> Sample:
    """4-line FASTQ records whose quality lines often start with '@' (like a header line)."""
    count = draw(st.integers(0, 8))
    lines: list[bytes | None] = []
    for i in range(count):
        n = draw(st.integers(1, 8))
        seq = draw(st.text(alphabet="ACGTN", min_size=n, max_size=n))
        qual = draw(st.text(alphabet=st.sampled_from(list("@!I+#5")), min_size=n, max_size=n))
        if draw(st.booleans()):
            qual = "@" + qual[1:]
        plus = draw(st.sampled_from(["+", f"+r{i}"]))
        lines.append(f"@r{i} x@y\n{seq}\n{plus}\n{qual}".encode())
    final_newline = draw(st.booleans()) or count == 0
    data, records = _assemble(lines, [b"\n"], final_newline)
    if final_newline and data and draw(st.booleans()):
        data += b"\n"  # trailing whitespace after the last record is allowed
    return Sample(data, records)


BLOCK_PATTERN = rb"BEGIN\n(?:[^\n]*\n)*?END\n"
BLOCKS_FMT = RecordFormat("regex", BLOCK_PATTERN)


@st.composite
def begin_end_files(draw: st.DrawFn) -> Sample:
    """Multi-line records 'BEGIN ... END' whose payload lines may read 'BEGIN': a range that starts
    at such a line matches the pattern there, so the first guess can be wrong (and is repaired)."""
    count = draw(st.integers(0, 6))
    payload = st.lists(st.sampled_from(["BEGIN", "x", "", "BEGIN x"]), max_size=4)
    lines: list[bytes | None] = [
        "\n".join(["BEGIN", *draw(payload), "END"]).encode() for _ in range(count)
    ]
    data, records = _assemble(lines, [b"\n"], draw(st.booleans()) or count == 0)
    return Sample(data, records)


@st.composite
def cut_points(draw: st.DrawFn, size: int) -> list[int]:
    """0 = c0 < c1 < ... < cn = size: random cuts, or every k bytes (k down to 1)."""
    if size == 0:
        return [0, 0]
    if draw(st.booleans()):
        step = draw(st.integers(1, max(1, size)))
        inner = list(range(step, size, step))
    else:
        inner = sorted(draw(st.sets(st.integers(1, size - 1), max_size=12))) if size > 1 else []
    return [0, *inner, size]


BLOCKS = st.sampled_from([1, 2, 3, 7, 64, DEFAULT_BLOCK])


# -- the controller, played here ----------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    begin: int
    end: int
    records: int
    data: bytes
    batch_records: int


def _scan(f: io.BytesIO, fmt: RecordFormat, size: int, header_end: int, start: int, end: int,
          pinned: int | None, block: int) -> Outcome:
    reader = RangeReader(f, fmt, start=start, end=end, file_size=size, header_end=header_end,
                         pinned_begin=pinned, block_size=block)
    batches = list(reader)
    for batch in batches:  # (a batch of only blank lines comes out empty; the runner skips it)
        assert batch.data.endswith(b"\n") or batch.data == b""
        assert (batch.records == 0) == (batch.data == b"")
        if batch.items is not None:
            assert b"".join(batch.items) == batch.data
            assert len(batch.items) == batch.records
    return Outcome(reader.begin, reader.end_offset, reader.records,
                   b"".join(b.data for b in batches), sum(b.records for b in batches))


def run_tasks(files: list[bytes], tasks: list[tuple[int, int, int]], fmt: RecordFormat,
              block: int = DEFAULT_BLOCK) -> tuple[list[Outcome], int]:
    """Scan ``(file_index, start, end)`` tasks and repair boundary breaks the way the controller
    does. Returns each task's final outcome and how many re-scans the repairs took."""
    handles = [io.BytesIO(data) for data in files]
    header_ends = [
        len(read_header(f, len(data))) if fmt.has_header else 0
        for f, data in zip(handles, files, strict=True)
    ]
    pinned: dict[int, int] = {}

    def scan(i: int) -> Outcome:
        file_index, start, end = tasks[i]
        return _scan(handles[file_index], fmt, len(files[file_index]), header_ends[file_index],
                     start, end, pinned.get(i), block)

    outcomes = [scan(i) for i in range(len(tasks))]
    rescans = 0
    for _ in range(len(tasks) + 1):
        links = [Link(i, tasks[i][0], tasks[i][1], tasks[i][2], pinned.get(i), o.begin, o.end)
                 for i, o in enumerate(outcomes)]
        breaks = chain_repairs(links)
        if not breaks:
            return outcomes, rescans
        for i, begin in breaks:
            assert i not in pinned, "a repaired task broke again"
            pinned[i] = begin
            outcomes[i] = scan(i)
            rescans += 1
    raise AssertionError("the repair loop did not converge")


def check_exactly_once(sample: Sample, cuts: list[int], fmt: RecordFormat,
                       block: int = DEFAULT_BLOCK) -> tuple[list[Outcome], int]:
    size = len(sample.data)
    tasks = [(0, a, b) for a, b in pairwise(cuts)]
    outcomes, rescans = run_tasks([sample.data], tasks, fmt, block)
    # every record once, in order
    assert b"".join(o.data for o in outcomes) == b"".join(r.data for r in sample.records)
    assert sum(o.records for o in outcomes) == len(sample.records)
    # the rule: a record belongs to the task whose range holds its first byte
    for (_, start, end), outcome in zip(tasks, outcomes, strict=True):
        mine = [r.data for r in sample.records if start <= r.offset < end]
        assert outcome.data == b"".join(mine)
        assert outcome.records == outcome.batch_records == len(mine)
    # consecutive tasks meet, and the last one ends at the end of the file
    for prev, cur in pairwise(outcomes):
        assert prev.end == cur.begin
    assert outcomes[-1].end == size
    return outcomes, rescans


# -- the properties -----------------------------------------------------------------------------
@PROPERTY
@given(st.data(), csv_files(), BLOCKS)
def test_csv_every_record_exactly_once(data: st.DataObject, sample: Sample, block: int) -> None:
    cuts = data.draw(cut_points(len(sample.data)))
    outcomes, _ = check_exactly_once(sample, cuts, CSV, block)
    # and the records are the CSV the generator meant (checked with Python's csv module)
    parsed = list(csv.reader(io.StringIO(b"".join(o.data for o in outcomes).decode(), newline="")))
    assert [tuple(row) for row in parsed if row] == list(sample.rows)


def reference_csv(data: bytes) -> Sample:
    """The rule read one byte at a time: a newline ends a record unless an odd number of quotes
    came before it in the record; the first record is the header, blank lines are dropped, an
    unterminated last record gets a newline. Slow and plain, independent of the numpy code."""
    pieces: list[tuple[int, bytes]] = []
    start, inside = 0, False
    for i, byte in enumerate(data):
        if byte == ord('"'):
            inside = not inside
        elif byte == ord("\n") and not inside:
            pieces.append((start, data[start : i + 1]))
            start = i + 1
    if start < len(data):
        pieces.append((start, data[start:]))
    records = []
    for offset, piece in pieces[1:]:
        line = piece if piece.endswith(b"\n") else piece + b"\n"
        if line not in (b"\n", b"\r\n"):
            records.append(Record(offset, line))
    return Sample(data, tuple(records))


@PROPERTY
@given(st.data(), st.text(alphabet='a,"\n\r', max_size=60).map(str.encode),
       BLOCKS)
def test_csv_with_stray_quotes_reads_as_one_scan_would(data: st.DataObject, raw: bytes,
                                                       block: int) -> None:
    """Malformed CSV (quotes in unquoted fields, unbalanced quotes) fools the quote-role guess in
    either direction; the chain check still makes the tasks read exactly what one sequential scan
    of the whole file reads."""
    sample = reference_csv(raw)
    cuts = data.draw(cut_points(len(raw)))
    check_exactly_once(sample, cuts, CSV, block)


@settings(max_examples=100, deadline=None)
@given(csv_files())
def test_generated_csv_is_what_the_csv_module_reads(sample: Sample) -> None:
    """Guards the generator: the file parses to the header and the rows it was built from."""
    rows = [tuple(r) for r in csv.reader(io.StringIO(sample.data.decode(), newline="")) if r]
    assert rows[1:] == list(sample.rows)


@PROPERTY
@given(st.data(), jsonl_files(), BLOCKS)
def test_lines_every_record_exactly_once(data: st.DataObject, sample: Sample, block: int) -> None:
    cuts = data.draw(cut_points(len(sample.data)))
    _, rescans = check_exactly_once(sample, cuts, LINES, block)
    assert rescans == 0  # for lines the first guess is always right


@PROPERTY
@given(st.data(), fastq_files(), BLOCKS)
def test_fastq_every_record_exactly_once(data: st.DataObject, sample: Sample, block: int) -> None:
    cuts = data.draw(cut_points(len(sample.data)))
    outcomes, _ = check_exactly_once(sample, cuts, FASTQ, block)
    text = b"".join(o.data for o in outcomes).decode()
    assert text.count("\n") == 4 * len(sample.records)


@PROPERTY
@given(st.data(), begin_end_files(), BLOCKS)
def test_regex_wrong_guesses_are_repaired(data: st.DataObject, sample: Sample, block: int) -> None:
    cuts = data.draw(cut_points(len(sample.data)))
    check_exactly_once(sample, cuts, BLOCKS_FMT, block)


def test_regex_wrong_guess_example() -> None:
    rec1, rec2 = b"BEGIN\nBEGIN\nx\nEND\n", b"BEGIN\nEND\n"
    data = rec1 + rec2
    f = io.BytesIO(data)
    guess = scan_range(f, BLOCKS_FMT, start=3, end=len(data), file_size=len(data))
    assert guess.begin == 6  # the payload line 'BEGIN' matches the pattern
    records = (Record(0, rec1), Record(len(rec1), rec2))
    _, rescans = check_exactly_once(Sample(data, records), [0, 3, len(data)], BLOCKS_FMT)
    assert rescans == 1


@PROPERTY
@given(csv_files(), st.integers(1, 8))
def test_read_header_with_small_blocks(sample: Sample, block: int) -> None:
    header_end = sample.records[0].offset if sample.records else None
    header = read_header(io.BytesIO(sample.data), len(sample.data), block_size=block)
    assert header == read_header(io.BytesIO(sample.data), len(sample.data))
    assert sample.data.startswith(header)
    if header_end is not None:
        assert len(header) <= header_end
        assert sample.data[len(header):header_end].strip(b"\r\n") == b""  # only blank lines between


@PROPERTY
@given(st.binary(max_size=200) | st.lists(st.sampled_from([b"a", b",", b'"', b'""', b"\n", b"\r\n",
                                                            b"x y"]), max_size=40).map(b"".join))
def test_the_numpy_free_header_scan_ends_where_the_block_scan_does(data: bytes) -> None:
    """``plan`` reads the header without numpy (header.first_record_end); the block scanner's
    quote-aware boundaries (numpy) say where the first record ends all the same."""
    bounds = _csv_boundaries(data)
    assert first_record_end(data) == (int(bounds[0]) if bounds.size else None)


def test_reading_a_header_and_the_cli_itself_do_not_import_numpy() -> None:
    """Every command imports the CLI and ``plan``/``status`` read a CSV header: neither pays
    numpy's import (0.07 s); the block scanner still has it when a worker reads records."""
    code = ("import io, sys; import serverless_score.cli; "
            "from serverless_score.records import read_header; "
            "assert read_header(io.BytesIO(b'a,\"b\\nc\"\\n1,2\\n'), 12) == b'a,\"b\\nc\"\\n'; "
            "print('numpy' in sys.modules, end=' '); "
            "from serverless_score.records import RangeReader; print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


@settings(max_examples=60, deadline=None)
@given(st.lists(csv_files(), min_size=1, max_size=3), st.integers(1, 20))
def test_csv_files_planned_together(samples: list[Sample], chunks: int) -> None:
    """The planner's tasks over several files: each file's records once, in file order."""
    files = [s.data for s in samples]
    planned = plan_byte_tasks([InputFile(f"f{i}.csv", len(d)) for i, d in enumerate(files)],
                              chunks=chunks)
    tasks = [(t.file_index, t.start, t.end) for t in planned]
    outcomes, _ = run_tasks(files, tasks, CSV)
    for file_index, sample in enumerate(samples):
        mine = [o for (fi, _, _), o in zip(tasks, outcomes, strict=True) if fi == file_index]
        if not sample.data:
            assert not mine
            continue
        assert b"".join(o.data for o in mine) == b"".join(r.data for r in sample.records)
        assert mine[-1].end == len(sample.data)


# -- detection is real --------------------------------------------------------------------------
# A quoted field holding only line ends: no quote in it tells an opening quote from a closing one,
# so the guess is "the next line start", here inside the field. Record 1 is at byte 8, its quoted
# newlines at 11 and 12, record 2 at 15.
QUOTED = b'id,text\n1,"\n\n"\n2,z\n'


def test_a_quoted_newline_breaks_the_chain_and_the_break_is_detected() -> None:
    f = io.BytesIO(QUOTED)
    size = len(QUOTED)
    first = scan_range(f, CSV, start=0, end=12, file_size=size)
    second = scan_range(f, CSV, start=12, end=size, file_size=size)
    assert (first.begin, first.end, first.records) == (8, 15, 1)
    assert second.begin == 12  # the guess: just past the first quoted newline, inside the field
    # without the repair, the records would be wrong (a bogus record '"\n2,z\n')
    naive = RangeReader(f, CSV, start=12, end=size, file_size=size, header_end=8)
    assert b"".join(b.data for b in naive) == b'"\n2,z\n'
    links = [Link(0, 0, 0, 12, None, first.begin, first.end),
             Link(1, 0, 12, size, None, second.begin, second.end)]
    assert chain_repairs(links) == [(1, 15)]
    fixed = scan_range(f, CSV, start=12, end=size, file_size=size, pinned_begin=15)
    assert (fixed.begin, fixed.end, fixed.records) == (15, size, 1)
    links[1] = Link(1, 0, 12, size, 15, fixed.begin, fixed.end)
    assert chain_repairs(links) == []


def test_repair_loop_fixes_the_quoted_newline_example() -> None:
    sample = Sample(QUOTED, (Record(8, b'1,"\n\n"\n'), Record(15, b"2,z\n")))
    _, rescans = check_exactly_once(sample, [0, 12, len(QUOTED)], CSV)
    assert rescans == 1


def test_csv_guess_reads_quote_roles() -> None:
    """With text in the quoted field, a quote's neighbours say whether it opens or closes a field,
    so the first guess past a quoted newline is already right (no repair)."""
    data = b'id,text\n1,"x\ny"\n2,z\n'  # record 2 at 16; the quoted newline at 12
    assert scan_range(io.BytesIO(data), CSV, start=12, end=len(data), file_size=len(data)).begin == 16
    sample = Sample(data, (Record(8, b'1,"x\ny"\n'), Record(16, b"2,z\n")))
    _, rescans = check_exactly_once(sample, [0, 12, len(data)], CSV)
    assert rescans == 0


def test_breaks_are_repaired_one_task_after_another() -> None:
    """Several consecutive wrong guesses: each repair anchors the next comparison."""
    row = b'1,"\n\n\n\n"\n'
    data = b"h\n" + row * 3
    records = tuple(Record(2 + i * len(row), row) for i in range(3))
    cuts = [0, 5, 6, 7, 8, 9, 15, 16, len(data)]
    _, rescans = check_exactly_once(Sample(data, records), cuts, CSV)
    assert rescans >= 2


# -- edge cases ---------------------------------------------------------------------------------
def _read(data: bytes, fmt: RecordFormat, start: int, end: int, **kw: int) -> tuple[bytes, int, int, int]:
    f = io.BytesIO(data)
    header_end = len(read_header(f, len(data))) if fmt.has_header else 0
    reader = RangeReader(f, fmt, start=start, end=end, file_size=len(data),
                         header_end=header_end, **kw)
    out = b"".join(b.data for b in reader)
    return out, reader.records, reader.begin, reader.end_offset


SIMPLE = b"a,b\n1,2\n3,4\n"  # records at 4 and 8


def test_empty_range_owns_nothing_and_ends_at_the_next_record() -> None:
    assert _read(SIMPLE, CSV, 5, 5) == (b"", 0, 8, 8)
    assert _read(SIMPLE, CSV, 8, 8) == (b"", 0, 8, 8)
    assert _read(SIMPLE, CSV, 12, 12) == (b"", 0, 12, 12)
    assert _read(SIMPLE, CSV, 0, 0) == (b"", 0, 4, 4)


def test_range_inside_the_header() -> None:
    assert _read(SIMPLE, CSV, 0, 2) == (b"", 0, 4, 4)
    assert _read(SIMPLE, CSV, 1, 3) == (b"", 0, 4, 4)
    # a range that starts inside the header begins at its end, a known boundary
    assert _read(SIMPLE, CSV, 2, 6) == (b"1,2\n", 1, 4, 8)


def test_header_with_a_quoted_newline() -> None:
    data = b'"a\nb",c\n1,2\n'
    f = io.BytesIO(data)
    assert read_header(f, len(data)) == b'"a\nb",c\n'
    assert _read(data, CSV, 0, len(data)) == (b"1,2\n", 1, 8, len(data))
    assert _read(data, CSV, 3, len(data)) == (b"1,2\n", 1, 8, len(data))


def test_one_byte_files() -> None:
    assert _read(b"a", CSV, 0, 1) == (b"", 0, 1, 1)  # a header without a line end
    assert _read(b"\n", CSV, 0, 1) == (b"", 0, 1, 1)
    assert _read(b"a", LINES, 0, 1) == (b"a\n", 1, 0, 1)
    assert _read(b"\n", LINES, 0, 1) == (b"", 0, 0, 1)


def test_empty_file() -> None:
    assert _read(b"", LINES, 0, 0) == (b"", 0, 0, 0)
    assert _read(b"", CSV, 0, 0) == (b"", 0, 0, 0)


@pytest.mark.parametrize("data", [b"a,b\n", b"a,b", b"a,b\r\n", b'"a\n",b\n'])
def test_file_with_only_a_header(data: bytes) -> None:
    f = io.BytesIO(data)
    assert read_header(f, len(data)) == data
    for cut in range(len(data) + 1):
        first = _read(data, CSV, 0, cut)
        second = _read(data, CSV, cut, len(data))
        assert first[:2] == second[:2] == (b"", 0)
        assert second[3] == len(data)


def test_boundary_exactly_at_a_record_start() -> None:
    # the one-byte look-back sees the newline before byte 8, so record 2 starts this range
    assert _read(SIMPLE, CSV, 4, 8) == (b"1,2\n", 1, 4, 8)
    assert _read(SIMPLE, CSV, 8, 12) == (b"3,4\n", 1, 8, 12)
    # one byte later, it belongs to the range before
    assert _read(SIMPLE, CSV, 4, 9) == (b"1,2\n3,4\n", 2, 4, 12)
    assert _read(SIMPLE, CSV, 9, 12) == (b"", 0, 12, 12)


def test_crlf_cut_between_cr_and_lf() -> None:
    data = b"a,b\r\n1,2\r\n\r\n3,4\r\n"  # records at 5 and 12, a blank line at 10
    assert _read(data, CSV, 0, 9) == (b"1,2\r\n", 1, 5, 10)
    assert _read(data, CSV, 9, 11) == (b"", 0, 10, 12)  # the blank line is not a record
    assert _read(data, CSV, 11, len(data)) == (b"3,4\r\n", 1, 12, len(data))


def test_missing_final_newline_is_added() -> None:
    data = b"a,b\r\n1,2\r\n3,4"
    assert _read(data, CSV, 0, len(data)) == (b"1,2\r\n3,4\n", 2, 5, len(data))
    assert _read(data, CSV, 11, len(data)) == (b"", 0, len(data), len(data))
    assert _read(b"x\ny", LINES, 1, 3) == (b"y\n", 1, 2, 3)


def test_blank_lines_are_dropped() -> None:
    data = b"\n\r\n{}\n\n\r\n{}\r\n\n"
    assert _read(data, LINES, 0, len(data)) == (b"{}\n{}\r\n", 2, 0, len(data))
    # whitespace that is not only a line end is a record
    assert _read(b" \n\t\r\n", LINES, 0, 5) == (b" \n\t\r\n", 2, 0, 5)


def test_pinned_begin_overrides_the_guess() -> None:
    data = b'h\n"\n\n"\n3\n'  # records at 2 and 7; byte 4 looks like a line start
    assert _read(data, CSV, 4, len(data))[2] == 4
    assert _read(data, CSV, 4, len(data), pinned_begin=7) == (b"3\n", 1, 7, len(data))


def test_fastq_quality_line_starting_with_at_is_not_a_record_start() -> None:
    rec1 = b"@r1\nACGT\n+\n@III\n"
    rec2 = b"@r2\nAC\n+\n@@\n"
    data = rec1 + rec2
    qual = len(b"@r1\nACGT\n+\n")  # the quality line '@III' starts here
    assert _read(data, FASTQ, qual, len(data)) == (rec2, 1, len(rec1), len(data))
    assert _read(data, FASTQ, 0, qual) == (rec1, 1, 0, len(rec1))
    assert _read(data, FASTQ, 1, len(rec1)) == (b"", 0, len(rec1), len(rec1))


def test_regex_that_does_not_match_is_an_error() -> None:
    data = b"@r1\nACGT\n+\nIIII\nnot fastq\n"
    with pytest.raises(BoundaryError, match="record_pattern does not match"):
        _read(data, FASTQ, 0, len(data))


def test_bad_range_is_refused() -> None:
    f = io.BytesIO(SIMPLE)
    with pytest.raises(ValueError, match="bad range"):
        RangeReader(f, CSV, start=5, end=4, file_size=len(SIMPLE))
    with pytest.raises(ValueError, match="bad range"):
        RangeReader(f, CSV, start=0, end=len(SIMPLE) + 1, file_size=len(SIMPLE))


@pytest.mark.parametrize("block", [1, 2, 5])
def test_records_longer_than_a_block(block: int) -> None:
    row = b'1,"' + b"x\n" * 20 + b'"\n'
    data = b"h\n" + row * 3 + b"2,y\n"
    out, records, begin, end = _read(data, CSV, 0, len(data), block_size=block)
    assert (out, records, begin, end) == (row * 3 + b"2,y\n", 4, 2, len(data))


def test_line_longer_than_the_look_back_block() -> None:
    data = b"a\n" + b"x" * 200_000 + b"\nlast\n"  # the next line start is 200 KB after the cut
    assert _read(data, LINES, 5, len(data)) == (b"last\n", 1, 200_003, len(data))
    assert _read(data, LINES, 0, 5) == (data[:200_003], 2, 0, 200_003)


def test_fastq_record_longer_than_the_guess_window() -> None:
    """A record of a few MB at the start of a range: whatever the first guess, the chain check
    and the repair give every record once."""
    def record(i: int, n: int) -> bytes:
        return b"@r%d\n" % i + b"A" * n + b"\n+\n" + b"@" * n + b"\n"

    recs = [record(0, 100), record(1, 1_500_000), record(2, 5)]
    data = b"".join(recs)
    offsets = [0, len(recs[0]), len(recs[0]) + len(recs[1])]
    sample = Sample(data, tuple(Record(o, r) for o, r in zip(offsets, recs, strict=True)))
    check_exactly_once(sample, [0, 50, offsets[2] + 3, len(data)], FASTQ)


# -- the CSV guess inside long quoted fields ----------------------------------------------------
@pytest.mark.parametrize(("data", "expected"), [
    (b'x,"ab', (0, 2)),       # opens: a field start before, text after
    (b'ab",x', (1, 2)),       # closes: text before, a field end after
    (b'a,""b,', (1, 2)),      # an escaped quote: from outside it would be "" followed by b
    (b'a,"""b', (0, 2)),      # opens, then an escaped quote
    (b'ab"""\n', (1, 2)),     # an escaped quote, then closes
    (b'a,""\nb', None),       # an empty field or an escaped quote before a quoted newline
    (b'\n""",x', None),       # opens + escaped, or escaped + closes
    (b'"ab,', None),          # at the window's start: the run may be longer
    (b'ab,"', None),          # at its end: likewise
])
def test_quote_runs_that_allow_one_reading_anchor_the_guess(
        data: bytes, expected: tuple[int, int] | None) -> None:
    quotes = [i for i, byte in enumerate(data) if byte == ord('"')]
    assert _quote_anchor(data, quotes) == expected


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_tasks_inside_a_long_field_guess_its_end(newline: bytes) -> None:
    """The issue's field (``a,""b""`` lines): its escaped quotes say a task starting inside it is
    inside a field, so the guess is the field's end, also past the first 256 KB window: the tasks
    inside own nothing and meet without a repair."""
    field = b'"' + (b'a,""b""' + newline) * 40_000 + b'end"'
    data = b"id,text,x" + newline + b"r0,t0,0" + newline + b"r1," + field + b",1" + newline \
        + b"r2,t2,2" + newline
    f = io.BytesIO(data)
    after = data.index(b"r2,")
    for start in (data.index(b"r1,") + 20, 1000, 200_000, after - 30):
        result = scan_range(f, CSV, start=start, end=start + 10, file_size=len(data))
        assert (result.begin, result.end, result.records) == (after, after, 0), start
    sample = reference_csv(data)
    _, rescans = check_exactly_once(sample, [0, 5000, 90_000, 200_000, 300_000, len(data)], CSV)
    assert rescans == 0
