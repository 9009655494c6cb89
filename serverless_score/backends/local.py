"""The ``local`` backend: each group is a ``python -m serverless_score.runner`` process in its own
session (process group), exactly as a container would run it. Deleting a group kills the whole
process group, so a scoring command's children go too. A pid file per group lets a later
controller find and stop orphans after a ``kill -9``.

A group's labels (job, tasks, expires) travel in its environment (``SERVERLESS_SCORE_LABELS``), the
local equivalent of container tags: ``list_all_groups`` also finds this user's runner processes
through ``/proc`` (Linux), so ``cleanup --job ID`` works without the job's state directory."""

from __future__ import annotations

import contextlib
import json
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
ENV_LABELS = "SERVERLESS_SCORE_LABELS"
_ENV_GROUP = "SERVERLESS_SCORE_GROUP"  # runner.contract.ENV_GROUP (not imported: no cycle)


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
        labels = {LABEL_JOB: group.job_id, **group.labels}
        env = {**os.environ, **group.env, **group.secure_env, **group.thread_caps(),
               ENV_LABELS: json.dumps(labels)}
        with open(self.log_path(group.name), "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "serverless_score.runner"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its own process group: killed as a whole on delete
            )
        self._procs[group.name] = proc
        self._pid_file(group.name).write_text(json.dumps({"pid": proc.pid, "labels": labels}) + "\n")

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

    def wait_any(self, names: Sequence[str], timeout: float, wake: int | None = None) -> bool:
        """Sleep until one of the named workers exits (a pidfd per worker becomes readable then),
        ``wake`` becomes readable (a worker stored a status: controller/wakeup.py), or
        ``timeout``: the controller's loop then sees it at once instead of up to a poll interval
        later. True when ``wake`` woke it. Without pidfds (not Linux, kernel < 5.3) it waits on
        ``wake`` alone."""
        fds: list[int] = []
        also = [wake] if wake is not None else []
        try:
            try:
                for name in names:
                    proc = self._procs.get(name)
                    if proc is None or proc.returncode is not None:
                        return False  # already known to be gone: nothing to wait for
                    fds.append(os.pidfd_open(proc.pid))
            except (AttributeError, OSError):  # no pidfd_open here (or the pid was reaped)
                for fd in fds:
                    os.close(fd)
                fds = []
            ready, _, _ = select.select(fds + also, [], [], timeout)
        finally:
            for fd in fds:
                os.close(fd)
        return wake is not None and wake in ready

    def get_logs(self, name: str) -> str:
        try:
            return self.log_path(name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def delete_group(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        pid = proc.pid if proc else self._read_pid(name)
        if pid is None or (proc is None and not _is_our_runner(pid, name)):
            pid = next((p for p, n, _ in _runner_processes() if n == name), None)
        if pid is not None and (proc is not None or _is_our_runner(pid, name)):
            _kill_tree(pid, proc)
        self._pid_file(name).unlink(missing_ok=True)

    def list_groups(self, job_id: str) -> list[str]:
        return [info.name for info in self.list_all_groups() if info.job_id == job_id]

    def list_all_groups(self) -> list[GroupInfo]:
        """This state directory's live groups, and every other runner process of this user
        (another job's, or one whose state directory is unknown here)."""
        found: dict[str, GroupInfo] = {}
        for pid_file in sorted(self._dir.glob("*.pid")):
            name = pid_file.stem
            entry = _read_pid_file(pid_file)
            if entry is None:
                continue
            pid, labels = entry
            if name in self._procs or _is_our_runner(pid, name):
                found[name] = GroupInfo(name, labels.get(LABEL_JOB, ""), labels)
            else:
                pid_file.unlink(missing_ok=True)  # its worker ended on its own: nothing to stop
        for _, name, labels in _runner_processes():
            if name not in found and labels.get(LABEL_JOB):
                found[name] = GroupInfo(name, labels[LABEL_JOB], labels)
        return sorted(found.values(), key=lambda g: g.name)

    def _read_pid(self, name: str) -> int | None:
        entry = _read_pid_file(self._pid_file(name))
        return entry[0] if entry else None


def _read_pid_file(path: Path) -> tuple[int, dict[str, str]] | None:
    """(pid, labels) of a pid file: JSON, or the older ``"<pid> <job>"`` line."""
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        data = json.loads(text)
        return int(data["pid"]), {str(k): str(v) for k, v in data.get("labels", {}).items()}
    except (ValueError, KeyError, TypeError):
        pass
    try:
        pid_text, owner = text.split()
        return int(pid_text), {LABEL_JOB: owner}
    except ValueError:
        return None


def _runner_processes() -> list[tuple[int, str, dict[str, str]]]:
    """(pid, group, labels) of every live group leader of this user, from ``/proc``: a process
    whose environment names a group and that leads its own process group (the runner; the
    scoring commands it starts inherit the variable but not the leadership)."""
    found: list[tuple[int, str, dict[str, str]]] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        if stat[0] == "Z" or int(stat[2]) != pid:  # a zombie, or not its group's leader
            continue
        variables = dict(v.split(b"=", 1) for v in environ.split(b"\0") if b"=" in v)
        group = variables.get(_ENV_GROUP.encode())
        if not group:
            continue
        try:
            labels = json.loads(variables.get(ENV_LABELS.encode(), b"{}"))
        except ValueError:
            labels = {}
        found.append((pid, group.decode(errors="replace"),
                      {str(k): str(v) for k, v in labels.items()}))
    return found


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
    exited = _exit_fd(pid)  # readable once it exits: no poll interval added to every delete
    try:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            if proc is None and not _alive(pid):
                break
            if exited is not None:
                if select.select([exited], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    break  # it exited (a zombie not ours to reap still passes for alive)
            else:
                time.sleep(0.05)
    finally:
        if exited is not None:
            os.close(exited)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the whole group: a scorer's children included
    if proc is not None:
        proc.wait()


def _exit_fd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or already gone
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
