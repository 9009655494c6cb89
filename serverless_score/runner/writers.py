"""Writing a task's scores into its part, in the job's output format, counting rows and hashing
what was written. CSV parts carry no header: the header is reported once and the merge writes it
once, so a blob merge can compose parts server-side without editing them."""

from __future__ import annotations

import hashlib
import sys
from typing import Any, BinaryIO


class PartWriter:
    def __init__(self, f: BinaryIO, output_format: str) -> None:
        self._f = f
        self._format = output_format
        self._hash = hashlib.sha256()
        self._parquet: Any = None
        self._schema: Any = None
        self.rows = 0
        self.bytes = 0
        self.header = ""
        self.columns: list[str] = []

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.bytes += len(data)

    def write_lines(self, data: bytes, count: int) -> None:
        self._write(data)
        self.rows += count

    def write_frame(self, frame: Any) -> None:
        """A batch's scores: a DataFrame, or (CSV output) an Arrow table whose column names
        need no quoting (``PythonScorer.score_table``), written as its frame would be."""
        table = frame if _is_arrow_table(frame) else None
        columns = list(table.column_names) if table is not None else [str(c) for c in frame.columns]
        if table is not None and self._format != "csv":
            raise ValueError(f"an Arrow table of scores for {self._format} output")
        if not self.columns:
            self.columns = columns
            if self._format == "csv":
                # (pandas quotes a name only for a comma, a quote or a line end: none here)
                self.header = (",".join(columns) + "\n" if table is not None
                               else frame.head(0).to_csv(index=False, lineterminator="\n"))
        elif columns != self.columns:
            raise ValueError(f"score columns changed between batches: {self.columns} then {columns}")
        if table is not None:
            self._write(csv_rows(table))
            self.rows += table.num_rows
            return
        if self._format == "csv":
            self._write(_csv(frame))
        elif self._format == "jsonl":
            self._write(_jsonl(frame))
        else:
            self._write_parquet(frame)
        self.rows += len(frame)

    def _write_parquet(self, frame: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(_HashingSink(self), self._schema)
        self._parquet.write_table(table.cast(self._schema))

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class _HashingSink:
    """A write-only file object for pyarrow that counts and hashes what goes through."""

    def __init__(self, writer: PartWriter) -> None:
        self._writer = writer
        self.closed = False

    def write(self, data: bytes) -> int:
        self._writer._write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def tell(self) -> int:
        return self._writer.bytes


def _jsonl(frame: Any) -> bytes:
    """One JSON object per row, floats at full precision (pandas' to_json stops at 15 digits,
    which would make JSONL scores differ from CSV ones); NaN becomes null."""
    import json

    import pandas as pd

    rows = frame.astype(object).where(pd.notna(frame), None).to_dict(orient="records")
    return "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows).encode()


def _csv(frame: Any) -> bytes:
    """CSV rows without a header. Arrow's writer is ~10x faster than pandas' to_csv and writes
    the shortest text that reads back as the same double. Values are quoted only in a batch
    where some string needs it (a comma, quote or line end): Arrow's "none" style refuses those,
    and "needed" then quotes every string of that batch, which reads back the same."""
    import pyarrow as pa

    return csv_rows(pa.Table.from_pandas(frame, preserve_index=False))


def _is_arrow_table(scores: Any) -> bool:
    pyarrow = sys.modules.get("pyarrow")  # (no table without pyarrow imported)
    return pyarrow is not None and isinstance(scores, pyarrow.Table)


def csv_rows(table: Any) -> bytes:
    """An Arrow table as CSV rows without a header: doubles as the shortest text that reads back
    exactly (Arrow's formatter), nulls as empty fields, text quoted only when it must be (see
    ``_csv``). The part writer's and the R runner's one way of writing scores."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pcsv

    batch = max(1, table.num_rows)  # one batch: Arrow's default of 1,024 rows costs twice the time
    out = io.BytesIO()
    try:
        pcsv.write_csv(table, out, pcsv.WriteOptions(include_header=False, batch_size=batch,
                                                     quoting_style="none"))
    except pa.ArrowInvalid:
        out = io.BytesIO()
        pcsv.write_csv(table, out, pcsv.WriteOptions(include_header=False, batch_size=batch,
                                                     quoting_style="needed"))
    return out.getvalue()
