"""Models read without their libraries (runner/pickled.py) and a binary logistic regression scored
with numpy alone (runner/native_linear.py): the scores are scikit-learn's bit for bit, and every
case the numpy path does not claim goes to scikit-learn, with scikit-learn's own errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serverless_score.runner import native_linear
from serverless_score.runner.native_linear import NativeLogistic, native_model
from serverless_score.runner.pickled import feature_names, peek
from serverless_score.runner.python_scorer import PythonScorer

FEATURES = ["a", "b", "c", "d"]
REPO = Path(__file__).resolve().parents[1]


def _data(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))) * [1, 10, 0.1, 1000],
                         columns=FEATURES)
    label = (frame.a + 0.05 * frame.b - 3 * frame.c + rng.normal(size=rows) > 0).astype(int)
    return frame, label.to_numpy()


def _dump(model: Any, path: Path, **kwargs: Any) -> str:
    joblib.dump(model, path, **kwargs)
    return str(path)


@pytest.fixture(scope="module")
def logistic(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    frame, label = _data(500, seed=3)
    model = LogisticRegression(C=0.7, max_iter=1000).fit(frame, label)
    return _dump(model, tmp_path_factory.mktemp("m") / "lr.joblib"), model


def _native(path: str) -> NativeLogistic:
    native = native_model(path, "auto", lambda: joblib.load(path))
    assert native is not None, "the numpy path declined a plain binary logistic regression"
    return native


# -- reading a pickle without its classes -----------------------------------------------------
def test_peek_reads_fitted_state_of_joblib_compressed_and_plain_pickles(
        logistic: tuple[str, Any], tmp_path: Path) -> None:
    path, model = logistic
    compressed = _dump(model, tmp_path / "lr-z.joblib", compress=3)
    plain = tmp_path / "lr.pkl"
    plain.write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    for where in (path, compressed, str(plain)):
        peeked = peek(where)
        assert peeked is not None, where
        assert peeked.qualified_name == "sklearn.linear_model._logistic.LogisticRegression"
        assert np.array_equal(peeked.state["coef_"], model.coef_)
        assert peeked.state["coef_"].dtype == model.coef_.dtype
        assert feature_names(where) == FEATURES


def test_peek_of_a_forest_gives_its_names_and_a_pipeline_is_left_to_a_real_load(
        tmp_path: Path) -> None:
    frame, label = _data(200, seed=4)
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(frame, label)
    assert feature_names(_dump(forest, tmp_path / "f.joblib")) == FEATURES
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, label)
    # a Pipeline's feature_names_in_ is computed by its code from the first step: not claimed
    assert feature_names(_dump(pipeline, tmp_path / "p.joblib")) is None
    assert list(pipeline.feature_names_in_) == FEATURES  # ... which the real load still gives
    bad = tmp_path / "not-a-model.joblib"
    bad.write_bytes(b"this is not a pickle")
    assert peek(str(bad)) is None
    assert feature_names(str(bad)) is None


def test_feature_names_are_read_without_importing_scikit_learn(logistic: tuple[str, Any]) -> None:
    path, _ = logistic
    code = ("import json, sys; from serverless_score.runner.pickled import feature_names; "
            f"names = feature_names({path!r}); "
            "print(json.dumps([names, 'sklearn' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout) == [FEATURES, False]


# -- scoring with numpy, bit for bit ----------------------------------------------------------
def _frames() -> list[tuple[str, pd.DataFrame]]:
    frame, _ = _data(3000, seed=9)
    ints = (frame * 10).round().astype("int64")
    mixed = frame.copy()
    mixed["b"] = ints["b"]
    return [
        ("float64", frame),
        ("float64 C-ordered copy", pd.DataFrame(np.ascontiguousarray(frame.to_numpy()), columns=FEATURES)),
        ("int64", ints),
        ("int and float columns", mixed),
        ("float32", frame.astype("float32")),
        ("one row", frame.iloc[[17]]),
        ("a slice not starting at 0", frame.iloc[1000:1999]),
    ]


@pytest.mark.parametrize("fit", [dict(C=0.7), dict(C=100.0, fit_intercept=False),
                                 dict(C=0.01, class_weight="balanced")])
def test_numpy_scores_equal_scikit_learn_bit_for_bit(tmp_path: Path, fit: dict[str, Any]) -> None:
    train, label = _data(800, seed=5)
    model = LogisticRegression(max_iter=2000, **fit).fit(train, label)
    native = _native(_dump(model, tmp_path / "m.joblib"))
    for name, frame in _frames():
        ours = native.predict_proba(frame)
        theirs = model.predict_proba(frame)
        assert native._real is None, f"{name}: scikit-learn was loaded for a clean batch"
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
        assert ours.tobytes() == theirs.tobytes(), f"{name}: scores differ from scikit-learn's"


def test_batches_scikit_learn_must_judge_go_to_scikit_learn(logistic: tuple[str, Any]) -> None:
    path, model = logistic
    frame, _ = _data(50, seed=6)
    native = _native(path)
    with_nan = frame.copy()
    with_nan.loc[3, "b"] = np.nan
    with pytest.raises(ValueError) as ours:
        native.predict_proba(with_nan)
    with pytest.raises(ValueError) as theirs:
        model.predict_proba(with_nan)
    assert str(ours.value) == str(theirs.value)  # scikit-learn's own words ("Input X contains NaN")
    assert native._real is not None

    native = _native(path)
    text = frame.astype({"c": "object"})
    text.loc[5, "c"] = "n/a"
    with pytest.raises(ValueError, match="n/a"):
        native.predict_proba(text)
    # columns in another order: scikit-learn's feature-name check decides, not numpy
    native = _native(path)
    with pytest.raises(ValueError, match="feature names"):
        native.predict_proba(frame[list(reversed(FEATURES))])
    assert native._real is not None


def test_what_the_numpy_path_does_not_claim_is_declined(
        logistic: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = logistic
    frame, label = _data(300, seed=7)

    def load() -> Any:
        return joblib.load(path)

    assert native_model(path, "predict", load) is None  # only predict_proba is reproduced
    assert native_model(path, "decision_function", load) is None
    three = LogisticRegression(max_iter=500).fit(frame, label + (frame.a > 1.5).astype(int))
    assert native_model(_dump(three, tmp_path / "3.joblib"), "auto", load) is None  # softmax
    arrays = LogisticRegression().fit(frame.to_numpy(), label)
    assert native_model(_dump(arrays, tmp_path / "np.joblib"), "auto", load) is None  # no names
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(frame, label)
    assert native_model(_dump(forest, tmp_path / "f.joblib"), "auto", load) is None
    # pickled by another scikit-learn than the one here (whose load warns): declined
    installed = native_linear.installed_sklearn()
    assert installed is not None
    major, minor, *_ = installed.split(".")
    monkeypatch.setattr(native_linear, "installed_sklearn", lambda: f"{major}.{minor}.999")
    assert native_model(path, "auto", load) is None
    monkeypatch.undo()
    assert native_model(path, "auto", load) is not None

    monkeypatch.setenv(native_linear.ENV_SWITCH, "0")
    assert native_model(path, "auto", load) is None
    monkeypatch.delenv(native_linear.ENV_SWITCH)
    monkeypatch.setattr(native_linear, "SUPPORTED_SKLEARN", frozenset({(0, 1)}))
    assert native_model(path, "auto", load) is None


def test_a_worker_scores_a_logistic_model_without_importing_scikit_learn(
        logistic: tuple[str, Any], tmp_path: Path) -> None:
    """The point of it all: the scorer a worker builds scores a batch, equal to scikit-learn's,
    and scikit-learn is never imported in that process."""
    path, model = logistic
    frame, _ = _data(400, seed=8)
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    data = tmp_path / "batch.csv"
    frame.to_csv(data, index=False)
    code = f"""
import json, sys
import pandas as pd
from serverless_score.runner.python_scorer import PythonScorer
scorer = PythonScorer(model_path={path!r}, scorer="predict", predict_method="auto", id_columns=["id"])
out = scorer.score_frame(pd.read_csv({str(data)!r}, dtype={{"id": str}}))
print(json.dumps([out.to_dict("list"), "sklearn" in sys.modules]))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    scores, imported = json.loads(run.stdout)
    assert imported is False
    expected = model.predict_proba(frame[FEATURES])
    assert scores["id"] == list(frame["id"])
    assert scores["proba_1"] == expected[:, 1].tolist()
    assert scores["proba_0"] == expected[:, 0].tolist()
    # the same scorer in this process (scikit-learn loaded here): same columns, same numbers
    here = PythonScorer(model_path=path, scorer="predict", predict_method="auto", id_columns=["id"])
    assert isinstance(here.model, NativeLogistic)
    assert here.score_frame(frame.astype({"id": str})).to_dict("list") == scores
