"""Scoring with R (``runtime = "r"``): one ``Rscript runtimes/r/score.R`` per runner process.

Why one R process per runner (i.e. per group of tasks) and not per task: reading a model is the
expensive part of starting (a 100-tree random forest is tens of MB of RDS), and a group runs its
tasks one after another, so R reads the model once and scores every task of the group. A task
that fails leaves the R process usable (the protocol resynchronises at the task's DONE); an R
process that dies is started again for the next task; a model that cannot be loaded fails every
later task at once with the same message instead of reading it again.

Records stream through: a feeder thread hands the task's batches to R (``r_feed``: in memory
files, else in frames) and reads their id columns while R scores them; this thread turns R's
answers into the part, ids first, so R never holds more than one batch and the pipes can never
deadlock. See ``r_protocol`` for the frames.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ScoreError
from .csv_ids import header_names, read_id_columns
from .r_launch import start_r, take_early
from .r_protocol import (
    Frame,
    ProtocolError,
    columns_csv,
    decode_columns,
    encode_frame,
    header_line,
    read_frame,
)
from .writers import PartWriter

if TYPE_CHECKING:
    from ..records import Batch  # (the records package imports numpy: not before R starts)
    from .contract import TaskOrder, WorkOrder
    from .r_launch import RWork
    from .row_guard import ErrorLog


# Records per message to R: each fread() call costs ~30 ms of set-up whatever its size, so R
# gets bigger batches than the in-process Python scorer (R holds one batch: ~3x its CSV size).
R_BATCH_BYTES = 32 * 1024 * 1024


def _error_from(frame: Frame) -> ScoreError:
    """R's error as the runner reports it (the marker line adds the task id)."""
    try:
        info = json.loads(frame.payload)
    except ValueError:
        info = {"message": frame.payload.decode("utf-8", "replace")}
    # The marker line that carries the reason is one line: R messages can span several.
    message = " ".join(str(info.get("message", "")).split()) or "R reported an error"
    return ScoreError(message, hint=str(info.get("hint", "")),
                      retryable=not info.get("permanent", False))


@dataclass
class _Sent:
    """A batch R has been given and not answered yet."""

    records: int
    file: int | None = None  # the memory file holding it, freed when R answers
    batch: Batch | None = None  # (on_error = "skip": where its failed records are)
    first: int = 0  # the task's records before it
    kept: Any = None  # the positions in the input's batch of those sent (None: all of them)
    bounds: Any = None  # its records' bounds in batch.view, if known (None: found when needed)
    ids: Future[list[Any]] = field(default_factory=Future)  # its id columns (runner-read)


class RSession:
    """A running ``score.R`` that has loaded the model."""

    def __init__(self, work: RWork, model_path: str) -> None:
        """Start R (or adopt the one the runner started for this work at its very start); it
        reads the model while the runner gets on with its own start-up."""
        self.id_columns = list(work.id_columns)
        early = take_early(work, model_path)
        if early is not None:
            self.started, self.proc, self.files = early
        else:
            self.started = time.monotonic()
            self.proc, self.files = start_r(work, model_path)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.stdout = self.proc.stdout
        self.ready = False
        self.quitting = False  # QUIT was sent

    def wait_ready(self) -> None:
        """Wait for R's REDY (the model is loaded), or raise R's reason it could not load it."""
        if self.ready:
            return
        import pyarrow.csv  # noqa: F401  # imported while R still loads: it writes the scores

        frame = self._next_frame("starting R")
        if frame.verb == "FAIL":
            self.kill()
            self._close_files()  # no feeder has started
            raise _error_from(frame)
        if frame.verb != "REDY":
            raise ProtocolError(f"R said {frame.verb} before REDY")
        info = json.loads(frame.payload)
        if self.files is not None and not info.get("files"):
            self._close_files()  # R cannot open them (no /proc?): records go in ROWS frames
        print(f"R {info.get('r')}: model {info.get('model_class')} loaded "
              f"(packages: {', '.join(info.get('packages') or []) or 'none'}) in "
              f"{time.monotonic() - self.started:.2f}s", file=sys.stderr, flush=True)
        self.ready = True

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _next_frame(self, doing: str) -> Frame:
        frame = read_frame(self.stdout)
        if frame is None:
            code = self.proc.wait()
            how = f"was killed by signal {-code}" if code < 0 else f"exited (code {code})"
            raise ScoreError(f"R {how} while {doing}",
                             hint="R's messages are in the task log above; a crash or the memory "
                                  "limit can cause this.")
        return frame

    def score_task(self, order: TaskOrder, header: bytes, batches: Iterable[Batch],
                   writer: PartWriter, errors: ErrorLog | None = None) -> int:
        """Send the task's records, write R's scores into ``writer``; return the records sent."""
        task = order.task
        sent: deque[_Sent] = deque()  # the batches R has not answered yet
        stop = threading.Event()
        feed_error: list[BaseException] = []
        total = [0]
        files = self.files
        names = header_names(header)

        def feed() -> None:
            try:
                info = {"task_id": task.id, "task_index": task.index, "attempt": order.attempt,
                        "input_path": task.path or "",
                        "header": header.decode("utf-8", "replace").rstrip("\r\n")}
                self.stdin.write(encode_frame("TASK", json.dumps(info).encode()))
                self.stdin.flush()
                seen = 0  # the task's records so far
                for batch in batches:
                    if stop.is_set():
                        break
                    if not batch.records:
                        continue
                    first, kept, bounds = seen, None, None
                    seen += batch.records
                    if errors is not None:  # records fread would stop at: left out here
                        from .row_guard import drop_misshapen

                        batch, kept, bounds = drop_misshapen(batch, len(names), errors, first)
                        if not batch.records:
                            continue
                    item = _Sent(batch.records, batch=batch if errors is not None else None,
                                 first=first, kept=kept, bounds=bounds)
                    if files is not None:
                        item.file = files.acquire(stop)
                        if item.file is None:
                            break
                        frame = encode_frame("FILE", files.fill(item.file, header, batch.view),
                                             batch.records)
                    else:
                        frame = encode_frame("ROWS", batch.view, batch.records)
                    sent.append(item)
                    total[0] += batch.records
                    try:
                        self.stdin.write(frame)
                        self.stdin.flush()
                    except BaseException as err:
                        item.ids.set_exception(err)  # never leave the reading side waiting
                        raise
                    try:  # while R scores the batch; an error shows only if R scored it
                        item.ids.set_result(read_id_columns(batch.view, names, self.id_columns,
                                                            batch.records, task.id))
                    except Exception as err:
                        item.ids.set_exception(err)
                self.stdin.write(encode_frame("DONE"))
                self.stdin.flush()
            except BrokenPipeError:
                pass  # R is gone; the reading side reports it
            except BaseException as err:  # e.g. a boundary error of the range reader
                feed_error.append(err)
                with contextlib.suppress(BrokenPipeError):
                    self.stdin.write(encode_frame("DONE"))
                    self.stdin.flush()

        # R's answers are read in a thread too, so R goes on with the next batch while this
        # thread writes the scores of the last one; two answers at most wait here (then R
        # waits for its COLS to be read, as before).
        answers: queue.Queue[tuple[Frame, _Sent | None] | BaseException] = queue.Queue(maxsize=2)

        def read() -> None:
            try:
                while True:
                    frame = self._next_frame(f"scoring task {task.id}")
                    item = None
                    if frame.verb == "COLS" and sent:
                        item = sent.popleft()
                        if files is not None and item.file is not None:
                            files.release(item.file)  # R has read it: the feeder may refill it
                    answers.put((frame, item))
                    if frame.verb == "DONE":
                        return
            except BaseException as err:
                answers.put(err)

        feeder = threading.Thread(target=feed, name="feed-r", daemon=True)
        reader = threading.Thread(target=read, name="read-r", daemon=True)
        feeder.start()
        reader.start()
        failure: ScoreError | None = None
        try:
            while True:
                answer = answers.get()
                if isinstance(answer, BaseException):
                    raise answer
                frame, answered = answer
                if frame.verb == "DONE":
                    break
                if frame.verb == "FAIL":
                    failure = failure or _error_from(frame)
                    stop.set()
                    if files is not None:
                        files.wake()  # the feeder may be waiting for a file R will not free
                elif frame.verb == "COLS" and failure is None:
                    if answered is None:
                        raise ProtocolError("R answered a batch it was not given")
                    self._write(frame, answered, writer, task.id, errors)
        except BaseException:
            stop.set()
            if files is not None:
                files.wake()
            self.kill()  # out of step with R (or interrupted): never reuse this process
            _drain(answers, reader)
            raise
        finally:
            feeder.join(timeout=30)
            if files is not None:  # batches R skipped after a failure hold their files
                for item in sent:
                    if item.file is not None:
                        files.release(item.file)
                if not self.alive and not feeder.is_alive():
                    self._close_files()
        if feed_error:
            raise feed_error[0]
        if failure is not None:
            raise failure
        return total[0]

    def _write(self, frame: Frame, item: _Sent, writer: PartWriter, task_id: str,
               errors: ErrorLog | None) -> None:
        scores = decode_columns(frame)
        if scores.rows + len(scores.failed) != item.records:
            raise ScoreError(f"task {task_id}: R returned {scores.rows} scores for a batch of "
                             f"{item.records} records", retryable=False)
        ids = item.ids.result()
        if scores.failed:
            from .row_guard import left_out

            ids = left_out(scores.failed, item.batch, item.first, ids, errors,
                           self.id_columns, item.kept, item.bounds)
            if not scores.rows:
                return
        names = self.id_columns + scores.names
        if not writer.columns:
            writer.columns = names
            writer.header = header_line(names)
        elif names != writer.columns:
            raise ScoreError(f"task {task_id}: the score columns changed between batches: "
                             f"{writer.columns[len(self.id_columns):]} then {scores.names}",
                             hint="score() must return the same columns for every batch.",
                             retryable=False)
        writer.write_lines(columns_csv(ids + scores.columns), scores.rows)

    def kill(self) -> None:
        """Kill R. Its memory files stay open until no feeder can write them (``score_task``
        closes them after joining its feeder): a closed fd number can be reused at once."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def _close_files(self) -> None:
        if self.files is not None:
            self.files.close()
            self.files = None

    def quit(self) -> None:
        """Ask R to exit, without waiting: R cleans up and the kernel frees its memory (~0.1 s
        after a forest's predictions) while the runner writes its last part."""
        if not self.quitting and self.proc.poll() is None:
            self.quitting = True
            with contextlib.suppress(BrokenPipeError, OSError, ValueError):
                self.stdin.write(encode_frame("QUIT"))
                self.stdin.close()

    def close(self) -> None:
        """Ask R to exit; kill it if it does not."""
        if self.proc.poll() is None:
            self.quit()
            try:
                _wait_exit(self.proc, timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_files()


def _drain(answers: queue.Queue[Any], reader: threading.Thread, timeout: float = 30) -> None:
    """Empty the answer queue until the reader thread has ended (R is dead: it ends at EOF),
    so it never stays blocked on a full queue."""
    deadline = time.monotonic() + timeout
    while reader.is_alive() and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            answers.get(timeout=0.05)


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """``proc.wait(timeout)``, woken by the exit itself (a pidfd) rather than by Popen's polling,
    which sleeps up to 50 ms between looks: R exits within milliseconds of QUIT."""
    with contextlib.suppress(AttributeError, OSError):
        fd = os.pidfd_open(proc.pid)
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
    proc.wait(timeout=0.5)


class _Sessions:
    """The runner's R process, started on first use and kept for the next tasks."""

    def __init__(self) -> None:
        self.session: RSession | None = None
        self.load_error: ScoreError | None = None

    def get(self, work: RWork, model_path: str) -> RSession:
        if self.load_error is not None:
            raise self.load_error  # the model did not load: it will not load the next time
        if self.session is not None and self.session.quitting:  # (told no task would follow)
            self.close()
        try:
            if self.session is None or not (self.session.ready or self.session.alive):
                self.session = RSession(work, model_path)
            self.session.wait_ready()
        except ScoreError as err:
            self.session = None
            if not err.retryable:
                self.load_error = err
            raise
        if not self.session.alive:  # R died after an earlier task: a fresh one for this task
            self.session.close()  # (reaps it, frees its memory files: no feeder runs now)
            self.session = RSession(work, model_path)
            self.session.wait_ready()
        return self.session

    def quit(self) -> None:
        """No task will need R again: let it exit while the last part is written."""
        if self.session is not None:
            self.session.quit()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


SESSIONS = _Sessions()
atexit.register(SESSIONS.close)


def first_read_ahead(batches: Iterable[Batch]) -> Iterator[Batch]:
    """``batches``, with the first one read (and cut into records) in a thread from now on: the
    first task reads its first 32 MB while R is still loading the model, not after."""
    source = iter(batches)
    first: Future[Batch | None] = Future()

    def pull() -> None:
        try:
            first.set_result(next(source, None))
        except BaseException as err:  # e.g. a boundary error: raised where the batch is used
            first.set_exception(err)

    threading.Thread(target=pull, name="read-ahead", daemon=True).start()

    def chained() -> Iterator[Batch]:
        batch = first.result()
        if batch is not None:
            yield batch
            yield from source

    return chained()


def score_with_r(work: WorkOrder, order: TaskOrder, model_path: str | None, header: bytes,
                 batches: Iterable[Batch], writer: PartWriter,
                 errors: ErrorLog | None = None) -> int:
    if not model_path:
        raise ScoreError('model: required for runtime = "r"', retryable=False)
    batches = first_read_ahead(batches)
    try:
        sent = SESSIONS.get(work, model_path).score_task(
            order, header, batches, writer, errors if work.on_error == "skip" else None)
        if work.orders and order is work.orders[-1]:
            SESSIONS.quit()
        return sent
    except ProtocolError as err:
        SESSIONS.close()
        raise ScoreError(f"task {order.task.id}: {err}") from None

