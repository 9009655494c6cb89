"""The id columns of a batch of CSV records, read by the runner itself (the R runtime).

R does not send id columns back with its scores: the runner has the very records it gave R, and
Arrow's CSV reader picks the id columns out of them (one thread, while R scores the batch) far
more cheaply than R can read them as text, build a string per row and send it back. Ids are
text, as in the input: quotes are removed as a CSV reader removes them (``""`` inside a quoted
field is one quote), blanks around an unquoted field are trimmed as R's ``fread`` trims them.
"""

from __future__ import annotations

import csv
from typing import Any

from ..errors import ScoreError

# Arrow parses a batch in blocks of this size and keeps only the id columns of each. One block
# for the whole 32 MB batch made the parser allocate buffers for every column of it, fresh
# (transparent huge) pages the kernel zeroed on first touch: ~0.1 CPU s per worker and batch
# pair, on the cores R needs. 1 MB blocks reuse the same few buffers; the columns come back in
# chunks, joined once (the ids alone: a few MB).
_ID_BLOCK = 1 << 20


def header_names(header: bytes) -> list[str]:
    """The column names of a CSV header line, as R's fread names them (BOM and blanks dropped)."""
    text = header.decode("utf-8", "replace").removeprefix("\ufeff").rstrip("\r\n")
    return [name.strip(" \t") for name in next(csv.reader([text]), [])]


def read_id_columns(data: bytes | memoryview, names: list[str], id_columns: list[str], rows: int,
                    task_id: str) -> list[Any]:
    """The ``id_columns`` of ``data`` (whole CSV records without the header) as Arrow string
    arrays of ``rows`` values each."""
    if not id_columns:
        return []
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def read(block_size: int) -> Any:
        return pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False,
                                           block_size=block_size),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=id_columns, column_types={c: pa.string() for c in id_columns},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )

    try:
        try:
            table = read(_ID_BLOCK)
        except pa.ArrowInvalid as err:
            if "straddl" not in str(err) or len(data) < _ID_BLOCK:
                raise
            table = read(len(data) + 1)  # a record longer than a block: the batch in one block
    except pa.ArrowException as err:  # a malformed record, a column not in the header
        message = " ".join(str(err).split())
        if "UTF8" in message or "UTF-8" in message:
            raise ScoreError(f"task {task_id}: an id column ({', '.join(id_columns)}) is not "
                             "valid UTF-8 text",
                             hint="Write the input CSV in UTF-8 (R: fwrite / write.csv with "
                                  "fileEncoding = \"UTF-8\").", retryable=False) from None
        raise ScoreError(f"task {task_id}: reading the id columns of a batch: {message}",
                         hint="Check that every record has as many fields as the header.",
                         retryable=False) from None
    if table.num_rows != rows:
        raise ScoreError(f"task {task_id}: the id columns have {table.num_rows} rows where the "
                         f"runner found {rows} records (malformed CSV?)", retryable=False)
    return [_trimmed(table.column(c).combine_chunks()) for c in id_columns]


def _trimmed(array: Any) -> Any:
    """``array`` without blanks around its values: fread trims them around unquoted fields, and
    the ids R used to send back were trimmed. Checked with numpy first: ids rarely have any,
    and importing pyarrow.compute costs a worker ~0.1 s of CPU."""
    import numpy as np

    rows = len(array)
    _, offsets_buffer, data_buffer = array.buffers()
    if rows == 0 or data_buffer is None or data_buffer.size == 0:
        return array
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[array.offset: array.offset + rows + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    filled = offsets[1:] > offsets[:-1]
    edges = np.concatenate((data[offsets[:-1][filled]], data[offsets[1:][filled] - 1]))
    if not np.isin(edges, (0x20, 0x09)).any():
        return array
    import pyarrow.compute as pc

    return pc.utf8_trim(array, characters=" \t")
