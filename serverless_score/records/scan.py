"""Exactly-once reading of one task's byte range.

The rule (DESIGN.md): a record belongs to the task whose byte range ``[start, end)`` contains its
first byte. A task finds its first record by a *guess* (the first line start at or after ``start``,
using a one-byte look-back so a record starting exactly at ``start`` is kept), reads past ``end`` to
finish its last record, and reports

* ``begin``: where it believes its first record starts (the first boundary >= start), and
* ``end``: where the record after its last one starts (the first boundary >= end).

For line-delimited data the guess is always right. For CSV, a newline inside a quoted field looks
like a boundary but is not, so the guess can be wrong; the controller detects that because task
``i``'s ``end`` (read from a known-good boundary) differs from task ``i+1``'s ``begin``, and re-runs
task ``i+1`` with ``pinned_begin = end_i``, and with it every later task whose range starts at or
before ``end_i``: those lie inside one record and own none (``planning.partition.exact_begins``). Everything here takes a plain seekable binary file, so
it is tested with ``io.BytesIO`` and works the same on a local file or a ranged blob reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np

from ..errors import BoundaryError
from .header import MAX_RECORD_BYTES, read_header
from .header import read_at as _read_at

DEFAULT_BLOCK = 8 * 1024 * 1024

_NL = 10
_QUOTE = 34
_CR = 13
_FIELD_START = {ord(","), _NL}
_FIELD_END = {ord(","), _NL, _CR}


@dataclass(frozen=True)
class RecordFormat:
    """How records are delimited: ``csv`` (quote-aware lines, with a header), ``lines`` (JSONL and
    other one-record-per-line text) or ``regex`` (each record is one whole match of ``pattern``,
    starting at a line start)."""

    kind: Literal["csv", "lines", "regex"]
    pattern: bytes | None = None

    @property
    def has_header(self) -> bool:
        return self.kind == "csv"

    def compiled(self) -> re.Pattern[bytes]:
        assert self.pattern is not None, "regex format needs a pattern"
        return re.compile(self.pattern)


@dataclass(frozen=True)
class Batch:
    """Whole records, each ending in a newline, in input order.

    ``view`` is a window on the block the reader read, not a copy: copying 8 MB per batch into
    freshly allocated memory (page faults and all) cost more than finding the records in it.
    Consumers that only pass the bytes on (parsers, pipes, hashes) should use ``view``."""

    view: memoryview
    records: int
    items: list[bytes] | None = None  # the records one by one, where the format splits them anyway
    # Where the records are in the file (for an error that says where): ``start`` is the offset
    # of ``view[0]``; ``starts`` the offset of each record relative to ``start``, set only when
    # the view is not a plain window (blank lines were dropped, regex records were joined).
    start: int = -1
    starts: np.ndarray | None = None

    @property
    def data(self) -> bytes:
        """The records as a ``bytes`` copy (for callers that need bytes methods)."""
        return bytes(self.view)


@dataclass(frozen=True)
class ScanResult:
    begin: int
    end: int
    records: int


def _csv_boundaries(data: bytes) -> np.ndarray:
    """Offsets just past each newline that ends a CSV record, for ``data`` starting at a record
    boundary: a newline ends a record only outside quotes, i.e. after an even number of quotes
    (an escaped quote ``""`` adds two, so it keeps the parity)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == _NL)
    if data.find(b'"') == -1 or newlines.size == 0:
        return newlines + 1
    # The number of quotes before each newline, by binary search in the quote positions: far
    # cheaper than a running count over every byte (3-4x on real data).
    quotes = np.flatnonzero(arr == _QUOTE)
    parity = np.searchsorted(quotes, newlines) & 1
    return newlines[parity == 0] + 1


def _line_boundaries(data: bytes) -> np.ndarray:
    return np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NL) + 1


def _drop_blank_records(data: bytes, bounds: np.ndarray) -> tuple[bytes, int, np.ndarray | None]:
    """Remove records that are only a line end (blank lines are not records in csv/jsonl); the
    third item is where each kept record starts in ``data``, when some were removed."""
    starts = np.concatenate(([0], bounds[:-1]))
    lengths = bounds - starts
    arr = np.frombuffer(data, dtype=np.uint8)
    blank = (lengths == 1) | ((lengths == 2) & (arr[np.minimum(starts, len(data) - 1)] == _CR))
    if not blank.any():
        return data, int(bounds.size), None
    keep = np.flatnonzero(~blank)
    pieces = [data[int(starts[i]) : int(bounds[i])] for i in keep]
    return b"".join(pieces), int(keep.size), starts[keep]


_NO_QUOTES = np.empty(0, dtype=np.intp)
_WORD = np.dtype("<u8")  # bitmaps: bit j of word k is byte 64 * k + j, on any host
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


class _Scratch:
    """One reusable output array for the byte comparisons of a reader. A fresh 8 MB array per
    block is new memory each time, and the kernel's page faults for it took longer than the
    comparison itself."""

    def __init__(self) -> None:
        self._buf = np.empty(0, dtype=np.bool_)

    def equal(self, arr: np.ndarray, value: int) -> np.ndarray:
        """``arr == value``, valid until the next call."""
        if self._buf.size < arr.size:
            self._buf = np.empty(arr.size, dtype=np.bool_)
        out = self._buf[: arr.size]
        np.equal(arr, value, out=out)
        return out


def _bitmap(mask: np.ndarray) -> np.ndarray:
    """A boolean array packed into 64-bit words (one eighth of the bytes to look at again)."""
    packed = np.packbits(mask, bitorder="little")
    if packed.size % 8:
        padded = np.zeros(-(-packed.size // 8) * 8, dtype=np.uint8)
        padded[: packed.size] = packed
        packed = padded
    return packed.view(_WORD)


def _popcount_table(words: np.ndarray) -> np.ndarray:
    """Set bits per word, by byte table (numpy < 2 has no ``bitwise_count``)."""
    return _POP8[words.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.uint8)


def _popcount(words: np.ndarray) -> np.ndarray:
    count = getattr(np, "bitwise_count", None)
    return count(words) if count is not None else _popcount_table(words)


def _bits_after(words: np.ndarray, k: int) -> np.ndarray:
    """Bit p of the result is bit p + k of ``words`` (0 past the end): ``a & _bits_after(b, 1)``
    has bit p set where bit p of a and bit p + 1 of b are both set."""
    out = words >> np.uint64(k)
    out[:-1] |= words[1:] << np.uint64(64 - k)
    return out


def _bits_before(words: np.ndarray, counts: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """For each position p, how many bits are set below p (``counts``: set bits per word)."""
    word = positions >> 6
    below = (np.uint64(1) << (positions & 63).astype(np.uint64)) - np.uint64(1)
    in_words_before = np.cumsum(counts, dtype=np.int64) - counts
    return in_words_before[word] + _popcount(words[word] & below)


class _Bounds:
    """Record ends in a block of data that starts at a record boundary.

    A newline ends a record unless it lies in a quoted span: between quote 2k and quote 2k + 1 of
    the block, counted from its start (an escaped quote ``""`` closes a span and opens the next, so
    the parity holds). Everything here works from the quote positions, which are few, and from
    ``bytes.find``; the number of records in a batch is "all newlines minus those in quoted
    spans", read off a bitmap of the newlines. No index of every newline is built, except in the
    rare exact path (blank lines, an unbalanced quote at the end of the file)."""

    def __init__(self, data: bytes, *, csv: bool, scratch: _Scratch) -> None:
        self.data = data
        self.csv = csv
        self._arr = np.frombuffer(data, dtype=np.uint8)
        self._scratch = scratch
        if csv and b'"' in data:
            self._quotes = np.flatnonzero(scratch.equal(self._arr, _QUOTE))
        else:
            self._quotes = _NO_QUOTES

    def _quotes_before(self, i: int) -> int:
        return int(np.searchsorted(self._quotes, i)) if self._quotes.size else 0

    def first_at_or_after(self, limit: int) -> int | None:
        """The first record end >= limit (relative), or None if the block holds none."""
        i = self.data.find(b"\n", max(limit - 1, 0))
        while i != -1:
            k = self._quotes_before(i)
            if k % 2 == 0:
                return i + 1
            if k == self._quotes.size:
                return None  # inside a quoted field that goes on past the block
            i = self.data.find(b"\n", int(self._quotes[k]) + 1)  # after its closing quote
        return None

    def last(self) -> int | None:
        i = self.data.rfind(b"\n")
        while i != -1:
            k = self._quotes_before(i)
            if k % 2 == 0:
                return i + 1
            i = self.data.rfind(b"\n", 0, int(self._quotes[k - 1]))  # before its opening quote
        return None

    def records_upto(self, cut: int) -> tuple[memoryview, int, np.ndarray | None]:
        """The whole records of ``data[:cut]`` without blank lines, their count, and (only when
        blank lines were dropped) where each record starts in ``data``."""
        if cut == 0:
            return memoryview(b""), 0, None
        count = self._count(cut)
        if count is not None:
            return memoryview(self.data)[:cut], count, None
        data, count, starts = self._records_exact(cut)
        return memoryview(data), count, starts

    def _count(self, cut: int) -> int | None:
        """The records of ``data[:cut]`` if none of them is blank and ``cut`` follows a record
        end (the common case); None sends the caller to the exact path."""
        data = self.data
        quotes = self._quotes_before(cut)
        if quotes % 2 or data[cut - 1] != _NL or data.startswith((b"\n", b"\r\n")):
            return None  # an unterminated quote at the end of the file, or a blank first line
        arr = self._arr[:cut]
        newlines = _bitmap(self._scratch.equal(arr, _NL))
        crs = _bitmap(self._scratch.equal(arr, _CR)) if data.find(b"\r", 0, cut) != -1 else None
        if _has_blank_line(newlines, crs):
            return None  # (also when the "blank line" is in a quoted field: the exact path knows)
        counts = _popcount(newlines)
        records = int(counts.sum(dtype=np.int64))
        if quotes:
            before = _bits_before(newlines, counts, self._quotes[:quotes])
            records -= int(before[1::2].sum() - before[0::2].sum())  # newlines in quoted spans
        return records

    def _records_exact(self, cut: int) -> tuple[bytes, int, np.ndarray | None]:
        data = self.data[:cut]
        ends = _csv_boundaries(data) if self._quotes.size else _line_boundaries(data)
        if ends.size == 0 or ends[-1] != len(data):
            ends = np.append(ends, len(data))  # an unterminated (malformed) last record
        return _drop_blank_records(data, ends)


def _has_blank_line(newlines: np.ndarray, crs: np.ndarray | None) -> bool:
    """Whether a newline is followed by another one, or by CR and a newline (a blank line),
    from bitmaps of the newlines and the CRs."""
    if (newlines & _bits_after(newlines, 1)).any():
        return True
    return crs is not None and bool(
        (newlines & _bits_after(crs, 1) & _bits_after(newlines, 2)).any()
    )


_MAX_GUESS_WINDOW = 64 * 1024 * 1024  # how far a CSV guess follows a quoted field


def _quote_anchor(data: bytes, quotes: list[int]) -> tuple[int, int] | None:
    """``(state, q)``: a quote at ``data[q]`` and whether the data before it is outside (0) or
    inside (1) a quoted field, from the first run of quotes that valid CSV allows to read only
    one way; None if no run in ``quotes`` (the quote positions, ascending) does.

    A run of ``n`` quotes between bytes ``x`` and ``y`` (neither a quote). Read from outside, its
    first quote opens a field, so ``x`` is a field start (comma or newline), and the ``n - 1``
    after it are escaped pairs plus, if odd, a closing quote, which ``y`` must follow as a field
    end (comma, CR or newline). Read from inside, the quotes are pairs plus, if ``n`` is odd, a
    closing quote before a field end. ``,"a`` can only open and ``a",`` only close; ``,""b`` is
    an escaped quote inside a field (from outside it would be an empty field followed by ``b``)."""
    i = 0
    while i < len(quotes):
        j = i
        while j + 1 < len(quotes) and quotes[j + 1] == quotes[j] + 1:
            j += 1
        first, last, n = quotes[i], quotes[j], j - i + 1
        i = j + 1
        if first == 0 or last + 1 >= len(data):
            continue  # the run may go on past the window: its length is unknown
        x, y = data[first - 1], data[last + 1]
        from_outside = x in _FIELD_START and (n % 2 == 1 or y in _FIELD_END)
        from_inside = n % 2 == 0 or y in _FIELD_END
        if from_outside != from_inside:
            return (0 if from_outside else 1), first
    return None


def _first_outside_newline(data: bytes) -> int | None:
    """Where in ``data`` (which starts one byte before a range) the first newline outside
    quotes is, read from a quote anchor; -1 if no anchor tells (guess the next line start
    instead), None if the data after the anchor is all inside a quoted field (read more)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(arr == _QUOTE)
    if quotes.size == 0:
        return -1
    anchor = _quote_anchor(data, quotes[:4096].tolist())
    if anchor is None:
        return -1
    state_at_quote, q = anchor
    newlines = np.flatnonzero(arr == _NL)
    if newlines.size == 0:
        return None
    # The quotes between a newline and the anchor (negative before it) decide its state.
    quotes_before_anchor = int(np.searchsorted(quotes, q))
    between = np.searchsorted(quotes, newlines).astype(np.int64) - quotes_before_anchor
    outside = newlines[((state_at_quote + between) & 1) == 0]
    return int(outside[0]) if outside.size else None


class RangeReader:
    """Iterate the records of ``[start, end)`` of a file in batches of whole records.

    After iteration, ``begin``, ``end_offset`` and ``records`` describe what was read.
    ``header_end`` is where the data starts (just past a CSV header; 0 otherwise): a range that
    starts at or before it begins exactly there, which is a known boundary, not a guess.
    """

    def __init__(
        self,
        f: BinaryIO,
        fmt: RecordFormat,
        *,
        start: int,
        end: int,
        file_size: int,
        header_end: int = 0,
        pinned_begin: int | None = None,
        block_size: int = DEFAULT_BLOCK,
    ) -> None:
        if not 0 <= start <= end <= file_size:
            raise ValueError(f"bad range [{start}, {end}) for a file of {file_size} bytes")
        self._f = f
        self._fmt = fmt
        self._start = start
        self._end = end
        self._size = file_size
        self._header_end = header_end
        self._pinned = pinned_begin
        self._block = block_size
        self._pattern = fmt.compiled() if fmt.kind == "regex" else None
        self._scratch = _Scratch()
        self.begin = -1
        self.end_offset = -1
        self.records = 0

    # -- finding the first record ------------------------------------------------------------
    def _first_line_start(self, pos: int) -> int:
        """The first offset >= pos that starts a line (one-byte look-back at pos - 1)."""
        if pos == 0:
            return 0
        offset = pos - 1
        block = 64 * 1024
        while offset < self._size:
            data = _read_at(self._f, offset, block)
            i = data.find(b"\n")
            if i != -1:
                return offset + i + 1
            offset += len(data)
            block = min(block * 2, DEFAULT_BLOCK)
        return self._size

    def _find_begin(self) -> int:
        if self._pinned is not None:
            return self._pinned
        if self._start <= self._header_end:
            return self._header_end
        candidate = self._first_line_start(self._start)
        if self._fmt.kind == "csv":
            return self._first_csv_start(candidate)
        if self._pattern is None:
            return candidate
        return self._first_regex_start(candidate)

    def _first_csv_start(self, candidate: int) -> int:
        """A better guess than "the next line start" for CSV: a run of quotes whose neighbours
        allow only one reading (see ``_quote_anchor``) fixes the quote parity there; from it, the
        first newline outside quotes at or after ``start`` is found, reading further while the
        range lies inside a quoted field (so the tasks inside a long field all guess its end).
        Still a guess (the chain check verifies it), but it is right for quoted newlines in
        ordinary data, so repairs stay rare."""
        origin = self._start - 1  # look-back byte: a boundary may sit right at start
        window = 256 * 1024
        while True:
            data = _read_at(self._f, origin, window)
            found = _first_outside_newline(data)
            if found is not None:
                return origin + found + 1 if found >= 0 else candidate
            if origin + len(data) >= self._size or window >= _MAX_GUESS_WINDOW:
                return candidate  # (an unterminated quote, or a field too long to follow)
            window *= 4

    def _first_regex_start(self, pos: int) -> int:
        """First line start >= pos where the pattern matches a whole record."""
        while pos < self._size:
            window = DEFAULT_BLOCK // 8
            while True:
                data = _read_at(self._f, pos, window)
                at_eof = pos + len(data) >= self._size
                assert self._pattern is not None
                m = self._pattern.match(data if not at_eof else _terminated(data))
                if m and (m.end() < len(data) or at_eof):
                    return pos
                if at_eof or window > MAX_RECORD_BYTES:
                    break
                window *= 2
                if m is None and len(data) > 1024 * 1024:
                    break  # a non-match that long is a non-match, not a truncated record
            pos = self._first_line_start(pos + 1)
        return self._size

    # -- iteration ---------------------------------------------------------------------------
    def find_begin(self) -> int:
        """Where this range's first record starts (computed once; iteration starts there)."""
        if self.begin < 0:
            self.begin = self._find_begin()
        return self.begin

    def __iter__(self) -> Iterator[Batch]:
        self.find_begin()
        if self.begin >= self._end:
            # No record starts in this range: its end boundary is the next record start.
            self.end_offset = self.begin
            return
        if self._pattern is not None:
            yield from self._iter_regex()
        else:
            yield from self._iter_lines()

    def _iter_lines(self) -> Iterator[Batch]:
        pos = self.begin  # absolute offset of data[0]; always a record boundary
        data = b""
        block = self._block
        while True:
            data += _read_at(self._f, pos + len(data), block)
            at_eof = pos + len(data) >= self._size
            bounds = _Bounds(data, csv=self._fmt.kind == "csv", scratch=self._scratch)
            cut = bounds.first_at_or_after(self._end - pos)  # ours: records starting before end
            if cut is not None:  # found the boundary that closes our last record
                yield self._emit(bounds, cut, pos)
                self.end_offset = pos + cut
                return
            if at_eof:
                if data and not data.endswith(b"\n"):
                    data += b"\n"  # a missing final newline still ends the last record
                    bounds = _Bounds(data, csv=bounds.csv, scratch=self._scratch)
                if data:
                    yield self._emit(bounds, len(data), pos)
                self.end_offset = self._size
                return
            cut = bounds.last()
            if cut is not None:
                yield self._emit(bounds, cut, pos)
                # Re-read the short tail with the next block rather than prepend it to that
                # block: joining would copy every block once more. Nothing here holds the
                # block while the next one is read (one block in memory, not two).
                pos += cut
                del bounds
                data = b""
                block = self._block
            elif len(data) > MAX_RECORD_BYTES:
                raise BoundaryError(
                    f"no record end within {MAX_RECORD_BYTES // 2**20} MB after byte {pos}: "
                    "is the format right (an unbalanced quote in a CSV?)"
                )
            else:
                block *= 2  # a record longer than a block: read more before cutting

    def _emit(self, bounds: _Bounds, cut: int, pos: int) -> Batch:
        view, count, starts = bounds.records_upto(cut)
        self.records += count
        return Batch(view, count, start=pos, starts=starts)

    def _iter_regex(self) -> Iterator[Batch]:
        assert self._pattern is not None
        pos = self.begin
        data = b""
        data_pos = pos  # absolute offset of data[0]
        at_eof = False
        out: list[bytes] = []
        out_starts: list[int] = []  # each record's offset in the file
        out_bytes = 0
        rel = 0
        while pos < self._end:
            m = self._pattern.match(data, rel)
            if m is None or (m.end() >= len(data) and not at_eof):
                if at_eof:
                    if not data[rel:].strip():
                        pos = self._size  # trailing whitespace after the last record
                        break
                    snippet = data[rel : rel + 60]
                    raise BoundaryError(
                        f"record_pattern does not match the data at byte {pos}: {snippet!r}",
                        hint="The pattern must match one whole record, starting at a line start.",
                    )
                data = data[rel:]
                data_pos = pos
                rel = 0
                more = _read_at(self._f, data_pos + len(data), max(self._block, len(data)))
                data += more
                at_eof = data_pos + len(data) >= self._size
                if at_eof and not data.endswith(b"\n"):
                    data += b"\n"
                if len(data) > MAX_RECORD_BYTES and m is None and not at_eof:
                    raise BoundaryError(f"record_pattern matches nothing within 256 MB of byte {pos}")
                continue
            record = m.group(0)
            if not record.endswith(b"\n"):
                record += b"\n"
            out.append(record)
            out_starts.append(data_pos + m.start())
            out_bytes += len(record)
            rel = m.end()
            pos = min(data_pos + rel, self._size)
            if out_bytes >= self._block:
                yield self._emit_records(out, out_starts)
                out, out_starts, out_bytes = [], [], 0
        if out:
            yield self._emit_records(out, out_starts)
        self.end_offset = pos

    def _emit_records(self, records: list[bytes], starts: list[int]) -> Batch:
        self.records += len(records)
        return Batch(memoryview(b"".join(records)), len(records), records, start=starts[0],
                     starts=np.asarray(starts, dtype=np.int64) - starts[0])


def _terminated(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


def scan_range(
    f: BinaryIO,
    fmt: RecordFormat,
    *,
    start: int,
    end: int,
    file_size: int,
    header_end: int | None = None,
    pinned_begin: int | None = None,
    block_size: int = DEFAULT_BLOCK,
) -> ScanResult:
    """Read a range and return where it begins and ends and how many records it owns."""
    if header_end is None:
        header_end = len(read_header(f, file_size)) if fmt.has_header else 0
    reader = RangeReader(
        f, fmt, start=start, end=end, file_size=file_size, header_end=header_end,
        pinned_begin=pinned_begin, block_size=block_size,
    )
    for _ in reader:
        pass
    return ScanResult(reader.begin, reader.end_offset, reader.records)
