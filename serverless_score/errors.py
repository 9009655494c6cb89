"""The few error types a caller can act on.

Every error the tool raises on purpose is a :class:`ScoreError`: a one-paragraph message that names
the thing that is wrong, a ``hint`` saying what to do next, and the process exit code the CLI uses.
SDK and OS errors are translated into these at the edge (``raise ... from err``), so the CLI never
shows a traceback unless ``--debug`` is given.
"""

from __future__ import annotations


class ScoreError(Exception):
    """Base class: a user-facing error with a hint and an exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # False when running again cannot help (a model that does not load, a missing column):
        # the controller then fails the job at once instead of burning its retries.
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class SpecError(ScoreError):
    """The job file (or an override) is malformed: names the key, what is allowed and what was found."""

    exit_code = 2


class InputError(ScoreError):
    """The model, input or output location is missing, empty or unreadable."""

    exit_code = 2


class TaskFailed(ScoreError):
    """A task failed after all its retries; the message names the task and shows its log tail."""

    exit_code = 1

    def __init__(self, message: str, *, task_id: str, log_tail: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.task_id = task_id
        self.log_tail = log_tail


class BudgetExceeded(ScoreError):
    """More rows failed than ``max_failed_rows`` / ``max_failed_fraction`` allow: every group
    was stopped and no output was written."""

    exit_code = 1

    def __init__(self, message: str, *, rows_failed: int, errors: str | None,
                 hint: str = "") -> None:
        super().__init__(message, hint=hint, retryable=False)
        self.rows_failed = rows_failed
        self.errors = errors


class JobInterrupted(ScoreError):
    """Ctrl-C or SIGTERM: every worker was stopped and no final output was written."""

    exit_code = 130


class BoundaryError(ScoreError):
    """Records could not be found where the format says they are (e.g. a regex that never matches)."""

    exit_code = 1


class NotFoundError(InputError, FileNotFoundError):
    """A blob, container or account that does not exist. Also a ``FileNotFoundError``, so code
    that treats "missing" as "not there yet" (resume, manifests) works for every store."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        InputError.__init__(self, message, hint=hint, retryable=False)


class AlreadyExistsError(ScoreError, FileExistsError):
    """A conditional write found something already there (an output this job may not replace)."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        ScoreError.__init__(self, message, hint=hint, retryable=False)


class AccessDeniedError(InputError, PermissionError):
    """The credentials in use may not do this (403), or a SAS expired or is for something else."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        InputError.__init__(self, message, hint=hint, retryable=False)


class LeaseHeld(ScoreError):
    """Another controller holds the job's lease: this one stopped before touching anything.
    ``holder`` says who (host, pid, since when; see ``storage/lease.py``)."""

    exit_code = 3
    kind = "job-locked"

    def __init__(self, message: str, *, holder: dict[str, object], hint: str = "") -> None:
        super().__init__(message, hint=hint, retryable=False)
        self.holder = holder
