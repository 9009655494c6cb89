"""The framed conversation between the runner and ``runtimes/r/score.R`` (pure: no processes).

Both directions use the same frame: a 32-byte ASCII header ``VERB count length\\n`` (verb padded to
4 characters, numbers right-aligned) followed by ``length`` payload bytes. Framing, rather than
"one line per record", lets one R process serve every task of a worker (the model is read once),
carries CSV records with quoted newlines unharmed, and tells scores from errors without guessing.

runner -> R::

    TASK 0 n   JSON: task_id, task_index, attempt, input_path, header (the CSV header line)
    FILE k n   the path of a file holding the header and k whole CSV records (``r_feed``)
    ROWS k n   k whole CSV records (n bytes), exactly as they are in the input (where there
               are no memory files to put them in)
    DONE 0 0   the task has no more records
    QUIT 0 0   exit

R -> runner::

    REDY 0 n   JSON: the model was loaded (R version, model class, packages loaded)
    COLS m n   the scores of one FILE / ROWS frame, without the id columns (the runner reads
               those from the records it sent): m bytes of JSON (rows, columns: name, type, bytes;
               with on_error = "skip" also failed: the records left out, [{row, error}]),
               then each column's bytes: ``double`` little-endian IEEE 754, ``integer`` int32
               (NA = INT_MIN), ``string`` one NA flag byte per row, then every string as
               NUL-terminated UTF-8
    FAIL 0 n   JSON: message, hint, permanent (running again cannot help)
    DONE 0 0   end of the task (always sent, also after a FAIL, so both sides stay in step)

Scores travel as binary columns because R's own text is lossy (``fwrite``: 15 significant digits)
or slow (``sprintf("%.17g")``: about 2 µs a value, more than a glm's whole prediction); the
runner writes each double as the shortest text that reads back to the very same double.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import IO, Any

from ..errors import ScoreError

HEADER_BYTES = 32
INT_NA = -(2**31)
VERBS_FROM_R = ("REDY", "COLS", "FAIL", "DONE")


class ProtocolError(Exception):
    """R wrote something that is not a frame (e.g. a package printing straight to stdout)."""


@dataclass(frozen=True)
class Frame:
    verb: str
    count: int
    payload: bytes


def encode_frame(verb: str, payload: bytes | memoryview = b"", count: int = 0) -> bytes:
    header = f"{verb:<4} {count:>12} {len(payload):>13}\n".encode("ascii")
    assert len(header) == HEADER_BYTES, header
    return header + payload


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks = []
    while size > 0:
        block = stream.read(size)
        if not block:
            break
        chunks.append(block)
        size -= len(block)
    return b"".join(chunks)


def read_frame(stream: IO[bytes]) -> Frame | None:
    """The next frame, or None at end of stream (R exited)."""
    header = _read_exactly(stream, HEADER_BYTES)
    if not header:
        return None
    fields = header.decode("ascii", "replace").split()
    if (len(header) != HEADER_BYTES or len(fields) != 3 or fields[0] not in VERBS_FROM_R
            or not fields[1].isdigit() or not fields[2].isdigit()):
        raise ProtocolError(
            f"R wrote {header[:60]!r} where a frame was expected: something printed straight to "
            "stdout (R-level print/cat output is redirected to the log; C-level printf is not)"
        )
    length = int(fields[2])
    payload = _read_exactly(stream, length)
    if len(payload) != length:
        raise ProtocolError(f"R stopped in the middle of a {fields[0]} frame")
    return Frame(fields[0], int(fields[1]), payload)


@dataclass(frozen=True)
class Scores:
    """The decoded scores of one batch: column names and Arrow arrays (no copies of R's bytes)."""

    rows: int
    names: list[str]
    columns: list[Any]  # pyarrow arrays
    # on_error = "skip": the batch's records R left out (0-based, ascending) and why
    failed: list[tuple[int, str]] = field(default_factory=list)


def decode_columns(frame: Frame) -> Scores:
    meta = json.loads(frame.payload[: frame.count])
    rows = int(meta["rows"])
    offset = frame.count
    names: list[str] = []
    columns: list[Any] = []
    view = memoryview(frame.payload)
    for column in meta["columns"]:
        size = int(column["bytes"])
        blob = view[offset: offset + size]
        offset += size
        names.append(str(column["name"]))
        columns.append(_decode_column(column["type"], blob, rows, column["name"]))
    if offset != len(frame.payload):
        raise ProtocolError(f"a COLS frame has {len(frame.payload) - offset} bytes left over")
    failed = [(int(f["row"]), " ".join(str(f["error"]).split())) for f in meta.get("failed", [])]
    return Scores(rows, names, columns, failed)


def _decode_column(kind: str, blob: memoryview, rows: int, name: str) -> Any:
    # numpy and pyarrow on first use: the runner imports this module before it starts R
    import numpy as np
    import pyarrow as pa

    # Arrays are built from their buffers: pa.array() of a numpy array imports pandas (~0.3 s of
    # CPU in every worker) to look for pandas types.
    if kind == "double":
        values = np.frombuffer(blob, dtype="<f8").copy()  # (copied: aligned for Arrow)
        array = _from_buffers(pa.float64(), values, np.isnan(values))  # NaN, R's NA too -> null
    elif kind == "integer":
        values = np.frombuffer(blob, dtype="<i4").copy()
        array = _from_buffers(pa.int32(), values, values == INT_NA)
    elif kind == "string":
        # one NA flag byte per row, then each string NUL-terminated (R's writeBin of text)
        flags = np.frombuffer(blob[:rows], dtype=np.uint8)
        text = np.frombuffer(blob[rows:], dtype=np.uint8)
        ends = np.flatnonzero(text == 0)
        if len(flags) != rows or len(ends) != rows or (rows and ends[-1] != len(text) - 1):
            raise ProtocolError(f"column {name!r}: {len(ends)} strings for {rows} rows")
        offsets = np.zeros(rows + 1, dtype=np.int64)
        offsets[1:] = ends - np.arange(rows)  # where each string ends once the NULs are gone
        valid = pa.py_buffer(np.packbits(flags == 0, bitorder="little")) if flags.any() else None
        array = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets),
                                                 pa.py_buffer(text[text != 0]), valid)
        try:
            array.validate(full=True)  # invalid UTF-8 is refused here, not written
        except pa.ArrowInvalid:
            raise ScoreError(f"score column {name!r} is not valid UTF-8 text",
                             hint="Write the input CSV in UTF-8 (R: fwrite / write.csv with "
                                  "fileEncoding = \"UTF-8\").", retryable=False) from None
    else:
        raise ProtocolError(f"column {name!r}: unknown type {kind!r}")
    if len(array) != rows:
        raise ProtocolError(f"column {name!r}: {len(array)} values for {rows} rows")
    return array


def _from_buffers(kind: Any, values: Any, missing: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    valid = (pa.py_buffer(np.packbits(~missing, bitorder="little")) if missing.any() else None)
    return pa.Array.from_buffers(kind, len(values), [valid, pa.py_buffer(values)])


def header_line(names: list[str]) -> str:
    """The CSV header of the scores (quoted only where needed, like the records)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(names)
    return out.getvalue()


def scores_csv(scores: Scores) -> bytes:
    return columns_csv(scores.columns)


def columns_csv(columns: list[Any]) -> bytes:
    """Arrow arrays of as many values each as CSV rows without a header (``writers.csv_rows``):
    NA / NaN as empty fields."""
    import pyarrow as pa

    from .writers import csv_rows

    return csv_rows(pa.Table.from_arrays(columns, names=[f"c{i}" for i in range(len(columns))]))
