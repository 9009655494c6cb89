"""The storage protocol: the few operations the controller and the runner need, whatever the store.

Implementations translate their own errors into ``FileNotFoundError`` / ``InputError`` at the edge,
so callers never import an SDK. Writes are atomic: nothing is visible at a URI until complete.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol, runtime_checkable


@runtime_checkable
class Store(Protocol):
    def open_read(self, uri: str) -> BinaryIO:
        """A seekable binary reader (ranged reads for remote stores)."""
        ...

    def size(self, uri: str) -> int: ...

    def exists(self, uri: str) -> bool: ...

    def read_bytes(self, uri: str) -> bytes: ...

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write atomically (replaces an existing object)."""
        ...

    def open_atomic(self, uri: str) -> AbstractContextManager[BinaryIO]:
        """Write through the returned file; published only if the block exits without error."""
        ...

    def delete(self, uri: str) -> None:
        """Delete; succeeds if already gone."""
        ...

    def delete_prefix(self, uri: str) -> None: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def local_path(self, uri: str) -> str:
        """A local file with the object's content (remote stores download and cache it)."""
        ...

    def compose(self, uri: str, parts: Sequence[str], *, header: bytes = b"") -> str:
        """Atomically write ``header`` + the parts, in order, to ``uri``; return its sha256."""
        ...
