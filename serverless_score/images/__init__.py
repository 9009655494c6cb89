"""Scoring images: build the R and Python runner images (``images/`` Dockerfiles) and push them
to a registry, through the Docker engine's API. See README: Images."""

from __future__ import annotations

from .build import Built, build, push
from .context import DEFAULT_BASES, RUNTIMES, BuildRequest, default_tag, source_root

__all__ = ["DEFAULT_BASES", "RUNTIMES", "BuildRequest", "Built", "build", "default_tag", "push",
           "source_root"]
