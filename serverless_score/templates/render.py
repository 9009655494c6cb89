"""Template + parameters for one job: the job file is the one source of truth. The job travels as
the ``job`` parameter (its own keys, as written), validated here exactly as ``run`` would."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..spec import apply_overrides, spec_from_dict
from ..storage.uris import is_blob_uri
from .arm import FREQUENCIES, parameters_file, template
from .workflow import Trigger

_IDENTITY = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                       r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$", re.IGNORECASE)
_START = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
_ISO_DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$")


@dataclass(frozen=True)
class Options:
    image: str | None = None
    identity: str | None = None
    registry: str | None = None
    job_uri: str | None = None
    workflow_name: str | None = None
    frequency: str = "Day"
    interval: int = 1
    start: str | None = None
    time_zone: str = "UTC"
    poll_seconds: int = 30
    timeout: str = "PT6H"
    cpu: float = 1.0
    memory_gb: float = 1.5
    arm_endpoint: str = "https://management.azure.com"


def read_job(path: Path, overrides: list[str]) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"job file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SpecError(f"job file {str(path)!r} cannot be read: {err}") from None
    apply_overrides(raw, overrides)  # --set, as for `run`
    return raw


def _check_job(raw: dict[str, Any], source: str) -> None:
    """What a job run from a Logic App cannot have: local paths (the controller runs in Azure),
    secrets (SAS tokens in URLs: the identity authenticates), another backend."""
    spec = spec_from_dict({k: v for k, v in raw.items() if k != "backend"}, source=source)
    if spec.sas_tokens:
        raise SpecError(f"{source}: a URL carries a SAS token; templates hold no secrets",
                        hint="Drop the ?sv=... part: the workflow's managed identity reads and "
                             "writes the blobs (README: Logic App templates).")
    model = raw.get("model")
    if isinstance(model, str) and model.startswith(("models:/", "runs:/")):
        raise SpecError(f"{source}: model = {model!r}: a Logic App's controller runs in the "
                        "built-in image, which has no MLflow client",
                        hint="Resolve the version first (serverless-score plan shows the file) "
                             "and push that file to blob storage, or pin it on an az:// board.")
    if isinstance(model, str) and model.startswith("pins://") and not is_blob_uri(
            model.removeprefix("pins://")):
        raise SpecError(f"{source}: model = {model!r} is a pin on a folder board of this "
                        "machine; a job run by a Logic App reads blob storage",
                        hint="Pin it on an Azure Blob board: model = \"pins://az://container/board/NAME\".")
    for key in ("model", "input", "output"):
        value = raw.get(key)
        if isinstance(value, str) and "://" not in value:
            raise SpecError(f"{source}: {key} = {value!r} is a local path; a job run by a Logic "
                            "App reads and writes blob storage",
                            hint=f"Use a blob URI, e.g. {key} = \"az://container/path\".")
    scorer = raw.get("scorer", "predict")
    if raw.get("runtime") != "command" and scorer != "predict" and not scorer.startswith("/"):
        raise SpecError(f"{source}: scorer = {scorer!r} is a file on this machine",
                        hint="Bake the script into the image and give its absolute path there.")
    backend = raw.get("backend", "aci")
    if backend != "aci":
        raise SpecError(f"{source}: backend = {backend!r}; a Logic App fans out on Azure "
                        "Container Instances", hint='Remove the key or set backend = "aci".')


def _seconds(duration: str) -> int:
    """PT6H -> 21600 (the forms _ISO_DURATION admits: days, hours, minutes, seconds)."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", duration)
    assert match, duration
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _default_start(now: datetime | None = None) -> str:
    tomorrow = (now or datetime.now(UTC)) + timedelta(days=1)
    return tomorrow.strftime("%Y-%m-%dT00:00:00")


def _check_options(options: Options, identity: str, trigger: Trigger) -> None:
    if not _IDENTITY.match(identity):
        raise SpecError(f"identity: expected the resource id of a user-assigned managed identity, "
                        f"/subscriptions/.../resourceGroups/.../providers/Microsoft.ManagedIdentity/"
                        f"userAssignedIdentities/NAME; got {identity!r}")
    if not _ISO_DURATION.match(options.timeout):
        raise SpecError(f"--timeout: expected an ISO 8601 duration such as PT6H; got "
                        f"{options.timeout!r}")
    if options.arm_endpoint.endswith("/") or "://" not in options.arm_endpoint:
        raise SpecError(f"--arm-endpoint: expected https://HOST without a trailing slash; got "
                        f"{options.arm_endpoint!r}")
    if trigger == "timer":
        if options.frequency not in FREQUENCIES:
            raise SpecError(f"--frequency: expected one of {', '.join(FREQUENCIES)}; got "
                            f"{options.frequency!r}")
        if options.start is not None and not _START.match(options.start):
            raise SpecError(f"--start: expected YYYY-MM-DDThh:mm:ss (in --time-zone); got "
                            f"{options.start!r}")


def render(raw: dict[str, Any], trigger: Trigger, options: Options,
           source: str = "job") -> tuple[dict[str, Any], dict[str, Any]]:
    """(ARM template, parameters file) for the job ``raw`` (the job file's keys)."""
    if trigger not in ("timer", "http"):
        raise SpecError(f"--trigger: expected timer or http; got {trigger!r}")
    if options.job_uri is None:
        _check_job(raw, source)
    azure = raw.get("azure") or {}
    identity = options.identity or azure.get("identity")
    image = options.image or raw.get("image")
    if not identity:
        raise SpecError(f"{source}: no identity for the workflow",
                        hint="Set [azure] identity in the job or pass --identity: the resource id "
                             "of a user-assigned managed identity.")
    if not image:
        raise SpecError(f"{source}: no image for the controller",
                        hint="Set image in the job or pass --image (an image with the "
                             "serverless-score runner, README: Images).")
    _check_options(options, identity, trigger)
    job = {**raw, "backend": "aci"} if options.job_uri is None else {}
    values: dict[str, Any] = {
        "workflowName": options.workflow_name or f"serverless-score-{raw.get('name', 'job')}",
        "identity": identity,
        "image": image,
        "registry": options.registry or azure.get("registry") or "",
        "controllerResources": {"cpu": _number(options.cpu), "memoryInGB": _number(options.memory_gb)},
        "jobName": str(raw.get("name", "job")),
        "job": job,
        "jobUri": options.job_uri or "",
        "output": str(raw.get("output", "")),
        "armEndpoint": options.arm_endpoint,
        "pollSeconds": options.poll_seconds,
        "timeout": options.timeout,
        "lifetimeSeconds": _seconds(options.timeout) + 600,
    }
    if trigger == "timer":
        values.update({"frequency": options.frequency, "interval": options.interval,
                       "startTime": options.start or _default_start(),
                       "timeZone": options.time_zone})
    return template(trigger), parameters_file(values)
