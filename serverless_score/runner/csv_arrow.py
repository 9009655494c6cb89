"""A batch of CSV records parsed by Arrow, where the DataFrame is provably the one pandas gives.

pandas' parser was two thirds of what a worker spends per record on a cheap model (a logistic
regression: 67 ms of a ~100 ms batch of 83,000 rows x 11 columns; Arrow's parser, one thread:
40 ms). Arrow and pandas agree on ordinary numbers but not on everything: Arrow reads ``nan``,
``NaN`` and hex integers (``0X1A``) as numbers where pandas, told that only an empty field is
missing, keeps them as text (which the row guard then reports as a bad value); Arrow reads
``+5`` as a double where pandas reads an int64; integers past int64 become doubles in Arrow and
uint64 or text in pandas; and pandas renames duplicate or blank header names. So Arrow's frame is
used only when nothing of that can be in it:

- the header gives the same names to both parsers, none blank, none repeated;
- every column but the ids is int64 or double; any other type (text, dates, booleans, a column
  of nothing but empty fields) sends the batch to pandas;
- an int64 column is only trusted when the batch has no ``x``/``X`` (a hex prefix);
- a double column must hold a finite value with a fraction (``2.5``), else pandas might have
  read the same text as int64, uint64 or text; no NaN that was not an empty field; and no
  value of 2^63 or more (an integer that long makes pandas read the whole column as text, even
  beside ``4.9e-324``).

Any Arrow error (a record with more or fewer fields, a quoting problem, bytes that are not
UTF-8) also sends the batch to pandas, whose behaviour and errors are the runner's contract.
``tests/test_csv_arrow.py`` compares both parsers over generated batches.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from typing import Any

import numpy as np

UTF8 = frozenset({"utf-8", "utf8", "utf_8", "u8"})
_PAST_INT64 = 2.0**63


# A header of bare names (letters, digits, ``_``, ``.``, ``-``; no quotes, blanks or BOM): every
# CSV reader splits it at its commas, so pandas need not be imported to be asked.
_PLAIN_HEADER = re.compile(rb"[A-Za-z0-9_.-]+(?:,[A-Za-z0-9_.-]+)*\r?\n?")


@lru_cache(maxsize=8)
def _names(header: bytes) -> tuple[str, ...] | None:
    """The header's column names if Arrow and pandas read them alike (None: use pandas)."""
    if _PLAIN_HEADER.fullmatch(header):
        plain = header.rstrip(b"\r\n").decode("ascii").split(",")
        return tuple(plain) if len(set(plain)) == len(plain) else None  # (pandas renames repeats)
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        theirs = [str(c) for c in pd.read_csv(io.BytesIO(header), nrows=0, encoding="utf-8").columns]
        ours = pcsv.read_csv(pa.py_buffer(header),
                             read_options=pcsv.ReadOptions(use_threads=False)).column_names
    except (ValueError, pa.ArrowException):
        return None
    if ours != theirs or len(set(ours)) != len(ours) or any(not n.strip() for n in ours):
        return None
    return tuple(ours)


def read_csv_batch(data: bytes | memoryview, header: bytes, id_columns: list[str],
                   records: int | None = None) -> Any:
    """The records of ``data`` (whole CSV records, no header) as the DataFrame pandas would give
    (ids as text), or None when that cannot be guaranteed and pandas must parse the batch."""
    table = read_csv_table(data, header, id_columns, records)
    return None if table is None else table_frame(table, id_columns)


def read_csv_table(data: bytes | memoryview, header: bytes, id_columns: list[str],
                   records: int | None = None) -> Any:
    """The Arrow table behind ``read_csv_batch``'s frame: every column is what pandas would read
    (ids as text, the rest int64 or float64), or None when pandas must parse the batch."""
    names = _names(header)
    if names is None or any(c not in names for c in id_columns):
        return None
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(
            pa.py_buffer(data),
            read_options=pcsv.ReadOptions(column_names=list(names), use_threads=False),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in id_columns}, null_values=[""],
                strings_can_be_null=False),
        )
    except pa.ArrowException:
        return None
    if records is not None and table.num_rows != records:
        return None
    hex_checked = False
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in id_columns:
            continue
        kind = column.type
        if pa.types.is_int64(kind):
            if not hex_checked:
                if _has_hex_prefix(data):
                    return None
                hex_checked = True
        elif not pa.types.is_float64(kind) or not _plain_doubles(column):
            return None
    return table


def table_frame(table: Any, id_columns: list[str]) -> Any:
    """The table as pandas' parser lays out its frames: a block of its own per column, writable
    (Arrow's zero-copy views are read-only: a scorer's ``data.loc[0, "x"] = 1`` would fail,
    and one block for all the numbers would make ``data[cols].values`` a read-only view)."""
    import pandas as pd

    columns: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in id_columns:
            columns[name] = column.to_pandas()
            continue
        values = column.to_numpy()  # (nulls as NaN: an int64 column with some is float64)
        columns[name] = values if values.flags.writeable else values.copy()
    return pd.DataFrame(columns, copy=False)


def _has_hex_prefix(data: bytes | memoryview) -> bool:
    """Whether an ``x`` or ``X`` is in the batch (or, for a view, in the bytes it is cut from:
    a false alarm only sends the batch to pandas). ``bytes.find`` of one byte is a memchr."""
    raw = data.obj if isinstance(data, memoryview) else data
    if not isinstance(raw, bytes):
        raw = bytes(data)
    return raw.find(b"x") != -1 or raw.find(b"X") != -1


def _plain_doubles(column: Any) -> bool:
    """True when pandas reads this double column's text as the same float64 values: some finite
    value has a fraction (so the column is float64 for pandas too), and every NaN is a null (an
    empty field), none read from ``nan`` text."""
    fraction = False
    for chunk in column.chunks:
        values = chunk_doubles(chunk)  # nulls as NaN
        if int(np.count_nonzero(np.isnan(values))) != chunk.null_count:
            return False
        with np.errstate(invalid="ignore"):
            if np.any(np.isfinite(values) & (np.abs(values) >= _PAST_INT64)):
                return False  # an integer past int64 makes pandas' column text, whatever else
        if not fraction:
            with np.errstate(invalid="ignore"):  # inf - inf: NaN, not a fraction
                fraction = bool(np.any(np.abs(values - np.trunc(values)) > 0))
    return fraction


# pyarrow's own ways between numpy and Arrow (``to_numpy`` with nulls or of a chunked array,
# ``pa.array``, ``pa.table``) import pandas to look for its types: 0.45-0.55 s of CPU in a worker
# that otherwise never needs pandas (a native model's, ``PythonScorer.score_table``). These read
# and make the buffers themselves.
def chunk_doubles(chunk: Any) -> np.ndarray:
    """A double array's values (read-only), nulls as NaN (a copy then)."""
    rows = len(chunk)
    values = np.frombuffer(chunk.buffers()[1], dtype=np.float64, count=rows,
                           offset=chunk.offset * 8)
    if chunk.null_count == 0:
        return values
    bits = np.unpackbits(np.frombuffer(chunk.buffers()[0], dtype=np.uint8), bitorder="little")
    out = values.copy()
    out[~bits[chunk.offset:chunk.offset + rows].astype(bool)] = np.nan
    return out


def column_doubles(column: Any) -> np.ndarray:
    """A chunked double column's values, nulls as NaN (read-only: one chunk's is Arrow's memory)."""
    chunks = [chunk_doubles(chunk) for chunk in column.chunks]
    values = chunks[0] if len(chunks) == 1 else np.concatenate(chunks or [np.empty(0)])
    values.flags.writeable = False
    return values


def doubles_array(values: np.ndarray) -> Any:
    """An Arrow double array of these float64 values (no nulls)."""
    import pyarrow as pa

    data = np.ascontiguousarray(values, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), len(data), [None, pa.py_buffer(data)])
