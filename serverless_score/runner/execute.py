"""Run one task: read exactly its records, score them, write its part; return its result.

Memory is bounded by one batch of records (a few MB), not by the task or the file: records stream
from the range reader through the scorer into the part.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import ScoreError
from ..records import DEFAULT_BLOCK, RangeReader, RecordFormat, read_header
from ..storage import Store, StoreConfig, get_store
from .contract import ENV_SECRETS, TaskOrder, TaskResult, WorkOrder
from .models import fetch_model
from .row_guard import ErrorLog, RowGuard, TablePath
from .writers import PartWriter


def _record_format(work: WorkOrder) -> RecordFormat:
    if work.format == "csv":
        return RecordFormat("csv")
    if work.format == "records":
        assert work.record_pattern is not None
        return RecordFormat("regex", work.record_pattern.encode())
    return RecordFormat("lines")


def scorer_env(work: WorkOrder, order: TaskOrder, model_path: str | None) -> dict[str, str]:
    """What a scorer sees: the contract's environment variables on top of the runner's own."""
    env = dict(os.environ)
    env.pop("SERVERLESS_SCORE_WORK", None)
    env.pop(ENV_SECRETS, None)
    env.update({
        "JOB_ID": work.job_id,
        "TASK_ID": order.task.id,
        "TASK_INDEX": str(order.task.index),
        "ATTEMPT": str(order.attempt),
        "RECORD_FORMAT": work.format or "",
    })
    if model_path:
        env["MODEL_PATH"] = model_path
    if order.task.path:
        env["INPUT_PATH"] = order.task.path
    if order.task.shard:
        env.update(order.task.shard.env())
    return env


class AttemptTaken(Exception):
    """Another worker already wrote this attempt's part (a zombie group and its retry were given
    the same attempt): this worker leaves that attempt's files to it."""


@dataclass
class Seen:
    """What a task learnt before it could fail: where its first record begins."""

    begin: int | None = None


class _Input:
    """The task's records, opened once: header (CSV) and a range reader."""

    def __init__(self, work: WorkOrder, order: TaskOrder, f: BinaryIO, seen: Seen,
                 block_size: int = DEFAULT_BLOCK) -> None:
        task = order.task
        self.fmt = _record_format(work)
        self.header = read_header(f, task.file_size) if self.fmt.has_header else b""
        if self.fmt.has_header and not self.header.strip():
            raise ScoreError(f"input: the first line of {task.path} (the CSV header) is empty",
                             hint="A CSV input needs a header line naming its columns.",
                             retryable=False)
        self.reader = RangeReader(
            f, self.fmt, start=task.start, end=task.end, file_size=task.file_size,
            header_end=len(self.header), pinned_begin=task.pinned_begin, block_size=block_size,
        )
        # Known before scoring, so that if scoring fails the status still says where this task
        # believed its records begin (and whether a wrong guess can be the cause).
        seen.begin = self.reader.find_begin()


def _rowgroup_frames(f: BinaryIO, start: int, end: int) -> Iterator[Any]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(f)
    for index in range(start, end):
        yield parquet.read_row_group(index).to_pandas()


def run_task(work: WorkOrder, order: TaskOrder, config: StoreConfig | None = None,
             seen: Seen | None = None) -> TaskResult:
    """Score the task into this attempt's part (created only if absent: AttemptTaken if another
    worker has written it) and return what it did; the caller writes the status."""
    started = time.monotonic()
    seen = seen if seen is not None else Seen()
    task = order.task
    store = get_store(order.part, config)
    model_file = fetch_model(work.model, work.model_sha256, config) if work.model else None
    errors = ErrorLog(task.id, order.attempt, task.path or "", work.encoding)
    try:
        records_in, begin, end, writer = _score_into_part(work, order, config, seen, store,
                                                          model_file, errors)
    except FileExistsError:
        if not store.exists(order.part):
            raise  # not the part's: someone else's error
        raise AttemptTaken(f"attempt {order.attempt} of {task.id} has a part already: "
                           f"{order.part}") from None
    return TaskResult(
        task_id=task.id, attempt=order.attempt, records_in=records_in, records_out=writer.rows,
        begin=begin, end=end, pinned_begin=task.pinned_begin, header=writer.header,
        columns=writer.columns, part=order.part, part_sha256=writer.sha256,
        part_bytes=writer.bytes, seconds=round(time.monotonic() - started, 3),
        rows_failed=len(errors),
    )


def _score_into_part(work: WorkOrder, order: TaskOrder, config: StoreConfig | None, seen: Seen,
                     store: Store, model_file: str | None, errors: ErrorLog
                     ) -> tuple[int | None, int | None, int | None, PartWriter]:
    task = order.task
    records_in: int | None = None
    begin = end = None
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(get_store(task.path, config).open_read(task.path)) if task.path else None
        out = stack.enter_context(store.open_atomic(order.part, overwrite=False))
        writer = PartWriter(out, work.output_format)
        if work.runtime == "command":
            records_in, begin, end = _run_command(work, order, f, writer, model_file, seen)
        elif work.runtime == "r":
            assert f is not None
            records_in, begin, end = _score_with_r(work, order, f, writer, model_file, seen,
                                                   errors)
        elif task.kind == "rowgroups":
            assert f is not None
            records_in = _score_frames(work, order, model_file, writer,
                                       _rowgroup_frames(f, task.start, task.end), errors, seen)
        else:
            assert f is not None
            records_in, begin, end = _score_range(work, order, f, writer, model_file, seen, errors)
        writer.close()
        errors.store(order.errors, config)  # before the part is complete: a part implies them
        if records_in is not None and writer.rows + len(errors) != records_in:
            raise ScoreError(
                f"task {task.id}: {records_in} records in but {writer.rows} scores out"
                + (f" and {len(errors)} left out" if len(errors) else ""),
                hint="A scorer must return exactly one score (line or row) per input record.",
            )
    return records_in, begin, end, writer


def _python_scorer(work: WorkOrder, model_path: str | None) -> Any:
    from .python_scorer import PythonScorer

    return PythonScorer(model_path=model_path, scorer=work.scorer,
                        predict_method=work.predict_method, id_columns=work.id_columns)


def _guard(work: WorkOrder, order: TaskOrder, scorer: Any, errors: ErrorLog, header: bytes,
           seen: Seen) -> RowGuard:
    from .python_scorer import UTF8, read_batch

    fmt = work.format or "csv"
    tables = None
    if (fmt == "csv" and work.encoding.lower() in UTF8 and work.output_format == "csv"
            and header and getattr(scorer, "scores_tables", False)):
        # Batches a native model scores straight from Arrow's table: no DataFrame, and a worker
        # that never needs one never imports pandas (0.45-0.55 s of CPU).
        from .csv_arrow import read_csv_table, table_frame
        from .python_scorer import pandas_csv

        tables = TablePath(
            parse=lambda data, records: read_csv_table(data, header, work.id_columns, records),
            frame=lambda table: table_frame(table, work.id_columns),
            declined=lambda data: pandas_csv(data, header, work.id_columns, work.encoding))
    return RowGuard(
        scorer=scorer, skip=work.on_error == "skip", header=header, csv_format=fmt == "csv",
        parse=lambda data, records: read_batch(data, fmt, header, work.id_columns,
                                               work.encoding, records),
        id_columns=work.id_columns, encoding=work.encoding, errors=errors,
        task_id=order.task.id, begin=lambda: seen.begin, tables=tables)


def _score_frames(work: WorkOrder, order: TaskOrder, model_path: str | None, writer: PartWriter,
                  frames: Iterator[Any], errors: ErrorLog, seen: Seen) -> int:
    guard = _guard(work, order, _python_scorer(work, model_path), errors, b"", seen)
    rows = 0
    for frame in frames:
        if len(frame) == 0:  # a row group of no rows: nothing to score (models refuse it)
            continue
        scores = guard.score_parsed(frame, rows)
        rows += len(frame)
        if scores is not None:
            writer.write_frame(scores)
    return rows


def _score_range(work: WorkOrder, order: TaskOrder, f: BinaryIO, writer: PartWriter,
                 model_path: str | None, seen: Seen, errors: ErrorLog) -> tuple[int, int, int]:
    source = _Input(work, order, f, seen)
    guard = _guard(work, order, _python_scorer(work, model_path), errors, source.header, seen)
    first = 0  # the task's records before this batch
    for batch in source.reader:
        if batch.records == 0:
            continue
        if work.format == "records":
            items = [r.decode(work.encoding, "replace").rstrip("\n") for r in batch.items or []]
            lines = guard.score_items(batch, items, first)
            if lines:
                writer.write_lines(("\n".join(lines) + "\n").encode(), len(lines))
        else:
            scores = guard.score_batch(batch, first)
            if scores is not None:
                writer.write_frame(scores)
            del scores
        first += batch.records
        # Let go of the batch before the next one is read: a worker holds one at a time.
        del batch
    reader = source.reader
    return reader.records, reader.begin, reader.end_offset


def _score_with_r(work: WorkOrder, order: TaskOrder, f: BinaryIO, writer: PartWriter,
                  model_path: str | None, seen: Seen, errors: ErrorLog) -> tuple[int, int, int]:
    from .r_scorer import R_BATCH_BYTES, score_with_r

    source = _Input(work, order, f, seen, block_size=R_BATCH_BYTES)
    score_with_r(work, order, model_path, source.header, source.reader, writer, errors)
    reader = source.reader
    return reader.records, reader.begin, reader.end_offset


def _run_command(work: WorkOrder, order: TaskOrder, f: BinaryIO | None, writer: PartWriter,
                 model_path: str | None, seen: Seen) -> tuple[int | None, int | None, int | None]:
    from .command_scorer import run_command

    env = scorer_env(work, order, model_path)
    if f is None:  # a shard: no input, the command finds its work from SHARD_* variables
        run_command(work.scorer, iter(()), env, writer.write_lines)
        return None, None, None
    source = _Input(work, order, f, seen)

    def chunks() -> Iterator[bytes | memoryview]:
        first = True
        for batch in source.reader:
            if first and source.header:
                yield source.header  # CSV: the header line first, so the command can parse
            first = False
            yield batch.view
        if first and source.header:
            yield source.header

    run_command(work.scorer, chunks(), env, writer.write_lines)
    reader = source.reader
    return reader.records, reader.begin, reader.end_offset
