"""The image's Python packages, decided and downloaded on the controller's machine.

What Python the base image will run (``probe``), then ``pip download`` of the runner's
requirements for that Python and platform, constrained to the versions installed beside the
controller where they exist (a model pickled with scikit-learn X here unpickles with X in the
image). The wheels go into the build context and ``requirements.lock`` pins exactly them, so the
image build installs offline and two builds of one lock get the same packages.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ScoreError

if TYPE_CHECKING:
    import docker

# The Python a distribution's apt installs (bases without Python: local/bookworm, rocker/r-ver).
APT_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13",
              "focal": "3.8", "jammy": "3.10", "noble": "3.12"}
MIN_PYTHON = (3, 11)
# Needed to build serverless-score itself from its source in the image; not kept in it.
_BUILD_ONLY = ("setuptools>=68", "wheel")
_NOT_LOCKED = {"setuptools", "wheel", "pip"}
_PROBE = (
    'if command -v python3 >/dev/null 2>&1; then '
    'python3 -c "import sys; print(\'python=%d.%d\' % sys.version_info[:2])"; fi; '
    '. /etc/os-release; echo "codename=${VERSION_CODENAME:-}"; echo "id=${ID:-}"; '
    'echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d" " -f2)"; echo "machine=$(uname -m)"'
)
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.*\.whl$")


@dataclass(frozen=True)
class Target:
    """The interpreter and platform of the image's Python."""

    python: str  # "3.11"
    glibc: str  # "2.36"
    machine: str  # "x86_64"

    @property
    def platform(self) -> str:
        return f"manylinux_{self.glibc.replace('.', '_')}_{self.machine}"

    @property
    def platforms(self) -> list[str]:
        """Every manylinux tag this glibc runs, newest first (older pips do not expand them)."""
        major, minor = (int(p) for p in self.glibc.split("."))
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 16, -1)]
        legacy = {"2_17": "manylinux2014", "2_12": "manylinux2010", "2_5": "manylinux1"}
        return tags + [f"{name}_{self.machine}" for glibc, name in legacy.items()
                       if major == 2 and minor >= int(glibc.split("_")[1])]

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")


def parse_probe(base: str, output: str) -> Target:
    """The Target of a base image, from the output of ``_PROBE`` run in it."""
    facts = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    python = facts.get("python") or APT_PYTHON.get(facts.get("codename", ""), "")
    if not python:
        raise ScoreError(
            f"--base {base}: cannot tell which Python it would run (no python3, and "
            f"{facts.get('id') or 'its distribution'} {facts.get('codename') or '?'} is not one of "
            f"{', '.join(APT_PYTHON)})",
            hint="Use a Debian or Ubuntu base, or one with python3 >= 3.11 installed.")
    if tuple(int(p) for p in python.split(".")) < MIN_PYTHON:
        raise ScoreError(
            f"--base {base}: it has Python {python}; the runner needs Python 3.11 or newer",
            hint="Choose a newer base, e.g. python:3.12-slim, debian:bookworm-slim, or "
                 "rocker/r-ver:4.5.1 (Ubuntu 24.04).")
    glibc = facts.get("glibc") or ""
    if not re.fullmatch(r"\d+\.\d+", glibc):
        raise ScoreError(f"--base {base}: not a glibc-based Linux (alpine/musl is not supported)",
                         hint="Use a Debian or Ubuntu based image.")
    return Target(python, glibc, facts.get("machine") or "x86_64")


def probe(client: docker.DockerClient, base: str) -> Target:
    """Run the base image once to learn its Python and platform."""
    output = client.containers.run(base, entrypoint=["sh", "-c", _PROBE], remove=True,
                                   network_mode="none", user="0")
    return parse_probe(base, output.decode(errors="replace"))


def installed_versions() -> dict[str, str]:
    """name -> version of every distribution beside the controller (the preferred pins; pip,
    setuptools and wheel left out: an old venv's setuptools must not hold back the build)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = str(dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name != "serverless-score" and name not in _NOT_LOCKED:
            found.setdefault(name, dist.version)
    return found


def lock_lines(wheels: Iterable[Path]) -> list[str]:
    """``name==version`` of each downloaded wheel (build-only tools left out), sorted."""
    lines = []
    for wheel in wheels:
        match = _WHEEL.match(wheel.name)
        if match is None:
            continue
        name = match["name"].lower().replace("_", "-")
        if name not in _NOT_LOCKED:
            lines.append(f"{name}=={match['version']}")
    return sorted(lines)


def download(requirements: list[str], pins: Mapping[str, str], target: Target, dest: Path,
             *, say: Callable[[str], None] = lambda _: None) -> list[str]:
    """Download the wheels of ``requirements`` for ``target`` into ``dest``; return the lock.
    ``pins`` are preferred versions: if pip finds no wheels for them (another Python than the
    controller's), it resolves again freely, and ``say`` tells what happened."""
    with tempfile.TemporaryDirectory(prefix="serverless-score-pip-") as tmp:
        req_file = Path(tmp) / "requirements.in"
        req_file.write_text("\n".join([*requirements, *_BUILD_ONLY]) + "\n", encoding="utf-8")
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())),
                               encoding="utf-8")
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                   "--quiet", "--dest", str(dest), "--only-binary=:all:", "--implementation", "cp",
                   "--python-version", target.python, "--abi", target.abi,
                   *(f"--platform={p}" for p in target.platforms), "-r", str(req_file)]
        result = _pip([*command, "-c", str(constraints)])
        if result.returncode != 0:
            say(f"the controller's package versions have no wheels for Python {target.python}: "
                "resolving the image's versions freely")
            for wheel in dest.glob("*.whl"):
                wheel.unlink()
            result = _pip(command)
        if result.returncode != 0:
            raise ScoreError(
                f"pip could not download the runner's packages for Python {target.python} "
                f"({target.platform}): {_tail(result.stderr)}",
                hint="Check the controller's pip index (pip config list); the image build "
                     "installs only what is downloaded here.")
    return lock_lines(sorted(dest.glob("*.whl")))


def _pip(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=1800,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ScoreError("pip download did not finish within 30 minutes",
                         hint="Check the network and the pip index.") from None


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no output"
