"""Register a churn model in a local MLflow registry and write the customers to score.

    python prepare.py    # mlflow.db (the registry), mlruns/ (its artifacts), data/customers.csv

Two versions of "churn" are registered (a logistic regression, then a random forest) and the
alias "champion" points at the forest: the job scores `models:/churn@champion`. Move the alias
(`MlflowClient().set_registered_model_alias("churn", "champion", "1")`) and run the job again:
it is another job, scored with version 1, and the manifest says so. Needs the mlflow extra:
pip install 'serverless-score[mlflow]'.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

HERE = Path(__file__).resolve().parent
# The customers and labels of the Python churn example, generated the same way.
_spec = importlib.util.spec_from_file_location("churn_data", HERE.parent / "python-churn" / "prepare.py")
assert _spec is not None and _spec.loader is not None
churn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(churn)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    tracking = f"sqlite:///{HERE / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    client = MlflowClient(tracking)
    if client.search_registered_models(filter_string="name = 'churn'"):
        print(f"the registry {tracking} already has 'churn'; delete mlflow.db and mlruns/ to redo")
    else:
        experiment = mlflow.create_experiment("churn", artifact_location=str(HERE / "mlruns"))
        train = churn.make_customers(20_000, seed=1)
        label = churn.churn_label(train, seed=2)
        for model in (LogisticRegression(max_iter=1000),
                      RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0)):
            with mlflow.start_run(experiment_id=experiment):
                mlflow.sklearn.log_model(model.fit(train[churn.FEATURES], label), name="model",
                                         registered_model_name="churn",
                                         serialization_format="cloudpickle",
                                         pyfunc_predict_fn="predict_proba",
                                         pip_requirements=["scikit-learn"])
        client.set_registered_model_alias("churn", "champion", "2")
    (HERE / "data").mkdir(exist_ok=True)
    churn.make_customers(rows, seed=3).to_csv(HERE / "data" / "customers.csv", index=False)
    print(f"registered models:/churn@champion in {tracking}; wrote data/customers.csv ({rows:,} rows)")


if __name__ == "__main__":
    main()
