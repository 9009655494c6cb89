"""A CSV file's header record, read without numpy: ``plan`` and ``status`` need only the header,
and importing numpy cost every command about 0.2 s (``scan`` finds the boundaries of whole blocks with
numpy; one header line needs none of it)."""

from __future__ import annotations

from typing import BinaryIO

from ..errors import BoundaryError

# A record longer than this is almost certainly a wrong format or pattern, not data.
MAX_RECORD_BYTES = 256 * 1024 * 1024


def read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def first_record_end(data: bytes) -> int | None:
    """Just past the first newline of ``data`` outside quotes (an even number of quotes before
    it: an escaped quote ``""`` adds two), or None when ``data`` holds no whole record."""
    pos = quotes = 0
    while (newline := data.find(b"\n", pos)) != -1:
        quotes += data.count(b'"', pos, newline)
        if quotes % 2 == 0:
            return newline + 1
        pos = newline + 1
    return None


def read_header(f: BinaryIO, file_size: int, block_size: int = 64 * 1024) -> bytes:
    """The CSV header record (quote-aware), including its line terminator."""
    data = b""
    while True:
        data += read_at(f, len(data), block_size)
        end = first_record_end(data)
        if end is not None:
            return data[:end]
        if len(data) >= file_size:
            return data
        if len(data) > MAX_RECORD_BYTES:
            raise BoundaryError("the CSV header has no line end in its first 256 MB")
        block_size *= 2
