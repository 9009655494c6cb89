"""Scoring a task's batches with on_error in mind (see ``bad_rows`` for how bad records are
found): ``RowGuard`` scores each batch and, when one fails, stores its bad records in the
attempt's ``ErrorLog`` (on_error = "skip") or fails the task naming the first (``"fail"``).
``left_out`` does the runner's part for R, which finds its bad rows itself (score.R)."""

from __future__ import annotations

import csv
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ScoreError
from ..records.scan import Batch
from .bad_rows import (
    TEXT_LIMIT,
    BadRecord,
    Found,
    assemble,
    bisect,
    decode_suspects,
    id_of,
    is_row_error,
    numeric_suspects,
    record_bounds,
    score_frame_rows,
)


class ErrorLog:
    """The attempt's bad records, stored as its errors file (JSON lines) when there are any.
    ``task_record`` counts from the task's first record; the controller, which knows how many
    records the tasks before it in the same source hold, turns it into the source's record."""

    def __init__(self, task_id: str, attempt: int, source: str, encoding: str) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.source = source
        self.encoding = encoding
        self.lines: list[str] = []

    def add(self, *, offset: int | None, task_record: int, id_: str, error: str,
            text: bytes) -> None:
        cut = text[:TEXT_LIMIT].decode(self.encoding, errors="replace").rstrip("\r\n")
        self.lines.append(json.dumps({
            "source": self.source, "offset": offset, "task_record": task_record, "id": id_,
            "task": self.task_id, "attempt": self.attempt, "error": error, "text": cut,
        }))

    def __len__(self) -> int:
        return len(self.lines)

    def store(self, uri: str, config: Any) -> None:
        from ..storage import get_store

        if not self.lines:
            return
        # in input order (R's runner adds records from two threads)
        lines = sorted(self.lines, key=lambda line: json.loads(line)["task_record"])
        with get_store(uri, config).open_atomic(uri, overwrite=False) as out:
            out.write(("\n".join(lines) + "\n").encode())


@dataclass(frozen=True)
class TablePath:
    """Parsing a batch into an Arrow table first (``csv_arrow.read_csv_table``), the frame the
    guard's ``parse`` would have made of that table, and of a batch Arrow's table declined (the
    guard's ``parse`` without its Arrow attempt: it would decline again)."""

    parse: Callable[[bytes | memoryview, int], Any]
    frame: Callable[[Any], Any]
    declined: Callable[[bytes | memoryview], Any]


class RowGuard:
    """Scores a task's batches; when a batch fails, finds its bad records (see the module)."""

    def __init__(self, *, scorer: Any, parse: Callable[[bytes | memoryview, int], Any], skip: bool,
                 header: bytes, csv_format: bool, id_columns: Sequence[str], encoding: str,
                 errors: ErrorLog, task_id: str, begin: Callable[[], int | None],
                 tables: TablePath | None = None) -> None:
        self.scorer = scorer
        self.parse = parse
        self.tables = tables
        self.skip = skip
        self.header_bytes = header
        self.header = next(csv.reader([header.decode(encoding, "replace")]), []) if header else []
        self.csv_format = csv_format
        self.id_columns = list(id_columns)
        self.encoding = encoding
        self.errors = errors
        self.task_id = task_id
        self.begin = begin

    # -- frames (csv, jsonl) --------------------------------------------------------------------
    def score_batch(self, batch: Batch, first: int) -> Any:
        """The scores of the batch's good records, in order (None when none scored): a
        DataFrame, or an Arrow table (``PythonScorer.score_table``); ``first`` is the number of
        the batch's first record within the task."""
        frame = None
        suspects: dict[int, str] | None = None
        try:
            frame, scores = self._parse_or_score(batch)
            if scores is not None:
                return scores
            # One vectorised look first (free on a clean batch: its columns parsed as numbers):
            # a batch with suspects would fail as a whole, so that call is not made.
            suspects = numeric_suspects(frame, self._features(frame))
            if not suspects:
                return self.scorer.score_frame(frame)
        except Exception as err:
            if not is_row_error(err):
                raise
        if frame is not None:
            found = score_frame_rows(frame, self.scorer.score_frame,
                                     self._features(frame), first_only=not self.skip,
                                     suspects=suspects)
            self._report(batch, first, found, frame, None)
            return assemble(found, batch.records)
        return self._bytes_rows(batch, first)

    def _features(self, frame: Any) -> list[str]:
        """The columns a bad value can hide in: what the model is given, but never an id column
        (ids are text carried to the output as they are: "", "NA" or "n/a" is an id, and a
        scorer script that is given them must still get them as text)."""
        return [c for c in self.scorer.model_columns(frame) if c not in self.id_columns]

    def _parse_or_score(self, batch: Batch) -> tuple[Any, Any]:
        """(None, the scores) when the scorer scores Arrow's table of the batch itself (no
        DataFrame: a clean batch of a native model), else (the parsed frame, None)."""
        if self.tables is not None:
            table = self.tables.parse(batch.view, batch.records)
            if table is not None:
                scores = self.scorer.score_table(table)
                if scores is not None:
                    return None, scores
                return self.tables.frame(table), None
            return self._checked(self.tables.declined(batch.view), batch.records), None
        return self._parse(batch.view, batch.records), None

    def _parse(self, data: bytes | memoryview, records: int) -> Any:
        return self._checked(self.parse(data, records), records)

    def _checked(self, frame: Any, records: int) -> Any:
        if len(frame) != records:
            raise ScoreError(f"parsing found {len(frame)} rows in {records} records")
        return frame

    def _bytes_rows(self, batch: Batch, first: int) -> Any:
        """A batch that does not parse: records that do not decode are bad as they are; the
        others are parsed in one call, bisecting what does not parse; what parses is scored as
        a frame (suspects first, see ``score_frame_rows``)."""
        data = bytes(batch.view)
        bounds = record_bounds(batch, self.csv_format)
        unread = Found()
        undecodable = decode_suspects(data, bounds, self.encoding)
        unread.bad.extend(BadRecord(p, e, stage="read") for p, e in undecodable.items())
        everything = np.arange(batch.records)
        rest = everything[~np.isin(everything, list(undecodable))] if undecodable else everything

        def parse(positions: np.ndarray) -> Any:
            if int(positions[-1]) - int(positions[0]) + 1 == len(positions):
                chunk = data[int(bounds[positions[0]]):int(bounds[positions[-1] + 1])]
            else:
                chunk = b"".join(data[int(bounds[p]):int(bounds[p + 1])] for p in positions)
            return self._parse(chunk, len(positions))

        if len(rest) and (self.skip or not undecodable):
            bisect(rest, parse, unread, first_only=not self.skip)
        for bad in unread.bad:
            bad.stage = "read"
        pieces = sorted((p for p in unread.pieces if len(p[0])), key=lambda p: int(p[0][0]))
        if not pieces:  # (fail: the records before the first unreadable one are scored too,
            # so the error names the first bad record, whichever way it is bad)
            self._report(batch, first, unread, None, None)
            return None
        import pandas as pd

        positions = np.concatenate([p for p, _ in pieces])
        frame = pd.concat([f for _, f in pieces], ignore_index=True)
        found = Found()
        try:
            found.pieces.append((positions, self.scorer.score_frame(frame)))
        except Exception as err:
            if not is_row_error(err):
                raise
            found = score_frame_rows(frame, self.scorer.score_frame,
                                     self._features(frame), first_only=not self.skip)
            for piece_positions, _ in found.pieces:
                piece_positions[:] = positions[piece_positions]
        bad_in_frame = list(found.bad)
        for bad in bad_in_frame:
            bad.position = int(positions[bad.position])
        found.bad = unread.bad + bad_in_frame
        self._report(batch, first, found, frame, positions)
        return assemble(found, batch.records)

    def score_parsed(self, frame: Any, first: int) -> Any:
        """A batch that comes parsed (a Parquet row group): only scoring can fail."""
        try:
            return self.scorer.score_frame(frame)
        except Exception as err:
            if not is_row_error(err):
                raise
        found = score_frame_rows(frame, self.scorer.score_frame,
                                 self._features(frame), first_only=not self.skip)
        self._report(Batch(memoryview(b""), len(frame)), first, found, frame, None)
        return assemble(found, len(frame))

    # -- records (format = "records", a score(model, records) script) ---------------------------
    def score_items(self, batch: Batch, items: list[str], first: int) -> list[str]:
        try:
            return list(self.scorer.score_records(items))
        except Exception as err:
            if not is_row_error(err):
                raise
        found = Found()
        bisect(np.arange(len(items)), lambda p: self.scorer.score_records([items[i] for i in p]),
               found, first_only=not self.skip)
        self._report(batch, first, found, None, None)
        pieces = sorted((p for p in found.pieces if len(p[0])), key=lambda p: int(p[0][0]))
        return [line for _, lines in pieces for line in lines]

    # -- reporting ----------------------------------------------------------------------------
    def _report(self, batch: Batch, first: int, found: Found, frame: Any,
                rows: np.ndarray | None) -> None:
        """Store (skip) or raise (fail) the bad records; ``frame`` holds the batch's records
        that parsed, ``rows`` their positions in the batch (None: all of them)."""
        if not found.bad:
            return  # (suspects that scored after all: the model takes text there)
        found.bad.sort(key=lambda b: b.position)
        data, bounds = b"", None
        if batch.items is None and batch.records:
            data = bytes(batch.view)
            bounds = record_bounds(batch, self.csv_format)
        for bad in found.bad:
            position = bad.position
            relative: int | None = None
            if batch.items is not None:
                text = batch.items[position]
            elif bounds is not None:
                text = data[int(bounds[position]):int(bounds[position + 1])]
                relative = int(bounds[position])
            else:  # a frame that came as a frame (Parquet): the row as JSON
                text = frame.iloc[position].to_json().encode()
            if batch.starts is not None:
                relative = int(batch.starts[position])
            offset = batch.start + relative if batch.start >= 0 and relative is not None else None
            if not self.skip:
                if bad.exception is not None and getattr(self.scorer, "module", None):
                    # the user's own score() raised: where in it goes to the task log
                    traceback.print_exception(bad.exception, file=sys.stderr)
                raise self._located(bad, offset, first + position, frame)
            self.errors.add(offset=offset, task_record=first + position,
                            id_=self._id(frame, rows, position, text),
                            error=(f"column {bad.column!r}: " if bad.column else "") + bad.error,
                            text=text)

    def _id(self, frame: Any, rows: np.ndarray | None, position: int, text: bytes) -> str:
        if not self.id_columns:
            return ""
        row: int | None = position
        if rows is not None:
            at = int(np.searchsorted(rows, position))
            row = at if at < len(rows) and int(rows[at]) == position else None
        if (frame is not None and row is not None
                and all(c in frame.columns for c in self.id_columns)):
            return "|".join(str(frame[c].iloc[row]) for c in self.id_columns)
        return id_of(text.decode(self.encoding, "replace"), self.header, self.id_columns,
                     self.csv_format)

    def _located(self, bad: BadRecord, offset: int | None, record: int, frame: Any) -> ScoreError:
        """The permanent error of ``on_error = "fail"``: where the record is and what to do."""
        where = (f"byte {offset} of {self.errors.source}" if offset is not None
                 else self.errors.source)
        where += f" (record {record} of task {self.task_id}"
        begin = self.begin()
        where += f", which begins at byte {begin})" if begin is not None else ")"
        skip = ('or set on_error = "skip" to score the other records and list this one in '
                "<output>.errors.csv")
        if bad.error.startswith("UnicodeDecodeError"):
            return ScoreError(
                f"input: the record at {where} is not {self.encoding} text: {bad.error}",
                hint=f'Set encoding = "latin-1" (or "cp1252", or whatever encoding wrote the '
                     f"file) in the job, e.g. --set encoding=latin-1; {skip}.",
                retryable=False)
        column = f" (column {bad.column!r})" if bad.column else ""
        given = self.scorer.model_columns(frame) if frame is not None else None
        columns = f"The model was given the columns {list(given)}. " if given else ""
        return ScoreError(
            f"input: the record at {where} could not be "
            f"{bad.stage}{column}: {bad.error}",
            hint=f"{columns}Fix the record or the columns (id_columns are not given to the "
                 f"model; a scorer script chooses its own), {skip}.",
            retryable=False)


def left_out(failed: list[tuple[int, str]], batch: Batch | None, first: int, ids: list[Any],
             errors: ErrorLog | None, id_columns: list[str],
             kept: np.ndarray | None = None, bounds: np.ndarray | None = None) -> list[Any]:
    """The records R left out (on_error = "skip") into the errors file; the id columns of the
    others. ``bounds``: the batch's record bounds if already known (from ``drop_misshapen``)."""
    import pyarrow as pa

    if errors is None or batch is None:
        raise ScoreError("R left records out of a batch, but on_error is not \"skip\"")
    data = batch.view
    if bounds is None:
        bounds = record_bounds(batch, csv_format=True)
    keep = np.ones(batch.records, dtype=bool)
    for row, reason in failed:
        keep[row] = False
        relative = int(batch.starts[row]) if batch.starts is not None else int(bounds[row])
        id_ = "|".join(str(column[row].as_py()) for column in ids) if id_columns else ""
        errors.add(offset=batch.start + relative if batch.start >= 0 else None,
                   task_record=first + (int(kept[row]) if kept is not None else row),
                   id_=id_, error=reason,
                   text=bytes(data[int(bounds[row]):int(bounds[row + 1])]))
    mask = pa.array(keep)
    return [column.filter(mask) for column in ids]


def field_counts(data: bytes, bounds: np.ndarray) -> np.ndarray:
    """The number of fields of each record (commas outside quotes, plus one)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    commas = np.flatnonzero(arr == ord(","))
    if data.find(b'"') != -1:
        quotes = np.flatnonzero(arr == ord('"'))
        commas = commas[(np.searchsorted(quotes, commas) & 1) == 0]
    counts: np.ndarray = np.diff(np.searchsorted(commas, bounds)) + 1
    return counts


def drop_misshapen(batch: Batch, fields: int, errors: ErrorLog,
                   first: int) -> tuple[Batch, np.ndarray | None, np.ndarray | None]:
    """R with on_error = "skip": records with another number of fields than the header (where
    fread stops reading) go to the errors file before the batch is sent; returns the batch
    without them, the positions of the records kept (None: all of them) and, when it is the
    batch given, its record bounds (so that ``left_out`` need not find them again)."""
    data = bytes(batch.view)
    bounds = record_bounds(batch, csv_format=True)
    counts = field_counts(data, bounds)
    bad = np.flatnonzero(counts != fields)
    if not bad.size:
        return batch, None, bounds
    for position in bad:
        relative = int(batch.starts[position]) if batch.starts is not None else int(bounds[position])
        errors.add(offset=batch.start + relative if batch.start >= 0 else None,
                   task_record=first + int(position), id_="",
                   error=f"the record has {counts[position]} fields where the header has {fields}",
                   text=data[int(bounds[position]):int(bounds[position + 1])])
    kept = np.setdiff1d(np.arange(batch.records), bad)
    cuts = [0, *(c for p in bad for c in (int(bounds[p]), int(bounds[p + 1]))), len(data)]
    joined = b"".join(data[a:b] for a, b in zip(cuts[::2], cuts[1::2], strict=True))
    starts = batch.starts[kept] if batch.starts is not None else bounds[kept]
    return Batch(memoryview(joined), len(kept), start=batch.start, starts=starts), kept, None
