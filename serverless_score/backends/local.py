"""The ``local`` backend: each group is a ``python -m serverless_score.runner`` process in its own
session (process group), exactly as a container would run it. Deleting a group kills the whole
process group, so a scoring command's children go too. A pid file per group lets a later
controller find and stop orphans after a ``kill -9``."""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .base import LABEL_JOB, GroupInfo, GroupSpec, GroupState, Phase

_GRACE_SECONDS = 3.0


class LocalBackend:
    name = "local"

    def __init__(self, state_dir: str) -> None:
        self._dir = Path(state_dir)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def from_spec(cls, spec: object, *, state_dir: str) -> LocalBackend:
        return cls(state_dir)  # a process needs no image or cloud settings

    def tasks_per_group(self, pending: int, max_parallel: int) -> int:
        # One long-lived worker per slot: Python and the model load once per worker, not per task.
        return max(1, math.ceil(pending / max_parallel))

    def _pid_file(self, name: str) -> Path:
        return self._dir / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self._dir / f"{name}.log"

    def begin_create_group(self, group: GroupSpec) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        threads = str(max(1, math.floor(group.cpu)))
        env = {**os.environ, **group.env, **group.secure_env, "OMP_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        with open(self.log_path(group.name), "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "serverless_score.runner"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its own process group: killed as a whole on delete
            )
        self._procs[group.name] = proc
        self._pid_file(group.name).write_text(f"{proc.pid} {group.job_id}\n")

    def get_states(self, names: Sequence[str]) -> dict[str, GroupState]:
        states = {}
        for name in names:
            proc = self._procs.get(name)
            if proc is None:
                states[name] = GroupState(name, Phase.FAILED, None, "the worker process is gone")
                continue
            code = proc.poll()
            if code is None:
                states[name] = GroupState(name, Phase.RUNNING)
            elif code == 0:
                states[name] = GroupState(name, Phase.SUCCEEDED, 0)
            else:
                detail = (f"killed by signal {-code}" if code < 0 else f"exited with code {code}")
                states[name] = GroupState(name, Phase.FAILED, code, detail)
        return states

    def wait_any(self, names: Sequence[str], timeout: float) -> None:
        """Sleep until one of the named workers exits (a pidfd per worker becomes readable then),
        or ``timeout``: the controller's loop then collects a finished worker at once instead of
        up to a poll interval later. Without pidfds (not Linux, kernel < 5.3) it just sleeps."""
        fds: list[int] = []
        try:
            for name in names:
                proc = self._procs.get(name)
                if proc is None or proc.returncode is not None:
                    return  # already known to be gone: nothing to wait for
                fds.append(os.pidfd_open(proc.pid))
            if fds:
                select.select(fds, [], [], timeout)
        except (AttributeError, OSError):
            time.sleep(timeout)  # no pidfd_open here (or the pid was reaped meanwhile)
        finally:
            for fd in fds:
                os.close(fd)

    def get_logs(self, name: str) -> str:
        try:
            return self.log_path(name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def delete_group(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        pid = proc.pid if proc else self._read_pid(name)
        if pid is not None and (proc is not None or _is_our_runner(pid, name)):
            _kill_tree(pid, proc)
        self._pid_file(name).unlink(missing_ok=True)

    def list_groups(self, job_id: str) -> list[str]:
        return [info.name for info in self.list_all_groups() if info.job_id == job_id]

    def list_all_groups(self) -> list[GroupInfo]:
        found = []
        for pid_file in sorted(self._dir.glob("*.pid")):
            name = pid_file.stem
            try:
                pid_text, owner = pid_file.read_text().split()
            except ValueError:
                continue
            if name in self._procs or _is_our_runner(int(pid_text), name):
                found.append(GroupInfo(name, owner, {LABEL_JOB: owner}))
            else:
                pid_file.unlink(missing_ok=True)  # its worker ended on its own: nothing to stop
        return found

    def _read_pid(self, name: str) -> int | None:
        try:
            return int(self._pid_file(name).read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None


def _is_our_runner(pid: int, group: str) -> bool:
    """Only kill a pid from a pid file if it still is that group's runner (pids are reused)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"SERVERLESS_SCORE_GROUP={group}".encode() in environ.split(b"\0")


def _kill_tree(pid: int, proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the process group, then SIGKILL what is left after a grace period; reap."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        if proc is None and not _alive(pid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the whole group: a scorer's children included
    if proc is not None:
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
