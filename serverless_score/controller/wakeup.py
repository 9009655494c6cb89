"""Workers that share the controller's file system wake it once they have stored a status.

The controller reads attempts' statuses from the store at each look (every poll interval); the
job's last status was found up to a poll late, on every job's critical path, and a short job's
container-seconds jumped by a poll's worth from run to run (docker: steps of 0.35 s in a 3 s
job). When the job's work folder is local, the controller makes a named pipe in the run's queue
folder and names it to every group (``SERVERLESS_SCORE_NOTIFY``); a local worker process, or a
container whose bind mount shows the same path, writes a byte to it after each status, and the
controller's wait wakes then and reads the statuses at once. Best effort both ways: a worker
that cannot open it (no reader, another kernel behind the mount) is only seen at the next poll.
"""

from __future__ import annotations

import contextlib
import os
import select


class StatusWakeup:
    """A named pipe at ``path``, held open for reading and for writing by the controller (its
    own writer keeps the pipe from reading as hung up between workers' writes)."""

    def __init__(self, path: str, read_fd: int, write_fd: int) -> None:
        self.path = path
        self.fd = read_fd
        self._write_fd = write_fd

    @classmethod
    def create(cls, path: str) -> StatusWakeup | None:
        """The pipe, or None where one cannot be made (not POSIX, a file system without them):
        the controller then polls as before."""
        if not hasattr(os, "mkfifo"):
            return None
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a leftover of a controller that was killed
            os.mkfifo(path, 0o600)
            read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            write_fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return cls(path, read_fd, write_fd)

    def wait(self, timeout: float) -> bool:
        """Sleep until a worker writes (True) or ``timeout`` passes (False)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return bool(ready)

    def drain(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError once it is empty
            while os.read(self.fd, 4096):
                pass

    def close(self) -> None:
        for fd in (self.fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
