"""The block scanner behind the range reader, checked against a byte-at-a-time reference.

``_Bounds`` finds record ends from the quote positions and counts records as "all newlines minus
newlines in quoted spans" on a bitmap of 64-bit words, falling back to an exact path for blank
lines and unbalanced quotes. These tests compare every answer it gives with the plain rule read
one byte at a time, on data long enough to cross many words, with quotes, escaped quotes, CRLF
and newlines placed on the word edges, and through the reader with blocks that cut quoted fields.
"""

from __future__ import annotations

import io
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serverless_score.records import RangeReader, RecordFormat, read_header
from serverless_score.records.scan import _Bounds, _popcount_table, _Scratch

PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def reference_ends(data: bytes, csv: bool) -> list[int]:
    """Offsets just past each newline that ends a record (csv: outside quotes)."""
    ends, inside = [], False
    for i, byte in enumerate(data):
        if csv and byte == ord('"'):
            inside = not inside
        elif byte == ord("\n") and not inside:
            ends.append(i + 1)
    return ends


def reference_records(data: bytes, ends: list[int]) -> list[bytes]:
    """The non-blank records of ``data`` cut at ``ends`` (and an unterminated rest)."""
    pieces, start = [], 0
    for end in ends:
        pieces.append(data[start:end])
        start = end
    if start < len(data):
        pieces.append(data[start:])
    return [p for p in pieces if p not in (b"\n", b"\r\n")]


# Well-formed CSV rows (quoted fields with commas, escaped quotes, newlines, CRs) mixed with
# blank lines, and raw noise with stray quotes: long enough to cross several 64-byte words.
_field = st.one_of(
    st.text(alphabet="ab1 ", max_size=12),
    st.text(alphabet='ab,"\n\r', max_size=12).map(lambda v: '"' + v.replace('"', '""') + '"'),
)
_row = st.lists(_field, min_size=1, max_size=4).map(",".join)
_term = st.sampled_from(["\n", "\r\n"])
_line = st.one_of(st.tuples(_row, _term).map("".join), _term)  # a bare terminator: blank line
csv_blocks = st.lists(_line, max_size=60).map(lambda lines: "".join(lines).encode())
noise_blocks = st.text(alphabet='a,"\n\r', max_size=400).map(str.encode)
blocks = st.one_of(csv_blocks, noise_blocks)


def check_block(data: bytes, csv: bool) -> None:
    bounds = _Bounds(data, csv=csv, scratch=_Scratch())
    ends = reference_ends(data, csv)
    assert bounds.last() == (ends[-1] if ends else None)
    for limit in range(len(data) + 2):
        assert bounds.first_at_or_after(limit) == next((e for e in ends if e >= limit), None)
    cuts = list(ends)
    if data.endswith(b"\n") and (not ends or ends[-1] != len(data)):
        cuts.append(len(data))  # the reader's last cut at the end of the file, inside a quote
    for cut in cuts:
        view, count, _ = bounds.records_upto(cut)
        expected = reference_records(data[:cut], [e for e in ends if e <= cut])
        assert isinstance(view, memoryview)
        assert bytes(view) == b"".join(expected)
        assert count == len(expected)


@PROPERTY
@given(blocks, st.booleans())
def test_block_bounds_and_counts_match_the_reference(data: bytes, csv: bool) -> None:
    check_block(data, csv)


@settings(max_examples=100, deadline=None)
@given(csv_blocks)
def test_block_counts_without_numpys_popcount(data: bytes) -> None:
    """numpy < 2 has no ``bitwise_count``: the byte-table popcount gives the same answers."""
    with pytest.MonkeyPatch.context() as m:
        m.delattr(np, "bitwise_count", raising=False)
        check_block(data, csv=True)


def test_popcount_table_agrees_with_bitwise_count() -> None:
    words = np.random.default_rng(0).integers(0, 2**63, size=1000, dtype=np.uint64) * 2 + 1
    words = np.concatenate((words, np.array([0, 2**64 - 1], dtype=np.uint64)))
    expected = [bin(int(w)).count("1") for w in words]
    assert _popcount_table(words.astype("<u8")).tolist() == expected


def test_the_fast_count_is_the_one_used_for_ordinary_data() -> None:
    """Quoted newlines, escaped quotes and CRLF, no blank line: counted on the bitmap, without
    the exact path (which would also give the right answer, only slower)."""
    row = b'1,"say ""hi""\r\nthere",x\r\n2,plain,y\r\n'
    data = row * 50
    bounds = _Bounds(data, csv=True, scratch=_Scratch())
    assert bounds._count(len(data)) == 100
    assert bounds.records_upto(len(data))[1] == 100
    assert bounds.records_upto(len(row))[1] == 2


@pytest.mark.parametrize("at", [61, 62, 63, 64, 65, 127, 128])
@pytest.mark.parametrize("blank", [b"\n", b"\r\n"])
def test_blank_lines_on_word_edges(at: int, blank: bytes) -> None:
    """A blank line whose bytes straddle two 64-bit words of the bitmap is still seen."""
    data = b"x" * (at - 1) + b"\n" + blank + b"y\n"
    for csv in (True, False):
        check_block(data, csv)
        assert _Bounds(data, csv=csv, scratch=_Scratch()).records_upto(len(data))[1] == 2


@pytest.mark.parametrize("at", [0, 1, 62, 63, 64, 65, 126, 127, 128])
def test_quotes_and_newlines_on_word_edges(at: int) -> None:
    """A quoted newline exactly at a word edge, and the quotes around it."""
    data = b"a" * at + b'"\n"\n' + b"b" * 70 + b'\n"x\n\n"\n'
    check_block(data, csv=True)
    assert _Bounds(data, csv=True, scratch=_Scratch()).records_upto(len(data))[1] == 3


# -- through the reader: blocks that cut quoted fields, CRLF, escaped quotes -------------------
def _read_all(data: bytes, block: int, cuts: list[int]) -> tuple[bytes, int, list[tuple[int, int]]]:
    f = io.BytesIO(data)
    fmt = RecordFormat("csv")
    header_end = len(read_header(f, len(data)))
    out, records, spans = [], 0, []
    for start, end in pairwise(cuts):
        reader = RangeReader(f, fmt, start=start, end=end, file_size=len(data),
                             header_end=header_end, block_size=block)
        batches = list(reader)
        out += [b.data for b in batches]
        records += reader.records
        assert reader.records == sum(b.records for b in batches)
        spans.append((reader.begin, reader.end_offset))
    return b"".join(out), records, spans


@pytest.mark.parametrize("block", [5, 16, 63, 64, 65, 100, 1000])
@pytest.mark.parametrize("term", [b"\n", b"\r\n"])
def test_reader_with_quoted_fields_across_blocks(block: int, term: bytes) -> None:
    rows = [b'%d,"note %d, said ""hi""%ssecond line",%s' % (i, i, term, b"x" * (i % 7))
            if i % 3 == 0 else b"%d,plain,%s" % (i, b"y" * (i % 11)) for i in range(200)]
    data = b"id,text,pad" + term + term.join(rows) + term
    ends = reference_ends(data, csv=True)
    expected = reference_records(data, ends)[1:]  # without the header
    size = len(data)
    for cuts in ([0, size], [0, size // 3, 2 * size // 3, size]):
        out, records, spans = _read_all(data, block, cuts)
        assert spans[0][0] == ends[0] and spans[-1][1] == size
        assert all(a[1] == b[0] for a, b in pairwise(spans))
        assert out == b"".join(expected)
        assert records == len(expected) == 200


def test_batches_are_views_not_copies() -> None:
    data = b"h\n" + b"1,2\n" * 1000
    reader = RangeReader(io.BytesIO(data), RecordFormat("csv"), start=0, end=len(data),
                         file_size=len(data), header_end=2)
    (batch,) = list(reader)
    assert isinstance(batch.view, memoryview)
    assert batch.data == bytes(batch.view) == data[2:]
    assert batch.records == 1000
