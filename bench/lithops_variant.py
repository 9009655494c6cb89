"""The comparison point: the same scoring job through Lithops' localhost backend.

Usage: python bench/lithops_variant.py MODEL.joblib INPUT.csv OUTPUT.csv WORKERS

Run as its own process (like the bare baseline and the tool) so interpreter start-up and imports
count the same way for every variant. Prints one JSON object on stdout with the row accounting
and a breakdown of where the time went; the caller times the whole process.

How the installed Lithops (3.8) is driven, from its source rather than its docs:
- The input is given as a plain absolute path. ``lithops/job/partitioner.py`` sends entries that
  start with "/" to ``_split_objects_from_paths`` (``CloudObjectLocal``, read straight from the
  file). A ``localhost://...`` URL is instead resolved by the localhost *storage* backend against
  its own bucket directory under ``LITHOPS_TEMP_DIR``, so ``localhost:///abs/path.csv`` looks for
  ``/tmp/lithops-<user>/work/...`` and does not find the file.
- ``localhost.runtime`` must be this interpreter's absolute path: the default is the bare
  basename ``python``, which resolves through PATH to an interpreter without this venv.
- ``obj_chunk_number=WORKERS`` with the default ``obj_newline='\\n'``: each chunk reads one byte
  early and ``CHUNK_THRESHOLD`` (128 KiB) late and trims to whole lines. Quoted newlines are not
  understood; the bench data has none, and the caller counts the rows anyway.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import lithops
import numpy as np
import pandas as pd

COLUMNS = ["id", *(f"f{i}" for i in range(10))]


def score_chunk(obj: Any, model_path: str) -> dict[str, Any]:
    """Lithops map function: parse this task's slice of the CSV and score it.

    Imports are local because Lithops ships the function to its worker processes by value.
    """
    import io

    import joblib
    import pandas as pd

    data = obj.data_stream.read()
    # Only the first chunk carries the header line; the others start on a data row.
    if obj.part == 1:
        frame = pd.read_csv(io.BytesIO(data))
    else:
        frame = pd.read_csv(io.BytesIO(data), header=None, names=COLUMNS)
    model = joblib.load(model_path)
    names = getattr(model, "feature_names_in_", None)
    features = frame[list(names)] if names is not None else frame.drop(columns=["id"])
    proba = model.predict_proba(features)
    return {
        "part": obj.part,
        "bytes": len(data),
        "ids": frame["id"].to_numpy(),
        "proba": proba,
        "classes": [str(c) for c in model.classes_],
    }


def _executor(workers: int) -> lithops.FunctionExecutor:
    config = {
        "lithops": {"backend": "localhost", "storage": "localhost", "log_level": "WARNING"},
        "localhost": {"worker_processes": workers, "runtime": sys.executable},
    }
    return lithops.FunctionExecutor(config=config, log_level="WARNING")


def _accounting(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Row accounting: how many rows came back, and how many distinct ids among them, so a
    boundary that drops or duplicates rows shows up as missing/duplicated rather than as a
    plausible-looking total."""
    ids = np.concatenate([p["ids"] for p in parts]) if parts else np.array([], dtype=np.int64)
    unique = int(np.unique(ids).size)
    return {
        "rows_returned": int(ids.size),
        "unique_ids": unique,
        "duplicated_rows": int(ids.size) - unique,
        "parts": [{"part": p["part"], "bytes": p["bytes"], "rows": len(p["ids"])} for p in parts],
    }


def _write_output(parts: list[dict[str, Any]], output_csv: str) -> None:
    """Merge in part order and write one CSV, as the other variants do."""
    classes = parts[0]["classes"]
    out = pd.DataFrame(
        np.concatenate([p["proba"] for p in parts]), columns=[f"proba_{c}" for c in classes]
    )
    out.insert(0, "id", np.concatenate([p["ids"] for p in parts]))
    out.to_csv(output_csv, index=False)


def run(model_path: str, input_csv: str, output_csv: str, workers: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    fexec = _executor(workers)
    t1 = time.perf_counter()
    futures = fexec.map(
        score_chunk,
        [{"obj": input_csv, "model_path": model_path}],
        obj_chunk_number=workers,
    )
    parts = sorted(fexec.get_result(futures, show_progressbar=False), key=lambda p: p["part"])
    t2 = time.perf_counter()
    # Lithops' own measure of each call's function time, to set against the wall time.
    exec_times = [f.stats.get("worker_func_exec_time") for f in futures]
    _write_output(parts, output_csv)
    t3 = time.perf_counter()
    fexec.clean()
    return {
        "lithops_version": lithops.__version__,
        "tasks": len(parts),
        **_accounting(parts),
        "task_seconds": exec_times,
        "timings": {
            "executor_setup": round(t1 - t0, 3),
            "map_and_collect": round(t2 - t1, 3),
            "write_output": round(t3 - t2, 3),
        },
    }


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model_path, input_csv, output_csv, workers = argv
    print(json.dumps(run(model_path, input_csv, output_csv, int(workers))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
