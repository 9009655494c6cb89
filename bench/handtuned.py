"""The yardstick: the best single process a performance engineer would write for the job.

Usage: python bench/handtuned.py MODEL.joblib INPUT.csv OUTPUT.csv [BATCH_ROWS]

pyarrow reads the whole CSV (its multi-threaded reader), the features go to the model as one
numpy array (no DataFrame), ``predict_proba``, and pyarrow writes ``id`` + ``proba_<class>``
(``quoting_style="needed"``). Its CPU seconds (user + system, every thread), measured by the
caller from outside, divided by the cores, is the shortest wall time any run of the same work
can take on those cores: the *limit* the scoring bench holds every variant against.

With BATCH_ROWS, ``predict_proba`` is called on slices of that many rows, the same numbers (each
row is scored alone), as the tool scores batches: the variant ``handtuned-batched``, to tell
whether slicing alone makes a faster process than the yardstick the issue names.

Prints one JSON object: the rows written and the seconds of each stage (wall, in process).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

ID_COLUMN = "id"


def features(table: pa.Table, model: Any) -> np.ndarray:
    """The model's columns as one C-contiguous float64 matrix: the model's own feature names
    when it has them, otherwise every column but the id."""
    names = getattr(model, "feature_names_in_", None)
    columns = list(names) if names is not None else [c for c in table.column_names if c != ID_COLUMN]
    matrix = np.empty((table.num_rows, len(columns)), dtype=np.float64)
    for i, name in enumerate(columns):
        matrix[:, i] = table.column(name).to_numpy()
    return matrix


def predict(model: Any, x: np.ndarray, batch_rows: int | None) -> np.ndarray:
    with warnings.catch_warnings():
        # Fitted on a DataFrame, given an array: sklearn warns about the missing names; the
        # columns are the model's own, in its order.
        warnings.simplefilter("ignore", UserWarning)
        if batch_rows is None:
            return np.asarray(model.predict_proba(x))
        return np.concatenate([model.predict_proba(x[i:i + batch_rows])
                               for i in range(0, len(x), batch_rows)])


def score(model_file: str, input_csv: str, output_csv: str,
          batch_rows: int | None = None) -> dict[str, Any]:
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    table = pcsv.read_csv(input_csv)
    t1 = time.perf_counter()
    model = joblib.load(model_file)
    t2 = time.perf_counter()
    x = features(table, model)
    t3 = time.perf_counter()
    proba = predict(model, x, batch_rows)
    t4 = time.perf_counter()
    columns = {ID_COLUMN: table.column(ID_COLUMN)}
    for i, cls in enumerate(model.classes_):
        columns[f"proba_{cls}"] = pa.array(proba[:, i])
    out = pa.table(columns)
    pcsv.write_csv(out, output_csv, pcsv.WriteOptions(quoting_style="needed"))
    t5 = time.perf_counter()
    stages = {"read_csv": t1 - t0, "load_model": t2 - t1, "features": t3 - t2,
              "predict": t4 - t3, "write_csv": t5 - t4}
    return {"rows": out.num_rows, "timings": {k: round(v, 3) for k, v in stages.items()}}


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    batch_rows = int(argv[3]) if len(argv) == 4 else None
    print(json.dumps(score(argv[0], argv[1], argv[2], batch_rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
