"""Compute backends, found by name and imported lazily: a new backend touches no central ``if``."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import SpecError
from .base import Backend, GroupSpec, GroupState, Phase
from .registry import BACKENDS

__all__ = ["BACKENDS", "Backend", "GroupSpec", "GroupState", "Phase", "backend_class", "get_backend"]


def backend_class(name: str) -> Any:
    """The class of backend ``name``, imported but not built: for what a class can say without
    credentials or a cloud, e.g. ``backend_class("aci").packing(tasks, max_parallel)`` (how
    ``plan`` shows the groups a job will make, and why)."""
    target = BACKENDS.get(name)
    if target is None:
        raise SpecError(f"backend: {name!r} is not available; choose one of {', '.join(BACKENDS)}")
    module, _, cls_name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), cls_name)
    except ImportError as err:  # an optional SDK (extra) is missing
        raise SpecError(f"backend {name!r} needs the package {err.name!r}, which is not installed",
                        hint=f"pip install 'serverless-score[{name}]'") from err


def get_backend(name: str, *, spec: Any = None, **options: Any) -> Backend:
    """The backend called ``name``. With a job ``spec``, the backend class's ``from_spec(spec,
    **options)`` builds it (image, resources, Azure settings come from the job); without one
    the class is called with ``options`` (tests, tools)."""
    cls = backend_class(name)
    backend: Backend = cls.from_spec(spec, **options) if spec is not None else cls(**options)
    return backend
