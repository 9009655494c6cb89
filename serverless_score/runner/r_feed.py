"""How a batch of records reaches R: in a memory file R inherited, or in the frame itself.

A ROWS frame carries the records through the pipe: R reads them (32 MB a batch) and writes them
to a file for ``fread``, two copies on R's side for every batch, and R is the slow side of the
pipeline. With memory files (Linux ``memfd``), the runner writes the header and records once,
into one of two files R inherited at start, and sends a FILE frame naming it
(``/proc/self/fd/N``); R freads it in place. Two files let the runner fill the next batch while R
reads the current one; a file is written again only after R has answered for what it held.
Memory files have no name in any file system, so a killed worker leaves nothing behind.
"""

from __future__ import annotations

import os
import threading
from collections import deque

SLOTS = 2


class BatchFiles:
    """The memory files shared with one R process, and which of them are free."""

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds
        self._free = deque(fds)
        self._changed = threading.Condition()

    @classmethod
    def create(cls, count: int = SLOTS) -> BatchFiles | None:
        """None where there are no memory files (not Linux): records then go in ROWS frames."""
        fds: list[int] = []
        try:
            for _ in range(count):
                fds.append(os.memfd_create("serverless-score-batch"))
        except (AttributeError, OSError):
            for fd in fds:
                os.close(fd)
            return None
        return cls(fds)

    def acquire(self, stop: threading.Event) -> int | None:
        """A free file (waiting for R to answer for one), or None once ``stop`` is set."""
        with self._changed:
            while not self._free:
                if stop.is_set():
                    return None
                self._changed.wait(timeout=0.5)  # woken by release() or wake()
            return None if stop.is_set() else self._free.popleft()

    def release(self, fd: int) -> None:
        with self._changed:
            if fd not in self._free:
                self._free.append(fd)
            self._changed.notify_all()

    def wake(self) -> None:
        """Wake a waiting ``acquire`` (its ``stop`` was just set)."""
        with self._changed:
            self._changed.notify_all()

    def paths(self) -> list[str]:
        """How R opens each file: its inherited descriptor, by number."""
        return [_path(fd) for fd in self.fds]

    @staticmethod
    def fill(fd: int, header: bytes, data: bytes | memoryview) -> bytes:
        """Write header + records into ``fd``; return the path R opens it by."""
        offset = 0
        for chunk in (header, data):
            view = memoryview(chunk)
            while view:
                written = os.pwrite(fd, view, offset)
                offset += written
                view = view[written:]
        os.ftruncate(fd, offset)  # drop what a longer earlier batch left past the end
        return _path(fd).encode()

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"
