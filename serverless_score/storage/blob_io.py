"""File objects over a blob, independent of the SDK: they take plain callables, so the same code is
driven by ``BlobStore`` (which translates errors) and tested on bytes.

* :func:`ranged_reader`: a seekable reader doing ranged reads; memory is the read size plus one
  small read-ahead buffer, never the blob.
* :class:`BlockWriter`: a writer staging a block every ``block_bytes``; nothing is visible until
  the owner commits the staged block list.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO, cast

from .blocks import MAX_BLOCKS, block_id

READ_AHEAD = 1024 * 1024

Fetch = Callable[[int, int], bytes]  # (offset, length) -> exactly those bytes


class _RangedRaw(io.RawIOBase):
    def __init__(self, fetch: Fetch, size: int, name: str) -> None:
        self._fetch = fetch
        self._size = size
        self._pos = 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._size - self._pos)
        if count <= 0:
            return 0
        data = self._fetch(self._pos, count)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def ranged_reader(fetch: Fetch, size: int, name: str, *, read_ahead: int = READ_AHEAD) -> BinaryIO:
    """A buffered, seekable reader: small reads (a header, a one-byte look-back, a Parquet
    footer) are served from ``read_ahead`` bytes fetched at once; big reads go straight through."""
    return cast(BinaryIO, io.BufferedReader(_RangedRaw(fetch, size, name), buffer_size=read_ahead))


class BlockWriter(io.RawIOBase):
    """Stages a block each time ``block_bytes`` have been written (``stage(block_id, data)``);
    ``finish()`` stages the rest and returns the block ids, in order, for the commit."""

    def __init__(self, stage: Callable[[str, bytes], None], nonce: str, block_bytes: int,
                 name: str) -> None:
        self._stage = stage
        self._nonce = nonce
        self._block_bytes = block_bytes
        self._buffer = bytearray()
        self._ids: list[str] = []
        self._written = 0
        self.name = name

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += len(view)
        while len(self._buffer) >= self._block_bytes:
            self._flush_block(bytes(self._buffer[: self._block_bytes]))
            del self._buffer[: self._block_bytes]
        return len(view)

    def _flush_block(self, block: bytes) -> None:
        if len(self._ids) >= MAX_BLOCKS:
            raise OSError(f"{self.name}: more than {MAX_BLOCKS} blocks of "
                          f"{self._block_bytes} bytes; a blob cannot hold that")
        ident = block_id(self._nonce, len(self._ids))
        self._stage(ident, block)
        self._ids.append(ident)

    def whole(self) -> bytes | None:
        """Everything written, when it all fits in one block and none was staged yet: the
        store then puts it in one request instead of a block and a commit."""
        return bytes(self._buffer) if not self._ids else None

    def finish(self) -> list[str]:
        if self._buffer or not self._ids:  # an empty blob is a commit of no blocks
            if self._buffer:
                self._flush_block(bytes(self._buffer))
            self._buffer.clear()
        return list(self._ids)
