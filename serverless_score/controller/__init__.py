"""The controller: plan, fan out, watch, collect, merge, report."""

from .job import Job, JobResult, plan_job, run_job

__all__ = ["Job", "JobResult", "plan_job", "run_job"]
