"""Baseline: score a CSV in one plain Python process, the way one would without any tool.

Usage: python bench/bare_predict.py MODEL.joblib INPUT.csv OUTPUT.csv

Reads the whole CSV with pandas, loads the model with joblib, calls ``predict_proba`` and writes
``id`` plus one probability column per class. Timed from outside (process start to exit), like
the tool, so interpreter start-up and imports count for both.
"""

from __future__ import annotations

import sys
from typing import Any

import joblib
import pandas as pd

ID_COLUMN = "id"


def scores(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """``id`` and one probability column per class, for every row of ``frame``."""
    # Same feature selection rule as the tool: the model's own names when it has them,
    # otherwise every non-id column.
    names = getattr(model, "feature_names_in_", None)
    features = frame[list(names)] if names is not None else frame.drop(columns=[ID_COLUMN])
    proba = model.predict_proba(features)
    out = pd.DataFrame(proba, columns=[f"proba_{c}" for c in model.classes_])
    out.insert(0, ID_COLUMN, frame[ID_COLUMN].to_numpy())
    return out


def score(model_file: str, input_csv: str, output_csv: str) -> int:
    frame = pd.read_csv(input_csv)
    out = scores(joblib.load(model_file), frame)
    out.to_csv(output_csv, index=False)
    return len(out)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    rows = score(*argv)
    print(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
