"""How the emulator runs one container: as a local process tree (the default) or as a container on
a local Docker engine. Both give a ``Handle``: its output lines, its exit code, and a way to kill
it and everything it started."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .procfs import live_pids_with_env

LABEL = "aci-emulator"


class Handle(Protocol):
    def lines(self) -> Iterator[bytes]:
        """Output (stdout and stderr) line by line until the container ends."""
        ...

    def wait(self) -> int:
        ...

    def finished(self) -> None:
        """After ``wait``: remove what is left (orphan processes, the engine's container)."""
        ...

    def running(self) -> bool:
        ...

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM)."""
        ...

    def kill(self) -> None:
        """Stop it and everything it started, now."""
        ...


class Launcher(Protocol):
    def launch(self, *, image: str, argv: Sequence[str] | None, env: Mapping[str, str],
               home: Path, cpu: float, memory_gb: float, labels: Mapping[str, str]) -> Handle:
        """Start a container; ``argv`` None means the image's own entrypoint. Raises OSError
        when it cannot start."""
        ...

    def has_image(self, image: str) -> bool:
        ...

    def leftovers(self, emulator_id: str) -> list[str]:
        """What still runs for this emulator (pids or container ids): leak checks."""
        ...


class ProcessHandle:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def lines(self) -> Iterator[bytes]:
        assert self.proc.stdout is not None
        try:
            yield from iter(self.proc.stdout.readline, b"")
        finally:
            self.proc.stdout.close()

    def wait(self) -> int:
        return self.proc.wait()

    def finished(self) -> None:
        # The container ends with its main process: nothing it started outlives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def running(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the whole session, children included
        self.proc.wait()


class ProcessLauncher:
    """Each container is a process in its own session (process group), started with only the
    environment given (no inheritance from the test process)."""

    def __init__(self, resolve: Callable[[str], Any], pass_env: Sequence[str]) -> None:
        self._resolve = resolve  # image -> ImageDef (entrypoint, env), or None if unknown
        self._pass_env = tuple(pass_env)

    def launch(self, *, image: str, argv: Sequence[str] | None, env: Mapping[str, str],
               home: Path, cpu: float, memory_gb: float, labels: Mapping[str, str]) -> Handle:
        definition = self._resolve(image)
        command = list(argv) if argv else list(definition.entrypoint if definition else [])
        if not command:
            raise OSError(2, "no entrypoint for image", image)
        # A clean environment, as a container has: a few basics of this machine (PATH to find
        # Python and sh), its own HOME and TMPDIR, the image's variables, then the container's.
        full = {k: os.environ[k] for k in self._pass_env if k in os.environ}
        full.update({"HOME": str(home), "TMPDIR": str(home / "tmp"),
                     "HOSTNAME": labels.get("aci-emulator.group", "")})
        full.update(definition.env if definition else {})
        full.update(env)
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=home, env=full, start_new_session=True)
        return ProcessHandle(proc)

    def has_image(self, image: str) -> bool:
        return self._resolve(image) is not None

    def leftovers(self, emulator_id: str) -> list[str]:
        marker = f"ACI_EMULATOR_ID={emulator_id}".encode()
        return [str(pid) for pid in live_pids_with_env(lambda environ: marker in environ)]


class DockerHandle:
    def __init__(self, container: Any, grace: float) -> None:
        self.container = container
        self.grace = grace
        self._done = threading.Event()
        self._removing = threading.Lock()
        self._removed = False

    def lines(self) -> Iterator[bytes]:
        buffer = b""
        for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=True):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                yield line + b"\n"
        if buffer:
            yield buffer

    def wait(self) -> int:
        code = int(self.container.wait()["StatusCode"])
        self._done.set()
        return code

    def finished(self) -> None:
        self._remove()

    def running(self) -> bool:
        return not self._done.is_set()

    def terminate(self) -> None:
        with contextlib.suppress(Exception):
            self.container.kill(signal="SIGTERM")

    def kill(self) -> None:
        self._remove()

    def _remove(self) -> None:
        from docker.errors import NotFound

        with self._removing:  # the watcher and a delete may both get here
            if self._removed:
                return
            with contextlib.suppress(NotFound):
                self.container.remove(force=True)
            self._removed = True


class DockerLauncher:
    """Each container is a container on a local Docker engine (``DOCKER_HOST``), host network (no
    bridge here), labelled with the emulator's id. Images must already be in the engine: nothing
    can be pulled offline, so a missing image is an inaccessible one."""

    def __init__(self, base_url: str | None, emulator_id: str, grace: float,
                 limits: bool = True) -> None:
        import docker

        self.client = (docker.DockerClient(base_url=base_url, timeout=120) if base_url
                       else docker.from_env(timeout=120))
        self.client.ping()
        self.emulator_id = emulator_id
        self.grace = grace
        self.limits = limits

    def launch(self, *, image: str, argv: Sequence[str] | None, env: Mapping[str, str],
               home: Path, cpu: float, memory_gb: float, labels: Mapping[str, str]) -> Handle:
        from docker.errors import DockerException

        options: dict[str, Any] = {}
        if self.limits:
            options["nano_cpus"] = int(cpu * 1e9)
            options["mem_limit"] = f"{max(6, math.ceil(memory_gb * 1024))}m"
        try:
            container = self.client.containers.create(
                image, entrypoint=list(argv) if argv else None, command=None,
                environment=dict(env), network_mode="host", detach=True,
                labels={LABEL: self.emulator_id, **labels}, **options)
            container.start()
        except DockerException as err:
            raise OSError(1, str(err).splitlines()[0] if str(err) else type(err).__name__,
                          image) from None
        return DockerHandle(container, self.grace)

    def has_image(self, image: str) -> bool:
        from docker.errors import ImageNotFound

        try:
            self.client.images.get(image)
        except ImageNotFound:
            return False
        return True

    def leftovers(self, emulator_id: str) -> list[str]:
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL}={emulator_id}"})
        return [c.id[:12] for c in found]


def wait_all(handles: Sequence[Handle], grace: float) -> None:
    """SIGTERM all, give them ``grace`` seconds, then kill what is left (and its children)."""
    for handle in handles:
        handle.terminate()
    deadline = time.monotonic() + grace
    while any(h.running() for h in handles) and time.monotonic() < deadline:
        time.sleep(0.02)
    for handle in handles:
        handle.kill()
