"""``python -m serverless_score.runner``: the entrypoint of every worker and container.

It reads its work order from ``SERVERLESS_SCORE_WORK`` (or a file named by ``--work FILE``), runs
its tasks one after another (the model is loaded once): the ones the order lists, or, for a
group that pulls its work, each ticket it claims from the job's queue (``pull.py``) until none is
left. For each task it stores for each its part, its whole
log and its status (``attempt.py``). A failing task does not stop the ones after it: the
controller retries only what failed. Exit code: 0 if every task succeeded, 1 otherwise, 2 for a
bad work order.
"""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..storage import StoreConfig
    from .capture import OutputCapture
    from .contract import TaskOrder, WorkOrder

# contract.ENV_WORK and ENV_GROUP, not imported from there: an R worker starts R before it pays
# for any import it can put off.
_ENV_WORK = "SERVERLESS_SCORE_WORK"
_ENV_GROUP = "SERVERLESS_SCORE_GROUP"


def _order_text(argv: list[str]) -> str:
    if len(argv) == 2 and argv[0] == "--work":
        with open(argv[1], encoding="utf-8") as f:
            return f.read()
    text = os.environ.get(_ENV_WORK)
    if not text:
        raise SystemExit(f"runner: no work order: set {_ENV_WORK} or pass --work FILE")
    return text


def _start_r_early(text: str) -> None:
    """R and the model take about a second to load: start them now, while this process imports
    the rest of itself (the first task waits for R only if it is not ready by then)."""
    try:
        raw = json.loads(text)
    except ValueError:
        return  # reported below, with the other malformed work orders
    if not isinstance(raw, dict) or raw.get("runtime") != "r":
        return
    model = raw.get("model")
    if not isinstance(model, str) or "://" in model or "://" in str(raw.get("scorer", "")):
        return
    from .r_launch import start_early

    settings = SimpleNamespace(
        job_id=raw.get("job_id", ""), scorer=raw.get("scorer", "predict"),
        id_columns=raw.get("id_columns", []), predict_args=raw.get("predict_args", {}),
        on_unknown_level=raw.get("on_unknown_level", "error"),
        on_error=raw.get("on_error", "fail"),
    )
    start_early(settings, model)


def _store_config(work: WorkOrder) -> StoreConfig:
    """Storage access of this worker. The secrets variable is taken out of the environment at
    once, so a scoring command started later never sees it; a worker given per-task SAS URLs also
    drops any account credentials it inherited (least privilege, even on the local backend)."""
    from ..storage import StoreConfig
    from ..storage.config import SECRET_ENV
    from .contract import ENV_SECRETS

    config = StoreConfig.for_worker(work.storage, os.environ.pop(ENV_SECRETS, None))
    if config.grants_only:
        for name in SECRET_ENV:
            os.environ.pop(name, None)
    return config


def _local_scorer(work: WorkOrder, config: StoreConfig) -> WorkOrder:
    """A scorer script stored as a blob (shipped there by the controller for workers that
    cannot see its machine) is downloaded once; the scorers then load it as a file."""
    from dataclasses import replace

    if work.runtime == "command" or "://" not in work.scorer:
        return work
    from .models import fetch_model

    return replace(work, scorer=fetch_model(work.scorer, None, config))


def _load_order(text: str) -> WorkOrder:
    from .contract import WorkOrder

    return WorkOrder.from_json(text)


def _keep_freed_memory() -> None:
    """Let glibc's malloc reuse freed memory for big blocks instead of unmapping it. A task's
    32 MB batches are allocated and freed again and again; above malloc's mmap threshold each
    one was a fresh mapping whose pages the kernel had to fault in and zero: a third of a
    worker's CPU time, in the kernel. Memory stays bounded by the few batches alive at once."""
    if not sys.platform.startswith("linux"):
        return
    # Arrow and numpy, too: Arrow's own allocator (mimalloc / jemalloc) and numpy's big arrays
    # ask the kernel for transparent huge pages, which it zeroes 2 MB at a time on first touch,
    # for every batch's fresh buffers: ~0.1 CPU s per R worker, on the cores R needs. Through
    # malloc (Arrow's "system" pool) under the settings below, freed buffers are reused. Read
    # by numpy and pyarrow when they load, so set before either is imported; a user's wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        libc.mallopt(m_mmap_threshold, 1 << 30)  # (glibc caps it at 32 MB on 64-bit)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass  # not glibc (musl, ...): its default behaviour is fine, only slower


def _orders(work: WorkOrder, config: StoreConfig,
            group: str) -> Iterator[tuple[TaskOrder, StoreConfig]]:
    """The attempts to run, each with the store access it runs with: the ones the order lists,
    or, for a group that pulls its work, each ticket it claims until the queue is done."""
    if work.queue is None:
        yield from ((order, config) for order in work.orders)
        return
    from .contract import QueueOrder
    from .pull import TicketQueue

    queue = TicketQueue(QueueOrder(**work.queue), group, config)
    for ticket in queue.claims():
        yield ticket.order, queue.current


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("SERVERLESS_SCORE_ROLE") == "controller":
        # A Logic App's container: run the whole job here (templates/contract.py).
        from ..templates.controller import main as controller_main

        return controller_main()
    text = _order_text(sys.argv[1:] if argv is None else argv)
    global _CAPTURE
    _CAPTURE = _capture()  # before R starts, so that R's output reaches the tasks' logs too
    _start_r_early(text)  # first: R's start is on the job's critical path, ctypes' import is not
    _keep_freed_memory()
    try:
        work = _load_order(text)
    except (ValueError, TypeError, KeyError) as err:
        print(f"runner: malformed work order: {err}", file=sys.stderr)
        return 2
    from ..errors import ScoreError
    from .attempt import run_attempt

    config = _store_config(work)
    group = os.environ.get(_ENV_GROUP, "")
    try:
        work = _local_scorer(work, config)
    except ScoreError as err:  # every task needs the script: each fails with the reason
        problem = err

        def fail(*_: object) -> Any:
            raise problem

        for order, access in _orders(work, config, group):
            run_attempt(work, order, access, group=group, capture=_CAPTURE, run=fail)
            if work.queue is not None:
                break  # a pulling group fails the one attempt it claimed: the controller decides
        return 1
    failed = 0
    for order, access in _orders(work, config, group):
        if not run_attempt(work, order, access, group=group, capture=_CAPTURE):
            failed += 1
    return 1 if failed else 0


_CAPTURE: OutputCapture | None = None


def _capture() -> OutputCapture | None:
    """Each task's stdout and stderr, children's included, into its own log file."""
    from .capture import OutputCapture

    try:
        return OutputCapture()
    except OSError as err:  # no descriptors left: run without per-task logs rather than not at all
        print(f"runner: task logs not captured: {err}", file=sys.stderr)
        return None


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown: freeing pyarrow's and numpy's state took a worker
    0.1-0.2 s after its last task, time the controller waits for. Everything that must outlive
    the worker is written and closed by now; R is asked to quit (and waited for) first."""
    r_scorer = sys.modules.get(f"{__package__}.r_scorer")
    if r_scorer is not None:
        r_scorer.SESSIONS.close()
    r_launch = sys.modules.get(f"{__package__}.r_launch")
    if r_launch is not None:
        r_launch.discard_early()  # started for a work order that was then refused
    if _CAPTURE is not None:
        _CAPTURE.close()  # the last words echoed before the process goes
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
