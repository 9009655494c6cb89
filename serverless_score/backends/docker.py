"""The ``docker`` backend: each group is one container of a scoring image on a Docker engine
(``DOCKER_HOST``), running ``python -m serverless_score.runner`` over its tasks one after another:
the ACI lifecycle (create, poll, logs, delete) on a local engine.

* Containers carry the group's labels (job, tasks, expires) and ``managed-by=serverless-score``,
  so ``list_groups`` / ``list_all_groups`` find them again after a controller crash.
* ``[resources]``: ``cpu`` -> CPU quota (NanoCpus), ``memory_gb`` -> memory limit, no swap. A
  container the kernel killed for its memory says so (OOMKilled), with the key to raise.
* Local paths of the job are bind-mounted at the same paths (``docker_mounts.py``); then the
  container runs as the caller's uid:gid, so parts belong to the caller as with ``local``.
* Network: ``SERVERLESS_SCORE_DOCKER_NETWORK`` (default ``host``: blob endpoints the controller
  reaches, Azurite on localhost included, are reached the same way).
* Never auto-removed: the logs are read first, then ``delete_group`` removes it (also on failure,
  Ctrl-C and SIGTERM: the scheduler's ``stop_all``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import ScoreError, SpecError
from ..runner.contract import ENV_SECRETS
from .base import LABEL_JOB, GroupInfo, GroupSpec, GroupState, Phase
from .docker_mounts import Bind, job_binds

if TYPE_CHECKING:
    import docker

MANAGED_LABEL, MANAGED_VALUE = "managed-by", "serverless-score"
ENV_NETWORK = "SERVERLESS_SCORE_DOCKER_NETWORK"
ENV_USER = "SERVERLESS_SCORE_DOCKER_USER"
_GRACE_SECONDS = 3
_DELETE_DEADLINE = 60.0
# Credentials a worker on this machine would have inherited (the local backend passes its whole
# environment): forwarded only to a container that got no per-task SAS grants.
_MACHINE_CREDENTIALS = ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_CONNECTION_STRING",
                        "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_ID",
                        "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST")


def container_phase(state: Mapping[str, Any], memory_gb: float | None) -> tuple[Phase, int | None, str]:
    """(phase, exit code, detail) from a container's inspected ``State``."""
    status = state.get("Status", "")
    if status == "created":
        return Phase.STARTING, None, ""
    if status in ("running", "paused", "restarting", "removing"):
        return Phase.RUNNING, None, ""
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        limit = f"{memory_gb:g} GB" if memory_gb else "its memory limit"
        return (Phase.FAILED, code,
                f"was killed for using more memory than its limit ({limit}); raise "
                "[resources] memory_gb")
    if state.get("Error"):
        return Phase.FAILED, code, f"could not run: {state['Error']}"
    if status == "dead":
        return Phase.FAILED, code, "died (the engine marked the container dead)"
    if code == 0:
        return Phase.SUCCEEDED, 0, ""
    if code in (137, 143):
        return Phase.FAILED, code, f"was killed by signal {code - 128} (exit code {code})"
    return Phase.FAILED, code, f"exited with code {code}"


def engine_time(text: Any) -> float | None:
    """Epoch seconds of an engine's RFC 3339 time with nanoseconds (``Created``, ``StartedAt``);
    None for the zero time ``0001-01-01T00:00:00Z`` (never) or anything else."""
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return None
    found = _ENGINE_TIME.fullmatch(text.strip())
    if found is None:
        return None
    main, fraction, zone = found.groups()
    try:  # Python's parser takes microseconds at most; an engine may give an offset, not Z
        when = datetime.fromisoformat(main + (f".{fraction[:6]}" if fraction else "")
                                      + ("" if zone in ("", "Z") else zone))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


_ENGINE_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d|)")


def container_times(state: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(started, finished) epoch seconds from an inspected ``State``."""
    return engine_time(state.get("StartedAt")), engine_time(state.get("FinishedAt"))


class DockerBackend:
    name = "docker"

    def __init__(self, image: str, *, client: docker.DockerClient | None = None,
                 binds: Sequence[Bind] = (), network: str | None = None,
                 user: str | None = None) -> None:
        if client is None:
            from ..docker_engine import docker_client

            client = docker_client()
        self.client = client
        self.image = image
        self.binds = list(binds)
        self.network = network or os.environ.get(ENV_NETWORK) or "host"
        writable = any(not b.read_only for b in self.binds)
        # Files written through a bind mount belong to the container's uid: the caller's, as a
        # local worker's would. Blob-only jobs keep the image's own non-root user.
        self.user = user or os.environ.get(ENV_USER) or (
            f"{os.getuid()}:{os.getgid()}" if writable else None)
        self._memory: dict[str, float] = {}
        # When the engine made each running container, to the microsecond: the container list's
        # ``Created`` is whole seconds, which put up to a second more or less on every group's
        # container-seconds (a 1.2 s job read 2.4 to 4.1 for two groups).
        self._created: dict[str, float] = {}
        self._start_errors: dict[str, str] = {}
        # (runtime, whether the job named the image): checked before the first container only,
        # so status, logs and cleanup work on an engine without the image.
        self._image_check: tuple[str, bool] | None = None

    @classmethod
    def from_spec(cls, spec: Any, *, state_dir: str | None = None) -> DockerBackend:
        from ..images.context import default_tag

        image = spec.image or default_tag(spec.runtime)
        binds = job_binds(model=spec.model, input=spec.input, output=spec.output,
                          scorer=spec.scorer, runtime=spec.runtime)
        backend = cls(image, binds=binds)
        backend._image_check = (spec.runtime, spec.image is not None)
        return backend

    # -- checks before anything runs --------------------------------------------------------------
    def check_image(self, runtime: str, named: bool) -> None:
        """The image is on the engine (pulled if the job names one that is not) and is of the
        job's runtime when it says which it is."""
        from docker.errors import APIError, ImageNotFound

        from ..images.context import LABEL_RUNTIME

        try:
            image = self.client.images.get(self.image)
        except ImageNotFound:
            image = None
        if image is None and named:
            with contextlib.suppress(APIError, ImageNotFound):
                image = self.client.images.pull(self.image)
        if image is None:
            build_runtime = "python" if runtime == "command" else runtime
            raise ScoreError(
                f"image {self.image} is not on the Docker engine"
                + (" and could not be pulled" if named else ""),
                hint=f"Build it: serverless-score image build --runtime {build_runtime} "
                     f"--tag {self.image}" + (" --r-packages <the model's packages>"
                                              if build_runtime == "r" else "")
                     + " (README: Images).")
        kind = (image.labels or {}).get(LABEL_RUNTIME)
        if runtime == "r" and kind == "python":
            raise SpecError(f"image: {self.image} is a Python image; runtime = \"r\" needs an R "
                            "image (serverless-score image build --runtime r)")

    # -- the Backend protocol -----------------------------------------------------------------
    def tasks_per_group(self, pending: int, max_parallel: int) -> int:
        # One container per slot: start-up (Python, R, the model) is paid once per container.
        return max(1, math.ceil(pending / max_parallel))

    def begin_create_group(self, group: GroupSpec) -> None:
        from docker.errors import APIError, ImageNotFound
        from docker.types import Mount

        if self._image_check is not None:
            self.check_image(*self._image_check)
            self._image_check = None
        for bind in self.binds:
            if not bind.read_only:  # the work dir: the controller writes there anyway
                os.makedirs(bind.path, exist_ok=True)
        env = {**self._machine_credentials(group), **group.env, **group.secure_env,
               **group.thread_caps(), "SERVERLESS_SCORE_CACHE": "/tmp/serverless-score"}
        if self.user is not None:
            env["HOME"] = "/tmp"  # the caller's uid has no home in the image
        memory = int(group.memory_gb * 1024**3)
        labels = {**group.labels, LABEL_JOB: group.job_id, MANAGED_LABEL: MANAGED_VALUE}
        self._memory[group.name] = group.memory_gb
        self._remove_quietly(group.name)  # a leftover of the same name (same task and attempt)
        try:
            self.client.api.create_container(
                self.image, name=group.name, environment=env, labels=labels, detach=True,
                user=self.user or "", stdin_open=False, tty=False,
                host_config=self.client.api.create_host_config(
                    network_mode=self.network, nano_cpus=int(group.cpu * 1e9), mem_limit=memory,
                    memswap_limit=memory, init=True,
                    mounts=[Mount(b.path, b.path, type="bind", read_only=b.read_only)
                            for b in self.binds]))
        except ImageNotFound:
            raise ScoreError(f"image {self.image} is not on the Docker engine any more",
                             hint="Build it again: serverless-score image build") from None
        except APIError as err:
            # Never the environment in a message: it holds the secure values.
            raise ScoreError(f"creating container {group.name} failed: {_explain(err)}",
                             hint=_create_hint(_explain(err))) from None
        except KeyboardInterrupt:  # Ctrl-C before the scheduler knew of the group: ours to remove
            self._remove_quietly(group.name)
            raise
        try:
            self.client.api.start(group.name)
        except APIError as err:
            self._start_errors[group.name] = f"could not start: {_explain(err)}"
        except KeyboardInterrupt:
            self._remove_quietly(group.name)
            raise

    def get_states(self, names: Sequence[str]) -> dict[str, GroupState]:
        from docker.errors import NotFound

        listed = {c["Names"][0].lstrip("/"): c for c in self._containers()}
        states = {}
        for name in names:
            if name in self._start_errors:
                states[name] = GroupState(name, Phase.FAILED, None, self._start_errors[name])
                continue
            summary = listed.get(name)
            if summary is None:
                states[name] = GroupState(name, Phase.FAILED, None,
                                          "container is gone (removed outside serverless-score?)")
                continue
            if summary.get("State") in ("created", "running", "paused", "restarting"):
                phase, code, detail = container_phase({"Status": summary["State"]}, None)
            else:  # finished: only now is the exit code worth a call
                try:
                    inspected = self.client.api.inspect_container(name)["State"]
                except NotFound:
                    inspected = {"Status": "dead", "Error": "removed before it was inspected"}
                phase, code, detail = container_phase(inspected, self._memory.get(name))
                started, finished = container_times(inspected)
                states[name] = GroupState(name, phase, code, detail, started, finished)
                continue
            # Running: its seconds count from when the engine made it (a group that waits for
            # work is removed while it runs, and counts until then).
            states[name] = GroupState(name, phase, code, detail,
                                      started_at=self._created_at(name, summary))
        return states

    def _created_at(self, name: str, summary: Mapping[str, Any]) -> float | None:
        """The container's creation time from one inspect (kept), else the list's whole
        seconds."""
        from docker.errors import APIError, NotFound

        if name not in self._created:
            try:
                created = engine_time(self.client.api.inspect_container(name).get("Created"))
            except (NotFound, APIError):
                created = None
            if created is None:
                listed = summary.get("Created")
                return float(listed) if listed else None
            self._created[name] = created
        return self._created[name]

    def get_logs(self, name: str) -> str:
        from docker.errors import APIError, NotFound

        try:
            raw = self.client.api.logs(name, stdout=True, stderr=True, stream=False)
        except NotFound:
            return ""
        except APIError as err:
            return f"(the container's log could not be read: {_explain(err)})\n"
        return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)

    def delete_group(self, name: str) -> None:
        """SIGTERM, SIGKILL after a grace period, remove; returns once it is gone."""
        from docker.errors import APIError, NotFound

        self._memory.pop(name, None)
        self._created.pop(name, None)
        self._start_errors.pop(name, None)
        try:
            self.client.api.stop(name, timeout=_GRACE_SECONDS)
        except NotFound:
            return
        except APIError:
            pass  # removal below forces it
        deadline = time.monotonic() + _DELETE_DEADLINE
        while True:
            try:
                self.client.api.remove_container(name, force=True)
                return
            except NotFound:
                return
            except APIError as err:  # 409: a removal already in progress
                if time.monotonic() > deadline:
                    raise ScoreError(f"container {name} could not be removed: {_explain(err)}",
                                     hint=f"Remove it by hand: docker rm -f {name}") from None
                time.sleep(0.2)

    def list_groups(self, job_id: str) -> list[str]:
        return [c["Names"][0].lstrip("/") for c in self._containers(f"{LABEL_JOB}={job_id}")]

    def list_all_groups(self) -> list[GroupInfo]:
        found = []
        for c in self._containers():
            labels = c.get("Labels") or {}
            found.append(GroupInfo(c["Names"][0].lstrip("/"), labels.get(LABEL_JOB, ""), labels))
        return found

    # -- helpers ------------------------------------------------------------------------------
    def _containers(self, *labels: str) -> list[dict[str, Any]]:
        """Our containers (one API call), optionally narrowed by more ``key=value`` labels."""
        wanted = [f"{MANAGED_LABEL}={MANAGED_VALUE}", *labels]
        found: list[dict[str, Any]] = self.client.api.containers(all=True, filters={"label": wanted})
        return found

    def _remove_quietly(self, name: str) -> None:
        from docker.errors import APIError, NotFound

        with contextlib.suppress(NotFound, APIError):
            if (self.client.api.inspect_container(name)["Config"]["Labels"] or {}).get(MANAGED_LABEL) == MANAGED_VALUE:
                self.client.api.remove_container(name, force=True)

    @staticmethod
    def _machine_credentials(group: GroupSpec) -> dict[str, str]:
        """What a local worker would have inherited, unless the group got per-task SAS grants
        (then it must not hold more than those)."""
        try:
            secrets = json.loads(group.secure_env.get(ENV_SECRETS) or "{}")
        except ValueError:
            secrets = {}
        if "grants" in secrets:
            return {}
        return {k: os.environ[k] for k in _MACHINE_CREDENTIALS if os.environ.get(k)}


def _explain(err: Exception) -> str:
    explanation = getattr(err, "explanation", None)
    text = explanation.decode() if isinstance(explanation, bytes) else (explanation or str(err))
    return str(text).strip() or type(err).__name__


def _create_hint(message: str) -> str:
    if "bind source path does not exist" in message or "invalid mount config" in message:
        return "A local path of the job (model, input, scorer, output) does not exist on the engine's host."
    if "network" in message:
        return f"Set {ENV_NETWORK} to a network of this engine (docker network ls); default host."
    return "Check the Docker engine (docker info) and the job's [resources]."
