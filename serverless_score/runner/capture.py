"""Each task's whole log. The worker's stdout and stderr are redirected at the file-descriptor
level into pipes, so whatever writes to them is caught: this process, an R session, a scoring
command and its children. A thread per pipe echoes every byte to the worker's own stdout or
stderr (``docker logs``, ACI's log API and the local backend's log file see what they saw before)
and appends it to the running task's log file, which the runner stores beside the task's part.

Backends keep only a bounded tail of a worker's log (ACI: the last 1,000 lines / 16 KB once it
stopped); these files keep everything, however many tasks a group runs and however much they print.

Between tasks (and before the first one: R and the model loading) the output is kept for the next
task's log. A task's log is cut exactly: ``end_task`` writes a token no other writer knows through
each pipe and waits until the thread has seen it, so what the task printed is in its file and
nothing printed after it is.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from typing import BinaryIO

PENDING_LIMIT = 1024 * 1024  # output between tasks kept for the next task's log, at most
CUT_TIMEOUT = 10.0
LINE_LIMIT = 64 * 1024  # a "line" this long without a newline is recorded as it is


class _Copier:
    """One captured descriptor: the pipe's reading end, drained by a thread."""

    def __init__(self, owner: OutputCapture, fd: int) -> None:
        self.owner = owner
        self.fd = fd
        self.echo = os.dup(fd)  # where the output went before: the worker's real stdout/stderr
        read, write = os.pipe()
        os.dup2(write, fd)
        os.close(write)
        self.read = read
        self.line = b""  # the start of a line not yet ended: recorded when it is
        self.cut = threading.Event()
        self.thread = threading.Thread(target=self._drain, name=f"capture-{fd}", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        token = self.owner.token
        held = b""  # the end of the last read, when it could be the start of a token
        while True:
            try:
                chunk = os.read(self.read, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self._emit(held)
                self._end_line()
                self.cut.set()
                return
            data = held + chunk
            while (at := data.find(token)) >= 0:
                self._emit(data[:at])
                self._end_line()
                data = data[at + len(token):]
                self.cut.set()
            keep = _token_prefix_at_end(data, token)
            held = data[len(data) - keep:] if keep else b""
            self._emit(data[:len(data) - keep])

    def _emit(self, data: bytes) -> None:
        """Echo at once; record whole lines only, so that stdout's and stderr's lines never
        end up mixed within one line of the task's log."""
        if not data:
            return
        _write_all(self.echo, data)
        self.line += data
        end = self.line.rfind(b"\n") + 1
        if end == 0 and len(self.line) < LINE_LIMIT:
            return
        end = end or len(self.line)
        self.owner.record(self.line[:end])
        self.line = self.line[end:]

    def _end_line(self) -> None:
        if self.line:
            self.owner.record(self.line + b"\n")
            self.line = b""

    def restore(self) -> None:
        """The descriptor points at the real stdout/stderr again; the thread ends once every
        writer (children included) has closed its copy of the pipe."""
        os.dup2(self.echo, self.fd)


class OutputCapture:
    def __init__(self, fds: tuple[int, ...] = (1, 2)) -> None:
        # NUL-framed: text output (almost) never ends in a NUL, so the copier (almost) never has
        # to hold bytes back in case they are the start of a token.
        self.token = f"\0\0cut-{secrets.token_hex(16)}\0\0".encode()
        self._lock = threading.Lock()
        self._sink: BinaryIO | None = None
        self._pending = bytearray()
        self._dropped = 0
        self._copiers = [_Copier(self, fd) for fd in fds]

    def record(self, data: bytes) -> None:
        """Never raises: a copier thread that died would leave the pipe unread, and the worker
        blocked on its next print once the pipe is full."""
        with self._lock:
            if self._sink is not None:
                try:
                    self._sink.write(data)
                except (OSError, ValueError):  # a full disk: the task's log stops here
                    self._dropped += len(data)
            elif len(self._pending) < PENDING_LIMIT:
                self._pending += data
            else:
                self._dropped += len(data)

    def start_task(self, path: str) -> None:
        """From now on the output goes to ``path`` (after what was printed since the last task)."""
        sink = open(path, "wb")  # noqa: SIM115 - closed by end_task
        with self._lock:
            sink.write(self._pending)
            if self._dropped:
                sink.write(f"(... {self._dropped} bytes printed between tasks not kept)\n".encode())
            self._pending.clear()
            self._dropped = 0
            self._sink = sink

    def end_task(self) -> None:
        """Returns once everything written to stdout/stderr so far is in the task's file."""
        self._cut()
        with self._lock:
            sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()

    def _cut(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for copier in self._copiers:
            copier.cut.clear()
            _write_all(copier.fd, self.token)
        for copier in self._copiers:
            copier.cut.wait(CUT_TIMEOUT)

    def close(self) -> None:
        """Stop capturing: the rest of the output (if any) is echoed, and kept nowhere."""
        self._cut()
        for copier in self._copiers:
            copier.restore()
        for copier in self._copiers:
            copier.thread.join(CUT_TIMEOUT)  # a child still holding the pipe: do not wait forever
        for copier in self._copiers:
            os.close(copier.echo)
            os.close(copier.read)  # a copier still blocked in read() then ends on EBADF/EOF


def _token_prefix_at_end(data: bytes, token: bytes) -> int:
    """How many bytes at the end of ``data`` could be the start of ``token``."""
    for size in range(min(len(token) - 1, len(data)), 0, -1):
        if data.endswith(token[:size]):
            return size
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:
            return  # nobody reads the echo any more (a closed terminal): the file still gets it
        view = view[written:]
