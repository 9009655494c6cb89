"""Generate a deterministic churn data set and train a scikit-learn model on it.

    python prepare.py            # writes data/customers.csv (to score) and model/churn.joblib

The scoring input has no label: that is what the batch job predicts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

HERE = Path(__file__).parent
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "contract_years", "late_payments"]


def make_customers(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(rows)],
        "tenure_months": rng.integers(1, 72, rows),
        "monthly_charges": rng.normal(65, 20, rows).round(2),
        "support_calls": rng.poisson(1.5, rows),
        "contract_years": rng.choice([0, 1, 2], rows),
        "late_payments": rng.poisson(0.5, rows),
    })
    return frame


def churn_label(frame: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logit = (-1.0 - 0.04 * frame.tenure_months + 0.02 * frame.monthly_charges
             + 0.5 * frame.support_calls - 0.8 * frame.contract_years + 0.6 * frame.late_payments)
    return (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000, help="rows to score")
    args = parser.parse_args()
    (HERE / "data").mkdir(exist_ok=True)
    (HERE / "model").mkdir(exist_ok=True)
    train = make_customers(20_000, seed=1)
    model = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0, n_jobs=1)
    model.fit(train[FEATURES], churn_label(train, seed=2))
    joblib.dump(model, HERE / "model" / "churn.joblib")
    make_customers(args.rows, seed=3).to_csv(HERE / "data" / "customers.csv", index=False)
    print(f"wrote {HERE / 'data' / 'customers.csv'} ({args.rows:,} rows) and {HERE / 'model' / 'churn.joblib'}")


if __name__ == "__main__":
    main()
