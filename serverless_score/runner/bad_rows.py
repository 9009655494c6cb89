"""Row-level errors: find the records of a batch that cannot be parsed or scored.

The batch is scored in one call, as always; only when that call fails are its records looked at
one by one. First a vectorised check flags suspects (bytes that do not decode, a non-numeric value
in a column that is otherwise numeric); the other rows are scored in one call and each suspect
alone. Whatever still fails is bisected (halves until single rows), so one bad row costs about
log2(batch) extra calls, not a re-run of the task.

``on_error = "skip"``: the bad records go to the attempt's errors file (one JSON line each) and
the part holds every other score, in input order. ``"fail"``: the first bad record is found the
same way and the task fails permanently, with a message that says where it is and what to do.
"""

from __future__ import annotations

import csv
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ScoreError
from ..records.scan import Batch

TEXT_LIMIT = 1024  # bytes of a bad record kept in the errors file
# Row-level failures: a value the parser or the model cannot take. Anything else (a lost
# connection, memory) is the task's, not the row's.
ROW_ERRORS = (ValueError, TypeError, KeyError, IndexError, ArithmeticError)
# Bisection that finds only bad rows and no good one after this many is not finding bad rows:
# every row fails (a wrong model, missing columns), which is the task's error.
_ALL_BAD_AFTER = 64


@dataclass
class BadRecord:
    position: int  # within the batch
    error: str
    column: str | None = None
    stage: str = "scored"  # or "read": the record could not be decoded or parsed
    exception: BaseException | None = field(default=None, repr=False, compare=False)


@dataclass
class Found:
    """The outcome of scoring a batch row by row: the good pieces' scores, each with the batch
    positions it covers, and the bad records."""

    pieces: list[tuple[np.ndarray, Any]] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)


def one_line(err: BaseException) -> str:
    message = err.message if isinstance(err, ScoreError) else str(err)
    line = " ".join(message.split())
    return line if isinstance(err, ScoreError) else f"{type(err).__name__}: {line}"


def is_row_error(err: BaseException) -> bool:
    """Whether ``err`` may be one record's fault (a ScoreError the tool raised on purpose is
    about the whole task unless it is retryable, e.g. a parse that found too few rows)."""
    if isinstance(err, ScoreError):
        return err.retryable
    return isinstance(err, ROW_ERRORS)


def bisect(positions: np.ndarray, attempt: Callable[[np.ndarray], Any], found: Found,
           first_only: bool = False) -> None:
    """Score ``positions`` with ``attempt`` (which raises on failure), halving what fails until
    single records; good pieces and bad records are added to ``found`` (pieces in any order)."""
    stack = [positions]
    while stack:
        piece = stack.pop()
        try:
            found.pieces.append((piece, attempt(piece)))
            continue
        except Exception as err:
            if not is_row_error(err):
                raise
            if len(piece) == 1:
                found.bad.append(BadRecord(int(piece[0]), one_line(err), exception=err))
                if first_only:
                    return
                if len(found.bad) >= _ALL_BAD_AFTER and not found.pieces:
                    raise ScoreError(
                        f"every record tried fails ({len(found.bad)} in a row), so the fault is "
                        f"not in the records: {found.bad[0].error}", retryable=False) from None
                continue
        mid = len(piece) // 2
        stack.append(piece[mid:])
        stack.append(piece[:mid])  # popped first: the first bad record is found first


def numeric_suspects(frame: Any, columns: Sequence[str]) -> dict[int, str]:
    """Rows (positions) with a value that is not a number in a column whose other values are:
    the usual bad row (``n/a``, ``1,5``, ``12 kg``). One vectorised pass per column that pandas
    could not read as numbers; columns that are mostly text (categories) are left alone."""
    import pandas as pd

    suspects: dict[int, str] = {}
    for column in columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values.dtype):  # (object or pandas 3's str: text)
            continue
        present = values.notna().to_numpy()
        numbers = pd.to_numeric(values, errors="coerce").notna().to_numpy()
        bad = present & ~numbers
        count = int(bad.sum())
        if count == 0 or count * 2 > int(present.sum()):
            continue  # a text column, not a numeric one with a few bad values
        for position in np.flatnonzero(bad):
            suspects.setdefault(int(position), column)
    return suspects


def score_frame_rows(frame: Any, score: Callable[[Any], Any], columns: Sequence[str],
                     first_only: bool = False,
                     suspects: dict[int, str] | None = None) -> Found:
    """A parsed batch whose scoring failed (or would: it has suspects). Everything but the
    suspects is scored in one call, their columns read as the numbers they are (what a clean
    batch gives the model); then the suspects, one call per distinct (column, value): the first
    row with it alone, then all the others together. A value that fails alone and together is
    bad in every row that has it (scoring is row by row), so 1,000 ``n/a`` cost two calls, not
    1,000. Whatever else fails is bisected."""
    found = Found()
    if suspects is None:
        suspects = numeric_suspects(frame, columns)
    everything = np.arange(len(frame))
    if not suspects:
        bisect(everything, lambda p: score(frame.iloc[p]), found, first_only=first_only)
        return found
    flagged = np.fromiter(sorted(suspects), dtype=np.int64, count=len(suspects))
    rest = everything[~np.isin(everything, flagged)]
    if len(rest):
        numbers = frame.iloc[rest].copy()
        for column in set(suspects.values()):
            numbers[column] = _as_numbers(numbers[column])
        bisect(rest, lambda p: score(numbers.iloc[np.searchsorted(rest, p)]), found,
               first_only=first_only)
        if first_only and found.bad and int(found.bad[0].position) < int(flagged[0]):
            return found

    def attempt(positions: np.ndarray) -> Any:
        return score(frame.iloc[positions])

    groups: dict[tuple[str, str], list[int]] = {}
    for position in flagged:
        column = suspects[int(position)]
        groups.setdefault((column, str(frame[column].iloc[position])), []).append(int(position))
    for (column, _), rows in groups.items():
        alone = Found()
        bisect(np.array(rows[:1]), attempt, alone)
        found.pieces.extend(alone.pieces)
        others = np.array(rows[1:], dtype=np.int64)
        if not alone.bad:  # fine after all: the others are tried as any rows are
            if len(others):
                bisect(others, attempt, found, first_only=first_only)
            continue
        found.bad.append(BadRecord(rows[0], alone.bad[0].error, column))
        if first_only or not len(others):
            continue
        together = Found()
        try:
            together.pieces.append((others, attempt(others)))
        except Exception as err:
            if not is_row_error(err):
                raise
            found.bad.extend(BadRecord(int(p), alone.bad[0].error, column) for p in others)
            continue
        found.pieces.extend(together.pieces)
    for bad in found.bad:
        bad.column = bad.column or suspects.get(bad.position)
    found.bad.sort(key=lambda b: b.position)
    return found


def _as_numbers(values: Any) -> Any:
    """A text column whose values are all numbers, as floats: Python's (correctly rounded)
    conversion, the same values the CSV parser gives a clean column."""
    return np.asarray(values.to_numpy(dtype=object, na_value=np.nan), dtype=np.float64)


def assemble(found: Found, count: int) -> Any:
    """The good pieces' scores as one frame, in input order (None when no record scored)."""
    import pandas as pd

    pieces = [(p, s) for p, s in found.pieces if len(p)]
    if not pieces:
        return None
    if len(pieces) == 1:
        return pieces[0][1]
    order = np.concatenate([p for p, _ in pieces])
    frame = pd.concat([s for _, s in pieces], ignore_index=True)
    return frame.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


def record_bounds(batch: Batch, csv_format: bool) -> np.ndarray:
    """Where each record of the batch starts in ``batch.view``, plus its end (records + 1)."""
    from ..records.scan import _csv_boundaries, _line_boundaries

    data = bytes(batch.view)
    ends = _csv_boundaries(data) if csv_format else _line_boundaries(data)
    if ends.size == 0 or ends[-1] != len(data):
        ends = np.append(ends, len(data))
    bounds = np.concatenate(([0], ends)).astype(np.int64)
    if len(bounds) - 1 != batch.records:
        raise ScoreError(f"found {len(bounds) - 1} records where the reader found "
                         f"{batch.records} (malformed quotes?)", retryable=False)
    return bounds


def decode_suspects(data: bytes, bounds: np.ndarray, encoding: str) -> dict[int, str]:
    """Records whose bytes are not text in ``encoding``, by decoding the batch (a few calls,
    not one per record): position -> the decoder's complaint."""
    bad: dict[int, str] = {}
    start = 0
    while start < len(data):
        try:
            data[start:].decode(encoding)
            break
        except UnicodeDecodeError as err:
            at = start + err.start
            position = int(np.searchsorted(bounds, at, side="right")) - 1
            bad[position] = (f"UnicodeDecodeError: {encoding!r} codec can't decode byte "
                             f"0x{data[at]:02x} in position {at - int(bounds[position])}: "
                             f"{err.reason}")
            start = int(bounds[position + 1])
    return bad


def id_of(text: str, header: Sequence[str], id_columns: Sequence[str], csv_format: bool) -> str:
    """The record's id columns joined by ``|``, read from its raw text ("" when unreadable)."""
    if not id_columns:
        return ""
    try:
        if csv_format:
            row = next(csv.reader([text]))
            values = dict(zip(header, row, strict=False))
        else:
            values = json.loads(text)
        return "|".join(str(values[c]) for c in id_columns)
    except Exception:  # the record is bad: its ids may be too
        return ""


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
        with get_store(uri, config).open_atomic(uri, overwrite=False) as out:
            out.write(("\n".join(self.lines) + "\n").encode())


class RowGuard:
    """Scores a task's batches; when a batch fails, finds its bad records (see the module)."""

    def __init__(self, *, scorer: Any, parse: Callable[[bytes | memoryview], Any], skip: bool,
                 header: bytes, csv_format: bool, id_columns: Sequence[str], encoding: str,
                 errors: ErrorLog, task_id: str, begin: Callable[[], int | None]) -> None:
        self.scorer = scorer
        self.parse = parse
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
        """The scores of the batch's good records, in order (None when none scored); ``first``
        is the number of the batch's first record within the task."""
        frame = None
        suspects: dict[int, str] | None = None
        try:
            frame = self._parse(batch.view, batch.records)
            # One vectorised look first (free on a clean batch: its columns parsed as numbers):
            # a batch with suspects would fail as a whole, so that call is not made.
            suspects = numeric_suspects(frame, self.scorer.model_columns(frame))
            if not suspects:
                return self.scorer.score_frame(frame)
        except Exception as err:
            if not is_row_error(err):
                raise
        if frame is not None:
            found = score_frame_rows(frame, self.scorer.score_frame,
                                     self.scorer.model_columns(frame), first_only=not self.skip,
                                     suspects=suspects)
            self._report(batch, first, found, frame, None)
            return assemble(found, batch.records)
        return self._bytes_rows(batch, first)

    def _parse(self, data: bytes | memoryview, records: int) -> Any:
        frame = self.parse(data)
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
                                     self.scorer.model_columns(frame), first_only=not self.skip)
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
                                 self.scorer.model_columns(frame), first_only=not self.skip)
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
