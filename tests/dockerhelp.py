"""The Docker engine of the tests and the images they run (fixtures in conftest.py).

``ensure_engine`` uses an engine that answers (``DOCKER_HOST``) or runs scripts/ensure-docker.sh,
which installs Debian's docker.io, starts a private dockerd under .tools/docker and imports the
debootstrapped base image ``local/bookworm`` (no registry is reachable here). ``build_image``
builds a scoring image FROM it through the real builder: an image built from the same inputs
(package source, Dockerfile, R packages, base, Python versions) is reused, so only the first
session after a change pays for a build.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE = "local/bookworm"


@dataclass(frozen=True)
class Engine:
    host: str
    client: Any  # docker.DockerClient


def ensure_engine() -> Engine:
    import docker

    result = subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/ensure-docker.sh failed:\n{result.stderr}")
    host = result.stdout.strip().splitlines()[-1]
    os.environ["DOCKER_HOST"] = host  # the CLI subprocesses of the tests inherit it
    return Engine(host, docker.DockerClient(base_url=host, timeout=300))


def build_image(engine: Engine, runtime: str, *, tag: str | None = None,
                r_packages: tuple[str, ...] = ()) -> Any:
    """Build (or reuse) a scoring image FROM local/bookworm; returns the builder's ``Built``."""
    from serverless_score.images import BuildRequest, build, default_tag

    request = BuildRequest(runtime=runtime, tag=tag or default_tag(runtime), base=BASE,
                           r_packages=r_packages)
    return build(engine.client, request, ROOT)


def our_containers(engine: Engine, job_id: str | None = None) -> list[dict[str, Any]]:
    """Containers serverless-score made (of one job), running or not."""
    labels = ["managed-by=serverless-score"] + ([f"job={job_id}"] if job_id else [])
    found: list[dict[str, Any]] = engine.client.api.containers(all=True, filters={"label": labels})
    return found
