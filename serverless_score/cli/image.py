"""``serverless-score image build|push``: the R and Python scoring images (README: Images)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn

from ..errors import ScoreError

app = typer.Typer(help="Scoring images: build the R or Python runner image, push it to a registry.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON object on stdout.")]


def _split_packages(values: list[str] | None) -> tuple[str, ...]:
    """``--r-packages a,b --r-packages c`` -> ("a", "b", "c"), in order, without repeats."""
    seen: dict[str, None] = {}
    for value in values or []:
        for name in value.replace(" ", ",").split(","):
            if name.strip():
                seen.setdefault(name.strip(), None)
    return tuple(seen)


@app.command()
def build(
    runtime: Annotated[str, typer.Option(help="r or python.")],
    tag: Annotated[str | None, typer.Option(help="Image tag (default: the built-in serverless-score-<runtime>:<version> jobs use when they name no image).")] = None,
    r_packages: Annotated[list[str] | None, typer.Option("--r-packages", help="R packages the model needs, comma-separated or repeated: --r-packages randomForest,ranger.")] = None,
    renv_lock: Annotated[Path | None, typer.Option(help="An renv.lock to restore (CRAN installs: a rocker base).")] = None,
    base: Annotated[str | None, typer.Option(help="Base image (default python:3.12-slim, rocker/r-ver:4.5.1 for r). Any Debian/Ubuntu image works.")] = None,
    r_install: Annotated[str, typer.Option(help="How R packages are installed: auto (cran with rocker's install2.r, else apt), apt (r-cran-* Debian packages) or cran.")] = "auto",
    force: Annotated[bool, typer.Option(help="Build again even if the image is up to date (and without the engine's layer cache).")] = False,
    source: Annotated[Path | None, typer.Option(help="The serverless-score checkout to build from (default: the one this command runs from).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the whole build log.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a scoring image: the runner, the runtime, and for R the model's R packages."""
    from ..docker_engine import docker_client
    from ..images import DEFAULT_BASES, BuildRequest, default_tag, source_root
    from ..images import build as build_image
    from . import _fail

    try:
        request = BuildRequest(
            runtime=runtime, tag=tag or default_tag(runtime),
            base=base or DEFAULT_BASES.get(runtime, ""), r_packages=_split_packages(r_packages),
            renv_lock=renv_lock, r_install=r_install)
        root = source_root(source)
        client = docker_client()
        with err_console.status(f"building {escape(request.tag)} FROM {escape(request.base)}") as status:
            def say(line: str) -> None:
                if line.startswith("Step ") or not line.startswith(" "):
                    status.update(f"[bold]{escape(request.tag)}[/]: {escape(line[:120])}")
                if verbose or line.startswith("Step "):
                    err_console.print(f"[dim]{escape(line)}[/]", highlight=False)

            built = build_image(client, request, root, say=say, force=force)
    except ScoreError as err:
        raise _fail(err, as_json=as_json, debug=False) from None
    what = "up to date" if built.skipped else "built"
    err_console.print(f"{what}: {escape(built.tag)} ({built.image_id[:19]}, Python {built.python})",
                      highlight=False)
    if as_json:
        print(json.dumps({"tag": built.tag, "image_id": built.image_id, "skipped": built.skipped,
                          "context_sha256": built.digest, "python": built.python}))


class _PushBars:
    """One bar per layer from the engine's push stream (``{"id", "status", "progressDetail"}``)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.layers: dict[str, TaskID] = {}

    def __call__(self, event: Mapping[str, Any]) -> None:
        layer, status = event.get("id"), str(event.get("status", ""))
        if not layer or ":" in str(layer):  # "The push refers to repository ...", tags
            return
        detail = event.get("progressDetail") or {}
        if layer not in self.layers:
            self.layers[layer] = self.progress.add_task(str(layer), total=None, status=status)
        task = self.layers[layer]
        if detail.get("total"):
            self.progress.update(task, total=detail["total"], completed=detail.get("current", 0),
                                 status=status)
        elif status in ("Pushed", "Layer already exists", "Mounted from"):
            total = self.progress.tasks[task].total or 1
            self.progress.update(task, total=total, completed=total, status=status)
        else:
            self.progress.update(task, status=status)


@app.command()
def push(
    tag: Annotated[str, typer.Argument(help="The image, e.g. myregistry.azurecr.io/serverless-score-r:0.1.0 (or a local tag with --registry).", show_default=False)],
    registry: Annotated[str | None, typer.Option(help="Tag the image as REGISTRY/TAG first, then push that.")] = None,
    azure_login: Annotated[bool, typer.Option("--azure-login", help="Log in to the (Azure Container) registry with an Azure AD token (DefaultAzureCredential) exchanged for a registry token; without it the engine's `docker login` credentials are used.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Push a scoring image to a registry (ACR: give the job `image = "<registry>/<name>:<tag>"`)."""
    from ..docker_engine import docker_client
    from ..images import push as push_image
    from . import _fail

    try:
        client = docker_client()
        target = tag
        if registry:
            target = f"{registry.rstrip('/')}/{tag}"
            _tag_image(client, tag, target)
        auth = None
        if azure_login:
            from ..images.acr import acr_auth

            auth = acr_auth(target.split("/", 1)[0])
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      TextColumn("{task.fields[status]}"), console=err_console,
                      transient=True) as progress:
            bars = _PushBars(progress)
            progress.add_task(f"pushing {escape(target)}", total=None, status="")
            digest = push_image(client, target, auth=auth, on_progress=bars)
    except ScoreError as err:
        raise _fail(err, as_json=as_json, debug=False) from None
    err_console.print(f"pushed {escape(target)} {digest}", highlight=False)
    if as_json:
        print(json.dumps({"image": target, "digest": digest}))


def _tag_image(client: Any, source: str, target: str) -> None:
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(source)
    except ImageNotFound:
        raise ScoreError(f"image {source} does not exist on this engine",
                         hint=f"Build it first: serverless-score image build --tag {source}") from None
    repository, _, version = target.rpartition(":")
    if not repository or "/" in version:
        repository, version = target, "latest"
    image.tag(repository, tag=version)
