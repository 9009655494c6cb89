"""``AciEmulator``: a local Azure Container Instances (ARM) endpoint for tests. See README.md."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .chaos import Chaos
from .groups import Group
from .runtime import (
    DEFAULT_PASS_ENV,
    HANG_ARGV,
    RUNNER_ARGV,
    Engine,
    FlakyPull,
    ImageDef,
    ProvisioningFailure,
    Settings,
    default_images,
)
from .server import ArmApi, InjectedFault, Limits, serve
from .tls import make_certificates

ARM_SCOPE = "https://management.azure.com/.default"


def _docker_url(docker: str | bool | None) -> str | None:
    """``docker=True``: the engine of DOCKER_HOST; ``"auto"``: that engine if one answers, else
    processes; a URL: that engine; None/False: processes."""
    if docker is None or docker is False:
        return None
    if docker is True:
        return ""
    if docker == "auto":
        return "" if docker_available() else None
    return docker


def docker_available() -> bool:
    """Does a Docker engine answer at DOCKER_HOST (or the default socket)?"""
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception:  # no SDK, no engine, no permission: all mean "run processes"
        return False
    return True


class StaticToken:
    """A ``TokenCredential`` handing out one token the emulator issued (for tests that do not
    exercise ``DefaultAzureCredential``)."""

    def __init__(self, token: str, expires_on: int) -> None:
        self._token, self._expires_on = token, expires_on

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, self._expires_on)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self._token, self._expires_on)


class AciEmulator:
    """A local ARM endpoint for Microsoft.ContainerInstance that runs each container as a process.

    ``with AciEmulator() as emu: client = emu.client()`` gives a real
    ``ContainerInstanceManagementClient`` talking to it. Other processes reach it with
    ``emu.env()`` (ARM endpoint, managed-identity endpoint, CA bundle)."""

    def __init__(
        self,
        *,
        subscription_id: str = "00000000-0000-0000-0000-00000000ac1e",
        resource_group: str = "serverless-score-emu",
        location: str = "westeurope",
        https: bool = True,
        images: Sequence[tuple[str, ImageDef]] | None = None,
        work_dir: str | Path | None = None,
        unknown_images: str = "create",
        pass_env: Sequence[str] = DEFAULT_PASS_ENV,
        extra_env: Mapping[str, str] | None = None,
        pending_seconds: float = 0.05,
        pull_seconds: float = 0.05,
        restart_delay: float = 0.2,
        kill_grace: float = 1.0,
        truncate_stopped_logs: bool = True,
        delete_mode: str = "sync",
        docker: str | bool | None = None,
        docker_limits: bool = True,
        create_windows: Sequence[Sequence[float]] | None = None,
        delete_windows: Sequence[Sequence[float]] | None = None,
    ) -> None:
        if unknown_images not in ("create", "pull"):
            raise ValueError(f"unknown_images: expected 'create' or 'pull'; got {unknown_images!r}")
        if delete_mode not in ("sync", "async"):
            raise ValueError(f"delete_mode: expected 'sync' or 'async'; got {delete_mode!r}")
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.location = location
        self.https = https
        self.id = uuid.uuid4().hex[:12]
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="aci-emu-"))
        self.engine = Engine(Settings(
            work_dir=self.work_dir / "containers", emulator_id=self.id,
            images=list(images) if images is not None else default_images(),
            pass_env=tuple(pass_env), extra_env=dict(extra_env or {}),
            unknown_images=unknown_images, pending_seconds=pending_seconds,
            pull_seconds=pull_seconds, restart_delay=restart_delay, kill_grace=kill_grace,
            truncate_stopped_logs=truncate_stopped_logs,
            docker=_docker_url(docker), docker_limits=docker_limits))
        self.api = ArmApi(self.engine, subscription_id=subscription_id,
                          resource_groups={resource_group}, location=location,
                          base_url=lambda: self.base_url)
        self.api.delete_mode = delete_mode
        self.set_rate_limits(creates=create_windows, deletes=delete_windows)
        self.api.control = self._control
        self._servers: list[Any] = []
        self.ca_bundle: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> AciEmulator:
        cert = None
        if self.https:
            files = make_certificates(self.work_dir / "tls")
            self.ca_bundle = files.bundle_file
            cert = (files.cert_file, files.key_file)
        self._arm = serve(self.api, identity=False, cert=cert)
        # App Service's identity endpoint is plain http on localhost, so this one is too.
        self._identity = serve(self.api, identity=True, cert=None)
        self._servers = [self._arm, self._identity]
        return self

    def stop(self) -> None:
        """Delete every group (killing its processes), then stop serving."""
        with self.engine.lock:
            groups = list(self.engine.groups.values())
            self.engine.groups.clear()
        for group in groups:
            self.engine.destroy(group)
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> AciEmulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- where it is -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self._arm.port}"

    @property
    def identity_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._identity.port}/msi/token"

    @property
    def identity_header(self) -> str:
        return self.api.identity_header

    def env(self) -> dict[str, str]:
        """Environment for a process (the CLI, a controller) to use this emulator with an
        unmodified ``DefaultAzureCredential`` and SDK client: the ARM endpoint, the App Service
        managed-identity endpoint and secret, the CA bundle that trusts the emulator's
        certificate, and the subscription, resource group and location."""
        env = {
            "SERVERLESS_SCORE_ARM_ENDPOINT": self.base_url,
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "AZURE_SUBSCRIPTION_ID": self.subscription_id,
            "SERVERLESS_SCORE_AZURE_SUBSCRIPTION_ID": self.subscription_id,
            "SERVERLESS_SCORE_AZURE_RESOURCE_GROUP": self.resource_group,
            "SERVERLESS_SCORE_AZURE_LOCATION": self.location,
        }
        if self.ca_bundle is not None:
            env["REQUESTS_CA_BUNDLE"] = str(self.ca_bundle)
        return env

    # Variables that would make DefaultAzureCredential pick another credential before the
    # managed identity; remove them from an environment built from os.environ.
    CREDENTIAL_VARS = ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID",
                       "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE",
                       "AZURE_USERNAME", "AZURE_PASSWORD", "MSI_ENDPOINT", "MSI_SECRET",
                       "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT")

    def credential(self, ttl: float = 3600) -> StaticToken:
        token, expires = self.api.issue_token(ttl)
        return StaticToken(token, expires)

    def client(self, credential: Any = None, **kwargs: Any) -> Any:
        """A real ``ContainerInstanceManagementClient`` for this emulator. Over https it trusts
        the emulator's CA through ``connection_verify``; over http every call needs
        ``enforce_https=False`` (the bearer policy refuses plain http otherwise), so a policy
        here sets it per request."""
        from azure.mgmt.containerinstance import ContainerInstanceManagementClient

        if self.https:
            kwargs.setdefault("connection_verify", str(self.ca_bundle))
        else:
            from azure.core.pipeline.policies import SansIOHTTPPolicy

            class _AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
                def on_request(self, request: Any) -> None:
                    request.context["enforce_https"] = False

            kwargs.setdefault("per_call_policies", [_AllowHttp()])
        return ContainerInstanceManagementClient(
            credential or self.credential(), self.subscription_id, base_url=self.base_url,
            **kwargs)

    # -- what happened -----------------------------------------------------------------------
    @property
    def calls(self) -> collections.Counter[tuple[str, str]]:
        """Requests received, by (method, route kind): kinds are ``group`` (one container group),
        ``list_rg``, ``list_sub``, ``logs``, ``usages``, ``operation``, ``action`` (stop...),
        ``token`` (identity endpoint), ``unknown``. Refused requests (401, 429...) count too."""
        with self.api.mutex:
            return collections.Counter(self.api.calls)

    def reset_calls(self) -> None:
        with self.api.mutex:
            self.api.calls.clear()
            self.api.log.clear()
            self.api.answers.clear()
            self.api.group_calls.clear()

    @property
    def answers(self) -> collections.Counter[tuple[str, str, int]]:
        """ARM answers by (method, route kind, status): ``answers[("PUT", "group", 429)]`` is
        how many creates were throttled."""
        with self.api.mutex:
            return collections.Counter(self.api.answers)

    def group_calls(self) -> dict[str, collections.Counter[tuple[str, str]]]:
        """Requests per container group name, by (method, kind): kinds ``group`` (PUT create,
        GET, DELETE, PATCH), ``logs``, ``action``; refused requests count too."""
        with self.api.mutex:
            return {name: collections.Counter(c) for name, c in self.api.group_calls.items()}

    @property
    def requests(self) -> list[tuple[float, str, str, str, int]]:
        """Every ARM request: (``time.monotonic()``, method, kind, path, status)."""
        with self.api.mutex:
            return list(self.api.log)

    @property
    def token_resources(self) -> list[str]:
        """The ``resource`` of every token request (which audience the client asked for)."""
        with self.api.mutex:
            return list(self.api.token_resources)

    def group_names(self) -> list[str]:
        with self.engine.lock:
            return sorted(g.name for g in self.engine.groups.values())

    def group(self, name: str, resource_group: str | None = None) -> Group:
        key = (self.subscription_id.lower(), (resource_group or self.resource_group).lower(), name)
        with self.engine.lock:
            return self.engine.groups[key]

    def live_pids(self) -> list[int]:
        """Every live process this emulator started (children included); [] with Docker."""
        return [] if self.uses_docker else [int(pid) for pid in self.engine.leftovers()]

    def leftovers(self) -> list[str]:
        """What still runs for this emulator: pids, or with Docker the engine's containers it
        created that still exist (leak checks)."""
        return self.engine.leftovers()

    @property
    def uses_docker(self) -> bool:
        return self.engine.settings.docker is not None

    def wait_for_state(self, name: str, states: Sequence[str], timeout: float = 30) -> str:
        """Wait (without ARM calls) until group ``name`` is in one of ``states``."""
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.lock:
                state = self.group(name).state
            if state in states or time.monotonic() > deadline:
                return state
            time.sleep(0.02)

    # -- configuration and faults ------------------------------------------------------------
    def add_image(self, pattern: str, entrypoint: Sequence[str], *,
                  env: Mapping[str, str] | None = None, pull_seconds: float = 0.0) -> None:
        """Images matching ``pattern`` (fnmatch) run ``entrypoint`` (checked before the
        defaults)."""
        with self.engine.lock:
            self.engine.settings.images.insert(
                0, (pattern, ImageDef(tuple(entrypoint), dict(env or {}), pull_seconds)))

    def add_resource_group(self, name: str) -> None:
        self.api.resource_groups.add(name.lower())

    def fail_requests(self, status: int, code: str, message: str, *, times: int = 1,
                      method: str | None = None, kind: str | None = None,
                      retry_after: float | None = None) -> None:
        """The next ``times`` requests matching ``method``/``kind`` (None: any) answer
        ``status`` with an ARM error body (after the token check, as ARM does)."""
        with self.api.mutex:
            self.api.faults.append(InjectedFault(status, code, message, times, method, kind,
                                                 retry_after))

    def throttle(self, times: int = 1, *, retry_after: float = 1, method: str | None = "PUT",
                 kind: str | None = "group") -> None:
        """429 + ``Retry-After`` for the next ``times`` matching requests (default: creates)."""
        self.fail_requests(
            429, "TooManyRequests" if kind != "group" or method != "PUT" else
            "SubscriptionRequestsThrottled",
            f"Number of '{(method or 'any').lower()}' requests for subscription "
            f"'{self.subscription_id}' exceeded. Please try again after "
            f"'{retry_after:g}' seconds.", times=times, method=method, kind=kind,
            retry_after=retry_after)

    @property
    def limits(self) -> Limits:
        """Quota limits (``limits.quota['ContainerGroups']``...), ``usage_offset`` (usage by
        others), ``quota_status``, ``create_windows`` and ``delete_windows`` (per window);
        mutable."""
        return self.api.limits

    def set_rate_limits(self, *, creates: Sequence[Sequence[float]] | None = None,
                        deletes: Sequence[Sequence[float]] | None = None) -> None:
        """Create / delete windows, ``[(count, seconds), ...]`` (ACI's: ``[(100, 300), (300,
        3600)]``, the default); beyond one: 429 with ``Retry-After`` until the window has room.
        ``[]`` switches the rule off."""
        for name, pairs in (("create_windows", creates), ("delete_windows", deletes)):
            if pairs is None:
                continue
            rule = tuple((int(count), float(seconds)) for count, seconds in pairs)
            if any(count < 1 or seconds <= 0 for count, seconds in rule):
                raise ValueError(f"{name}: expected (count >= 1, seconds > 0) pairs; got {pairs!r}")
            setattr(self.limits, name, rule)

    def set_quota(self, *, container_groups: float | None = None,
                  standard_cores: float | None = None) -> None:
        """Regional quota: creating beyond it answers ``ContainerGroupQuotaReached``."""
        if container_groups is not None:
            self.limits.quota["ContainerGroups"] = container_groups
        if standard_cores is not None:
            self.limits.quota["StandardCores"] = standard_cores

    def inaccessible_image(self, pattern: str, *, at: str = "create") -> None:
        """Images matching ``pattern`` cannot be pulled: ``at="create"`` the PUT answers 400
        InaccessibleImage (what ACI does when it can tell up front); ``at="pull"`` the group is
        created and then fails (events Failed/BackOff, provisioning Failed, state Failed)."""
        with self.engine.lock:
            if at == "create":
                self.engine.faults.inaccessible_at_create.append(pattern)
            elif at == "pull":
                self.engine.faults.inaccessible_at_pull.append(pattern)
            else:
                raise ValueError(f"at: expected 'create' or 'pull'; got {at!r}")

    def restart_container(self, pattern: str, times: int = 1) -> None:
        """Containers whose name or image match ``pattern`` are restarted ``times`` times after
        they exit, even under restart policy Never (as the platform sometimes does):
        ``restartCount`` grows and ``previousState`` holds the terminated run."""
        with self.engine.lock:
            self.engine.faults.restarts[pattern] = times

    def fail_provisioning(self, pattern: str = "*", *, times: int = 1,
                          code: str = "ContainerGroupDeploymentFailed",
                          message: str = "The container group failed to deploy: the requested "
                                         "resource is not available in the location at this "
                                         "moment.", event: bool = True) -> None:
        """The next ``times`` groups named like ``pattern`` end provisioning Failed (the
        operation too, with ``error`` {code, message}) while their state stays Pending and
        nothing runs. ``event=False``: no Warning event on the group either, so the reason is
        only in the async operation document (as with ACI's ServiceUnavailable)."""
        with self.engine.lock:
            self.engine.faults.provisioning.append(
                ProvisioningFailure(pattern, code, message, times, event))

    def flaky_pull(self, pattern: str, *, times: int = 1, seconds: float = 0.2,
                   message: str = 'Failed to pull image "{image}": rpc error: code = '
                                  "DeadlineExceeded desc = context deadline exceeded") -> None:
        """The next ``times`` pulls of images matching ``pattern`` fail once (Warning events
        ``Failed`` with ``message`` and ``BackOff``, container Waiting/ErrImagePull) and succeed
        ``seconds`` later: the container then runs, its Warning events still listed."""
        with self.engine.lock:
            self.engine.faults.flaky_pulls.append(FlakyPull(pattern, times, seconds, message))

    def slow_provisioning(self, seconds: float) -> None:
        """Groups stay in provisioning Creating this long after the image is pulled."""
        with self.engine.lock:
            self.engine.faults.provision_delay = seconds

    def hang(self, pattern: str) -> None:
        """Containers whose name or image match ``pattern`` never exit by themselves."""
        with self.engine.lock:
            self.engine.faults.hang.append(pattern)

    def unhealthy(self, name: str) -> None:
        """Group ``name`` reports provisioningState ``Unhealthy`` from now on (as ACI does when
        the platform finds the group not working) while its containers keep running."""
        with self.engine.lock:
            self.group(name).provisioning = "Unhealthy"

    def evict(self, name: str) -> None:
        """Azure reclaims Spot group ``name``'s capacity. What ACI documents for Spot containers
        ("If an eviction occurs, the container groups hosting the customer workloads are
        automatically restarted without requiring any action from the customer"): its running
        containers are killed and restarted, so ``restartCount`` grows and ``previousState``
        holds the killed run. Only a group PUT with ``priority: Spot`` can be evicted."""
        group = self.group(name)
        if str(group.body.get("properties", {}).get("priority") or "Regular") != "Spot":
            raise ValueError(f"group {name!r} is not a Spot group: only Spot groups are evicted")
        self.engine.evict(group)

    @property
    def chaos(self) -> Chaos:
        """Lost answers, slow answers and the journal of every group a PUT made (chaos.py)."""
        return self.api.chaos

    def drop_answers(self, times: int = 1, *, method: str | None = "PUT",
                     kind: str | None = "group", delay: float = 0.0) -> None:
        """The next ``times`` matching requests are applied, then their connection is closed
        without an answer (after ``delay`` s): a create whose answer never arrives."""
        self.chaos.drop_answers(times, method=method, kind=kind, delay=delay)

    def slow_requests(self, seconds: float, *, times: int = 1, method: str | None = "DELETE",
                      kind: str | None = "group") -> None:
        """The next ``times`` matching requests wait ``seconds`` before being handled."""
        self.chaos.slow_requests(seconds, times=times, method=method, kind=kind)

    def clear_faults(self) -> None:
        from .runtime import Faults

        with self.engine.lock:
            self.engine.faults = Faults()
        with self.api.mutex:
            self.api.faults.clear()
        self.chaos.clear()

    # Fault methods a process without this object can call over HTTP (``POST /_emulator/NAME``).
    REMOTE = ("throttle", "fail_requests", "set_quota", "set_rate_limits", "inaccessible_image",
              "restart_container", "fail_provisioning", "flaky_pull", "slow_provisioning", "hang",
              "unhealthy", "evict", "clear_faults", "add_image", "reset_calls", "drop_answers",
              "slow_requests")

    def _control(self, method: str, name: str, kwargs: dict[str, Any]) -> Any:
        if method == "GET" and name == "calls":
            return [{"method": m, "kind": k, "count": n} for (m, k), n in self.calls.items()]
        if method == "GET" and name == "answers":
            return [{"method": m, "kind": k, "status": st, "count": n}
                    for (m, k, st), n in self.answers.items()]
        if method == "GET" and name == "group_calls":
            return {group: [{"method": m, "kind": k, "count": n} for (m, k), n in c.items()]
                    for group, c in self.group_calls().items()}
        if method == "GET" and name == "groups":
            return self.group_names()
        if method == "GET" and name == "created":
            return [c.to_dict() for c in self.chaos.created()]
        if method != "POST" or name not in self.REMOTE:
            raise KeyError(f"not a remote control; expected GET calls|answers|group_calls|groups|"
                           f"created or POST one of "
                           f"{', '.join(self.REMOTE)}")
        getattr(self, name)(**kwargs)
        return None

    @contextlib.contextmanager
    def environ(self) -> Iterator[dict[str, str]]:
        """Set ``env()`` in this process's environment (and drop competing credential
        variables) for the duration of the block."""
        saved = dict(os.environ)
        for name in self.CREDENTIAL_VARS:
            os.environ.pop(name, None)
        os.environ.update(self.env())
        try:
            yield self.env()
        finally:
            os.environ.clear()
            os.environ.update(saved)


__all__ = ["HANG_ARGV", "RUNNER_ARGV", "AciEmulator", "ImageDef", "StaticToken"]
