"""Where and how an ``aci`` job's container groups are made: the job's ``[azure]`` keys, with the
environment as fallback, checked before anything is created. Pure: it reads a mapping, not
``os.environ`` directly, so every rule is testable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ...errors import SpecError
from ...images.context import default_tag, image_name
from ...storage.uris import is_blob_uri
from .pacer import ACI_WINDOWS

if TYPE_CHECKING:
    from ...spec import JobSpec

PUBLIC_ARM = "https://management.azure.com"
ENV_ARM = "SERVERLESS_SCORE_ARM_ENDPOINT"
ENV_PREFIX = "SERVERLESS_SCORE_AZURE_"
# subscription also falls back to the variable the Azure CLI and SDK samples use.
_FALLBACKS = {
    "subscription_id": (f"{ENV_PREFIX}SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID"),
    "resource_group": (f"{ENV_PREFIX}RESOURCE_GROUP",),
    "location": (f"{ENV_PREFIX}LOCATION",),
    "identity": (f"{ENV_PREFIX}IDENTITY",),
    "registry": (f"{ENV_PREFIX}REGISTRY",),
}
_IDENTITY = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.managedidentity/"
    r"userassignedidentities/[^/]+$", re.IGNORECASE)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
def builtin_image(runtime: str, registry: str, version: str) -> str:
    """``myreg.azurecr.io/serverless-score-r:0.1.0``: the image ``image build`` tags and pushes."""
    return f"{registry.rstrip('/')}/{default_tag(runtime, version)}"


@dataclass(frozen=True)
class AciSettings:
    subscription_id: str
    resource_group: str
    location: str
    image: str
    arm_endpoint: str = PUBLIC_ARM
    identity: str | None = None  # resource id of a user-assigned managed identity
    registry: str | None = None  # login server the image is pulled from with that identity
    creates_per_minute: int = 15
    # ACI's windows per subscription and region, (count, seconds): see pacer.py.
    create_rate: tuple[tuple[int, float], ...] = ACI_WINDOWS
    delete_rate: tuple[tuple[int, float], ...] = ACI_WINDOWS
    max_parallel: int = 1
    cpu: float = 1.0
    memory_gb: float = 1.5
    priority: str = "Regular"  # "Spot": evictable groups at the Spot price
    job_problem: SpecError | None = field(default=None, compare=False, repr=False)

    @property
    def registry_server(self) -> str | None:
        """The login server to pull with the identity: [azure] registry, or the image's own host
        when it is an Azure Container Registry (``*.azurecr.io`` and sovereign variants)."""
        if self.registry:
            return self.registry.rstrip("/")
        host = self.image.split("/", 1)[0] if "/" in self.image else ""
        return host if ".azurecr." in host else None

    @classmethod
    def resolve(cls, spec: JobSpec, env: Mapping[str, str], version: str) -> AciSettings:
        """From a JobSpec and the environment; every gap is one SpecError naming all of them."""
        azure = spec.azure
        values: dict[str, str | None] = {}
        for key, names in _FALLBACKS.items():
            values[key] = getattr(azure, key) or next((env[n] for n in names if env.get(n)), None)
        missing = [f"azure.{key} (or {' / '.join(_FALLBACKS[key])})"
                   for key in ("subscription_id", "resource_group", "location") if not values[key]]
        if missing:
            raise SpecError(
                f"backend \"aci\" needs to know where to create container groups; missing: "
                f"{'; '.join(missing)}",
                hint="Set them in the job's [azure] table or in the environment.")
        # What only running a job needs (blob paths, an image) is checked now but raised at
        # the first create: `status` and `cleanup` build this backend from a spec that has
        # neither, and need only the location settings.
        problem = _remote_paths_problem(spec)
        identity = values["identity"]
        if identity and not _IDENTITY.match(identity):
            raise SpecError(
                f"azure.identity: expected the resource id of a user-assigned managed identity, "
                f"/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/"
                f"userAssignedIdentities/<name>; got {identity!r}")
        image = spec.image or ""
        if not image and values["registry"]:
            image = builtin_image(spec.runtime, values["registry"] or "", version)
        if not image and problem is None:
            problem = SpecError(
                "backend \"aci\" needs an image: set `image` (any image with the runner "
                "installed) or [azure] registry (then the built-in "
                f"{image_name(spec.runtime)} image is pulled from it)",
                hint="Build and push one with `serverless-score image build` and `image push`.")
        resources = spec.resources
        return cls(
            subscription_id=values["subscription_id"] or "",
            resource_group=values["resource_group"] or "",
            location=(values["location"] or "").replace(" ", "").lower(),
            image=image, arm_endpoint=arm_endpoint(env), identity=identity,
            registry=values["registry"], creates_per_minute=azure.creates_per_minute,
            create_rate=azure.create_rate, delete_rate=azure.delete_rate,
            max_parallel=spec.max_parallel, cpu=resources.cpu,
            memory_gb=resources.memory_gb, priority=azure.priority, job_problem=problem,
        )

    def check_job(self) -> None:
        """Raise what stops this job from running on ACI (local paths, no image)."""
        if self.job_problem is not None:
            raise self.job_problem


def arm_endpoint(env: Mapping[str, str]) -> str:
    """SERVERLESS_SCORE_ARM_ENDPOINT (sovereign clouds, an emulator) or the public cloud. Plain
    http only to this machine: a bearer token must never cross a network unencrypted."""
    url = (env.get(ENV_ARM) or PUBLIC_ARM).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return url
    raise SpecError(
        f"{ENV_ARM}: expected an https URL such as {PUBLIC_ARM} (or http to 127.0.0.1 / "
        f"localhost for an emulator); got {url!r}")


def _remote_paths_problem(spec: JobSpec) -> SpecError | None:
    """A container cannot see this machine's files: the model, input and output must be blobs."""
    local = [f"{key} = {value!r}" for key in ("model", "input", "output")
             if (value := getattr(spec, key, None)) and not is_blob_uri(str(value))]
    if not local:
        return None
    return SpecError(
        f"backend \"aci\": {', '.join(local)}: a container on Azure cannot read this machine's "
        "files; use az://CONTAINER/PATH or https://ACCOUNT.blob.core.windows.net/... URIs",
        hint="Upload the model with `serverless-score models push FILE az://CONTAINER/models` "
             "and the input with `az storage blob upload`, then point the job at them.")
