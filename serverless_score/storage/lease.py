"""One controller per job: a lease beside the job's output, held while a controller runs the job.

A controller takes the lease before it creates or deletes anything and keeps it alive with a
heartbeat thread until it ends (success, failure, Ctrl-C, SIGTERM). A second controller of the
same job finds it held and stops at once (``LeaseHeld``, naming the holder's host, pid and since
when). A holder that crashed stops beating: its lease lapses and the next controller takes it
over (at once when the holder was a process of this machine that no longer exists).

* local files: ``<output>.lease``, a small JSON file (token, host, pid, since, heartbeat, ttl),
  published with a hard link (create-if-absent) and renewed with ``os.replace``; every change is
  made under an ``flock`` of its directory, so a takeover and a heartbeat never cross.
* blob storage: ``<output>.lease`` is a blob with a real blob lease (``storage/blob/lease.py``):
  the service itself refuses a second holder until the lease expires.

The lease lives beside the work folder (``<output>.work``), not in it: ``overwrite`` deletes the
work folder, and a leased blob cannot be deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ..errors import LeaseHeld
from .config import StoreConfig

__all__ = ["Holder", "Lease", "LeaseHeld", "LocalLease", "get_lease", "lease_uri"]

log = logging.getLogger(__name__)
LOCAL_TTL = 30.0  # seconds without a heartbeat after which a local holder counts as gone


def lease_uri(output: str) -> str:
    """Where the lease of the job writing ``output`` lives."""
    return f"{output}.lease"


# -- who holds it ---------------------------------------------------------------------------------
def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux): tells a pid reused by another
    process from the one that took the lease."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_namespace() -> str:
    """Containers can share a host name with this machine and still not see its pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _boot_id() -> str:
    """Two machines can share a host name (and the initial pid namespace's number): the boot id
    tells them apart, so one never judges the other's pids."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    """The controller that holds (or held) a job's lease."""

    token: str
    job_id: str
    host: str
    pid: int
    since: float  # epoch seconds
    heartbeat: float  # epoch seconds of the last renewal
    ttl: float  # seconds a heartbeat counts for
    pid_start: str = ""
    pidns: str = ""
    boot: str = ""

    @classmethod
    def this_process(cls, job_id: str, ttl: float) -> Holder:
        now = time.time()
        pid = os.getpid()
        return cls(token=uuid.uuid4().hex, job_id=job_id, host=platform.node(), pid=pid,
                   since=now, heartbeat=now, ttl=ttl, pid_start=_pid_start(pid) or "",
                   pidns=_pid_namespace(), boot=_boot_id())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Holder:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        return cls(token=str(values["token"]), job_id=str(values.get("job_id", "")),
                   host=str(values.get("host", "")), pid=int(values.get("pid", 0)),
                   since=float(values.get("since", 0)), heartbeat=float(values.get("heartbeat", 0)),
                   ttl=float(values.get("ttl", LOCAL_TTL)),
                   pid_start=str(values.get("pid_start", "")), pidns=str(values.get("pidns", "")),
                   boot=str(values.get("boot", "")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What errors and ``--json`` show: who, where, since when."""
        return {"job_id": self.job_id, "host": self.host, "pid": self.pid,
                "since": _iso(self.since), "heartbeat": _iso(self.heartbeat)}

    def process_gone(self) -> bool:
        """True only when we can tell for sure: same machine (host name and boot id) and pid
        namespace, and that process no longer exists (or its pid now belongs to another process)."""
        if (self.host != platform.node() or self.pidns != _pid_namespace()
                or self.boot != _boot_id() or self.pid <= 0):
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # exists, another user's
        started = _pid_start(self.pid)
        return bool(self.pid_start and started and started != self.pid_start)

    def alive(self, now: float | None = None) -> bool:
        """Recent heartbeat and, on this machine, a process that still exists."""
        fresh = (now if now is not None else time.time()) - self.heartbeat <= self.ttl
        return fresh and not self.process_gone()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def held_error(uri: str, holder: Holder, lapses: str) -> LeaseHeld:
    return LeaseHeld(
        f"job {holder.job_id} is already running: its controller on host {holder.host} "
        f"(pid {holder.pid}) has held the lease {uri} since {_iso(holder.since)}",
        holder=holder.public(),
        hint=f"Wait for it to end (`serverless-score status` shows its progress) or stop it "
             f"(Ctrl-C, or `kill {holder.pid}` on {holder.host}); a controller that died "
             f"{lapses}.")


# -- the protocol -----------------------------------------------------------------------------------
class Lease(Protocol):
    uri: str

    def acquire(self) -> Holder:
        """Take the lease (taking over one that lapsed) and keep it alive; LeaseHeld if a live
        controller holds it."""
        ...

    def release(self) -> None:
        """Stop the heartbeat and give the lease up (only if still ours); idempotent."""
        ...

    def holder(self) -> Holder | None:
        """The live holder, or None when the lease is free or has lapsed."""
        ...

    @property
    def lost(self) -> bool:
        """True once a heartbeat found the lease taken by another controller."""
        ...


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds in a daemon thread until stopped. ``beat``
    returns False when the lease is no longer ours: the thread then stops and ``lost`` is set."""

    def __init__(self, beat: Callable[[], bool], interval: float, name: str) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._beat():
                    self.lost = True
                    log.error("this controller lost its job lease to another controller")
                    return
            except Exception as err:  # a network blip: the next beat tries again
                log.warning("lease heartbeat failed (will retry): %s", err)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)


# -- local files ----------------------------------------------------------------------------------
class LocalLease:
    """``<output>.lease`` on this machine's (or a shared) file system."""

    def __init__(self, uri: str, job_id: str, *, ttl: float = LOCAL_TTL) -> None:
        self.uri = uri
        self.path = Path(uri.removeprefix("file://"))
        self.job_id = job_id
        self.ttl = ttl
        self._mine: Holder | None = None
        self._heartbeat: Heartbeat | None = None

    @property
    def lost(self) -> bool:
        return self._heartbeat is not None and self._heartbeat.lost

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Every change to the lease file happens under an exclusive flock of its directory
        (released by the kernel if the process dies), so two takeovers cannot both win."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise OSError(errno.ETIMEDOUT, f"{self.path.parent}: locked for 30s") from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _read(self) -> Holder | None:
        try:
            return Holder.from_dict(json.loads(self.path.read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):  # not ours to judge: treat as lapsed
            log.warning("%s: unreadable lease file, taken as lapsed", self.path)
            return None

    def _write(self, holder: Holder, *, replace: bool) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(holder.to_dict(), f)
            if replace:
                os.replace(tmp, self.path)
            else:  # publish only if absent (O_EXCL semantics, with complete content)
                os.link(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def acquire(self) -> Holder:
        mine = Holder.this_process(self.job_id, self.ttl)
        with self._guard():
            current = self._read()
            if current is not None and current.alive():
                raise held_error(self.uri, current, f"leaves it after {current.ttl:.0f}s without "
                                 "a heartbeat, at once if it ran on this machine")
            if current is not None:
                log.warning("taking over the lease of job %s from a controller that is gone "
                            "(host %s, pid %s)", current.job_id, current.host, current.pid)
            try:
                self._write(mine, replace=self.path.exists())
            except FileExistsError:  # cannot happen under the guard; kept as the O_EXCL net
                raise held_error(self.uri, self._read() or mine, "lapses") from None
        self._mine = mine
        self._heartbeat = Heartbeat(self._beat, self.ttl / 3, f"lease-{self.job_id}")
        return mine

    def _beat(self) -> bool:
        mine = self._mine
        if mine is None:
            return True
        with self._guard():
            current = self._read()
            if current is None or current.token != mine.token:
                return False
            self._mine = mine = Holder(**{**mine.to_dict(), "heartbeat": time.time()})
            self._write(mine, replace=True)
        return True

    def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        mine, self._mine = self._mine, None
        if mine is None:
            return
        with self._guard():
            current = self._read()
            if current is not None and current.token == mine.token:
                self.path.unlink(missing_ok=True)

    def holder(self) -> Holder | None:
        current = self._read()
        return current if current is not None and current.alive() else None


def get_lease(output: str, job_id: str, config: StoreConfig | None = None) -> Lease:
    """The lease of the job writing ``output``, in the output's store."""
    from . import is_local

    uri = lease_uri(output)
    if is_local(uri):
        return LocalLease(uri, job_id)
    from .blob.lease import BlobLease

    return BlobLease(uri, job_id, config or StoreConfig.from_env())
