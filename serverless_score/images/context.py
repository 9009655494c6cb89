"""The build context of a scoring image, staged in a directory: the runtime's Dockerfile, the
shared install scripts, the serverless-score source, and the R packages / renv.lock asked for.

``stage`` copies; ``context_digest`` hashes what decides the image's content, so a build whose
inputs did not change is skipped (``image build`` and the tests' fixture).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ScoreError

RUNTIMES = ("python", "r")
DEFAULT_BASES = {"python": "python:3.12-slim", "r": "rocker/r-ver:4.5.1"}
R_INSTALL_MODES = ("auto", "apt", "cran")
# Image labels: what was built from what (``image build`` compares the context digest).
LABEL_PREFIX = "org.serverless-score"
LABEL_CONTEXT = f"{LABEL_PREFIX}.context"
LABEL_RUNTIME = f"{LABEL_PREFIX}.runtime"
LABEL_VERSION = f"{LABEL_PREFIX}.version"
LABEL_R_PACKAGES = f"{LABEL_PREFIX}.r-packages"
_R_PACKAGE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*$")
# The runner never talks to an engine: the docker SDK stays out of the images.
_NOT_IN_IMAGES = {"docker"}
_SOURCE_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def image_name(runtime: str) -> str:
    """The built-in runner image of a runtime; a ``command`` job runs in the Python image."""
    return f"serverless-score-{'python' if runtime == 'command' else runtime}"


def default_tag(runtime: str, version: str | None = None) -> str:
    """The image a job uses when it names none: ``serverless-score-<runtime>:<version>`` (the
    docker backend as is, the aci backend under its registry)."""
    if version is None:
        from .. import __version__ as version
    return f"{image_name(runtime)}:{version}"


@dataclass(frozen=True)
class BuildRequest:
    runtime: str
    tag: str
    base: str
    r_packages: tuple[str, ...] = ()
    renv_lock: Path | None = None
    r_install: str = "auto"

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ScoreError(f"--runtime: expected python or r; got {self.runtime!r}")
        if self.runtime != "r" and (self.r_packages or self.renv_lock):
            raise ScoreError("--r-packages / --renv-lock: only for --runtime r")
        if self.r_install not in R_INSTALL_MODES:
            raise ScoreError(f"--r-install: expected auto, apt or cran; got {self.r_install!r}")
        for name in self.r_packages:
            if not _R_PACKAGE.fullmatch(name):
                raise ScoreError(f"--r-packages: {name!r} is not an R package name "
                                 "(letters, digits and dots, starting with a letter)")
        if self.renv_lock is not None and not self.renv_lock.is_file():
            raise ScoreError(f"--renv-lock: {str(self.renv_lock)!r} is not a file")

    @property
    def buildargs(self) -> dict[str, str]:
        args = {"BASE": self.base}
        if self.runtime == "r":
            args.update(R_PACKAGES=" ".join(self.r_packages), R_INSTALL=self.r_install)
        return args

    @property
    def extras(self) -> tuple[str, ...]:
        """The package extras the image installs: blob access, and the ACI SDK so the image can
        also run a whole job (``SERVERLESS_SCORE_ROLE=controller``, a Logic App's container);
        scikit-learn for Python."""
        return ("blob", "aci", "sklearn") if self.runtime == "python" else ("blob", "aci")


def source_root(explicit: Path | None = None) -> Path:
    """The serverless-score checkout the image is built from (its ``images/`` and source)."""
    root = explicit or Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "images" / "python" / "Dockerfile").is_file():
        raise ScoreError(
            f"{root} is not a serverless-score checkout (no pyproject.toml and images/)",
            hint="Building an image needs the source: run from a checkout, or pass --source DIR.",
        )
    return root


def requirements(root: Path, extras: Iterable[str]) -> list[str]:
    """The runner's Python requirements, as pyproject.toml declares them."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted += project.get("optional-dependencies", {}).get(extra, [])
    seen: dict[str, str] = {}
    for item in wanted:
        name = re.split(r"[<>=!~\[; ]", item, maxsplit=1)[0].lower()
        if name not in _NOT_IN_IMAGES:
            seen.setdefault(name, item)
    return list(seen.values())


def stage(request: BuildRequest, root: Path, dest: Path) -> None:
    """Write the build context of ``request`` into the empty directory ``dest`` (everything but
    the wheels and the lock, which ``wheels.py`` adds)."""
    shutil.copy2(root / "images" / request.runtime / "Dockerfile", dest / "Dockerfile")
    shutil.copy2(root / "images" / request.runtime / ".dockerignore", dest / ".dockerignore")
    for script in sorted((root / "images" / "common").glob("*.sh")):
        shutil.copy2(script, dest / script.name)
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, src / name)
    shutil.copytree(root / "serverless_score", src / "serverless_score", ignore=_SOURCE_SKIP)
    if request.renv_lock is not None:
        shutil.copy2(request.renv_lock, dest / "renv.lock")
    (dest / "wheels").mkdir()


def context_digest(dest: Path, request: BuildRequest, *, base_id: str, pins: Iterable[str]) -> str:
    """sha256 over every staged file (path and bytes), the build arguments, the base image's id
    and the Python versions the wheels will be pinned to: equal digests build equal images."""
    digest = hashlib.sha256()
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        rel = path.relative_to(dest).as_posix()
        if rel.startswith("wheels/") or rel == "requirements.lock":
            continue
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps({"args": request.buildargs, "base": base_id,
                              "pins": sorted(pins)}, sort_keys=True).encode())
    return digest.hexdigest()
