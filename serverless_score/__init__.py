"""serverless-score: batch scoring of R and Python models on serverless containers.

Python API::

    from serverless_score import load_spec, run_job
    result = run_job(load_spec("score.toml", ["chunks=8"]))
    print(result.status, result.rows_out, result.output)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .controller import Job, JobResult, plan_job, run_job
    from .errors import InputError, JobInterrupted, ScoreError, SpecError, TaskFailed
    from .spec import JobSpec, load_spec, spec_from_dict

__version__ = "0.1.0"

# Imported on first use: every worker and container imports this package to run
# ``python -m serverless_score.runner``, which needs none of the controller, pydantic or rich
# (importing them eagerly cost a runner 0.25-0.5 s before it could start R).
_EXPORTS = {
    "Job": ".controller", "JobResult": ".controller", "plan_job": ".controller",
    "run_job": ".controller", "InputError": ".errors", "JobInterrupted": ".errors",
    "ScoreError": ".errors", "SpecError": ".errors", "TaskFailed": ".errors", "JobSpec": ".spec",
    "load_spec": ".spec", "spec_from_dict": ".spec",
}

__all__ = [
    "InputError",
    "Job",
    "JobInterrupted",
    "JobResult",
    "JobSpec",
    "ScoreError",
    "SpecError",
    "TaskFailed",
    "load_spec",
    "plan_job",
    "run_job",
    "spec_from_dict",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'serverless_score' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
