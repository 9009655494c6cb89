"""Row-level errors: find the records of a batch that cannot be parsed or scored.

A batch is scored in one call, as always. Before it, one vectorised look for *suspects* (a value
that is not a number in a column whose other values are): a batch with some is not called whole
(that call would fail, and converting a text column is its most costly part). Its other rows are
scored in one call, with those columns read as numbers; the suspects one call per distinct
(column, value). A batch that fails for another reason is bisected (halves until single rows;
records that do not decode or parse are found the same way before scoring), so one bad row
costs about log2(batch) extra calls, not a re-run of the task. ``row_guard`` applies this to a
task's batches.

``on_error = "skip"``: the bad records go to the attempt's errors file (one JSON line each) and
the part holds every other score, in input order. ``"fail"``: the first bad record is found the
same way and the task fails permanently, with a message that says where it is and what to do.
"""

from __future__ import annotations

import csv
import json
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
