"""Build and push scoring images through the Docker engine's API (the ``docker`` SDK).

``build`` stages the context (``context.py``), skips the build when an image of that tag was
built from the same inputs, downloads the wheels (``wheels.py``) and streams the engine's build
output to ``say``. ``push`` streams layer progress to ``on_progress``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ScoreError
from . import wheels
from .context import (
    LABEL_CONTEXT,
    LABEL_R_PACKAGES,
    LABEL_RUNTIME,
    LABEL_VERSION,
    BuildRequest,
    context_digest,
    requirements,
    stage,
)

if TYPE_CHECKING:
    import docker

Say = Callable[[str], None]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # apt's colours in the build output
_LOG_TAIL = 25


@dataclass(frozen=True)
class Built:
    tag: str
    image_id: str
    digest: str  # of the context: equal digests, equal images
    skipped: bool  # an image of this tag was already built from the same inputs
    python: str  # the image's Python version


def ensure_base(client: docker.DockerClient, base: str, say: Say) -> Any:
    """The base image, pulled first if the engine does not have it."""
    from docker.errors import APIError, ImageNotFound

    try:
        return client.images.get(base)
    except ImageNotFound:
        pass
    say(f"pulling {base}")
    try:
        return client.images.pull(base)
    except (APIError, ImageNotFound) as err:
        raise ScoreError(
            f"--base {base}: not on this engine and it could not be pulled: {_explain(err)}",
            hint="Check the name and the registry login, or build FROM an image the engine has "
                 "(docker images); without a registry, scripts/ensure-docker.sh makes local/bookworm.",
        ) from None


def build(client: docker.DockerClient, request: BuildRequest, root: Path, *,
          say: Say = lambda _: None, force: bool = False) -> Built:
    """Build ``request.tag`` (or find it up to date)."""
    from docker.errors import ImageNotFound

    base = ensure_base(client, request.base, say)
    target = wheels.probe(client, request.base)
    pins = wheels.installed_versions()
    with tempfile.TemporaryDirectory(prefix="serverless-score-image-") as tmp:
        ctx = Path(tmp)
        stage(request, root, ctx)
        digest = context_digest(ctx, request, base_id=base.id,
                                pins=[f"{n}=={v}" for n, v in pins.items()])
        try:
            existing = client.images.get(request.tag)
        except ImageNotFound:
            existing = None
        if existing is not None and not force and (existing.labels or {}).get(LABEL_CONTEXT) == digest:
            say(f"{request.tag} is up to date (built from the same inputs)")
            return Built(request.tag, existing.id, digest, True, target.python)
        say(f"downloading the runner's Python {target.python} wheels ({target.platform})")
        lock = wheels.download(requirements(root, request.extras), pins, target,
                               ctx / "wheels", say=say)
        (ctx / "requirements.lock").write_text("\n".join(lock) + "\n", encoding="utf-8")
        labels = {LABEL_CONTEXT: digest, LABEL_RUNTIME: request.runtime,
                  LABEL_VERSION: __version__, LABEL_R_PACKAGES: " ".join(request.r_packages)}
        image_id = _run_build(client, ctx, request, labels, say, nocache=force)
    return Built(request.tag, image_id, digest, False, target.python)


def _run_build(client: docker.DockerClient, ctx: Path, request: BuildRequest,
               labels: Mapping[str, str], say: Say, *, nocache: bool) -> str:
    from docker.errors import APIError

    tail: list[str] = []
    image_id = ""
    try:
        # Host networking: the build's apt-get reaches the mirror the host reaches (no bridge/NAT
        # needed on the engine).
        stream = client.api.build(
            path=str(ctx), tag=request.tag, buildargs=request.buildargs, labels=dict(labels),
            network_mode="host", rm=True, forcerm=True, pull=False, decode=True, nocache=nocache)
        for event in stream:
            if "error" in event:
                detail = event.get("errorDetail", {}).get("message") or event["error"]
                raise ScoreError(
                    f"building {request.tag} failed: {detail.strip()}\n" + "\n".join(tail[-_LOG_TAIL:]),
                    hint=_build_hint(request, "\n".join(tail) + detail))
            text = _ANSI.sub("", event.get("stream") or event.get("status") or "")
            for line in text.rstrip("\n").splitlines():
                if line.strip():
                    tail.append(line)
                    say(line)
            if "aux" in event and isinstance(event["aux"], dict) and "ID" in event["aux"]:
                image_id = event["aux"]["ID"]
    except APIError as err:
        raise ScoreError(f"building {request.tag} failed: {_explain(err)}") from None
    if not image_id:
        image_id = client.images.get(request.tag).id
    return image_id


def _build_hint(request: BuildRequest, log: str) -> str:
    if "not packaged by this distribution" in log:
        return ("Those R packages are not Debian packages: build on a rocker/r-ver base "
                "(--base rocker/r-ver:4.5.1), which installs them from CRAN.")
    if "Temporary failure resolving" in log or "Could not resolve" in log:
        return "The build could not reach the apt mirror: check the engine host's network and DNS."
    return "The lines above are the end of the build log; --verbose shows all of it."


def push(client: docker.DockerClient, tag: str, *, auth: Mapping[str, str] | None = None,
         on_progress: Callable[[Mapping[str, Any]], None] = lambda _: None) -> str:
    """Push ``tag`` (``registry/name:version``); return the pushed digest. ``auth`` is
    {"username", "password"}; without it the engine client's docker login is used."""
    from docker.errors import APIError, ImageNotFound

    repository, _, version = _split_tag(tag)
    try:
        client.images.get(tag)
    except ImageNotFound:
        raise ScoreError(f"image {tag} does not exist on this engine",
                         hint="Build it first: serverless-score image build --tag " + tag) from None
    pushed = ""
    try:
        for event in client.api.push(repository, tag=version, stream=True, decode=True,
                                     auth_config=dict(auth) if auth else None):
            if "error" in event:
                raise ScoreError(f"pushing {tag} failed: {event['error'].strip()}",
                                 hint=_push_hint(event["error"], repository))
            aux = event.get("aux")
            if isinstance(aux, dict) and "Digest" in aux:
                pushed = aux["Digest"]
            on_progress(event)
    except APIError as err:
        raise ScoreError(f"pushing {tag} failed: {_explain(err)}",
                         hint=_push_hint(str(err), repository)) from None
    return pushed


def _split_tag(tag: str) -> tuple[str, str, str]:
    """("registry/name", "registry", "version") of ``registry/name:version``."""
    name, version = tag, "latest"
    if ":" in tag.rsplit("/", 1)[-1]:
        name, version = tag.rsplit(":", 1)
    registry = name.split("/", 1)[0] if "/" in name else ""
    if not registry or ("." not in registry and ":" not in registry and registry != "localhost"):
        raise ScoreError(
            f"{tag}: name the registry in the tag, e.g. myregistry.azurecr.io/{tag}",
            hint="Or pass --registry myregistry.azurecr.io to tag and push it there.")
    return name, registry, version


def _push_hint(message: str, repository: str) -> str:
    registry = repository.split("/", 1)[0]
    lowered = message.lower()
    if "unauthorized" in lowered or "authentication required" in lowered or "denied" in lowered:
        return (f"Log in to {registry}: --azure-login (an Azure AD token exchanged for a registry "
                "token) or `docker login` (az acr login does that for ACR).")
    return f"Check that {registry} is reachable from the Docker engine."


def _explain(err: Exception) -> str:
    explanation = getattr(err, "explanation", None)
    text = explanation.decode() if isinstance(explanation, bytes) else (explanation or str(err))
    return str(text).strip().splitlines()[0] if str(text).strip() else type(err).__name__
