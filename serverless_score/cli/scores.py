"""``serverless-score scores``: a finished job's scores on stdout as CSV, whatever format and
wherever (a folder or blob storage) they were written. For people (`| head`) and for the R
package, which reads Parquet this way when R's arrow package is not installed, and blob outputs
without an Azure SDK of its own."""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any, BinaryIO

from ..controller.inspect import JobLocation, locate
from ..errors import InputError, ScoreError
from .ops import SetOpt, TargetArg

_COPY_BLOCK = 1 << 20
_PARQUET_BATCH = 64 * 1024


def scores(target: TargetArg, set_: SetOpt = None) -> None:
    """Print a succeeded job's scores on stdout as CSV (header first; Parquet and JSONL outputs converted)."""
    from . import _fail

    try:
        loc = locate(target, set_)
        output = _succeeded_output(loc)
        out = sys.stdout.buffer
        with loc.store.open_read(output["path"]) as f:
            fmt = output["format"]
            if fmt == "parquet":
                _parquet_as_csv(f, out)
            elif fmt == "jsonl":
                _jsonl_as_csv(f, out, _id_columns(loc))
            else:  # csv, and the plain lines of command jobs: already text, copied as they are
                shutil.copyfileobj(f, out, _COPY_BLOCK)
        out.flush()
    except BrokenPipeError:  # `scores job.toml | head`: the reader has what it wanted
        return
    except ScoreError as err:
        raise _fail(err, as_json=False, debug=False) from None


def _succeeded_output(loc: JobLocation) -> dict[str, Any]:
    """The manifest's ``output`` entry, when this job (not an earlier run at the same output)
    succeeded: the manifest is only written once the output is complete."""
    job = f"job {loc.job_id}" if loc.job_id else "the job"
    try:
        manifest = json.loads(loc.store.read_bytes(loc.layout.manifest))
    except (FileNotFoundError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("job_id") != loc.job_id:
        raise InputError(f"{job} has no scores at {loc.layout.output}: it has not succeeded "
                         f"(no manifest of it at {loc.layout.manifest})",
                         hint="`serverless-score status` shows where it is; `logs` why it failed.")
    output = manifest.get("output")
    if not isinstance(output, dict) or not output.get("path"):
        raise InputError(f"{loc.layout.manifest} names no output")
    return {"path": str(output["path"]), "format": str(output.get("format") or "csv")}


def _id_columns(loc: JobLocation) -> list[str]:
    return list(loc.spec.id_columns) if loc.spec is not None else []


def _parquet_as_csv(f: BinaryIO, out: BinaryIO) -> None:
    """Row group by row group: memory stays at one batch whatever the output's size."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(f)
    with pcsv.CSVWriter(out, reader.schema_arrow) as writer:
        for batch in reader.iter_batches(batch_size=_PARQUET_BATCH):
            writer.write_batch(batch)


def _jsonl_as_csv(f: BinaryIO, out: BinaryIO, ids: list[str]) -> None:
    """Id columns stay text (Arrow would otherwise read ``"00012"`` as written, but an all-digit
    id column of a JSON number would not be what the job wrote: ids are written as strings)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson

    data = f.read()
    if not data.strip():
        return  # no rows and, JSONL having no header, no columns either
    parse = pjson.ParseOptions(explicit_schema=pa.schema([(c, pa.string()) for c in ids]),
                               unexpected_field_behavior="infer")
    table = pjson.read_json(pa.py_buffer(data), parse_options=parse)
    # The explicit schema puts the id columns first: back to the order the job wrote.
    first = json.loads(data.lstrip().split(b"\n", 1)[0])
    order = [c for c in first if c in table.column_names] if isinstance(first, dict) else []
    order += [c for c in table.column_names if c not in order]
    pcsv.write_csv(table.select(order), out)
