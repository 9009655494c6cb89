"""Starting ``Rscript runtimes/r/score.R``: the part of the R runtime a worker needs first.

R, its packages and the model take about half a second to load, and the worker cannot score
before they have. So a worker starts R before anything else: this module imports only what a
``Popen`` needs (no threads, queues, dataclasses or hashing, which ``r_scorer`` pulls in). Every
millisecond here is on the critical path of a job, between the controller starting a worker and
R starting to load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from ..errors import ScoreError
from .r_feed import BatchFiles

if TYPE_CHECKING:
    from typing import Any, Protocol

    class RWork(Protocol):
        """What starting R needs from a work order (the runner has these before it has
        imported the rest of itself: see ``runner.__main__``)."""

        @property
        def job_id(self) -> str: ...
        @property
        def scorer(self) -> str: ...
        @property
        def id_columns(self) -> list[str]: ...
        @property
        def predict_args(self) -> dict[str, Any]: ...
        @property
        def on_unknown_level(self) -> str: ...


ENV_RSCRIPT = "SERVERLESS_SCORE_RSCRIPT"  # another Rscript than the one on PATH
INSTALL_HINT = ("Install R: `make setup` does it on Debian/Ubuntu, or apt-get install r-base-core "
                "r-cran-data.table r-cran-jsonlite (plus the model's package, e.g. r-cran-randomforest).")


def script_path() -> str:
    # A path next to this package rather than importlib.resources (3 ms more before R starts):
    # score.R is a file of the installed package, never inside a zip (Rscript needs a path).
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, "runtimes", "r", "score.R")


def find_rscript() -> str:
    chosen = os.environ.get(ENV_RSCRIPT)
    rscript = chosen or shutil.which("Rscript")
    if not rscript or not os.access(rscript, os.X_OK):
        where = f"{ENV_RSCRIPT}={chosen} is not an executable" if chosen else "no Rscript on PATH"
        raise ScoreError(f"R is not installed here: {where}", hint=INSTALL_HINT, retryable=False)
    return rscript


def r_env(work: RWork, model_path: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SERVERLESS_SCORE_WORK", None)
    env.update({
        "JOB_ID": work.job_id,
        "MODEL_PATH": model_path,
        "SCORER": work.scorer,
        "ID_COLUMNS": json.dumps(work.id_columns),
        "PREDICT_ARGS": json.dumps(work.predict_args),
        "ON_UNKNOWN_LEVEL": work.on_unknown_level,
        "ON_ERROR": getattr(work, "on_error", "fail"),  # (not in work orders before it)
    })
    # Each batch allocates a batch's worth of vectors; with R's default heap growth the garbage
    # collector ran after nearly every one (a third of a glm's scoring time). A user's own
    # setting wins.
    env.setdefault("R_GC_MEM_GROW", "3")
    # No byte-code JIT (score.R's glue does its work in C): said here, R does not even load the
    # compiler package to turn it off.
    env.setdefault("R_ENABLE_JIT", "0")
    # glibc's malloc reuses freed big blocks instead of unmapping them (see the runner's
    # _keep_freed_memory): R frees and allocates a batch's vectors for every batch.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 30))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(1 << 30))
    return env


def start_r(work: RWork, model_path: str) -> tuple[subprocess.Popen[bytes], BatchFiles | None]:
    """Start R with the model to load, and the memory files it will read its batches from."""
    files = BatchFiles.create()
    env = r_env(work, model_path)
    if files is not None:
        env["SERVERLESS_SCORE_BATCH_FILES"] = ",".join(files.paths())
    try:
        proc = subprocess.Popen(
            [find_rscript(), script_path()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=sys.stderr.fileno(), env=env, pass_fds=files.fds if files else (),
        )
    except BaseException:
        if files is not None:
            files.close()
        raise
    return proc, files


# The R the runner started at its very start, before it had parsed its work order in full:
# (settings it was started with, when, the process, its memory files).
_early: tuple[str, float, subprocess.Popen[bytes], BatchFiles | None] | None = None


def _settings(work: RWork, model_path: str) -> str:
    return json.dumps([work.job_id, work.scorer, work.id_columns, work.predict_args,
                       work.on_unknown_level, getattr(work, "on_error", "fail"), model_path],
                      sort_keys=True, default=str)


def start_early(work: RWork, model_path: str) -> None:
    """Start R now, for the first task to adopt (``take_early``). A failure to start is left
    for that task to report, with its task id."""
    global _early
    started = time.monotonic()
    try:
        proc, files = start_r(work, model_path)
    except (ScoreError, OSError):
        return
    _early = (_settings(work, model_path), started, proc, files)


def take_early(work: RWork,
               model_path: str) -> tuple[float, subprocess.Popen[bytes], BatchFiles | None] | None:
    """The R started early, if it was started for these very settings (else it is stopped):
    (when it was started, the process, its memory files)."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    settings, started, proc, files = early
    if settings == _settings(work, model_path):
        return started, proc, files
    _stop(proc, files)
    return None


def discard_early() -> None:
    """Stop an R started early that no task took (the work order was refused, say)."""
    global _early
    early, _early = _early, None
    if early is not None:
        _stop(early[2], early[3])


def _stop(proc: subprocess.Popen[bytes], files: BatchFiles | None) -> None:
    proc.kill()
    proc.wait()
    if files is not None:
        files.close()
