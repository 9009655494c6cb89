"""Local files (plain paths and ``file://`` URIs)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from .base import ComposeResult, ObjectInfo

_COPY_BLOCK = 8 * 1024 * 1024


def _path(uri: str) -> str:
    return uri.removeprefix("file://")


class LocalStore:
    """Files on this machine. Atomic writes go to a temp file *in the target directory* and are
    ``os.replace``d into place, so the final move is a rename, never a copy."""

    def open_read(self, uri: str) -> BinaryIO:
        return open(_path(uri), "rb")

    def size(self, uri: str) -> int:
        return os.path.getsize(_path(uri))

    def info(self, uri: str) -> ObjectInfo:
        st = os.stat(_path(uri))
        return ObjectInfo(size=st.st_size, version=str(st.st_mtime_ns))

    def exists(self, uri: str) -> bool:
        return os.path.exists(_path(uri))

    def read_bytes(self, uri: str) -> bytes:
        return Path(_path(uri)).read_bytes()

    def write_bytes(self, uri: str, data: bytes) -> None:
        with self.open_atomic(uri) as f:
            f.write(data)

    @contextlib.contextmanager
    def open_atomic(self, uri: str, *, overwrite: bool = True,
                    metadata: Mapping[str, str] | None = None) -> Iterator[BinaryIO]:
        target = Path(_path(uri))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            if overwrite:
                os.replace(tmp, target)
            else:  # a hard link publishes only if nothing is there, atomically
                os.link(tmp, target)
                os.unlink(tmp)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def delete(self, uri: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_path(uri))

    def delete_prefix(self, uri: str) -> None:
        shutil.rmtree(_path(uri), ignore_errors=True)

    def list(self, prefix: str) -> Iterator[str]:
        root = Path(_path(prefix))
        if root.is_dir():
            yield from sorted(str(p) for p in root.rglob("*") if p.is_file())

    def local_path(self, uri: str) -> str:
        return _path(uri)

    def compose(self, uri: str, parts: Sequence[str], *, header: bytes = b"",
                overwrite: bool = True) -> ComposeResult:
        digest = hashlib.sha256(header)
        size = len(header)
        with self.open_atomic(uri, overwrite=overwrite) as out:
            out.write(header)
            for part in parts:
                with open(_path(part), "rb") as src:
                    while block := src.read(_COPY_BLOCK):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
        return ComposeResult(size=size, sha256=digest.hexdigest(), version=str(os.stat(_path(uri)).st_mtime_ns))
