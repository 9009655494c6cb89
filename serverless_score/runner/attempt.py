"""One attempt of one task, as the controller will see it: the part, then the task's whole log,
then (last) its status, each in the attempt's own folder and each created only if absent.

The status is the protocol: the controller reads it and never the log, so nothing a scorer prints
can pass for the runner's word.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
import traceback
from collections.abc import Callable

from ..errors import ScoreError
from ..storage import StoreConfig, get_store
from .capture import OutputCapture
from .contract import ENV_NOTIFY, AttemptStatus, Outcome, TaskOrder, TaskResult, WorkOrder
from .execute import AttemptTaken, Seen, run_task

RunTask = Callable[[WorkOrder, TaskOrder, StoreConfig, Seen], TaskResult]


def run_attempt(work: WorkOrder, order: TaskOrder, config: StoreConfig, *, group: str,
                capture: OutputCapture | None, run: RunTask = run_task) -> bool:
    """Run the task, store its log and status; True when it succeeded."""
    task = order.task
    started = time.monotonic()
    folder = tempfile.mkdtemp(prefix=f"{task.id}-")
    log_file = os.path.join(folder, "log.txt")
    if capture is not None:
        capture.start_task(log_file)
    print(f"runner: task {task.id} attempt {order.attempt}: {task.describe()}", flush=True)
    seen = Seen()
    status: AttemptStatus | None
    try:
        result = run(work, order, config, seen)
    except AttemptTaken as err:  # its files are another worker's: leave them all alone
        print(f"runner: task {task.id}: {err}; this worker leaves that attempt to the other",
              flush=True)
        status = None
    except ScoreError as err:
        hint = f" ({err.hint})" if err.hint else ""
        status = _failed(order, group, seen, f"{err.message}{hint}", err.retryable, started)
    except Exception as err:
        traceback.print_exc()
        status = _failed(order, group, seen, f"{type(err).__name__}: {err}", True, started)
    else:
        status = AttemptStatus(task.id, order.attempt, group, Outcome.SUCCEEDED,
                               begin=result.begin, result=result, seconds=result.seconds)
    if status is not None:
        print(f"runner: task {task.id} {status.outcome.value}"
              + (f": {status.reason}" if status.reason else
                 f": {status.result.records_out if status.result else 0} records out")
              + f" ({status.seconds:.2f}s)", flush=True)
    if capture is not None:
        capture.end_task()
    try:
        if status is not None:
            _store_log(order, config, log_file if capture is not None else None)
            _create(order.status, status.to_json().encode(), config)  # last: the attempt is over
            _notify_controller()
    except FileExistsError:
        print(f"runner: task {task.id}: attempt {order.attempt}'s files were written by another "
              "worker; this one's are dropped", flush=True)
        return False
    except Exception as err:  # the store is unreachable: the controller sees no status
        print(f"runner: task {task.id}: could not store its log and status: "
              f"{type(err).__name__}: {err}", flush=True)
        return False
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return status is not None and status.succeeded


def _notify_controller() -> None:
    """A byte on the controller's named pipe, when it named one: it reads the statuses at once.
    Best effort: no reader, a full pipe or a path that is not a pipe only mean it reads them at
    its next poll."""
    path = os.environ.get(ENV_NOTIFY)
    if not path:
        return
    with contextlib.suppress(OSError):  # ENXIO: no reader (the controller is gone)
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):  # never a byte appended to a file
                os.write(fd, b"s")
        finally:
            os.close(fd)


def _failed(order: TaskOrder, group: str, seen: Seen, reason: str, retryable: bool,
            started: float) -> AttemptStatus:
    outcome = Outcome.FAILED if retryable else Outcome.FAILED_PERMANENTLY
    return AttemptStatus(order.task.id, order.attempt, group, outcome, reason=reason,
                         begin=seen.begin, seconds=round(time.monotonic() - started, 3))


def _store_log(order: TaskOrder, config: StoreConfig, path: str | None) -> None:
    store = get_store(order.log, config)
    with store.open_atomic(order.log, overwrite=False) as out:
        if path is not None and os.path.exists(path):
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out, 1024 * 1024)


def _create(uri: str, data: bytes, config: StoreConfig) -> None:
    with get_store(uri, config).open_atomic(uri, overwrite=False) as out:
        out.write(data)
