"""``plan --sample N``: score the first N records of the input on this machine, before anything
is created, and estimate from the throughput measured.

The sample is the first N lines after the header (CSV) or the first N lines (JSON lines, plain
records) of the first input file, copied to a temporary folder and scored there by a one-task,
one-group job on the local backend; its own manifest says how many bytes a second it scored. Only
the throughput comes from the sample: start-up on the job's backend is not something this
machine can measure, so it stays the history's or the assumed one. The sample run is not added
to the history (it is not a run of the job's backend).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from ..planning import Plan
from ..planning.cost import MB
from ..storage import get_store
from ..storage.config import StoreConfig
from .calibration import HISTORY_ENV, Calibration

_READ = 1 << 20  # bytes read at a time while looking for the N-th line


def first_records(data_head: bytes, rows: int, header: bool) -> bytes:
    """The header line (if any) and the first ``rows`` lines of ``data_head``."""
    wanted = rows + (1 if header else 0)
    lines = data_head.splitlines(keepends=True)[:wanted]
    return b"".join(lines)


def _head(plan: Plan, rows: int) -> tuple[bytes, str]:
    if not plan.files:
        raise InputError("plan --sample scores the first rows of the input: this job has none "
                         "(shards)")
    first = plan.files[0]
    suffix = Path(first.path.split("?", 1)[0]).suffix.lower()
    if suffix in (".parquet", ".gz", ".zst", ".bz2"):
        raise InputError(f"plan --sample reads the first lines of a text input; {first.path!r} "
                         "is not one", hint="Run the job on a small input instead: its run "
                                            "calibrates the next estimate.")
    store = get_store(first.path, StoreConfig.from_spec(plan.spec))
    header = plan.spec.runtime != "command" and (plan.spec.format or suffix.lstrip(".")) == "csv"
    wanted = rows + (1 if header else 0)
    data = b""
    with store.open_read(first.path) as f:
        while data.count(b"\n") < wanted:
            chunk = f.read(_READ)
            if not chunk:
                break
            data += chunk
    return first_records(data, rows, header), suffix or ".txt"


def sample_calibration(plan: Plan, rows: int, base: Calibration) -> Calibration:
    """``base`` with its throughput replaced by the one measured on the first ``rows`` records."""
    from .job import run_job

    head, suffix = _head(plan, rows)
    if not head:
        raise InputError(f"plan --sample: the input {plan.files[0].path!r} has no records")
    with tempfile.TemporaryDirectory(prefix="serverless-score-sample-") as tmp:
        folder = Path(tmp)
        (folder / f"sample{suffix}").write_bytes(head)
        spec = plan.spec.model_copy(update={
            "input": str(folder / f"sample{suffix}"), "output": str(folder / f"out{suffix}"),
            "backend": "local", "chunks": 1, "chunk_size": None, "max_parallel": 1,
            "retries": 0, "max_cost": None, "overwrite": True})
        previous = os.environ.get(HISTORY_ENV)
        os.environ[HISTORY_ENV] = str(folder / "history")  # the sample teaches no later plan
        try:
            run_job(spec)
        finally:
            if previous is None:
                os.environ.pop(HISTORY_ENV, None)
            else:
                os.environ[HISTORY_ENV] = previous
        manifest = json.loads((folder / f"out{suffix}.manifest.json").read_text())
    measured = manifest.get("calibration") or {}
    speed = measured.get("bytes_per_scoring_second")
    if not speed:
        raise InputError("plan --sample: the sample run measured no throughput")
    assumptions = replace(base.assumptions, throughput_mb_per_s=float(speed) / MB)
    return Calibration(
        assumptions,
        f"sampled: the first {rows:,} records ({len(head):,} bytes) scored on this machine in "
        f"{measured.get('scoring_seconds', 0):.2f}s, {float(speed) / MB:.3g} MB/s; start-up "
        f"per group from {base.source if base.run is not None else 'the price table'}",
        base.run)
