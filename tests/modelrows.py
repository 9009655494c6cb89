"""The rows the registry and board tests (test_models_mlflow, test_models_pins) train their
models on and score: an ``id`` column and three features, deterministic by seed."""

from __future__ import annotations

from typing import Any

FEATURES = ["x1", "x2", "x3"]


def frame(rows: int, seed: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"r{i:04d}" for i in range(rows)],
                         "x1": rng.normal(0, 1, rows).round(3),
                         "x2": rng.integers(0, 10, rows).astype(float),
                         "x3": rng.uniform(-2, 2, rows).round(2)})


def training_set() -> tuple[Any, Any]:
    """(features, label) of the models both tests register or pin."""
    train = frame(300, seed=1)
    label = ((train.x1 + 0.2 * train.x2 - 0.5 * train.x3) > 0.9).astype(int)
    return train[FEATURES], label
