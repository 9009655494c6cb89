"""Local files (plain paths and ``file://`` URIs)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from .base import ComposeResult, ObjectInfo


def _path(uri: str) -> str:
    return uri.removeprefix("file://")


def _read_umask() -> int:
    """The process's umask, without changing it where Linux can say (``os.umask`` sets it, and
    another thread creating a file in between would get the wrong mode)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(fd: int) -> None:
    """``mkstemp`` creates its file 0600 whatever the umask; a file that ``open`` would have
    created gets 0666 minus the umask (0644 under umask 022), so do that: outputs, manifests and
    logs are shared like any file the user writes."""
    os.fchmod(fd, 0o666 & ~_read_umask())


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
            honour_umask(fd)
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

    def delete_many(self, uris: Iterable[str]) -> None:
        for uri in uris:
            self.delete(uri)

    def delete_prefix(self, uri: str) -> None:
        shutil.rmtree(_path(uri), ignore_errors=True)

    def list(self, prefix: str) -> Iterator[str]:
        root = Path(_path(prefix))
        if root.is_dir():
            yield from sorted(files_under(str(root)))

    def local_path(self, uri: str) -> str:
        return _path(uri)

    def compose(self, uri: str, parts: Sequence[str], *, header: bytes = b"",
                overwrite: bool = True, sizes: Sequence[int] | None = None,
                scratch: str | None = None) -> ComposeResult:
        """Concatenation into a temp file beside ``uri``: files have no block limit, so
        ``sizes`` and ``scratch`` are not needed."""
        digest = hashlib.sha256(header)
        size = len(header)
        with self.open_atomic(uri, overwrite=overwrite) as out:
            out.write(header)
            out.flush()
            for part in parts:
                size += _append(_path(part), out, digest)
        return ComposeResult(size=size, sha256=digest.hexdigest(), version=str(os.stat(_path(uri)).st_mtime_ns))


def files_under(root: str) -> Iterator[str]:
    """Every file under ``root`` (symlinks to files included, symlinked folders not entered:
    what ``Path.rglob`` finds), from ``scandir``'s entry types: no ``stat`` per file, which a
    work folder of 100,000 tasks (300,000 files) would pay on every resume and ``status``."""
    folders = [root]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:  # gone or unreadable meanwhile: as rglob, skipped
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif entry.is_file():
                    yield entry.path


# A part up to this size is read and written in one call each: a copying thread and a mapping
# cost more than they save there (~0.4 ms a part, most of a 100,000-part merge of small parts).
_SMALL_PART = 1 << 20


def _append(path: str, out: BinaryIO, digest: Any) -> int:
    """Append the file at ``path`` to ``out`` (flushed, positioned at its end) and hash it.

    The merge is the last step of every job, after the last worker: the kernel copies the part
    (``copy_file_range``: no pass through this process) in a thread while this one hashes a
    mapping of the same pages, both without the GIL, so a merge takes about as long as hashing
    alone. Where the kernel cannot copy between these files (another file system on an old
    kernel, no such call), the mapped pages are written from here instead."""
    with open(path, "rb") as src:
        length = os.fstat(src.fileno()).st_size
        if length == 0:
            return 0
        start = out.tell()
        if length <= _SMALL_PART:
            data = src.read()
            if len(data) != length:
                raise OSError(errno.EIO, f"{path} changed size while it was merged")
            digest.update(data)
            done = 0
            while done < length:
                done += os.pwrite(out.fileno(), data[done:], start + done)
            out.seek(start + length)
            return length
        copied: list[BaseException | None] = [None]

        def copy() -> None:
            done = 0
            try:
                while done < length:
                    n = os.copy_file_range(src.fileno(), out.fileno(), length - done, done,
                                           start + done)
                    if n == 0:
                        raise OSError(errno.EIO, f"{path} ended early")
                    done += n
            except (OSError, AttributeError) as err:
                copied[0] = err

        copier = threading.Thread(target=copy, name="compose-copy", daemon=True)
        copier.start()
        with mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as pages:
            digest.update(pages)
            copier.join()
            if copied[0] is not None:  # (the whole part again: a partial copy is overwritten)
                view, done = memoryview(pages), 0
                while done < length:  # (one call writes at most ~2 GB)
                    done += os.pwrite(out.fileno(), view[done:], start + done)
                view.release()
        out.seek(start + length)
        return length
