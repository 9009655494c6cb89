"""The one place that connects to a Docker engine (``docker`` backend, ``image build/push``).

The engine is the usual one: ``DOCKER_HOST`` (e.g. ``unix:///path/docker.sock`` or
``tcp://host:2376`` with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``), else the default socket.
Connection failures become a ScoreError that says how to get an engine.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import ScoreError

if TYPE_CHECKING:
    import docker

# Engine API calls are short; a build or a pull streams, so the timeout is per read, not total.
_TIMEOUT = 120


def docker_client() -> docker.DockerClient:
    """A client of the engine at DOCKER_HOST (or the default socket) that answered a ping."""
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST") or "the default socket (/var/run/docker.sock)"
    try:
        client = docker.from_env(timeout=_TIMEOUT)
        client.ping()
    except DockerException as err:
        raise ScoreError(
            f"no Docker engine answers at {where}: {_first_line(err)}",
            hint="Start Docker, or set DOCKER_HOST to a running engine; on Debian, "
                 "`scripts/ensure-docker.sh` installs docker.io, starts one and prints its DOCKER_HOST.",
        ) from None
    return client


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
