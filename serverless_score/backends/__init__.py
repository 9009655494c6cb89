"""Compute backends, found by name and imported lazily: a new backend touches no central ``if``."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import SpecError
from .base import Backend, GroupSpec, GroupState, Phase

BACKENDS = {
    "local": "serverless_score.backends.local:LocalBackend",
}

__all__ = ["BACKENDS", "Backend", "GroupSpec", "GroupState", "Phase", "get_backend"]


def get_backend(name: str, **options: Any) -> Backend:
    target = BACKENDS.get(name)
    if target is None:
        raise SpecError(f"backend: {name!r} is not available; choose one of {', '.join(BACKENDS)}")
    module, _, cls = target.partition(":")
    backend: Backend = getattr(importlib.import_module(module), cls)(**options)
    return backend
