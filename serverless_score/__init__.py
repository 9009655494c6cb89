"""serverless-score: batch scoring of R and Python models on serverless containers.

Python API::

    from serverless_score import load_spec, run_job
    result = run_job(load_spec("score.toml", ["chunks=8"]))
    print(result.status, result.rows_out, result.output)
"""

from .controller import Job, JobResult, plan_job, run_job
from .errors import InputError, JobInterrupted, ScoreError, SpecError, TaskFailed
from .spec import JobSpec, load_spec, spec_from_dict

__version__ = "0.1.0"

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
