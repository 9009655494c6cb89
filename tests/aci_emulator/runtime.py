"""Moves container groups through ACI's states while their containers run (as local processes or
on a Docker engine: ``launchers.py``).

Per group, one driver thread walks provisioning Pending -> Creating (events Pulling, Pulled) ->
Succeeded (containers started, group state Running); per container, one thread reads its output
into the log and, when it ends, records Terminated with its exit code, restarts it when the restart
policy (or an injected fault) says so, and settles the group's state once every container has
terminated. Deleting or stopping the group, or a container's main process ending, takes down
everything the container started, as ending a real container does."""

from __future__ import annotations

import fnmatch
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .groups import ContainerRun, Group, add_event, utc_now
from .launchers import DockerLauncher, Handle, Launcher, ProcessLauncher, wait_all

# A container that never exits by itself (the "hung container" fault).
HANG_ARGV = (sys.executable, "-c", "import time\nwhile True:\n    time.sleep(3600)")
HANG_SH = ("sh", "-c", "while :; do sleep 3600; done")  # the same inside a Docker image
RUNNER_ARGV = (sys.executable, "-m", "serverless_score.runner")
DEFAULT_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "SYSTEMROOT")


@dataclass(frozen=True)
class ImageDef:
    """What an image runs here: its entrypoint (a container's ``command`` replaces it, as in ACI),
    the environment the image brings, and how long pulling it takes."""

    entrypoint: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    pull_seconds: float = 0.0


def default_images() -> list[tuple[str, ImageDef]]:
    """Patterns (fnmatch, first match wins) to images. Any image named like the project's runner
    image runs the runner of this checkout; ``emu/shell`` runs a given command."""
    runner = ImageDef(RUNNER_ARGV)
    return [
        ("*serverless-score*", runner),
        ("*serverless_score*", runner),
        ("runner", runner),
        ("runner:*", runner),
        ("emu/shell*", ImageDef(("sh", "-c", "true"))),
        ("emu/hang*", ImageDef(HANG_ARGV)),
    ]


@dataclass
class ProvisioningFailure:
    pattern: str
    code: str
    message: str
    remaining: int
    event: bool = True  # also a Warning event on the group (else the reason is only in the operation)


@dataclass
class FlakyPull:
    """The next ``remaining`` pulls of matching images fail once (events ``Failed`` and
    ``BackOff``, Warning; container Waiting/ErrImagePull) and are pulled again ``seconds`` later,
    as ACI retries a pull after a transient registry error. The Warning events stay."""

    pattern: str
    remaining: int
    seconds: float
    message: str


@dataclass
class Faults:
    inaccessible_at_create: list[str] = field(default_factory=list)  # image patterns
    inaccessible_at_pull: list[str] = field(default_factory=list)
    hang: list[str] = field(default_factory=list)  # image or container name patterns
    restarts: dict[str, int] = field(default_factory=dict)  # pattern -> restarts per container
    provisioning: list[ProvisioningFailure] = field(default_factory=list)
    flaky_pulls: list[FlakyPull] = field(default_factory=list)
    provision_delay: float = 0.0  # seconds between Pulled and Started: slow provisioning


def matches(patterns: list[str] | Mapping[str, Any], *names: str) -> str | None:
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(name, pattern) for name in names):
            return pattern
    return None


@dataclass
class Settings:
    work_dir: Path
    emulator_id: str
    images: list[tuple[str, ImageDef]]
    pass_env: tuple[str, ...] = DEFAULT_PASS_ENV
    extra_env: dict[str, str] = field(default_factory=dict)
    unknown_images: str = "create"  # "create": PUT answers 400 InaccessibleImage; "pull": later
    pending_seconds: float = 0.05  # Pending before Creating
    pull_seconds: float = 0.05  # Pulling -> Pulled, plus the image's own pull_seconds
    restart_delay: float = 0.2  # back-off before a restart
    kill_grace: float = 1.0  # SIGTERM -> SIGKILL on delete/stop
    truncate_stopped_logs: bool = True
    docker: str | None = None  # None: processes; "" the engine of DOCKER_HOST; or its URL
    docker_limits: bool = True  # pass cpu/memory requests as engine limits


class Engine:
    """Every group the emulator holds, behind one lock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.faults = Faults()
        self.lock = threading.RLock()
        self.launched = threading.Condition(self.lock)  # notified when a launch completes
        self.groups: dict[tuple[str, str, str], Group] = {}
        self.launcher: Launcher
        if settings.docker is not None:
            self.launcher = DockerLauncher(settings.docker or None, settings.emulator_id,
                                           settings.kill_grace, limits=settings.docker_limits)
        else:
            self.launcher = ProcessLauncher(self.image_def, settings.pass_env)

    # -- images ------------------------------------------------------------------------------
    def image_def(self, image: str) -> ImageDef | None:
        for pattern, definition in self.settings.images:
            if fnmatch.fnmatchcase(image, pattern):
                return definition
        return None

    def inaccessible_at_create(self, image: str) -> bool:
        if matches(self.faults.inaccessible_at_create, image):
            return True
        return self.settings.unknown_images == "create" and not self.launcher.has_image(image)

    def inaccessible_at_pull(self, image: str) -> bool:
        return (bool(matches(self.faults.inaccessible_at_pull, image))
                or not self.launcher.has_image(image))

    # -- lifecycle ---------------------------------------------------------------------------
    def start_group(self, group: Group) -> None:
        for container in group.containers:
            pattern = matches(self.faults.restarts, container.name, container.image)
            container.restarts_left = self.faults.restarts[pattern] if pattern else 0
        thread = threading.Thread(target=self._drive, args=(group,), daemon=True,
                                  name=f"aci-emu-{group.name}")
        thread.start()

    def _sleep(self, group: Group, seconds: float) -> bool:
        """Wait; False if the group was deleted meanwhile."""
        return not group.deleted.wait(max(0.0, seconds))

    def _drive(self, group: Group) -> None:
        if not self._sleep(group, self.settings.pending_seconds):
            return
        with self.lock:
            if group.deleted.is_set():
                return
            group.provisioning = "Creating"
            group.operation.status = "Creating"
            for c in group.containers:
                add_event(c.events, "Pulling", f'pulling image "{c.image}"')
                c.current = {"state": "Waiting", "detailStatus": "ContainerCreating"}
            failure = next((f for f in self.faults.provisioning
                            if f.remaining > 0 and fnmatch.fnmatchcase(group.name, f.pattern)),
                           None)
            if failure is not None:
                failure.remaining -= 1
            flaky = self._flaky_pulls(group)
        pull = self.settings.pull_seconds + max(
            (d.pull_seconds for c in group.containers if (d := self.image_def(c.image))),
            default=0.0)
        if not self._sleep(group, pull):
            return
        if flaky and not self._pull_again(group, flaky, pull):
            return
        # (Asking a Docker engine takes a moment: not under the lock.)
        unpullable = [c for c in group.containers if self.inaccessible_at_pull(c.image)]
        with self.lock:
            if group.deleted.is_set():
                return
            for c in unpullable:
                add_event(c.events, "Failed", f'Failed to pull image "{c.image}": rpc error: code '
                          f"= Unknown desc = failed to resolve reference: not found or "
                          f"unauthorized", "Warning")
                add_event(c.events, "BackOff", f'Back-off pulling image "{c.image}"', "Warning")
                c.current = {"state": "Waiting", "detailStatus": "ErrImagePull"}
            if unpullable:
                message = (f"The image '{unpullable[0].image}' in container group '{group.name}' "
                           f"is not accessible. Please check the image and registry credential.")
                group.provisioning = "Failed"
                group.state = "Failed"
                group.operation.finish("Failed", {"code": "InaccessibleImage", "message": message})
                return
            for c in group.containers:
                add_event(c.events, "Pulled", f'Successfully pulled image "{c.image}"')
            if failure is not None:
                # Provisioning failed after the pull, before anything ran: provisioning Failed
                # while the group's state stays Pending and the containers Waiting (as in the
                # REST spec's ContainerGroupsGet_Failed example): a watcher that waits on the
                # state alone waits forever.
                for c in group.containers:
                    c.current = {"state": "Waiting", "detailStatus": ""}
                group.provisioning = "Failed"
                group.operation.finish("Failed", {"code": failure.code, "message": failure.message})
                if failure.event:
                    add_event(group.events, "Failed", failure.message, "Warning")
                return
        if not self._sleep(group, self.faults.provision_delay):
            return
        starters = [threading.Thread(target=self._start_container, args=(group, c), daemon=True)
                    for c in group.containers]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join()
        with self.lock:
            if group.deleted.is_set():
                return
            group.provisioning = "Succeeded"
            group.operation.finish("Succeeded")
            if group.state == "Pending":
                group.state = "Running"
            self._settle(group)  # containers that could not even start

    def _flaky_pulls(self, group: Group) -> list[tuple[ContainerRun, FlakyPull]]:
        """The containers whose first pull fails this time (called under the lock)."""
        chosen = []
        for c in group.containers:
            fault = next((f for f in self.faults.flaky_pulls
                          if f.remaining > 0 and fnmatch.fnmatchcase(c.image, f.pattern)), None)
            if fault is not None:
                fault.remaining -= 1
                chosen.append((c, fault))
        return chosen

    def _pull_again(self, group: Group, flaky: list[tuple[ContainerRun, FlakyPull]],
                    pull: float) -> bool:
        """A pull failed (transient): Warning events, back-off, then pull again. False if the
        group was deleted meanwhile."""
        with self.lock:
            if group.deleted.is_set():
                return False
            for c, fault in flaky:
                add_event(c.events, "Failed", fault.message.format(image=c.image), "Warning")
                add_event(c.events, "BackOff", f'Back-off pulling image "{c.image}"', "Warning")
                c.current = {"state": "Waiting", "detailStatus": "ErrImagePull"}
        if not self._sleep(group, max(fault.seconds for _, fault in flaky)):
            return False
        with self.lock:
            if group.deleted.is_set():
                return False
            for c, _ in flaky:
                add_event(c.events, "Pulling", f'pulling image "{c.image}"')
                c.current = {"state": "Waiting", "detailStatus": "ContainerCreating"}
        return self._sleep(group, pull)

    def _argv(self, c: ContainerRun) -> list[str] | None:
        """The command to run; None: the image's own entrypoint."""
        if matches(self.faults.hang, c.name, c.image):
            return list(self.launcher_hang_argv())
        command = c.spec.get("command")
        return [str(part) for part in command] if command else None

    def launcher_hang_argv(self) -> tuple[str, ...]:
        return HANG_ARGV if isinstance(self.launcher, ProcessLauncher) else HANG_SH

    def _env(self, group: Group, c: ContainerRun) -> dict[str, str]:
        env = dict(self.settings.extra_env)
        for var in c.spec.get("environmentVariables") or []:
            value = var.get("secureValue", var.get("value"))
            env[str(var["name"])] = "" if value is None else str(value)
        # Markers so a test can find every process the emulator started (leak checks).
        env["ACI_EMULATOR_ID"] = self.settings.emulator_id
        env["ACI_EMULATOR_GROUP"] = group.name
        return env

    def _start_container(self, group: Group, c: ContainerRun) -> None:
        """Start (or restart) one container. Called WITHOUT the lock: starting a container on an
        engine takes a while, and GETs must not wait for it."""
        with self.lock:
            if group.deleted.is_set() or group.stopped:
                return
            group.launching += 1  # a delete waits for this launch, then kills what it started
            home = self.settings.work_dir / group.resource_group / group.name / c.name
            argv, env = self._argv(c), self._env(group, c)
            requests = (c.spec.get("resources") or {}).get("requests") or {}
        try:
            self._launch(group, c, home, argv, env, requests)
        finally:
            with self.lock:
                group.launching -= 1
                self.launched.notify_all()

    def _launch(self, group: Group, c: ContainerRun, home: Path, argv: list[str] | None,
                env: dict[str, str], requests: dict[str, Any]) -> None:
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        started = utc_now()
        try:
            handle = self.launcher.launch(
                image=c.image, argv=argv, env=env, home=home,
                cpu=float(requests.get("cpu") or 1), memory_gb=float(requests.get("memoryInGB") or 1),
                labels={"aci-emulator.group": group.name, "aci-emulator.container": c.name})
        except OSError as err:
            with self.lock:
                add_event(c.events, "Failed", f'Error: failed to start container "{c.name}": '
                          f"{err.strerror}: {(argv or [c.image])[0]}", "Warning")
                c.current = {"state": "Terminated", "startTime": started,
                             "finishTime": utc_now(), "exitCode": 127,
                             "detailStatus": "ContainerCannotRun"}
                c.restart_pending = False
            return
        with self.lock:
            c.handle = handle
            c.restart_pending = False
            c.current = {"state": "Running", "startTime": started, "detailStatus": ""}
            add_event(c.events, "Started", "Started container")
            thread = threading.Thread(target=self._watch, args=(group, c, handle), daemon=True,
                                      name=f"aci-emu-{group.name}-{c.name}")
            c.threads.append(thread)
            thread.start()
            if group.deleted.is_set() or group.stopped:
                handle.kill()  # deleted while it was starting

    def _watch(self, group: Group, c: ContainerRun, handle: Handle) -> None:
        reader = threading.Thread(target=self._read, args=(c, handle), daemon=True)
        reader.start()
        code = handle.wait()
        reader.join(timeout=5)
        handle.finished()
        with self.lock:
            if group.deleted.is_set() or group.stopped or c.handle is not handle:
                return
            c.current = {"state": "Terminated", "startTime": c.current.get("startTime"),
                         "finishTime": utc_now(), "exitCode": code,
                         "detailStatus": "Completed" if code == 0 else "Error"}
            policy = group.restart_policy
            restart = (c.restarts_left > 0 or policy == "Always"
                       or (policy == "OnFailure" and code != 0))
            if restart:
                c.restarts_left = max(0, c.restarts_left - 1)
                c.restart_pending = True
                c.previous = dict(c.current)
                c.restart_count += 1
                if code != 0:
                    add_event(c.events, "BackOff", "Back-off restarting failed container",
                              "Warning")
                c.current = {"state": "Waiting", "detailStatus": "CrashLoopBackOff"}
                timer = threading.Timer(self.settings.restart_delay, self._start_container,
                                        (group, c))
                timer.daemon = True
                timer.start()
                return
            self._settle(group)

    def _read(self, c: ContainerRun, handle: Handle) -> None:
        for raw in handle.lines():
            line = raw.decode("utf-8", errors="replace")
            with self.lock:
                c.append_log(line if line.endswith("\n") else line + "\n", time.time_ns())

    @staticmethod
    def _settle(group: Group) -> None:
        """Once every container has terminated (restart policy Never/OnFailure), the group is
        Succeeded if all exited 0, else Failed."""
        if group.state not in ("Running", "Pending") or not group.containers:
            return
        if all(c.terminated for c in group.containers):
            ok = all(c.current.get("exitCode") == 0 for c in group.containers)
            group.state = "Succeeded" if ok else "Failed"

    # -- ending ------------------------------------------------------------------------------
    def kill(self, group: Group, *, event: str = "Killing") -> None:
        """Kill every container (SIGTERM, then SIGKILL after ``kill_grace``, whole trees) and
        wait for it. Called WITHOUT the lock (it waits for the watcher threads, which take it)."""
        handles = []
        with self.lock:
            # A container being launched right now would escape the kill: wait for it first.
            self.launched.wait_for(lambda: group.launching == 0, timeout=60)
            for c in group.containers:
                if c.handle is not None and c.handle.running():
                    add_event(c.events, event, f"Killing container with id {c.name}")
                    handles.append(c.handle)
        wait_all(handles, self.settings.kill_grace)
        for c in group.containers:
            for thread in c.threads:
                if thread is not threading.current_thread():
                    thread.join(timeout=10)
            if c.handle is not None:
                c.handle.finished()

    def evict(self, group: Group) -> None:
        """A Spot eviction: every running container is killed and, whatever the restart policy,
        restarted (``restartCount`` + 1, ``previousState`` the killed run)."""
        with self.lock:
            for c in group.containers:
                if c.handle is not None and c.handle.running():
                    c.restarts_left += 1
        self.kill(group)

    def stop(self, group: Group) -> None:
        with self.lock:
            group.stopped = True
        self.kill(group)
        with self.lock:
            for c in group.containers:
                if c.current.get("state") != "Terminated":
                    c.current = {"state": "Terminated", "startTime": c.current.get("startTime"),
                                 "finishTime": utc_now(), "exitCode": 137,
                                 "detailStatus": "Killed"}
            group.state = "Stopped"

    def destroy(self, group: Group) -> None:
        with self.lock:
            group.deleted.set()
            if group.operation.end is None:
                # Its creation will never finish: end the operation, or pollers wait forever.
                group.operation.finish("Canceled", {
                    "code": "OperationCanceled",
                    "message": f"The operation on container group '{group.name}' was canceled: "
                               f"the group was deleted or replaced."})
        self.kill(group)

    def leftovers(self) -> list[str]:
        """What still runs for this emulator: pids (processes) or container ids (Docker)."""
        return self.launcher.leftovers(self.settings.emulator_id)
