"""Pin a churn model on a folder board with the pins package, and write the customers to score.

    python prepare.py    # board/churn/<version>/ (the pin), data/customers.csv

Each run pins a new version when the model changed (pins skips identical ones); the job scores
the latest (`pins://board/churn`) or one by name (`pins://board/churn@<version>`). R users pin
with `serveRless::push_model(model, "pins://board/churn")` or `pins::pin_write()`. Needs
pip install pins.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pins
from sklearn.ensemble import RandomForestClassifier

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("churn_data", HERE.parent / "python-churn" / "prepare.py")
assert _spec is not None and _spec.loader is not None
churn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(churn)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    train = churn.make_customers(20_000, seed=1)
    model = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0)
    model.fit(train[churn.FEATURES], churn.churn_label(train, seed=2))
    board = pins.board_folder(str(HERE / "board"), allow_pickle_read=True)
    board.pin_write(model, "churn", type="joblib", title="churn forest")
    (HERE / "data").mkdir(exist_ok=True)
    churn.make_customers(rows, seed=3).to_csv(HERE / "data" / "customers.csv", index=False)
    print(f"pinned churn on {HERE / 'board'} (versions: "
          f"{', '.join(board.pin_versions('churn')['version'])}); wrote data/customers.csv")


if __name__ == "__main__":
    main()
