"""Merging: parts in input order into one output, header once, atomically; then the manifest.

``merge_plan`` is pure (which parts, which header, or why they cannot be merged); ``merge`` does
the I/O through the store, which composes without re-parsing (local: file concatenation; blob:
server-side block copies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ScoreError
from ..layout import JobLayout
from ..planning.tasks import Task
from ..runner.contract import TaskResult
from ..storage import ComposeResult, Store
from ..storage.base import hash_stream


@dataclass(frozen=True)
class MergePlan:
    parts: tuple[str, ...]
    header: bytes
    rows: int
    schema: Any = None  # Parquet with no rows at all: the schema of its empty file
    # Each part's size, as its attempt reported and the controller checked when it took the
    # result: a blob merge of 100,000 parts then makes no 100,000 requests to learn them.
    sizes: tuple[int, ...] | None = None
    scratch: str | None = None  # where a blob merge keeps its intermediate blobs


def merge_plan(tasks: Sequence[Task], results: dict[str, TaskResult], layout: JobLayout,
               output_format: str) -> MergePlan:
    ordered = sorted(tasks, key=lambda t: t.index)
    missing = [t.id for t in ordered if t.id not in results]
    if missing:
        raise ScoreError(f"cannot merge: tasks {missing[:5]} have no result")
    headers = {results[t.id].header for t in ordered if results[t.id].records_out}
    if output_format == "csv" and len(headers) > 1:
        raise ScoreError(
            f"cannot merge: tasks produced different columns: {sorted(h.strip() for h in headers)}",
            hint="Input files of one job must share the same columns.",
        )
    header = headers.pop().encode() if output_format == "csv" and headers else b""
    # Each task's accepted attempt's part (its own folder: other attempts' files are not read).
    kept = [t for t in ordered if results[t.id].part_bytes]
    parts = tuple(layout.part(t.id, results[t.id].attempt) for t in kept)
    return MergePlan(parts, header, sum(results[t.id].records_out for t in ordered),
                     sizes=tuple(results[t.id].part_bytes for t in kept), scratch=layout.merge_dir)


def merge(store: Store, plan: MergePlan, output: str, output_format: str, *,
          overwrite: bool = True) -> ComposeResult:
    """Write the output atomically (with ``overwrite=False``, only if nothing is there)."""
    if output_format == "parquet":
        return _merge_parquet(store, plan, output, overwrite)
    return store.compose(output, plan.parts, header=plan.header, overwrite=overwrite,
                         sizes=plan.sizes, scratch=plan.scratch)


def _merge_parquet(store: Store, plan: MergePlan, output: str, overwrite: bool) -> ComposeResult:
    """Parquet parts cannot be concatenated: their row groups are rewritten into one file."""
    import pyarrow.parquet as pq

    writer = None
    with store.open_atomic(output, overwrite=overwrite) as sink:
        for part in plan.parts:
            with store.open_read(part) as f:
                parquet = pq.ParquetFile(f)
                for index in range(parquet.num_row_groups):
                    table = parquet.read_row_group(index)
                    if writer is None:
                        writer = pq.ParquetWriter(sink, table.schema)
                    writer.write_table(table.cast(writer.schema))
        if writer is None and plan.schema is not None:  # no rows: a valid file of the schema
            writer = pq.ParquetWriter(sink, plan.schema)
        if writer is not None:
            writer.close()
    with store.open_read(output) as f:
        size, sha256 = hash_stream(f)
    return ComposeResult(size=size, sha256=sha256, version=store.info(output).version,
                         method="rewrite")
