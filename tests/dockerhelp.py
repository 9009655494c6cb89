"""The Docker engine of the tests and the images they run (fixtures in conftest.py).

``ensure_engine`` uses an engine that answers (``DOCKER_HOST``) or runs scripts/ensure-docker.sh,
which installs Debian's docker.io, starts a private dockerd under .tools/docker and imports the
debootstrapped base image ``local/bookworm`` (no registry is reachable here). ``build_image``
builds a scoring image FROM it through the real builder: an image built from the same inputs
(package source, Dockerfile, R packages, base, Python versions) is reused, so only the first
session after a change pays for a build.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
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


def engine_copy(engine: Engine) -> Engine:
    """The same engine through a client of its own (one per thread)."""
    import docker

    return Engine(engine.host, docker.DockerClient(base_url=engine.host, timeout=300))


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


@contextlib.contextmanager
def local_registry(directory: Path) -> Iterator[str]:
    """Debian's docker-registry (CNCF distribution 2.8) on a free localhost port: a real registry
    to push to (the engine allows plain HTTP to 127.0.0.0/8). Yields ``127.0.0.1:PORT``."""
    binary = subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh"), "--registry-binary"],
                            capture_output=True, text=True, timeout=600, check=True).stdout.strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = directory / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {directory / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def tiny_image(engine: Engine, repository: str) -> str:
    """A one-file image (``docker import`` of a small tar) tagged ``repository:1``: quick to push."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        body = b"hello from a tiny image\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    engine.client.api.import_image_from_data(data.getvalue(), repository=repository, tag="1")
    return f"{repository}:1"
