"""The storage protocol: the few operations the controller and the runner need, whatever the store.

Implementations translate their own errors into ``FileNotFoundError`` / ``InputError`` at the edge,
so callers never import an SDK. Writes are atomic: nothing is visible at a URI until complete.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about an object without reading it."""

    size: int
    version: str  # changes whenever the content does: a blob's etag, a file's mtime in ns
    sha256: str | None = None  # recorded at upload (``models push``), when the store keeps it


@dataclass(frozen=True)
class ComposeResult:
    size: int
    sha256: str | None  # None when the store composed without reading the bytes (server-side)
    version: str | None = None
    method: str = "local"  # local | server (blocks copied by the service) | download (fallback)
    blocks: int = 0
    intermediates: int = 0  # blobs composed first, to merge more parts than a blob has blocks


@runtime_checkable
class Store(Protocol):
    def open_read(self, uri: str) -> BinaryIO:
        """A seekable binary reader (ranged reads for remote stores)."""
        ...

    def size(self, uri: str) -> int: ...

    def info(self, uri: str) -> ObjectInfo: ...

    def exists(self, uri: str) -> bool: ...

    def read_bytes(self, uri: str) -> bytes: ...

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write atomically (replaces an existing object)."""
        ...

    def open_atomic(self, uri: str, *, overwrite: bool = True,
                    metadata: Mapping[str, str] | None = None) -> AbstractContextManager[BinaryIO]:
        """Write through the returned file; published only if the block exits without error.
        With ``overwrite=False`` an object already at ``uri`` makes it fail (FileExistsError) and
        stays as it was. ``metadata`` is kept where the store can (blob metadata)."""
        ...

    def delete(self, uri: str) -> None:
        """Delete; succeeds if already gone."""
        ...

    def delete_many(self, uris: Iterable[str]) -> None:
        """Delete each of ``uris`` (gone already is fine); remote stores send the requests
        side by side, so a job of 100,000 parts is not 100,000 round trips in a row."""
        ...

    def delete_prefix(self, uri: str) -> None: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def local_path(self, uri: str) -> str:
        """A local file with the object's content (remote stores download and cache it)."""
        ...

    def compose(self, uri: str, parts: Sequence[str], *, header: bytes = b"",
                overwrite: bool = True, sizes: Sequence[int] | None = None,
                scratch: str | None = None) -> ComposeResult:
        """Atomically write ``header`` + the parts, in order, to ``uri`` (conditionally, as
        ``open_atomic``), without reading them where the store allows it; any number of parts.
        ``sizes``: the parts' sizes, when the caller knows them (saves asking for each);
        ``scratch``: a folder the store may use meanwhile (blob: intermediate blobs) and empties."""
        ...


def hash_stream(f: BinaryIO, block_size: int = 8 * 1024 * 1024) -> tuple[int, str]:
    """(size, sha256) of what is left to read in ``f``, read in blocks: memory stays bounded
    whatever the object's size."""
    digest = hashlib.sha256()
    size = 0
    while block := f.read(block_size):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()
