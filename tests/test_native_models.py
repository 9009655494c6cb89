"""Models read without their libraries (runner/pickled.py), a binary logistic regression scored
with numpy alone (runner/native_linear.py) and forests scored by scikit-learn's compiled trees
without its packages (runner/native_forest.py): the scores are scikit-learn's bit for bit, and every
case these paths do not claim goes to scikit-learn, with scikit-learn's own errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serverless_score.errors import ScoreError
from serverless_score.runner import native_forest, native_linear, native_models, pickled
from serverless_score.runner.native_forest import NativeForest
from serverless_score.runner.native_linear import NativeLogistic
from serverless_score.runner.native_models import native_model
from serverless_score.runner.pickled import feature_names, peek, top_class
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


def _batch_csv(tmp_path: Path, rows: int, seed: int) -> tuple[pd.DataFrame, Path]:
    """Rows of features with an ``id`` column first, and the CSV file they are written to."""
    frame, _ = _data(rows, seed)
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    data = tmp_path / "batch.csv"
    frame.to_csv(data, index=False)
    return frame, data


def _in_a_fresh_process(code: str) -> str:
    """What ``code`` prints, run by a new Python that has imported nothing of this process."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout


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


def _same(a: Any, b: Any, where: str = "") -> None:
    """Deep equality of two unpickled object graphs with stand-ins (types by what they stand for,
    arrays by dtype, shape, memory order and bytes)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert (a.dtype, a.shape, a.flags.f_contiguous, a.flags.writeable) == \
            (b.dtype, b.shape, b.flags.f_contiguous, b.flags.writeable), where
        if a.dtype.hasobject:
            assert len(a) == len(b) and all(x == y for x, y in zip(a.ravel(), b.ravel(), strict=True)), where
        elif a.dtype.names:  # by field: padding bytes between fields are undefined in joblib's
            assert all(a[f].tobytes() == b[f].tobytes() for f in a.dtype.names), where
        else:
            assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, pickled._StandIn):
        assert type(a)._stand_in_for == type(b)._stand_in_for, where
        _same(getattr(a, "_stand_in_args", None), getattr(b, "_stand_in_args", None), where + ".args")
        _same(getattr(a, "_stand_in_state", None), getattr(b, "_stand_in_state", None), where + ".state")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), where  # NaN == NaN here


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_the_plain_reader_reads_what_joblibs_own_unpickler_reads(tmp_path: Path,
                                                                 protocol: int) -> None:
    """The peek reads uncompressed joblib files itself (importing joblib costs more than the
    peek): object for object what joblib's unpickler gives with the same stand-ins, for a forest
    (structured node arrays), and arrays in F order, big-endian, empty, 0-d and of objects."""
    frame, label = _data(300, seed=5)
    forest = RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(frame, label)
    odd = {"f": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "be": np.arange(5, dtype=">i4"),
           "empty": np.zeros((0, 3)), "scalar": np.array(2.5), "names": np.array(["a", None, 3], dtype=object),
           "strings": np.array(["x", "yz"]), "nan": float("nan"), "forest": forest,
           "mixed": np.array([(1, 2.0)], dtype=[("a", ">i4"), ("b", "<f8")])}
    for name, obj in (("forest", forest), ("odd", odd)):
        path = _dump(obj, tmp_path / f"{name}.joblib", protocol=protocol)
        mine = pickled._load_with_stand_ins(path)
        _same(mine, pickled._load_compressed_with_stand_ins(path), name)
    read = pickled._load_with_stand_ins(str(tmp_path / "odd.joblib"))
    assert read["be"].dtype.isnative and read["be"].tolist() == [0, 1, 2, 3, 4]
    assert read["f"].flags.f_contiguous and read["f"][2, 3] == 11.0
    # a record whose fields differ in byte order: each field's value kept
    assert (int(read["mixed"]["a"][0]), float(read["mixed"]["b"][0])) == (1, 2.0)


def test_a_file_cut_short_is_not_peeked(logistic: tuple[str, Any], tmp_path: Path) -> None:
    data = Path(logistic[0]).read_bytes()
    for keep in (len(data) // 2, len(data) - 3):
        cut = tmp_path / f"cut-{keep}.joblib"
        cut.write_bytes(data[:keep])
        assert peek(str(cut)) is None and top_class(str(cut)) in (None, (
            "sklearn.linear_model._logistic", "LogisticRegression"))


def test_top_class_names_the_model_from_the_first_opcodes(logistic: tuple[str, Any],
                                                          tmp_path: Path) -> None:
    path, model = logistic
    assert top_class(path) == ("sklearn.linear_model._logistic", "LogisticRegression")
    frame, label = _data(100, seed=6)
    forest = RandomForestClassifier(n_estimators=2, max_depth=2).fit(frame, label)
    assert top_class(_dump(forest, tmp_path / "f.joblib")) == ("sklearn.ensemble._forest",
                                                               "RandomForestClassifier")
    plain = tmp_path / "lr.pkl"
    plain.write_bytes(pickle.dumps(model, protocol=2))
    assert top_class(str(plain)) == ("sklearn.linear_model._logistic", "LogisticRegression")
    assert top_class(_dump(model, tmp_path / "z.joblib", compress=3)) is None  # compressed: unknown
    (tmp_path / "junk").write_bytes(b"\x80\x04junk")
    assert top_class(str(tmp_path / "junk")) is None


def test_feature_names_are_read_without_importing_scikit_learn(logistic: tuple[str, Any]) -> None:
    path, _ = logistic
    code = ("import json, sys; from serverless_score.runner.pickled import feature_names; "
            f"names = feature_names({path!r}); "
            "print(json.dumps([names, 'sklearn' in sys.modules, 'joblib' in sys.modules]))")
    out = _in_a_fresh_process(code)
    # nor joblib (0.12 s of imports) for a file it wrote uncompressed
    assert json.loads(out) == [FEATURES, False, False]


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
        ("int64 beyond float32's and float64's integers",
         (frame * 1e15).round().astype("int64") + np.int64(2**53 + 1)),
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
    # pickled by another scikit-learn than the one here (whose load warns): declined
    installed = native_models.installed_sklearn()
    assert installed is not None
    major, minor, *_ = installed.split(".")
    monkeypatch.setattr(native_models, "installed_sklearn", lambda: f"{major}.{minor}.999")
    assert native_model(path, "auto", load) is None
    monkeypatch.undo()
    assert native_model(path, "auto", load) is not None

    monkeypatch.setenv(native_models.ENV_SWITCH, "0")
    assert native_model(path, "auto", load) is None
    monkeypatch.delenv(native_models.ENV_SWITCH)
    monkeypatch.setattr(native_linear, "SUPPORTED_SKLEARN", frozenset({(0, 1)}))
    assert native_model(path, "auto", load) is None


def test_a_worker_scores_a_logistic_model_without_importing_scikit_learn(
        logistic: tuple[str, Any], tmp_path: Path) -> None:
    """The point of it all: the scorer a worker builds scores a batch, equal to scikit-learn's,
    and scikit-learn is never imported in that process."""
    path, model = logistic
    frame, data = _batch_csv(tmp_path, 400, seed=8)
    code = f"""
import json, sys
import pandas as pd
from serverless_score.runner.python_scorer import PythonScorer
scorer = PythonScorer(model_path={path!r}, scorer="predict", predict_method="auto", id_columns=["id"])
out = scorer.score_frame(pd.read_csv({str(data)!r}, dtype={{"id": str}}))
print(json.dumps([out.to_dict("list"), "sklearn" in sys.modules]))
"""
    run = _in_a_fresh_process(code)
    scores, imported = json.loads(run)
    assert imported is False
    expected = model.predict_proba(frame[FEATURES])
    assert scores["id"] == list(frame["id"])
    assert scores["proba_1"] == expected[:, 1].tolist()
    assert scores["proba_0"] == expected[:, 0].tolist()
    # the same scorer in this process (scikit-learn loaded here): same columns, same numbers
    here = PythonScorer(model_path=path, scorer="predict", predict_method="auto", id_columns=["id"])
    assert isinstance(here.model, NativeLogistic)
    assert here.score_frame(frame.astype({"id": str})).to_dict("list") == scores


# -- forests scored by scikit-learn's compiled trees, without its packages ---------------------
def _native_forest(path: str) -> NativeForest:
    native = native_model(path, "auto", lambda: joblib.load(path))
    assert isinstance(native, NativeForest), "the compiled-tree path declined a plain forest"
    return native


FORESTS = {
    "random forest, binary": (RandomForestClassifier, dict(n_estimators=12, max_depth=6), 2),
    "random forest, 3 classes, deep": (RandomForestClassifier, dict(n_estimators=5), 3),
    "random forest, balanced, sqrt": (RandomForestClassifier,
                                      dict(n_estimators=8, class_weight="balanced", max_features="sqrt",
                                           min_samples_leaf=3, n_jobs=1), 2),
    "extra trees, 3 classes": (ExtraTreesClassifier, dict(n_estimators=9, max_depth=10), 3),
}


@pytest.mark.parametrize("name", list(FORESTS))
def test_forest_scores_equal_scikit_learn_bit_for_bit(tmp_path: Path, name: str) -> None:
    kind, fit, n_classes = FORESTS[name]
    train, label = _data(1500, seed=11)
    if n_classes == 3:
        label = label + (train.c > 0.05).to_numpy().astype(int)
    labels = np.array(["no", "yes", "maybe"])[label]  # string classes, as a churn model has
    model = kind(random_state=0, **fit).fit(train, labels)
    native = _native_forest(_dump(model, tmp_path / "f.joblib"))
    assert list(native.classes_) == list(model.classes_)
    for frame_name, frame in _frames():
        ours = native.predict_proba(frame)
        theirs = model.predict_proba(frame)
        assert native._real is None, f"{frame_name}: scikit-learn was loaded for a clean batch"
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, frame_name
        assert ours.tobytes() == theirs.tobytes(), f"{frame_name}: scores differ from scikit-learn's"


def test_forest_batches_scikit_learn_must_judge_go_to_scikit_learn(tmp_path: Path) -> None:
    train, label = _data(600, seed=12)
    model = RandomForestClassifier(n_estimators=6, max_depth=5, random_state=0).fit(train, label)
    path = _dump(model, tmp_path / "f.joblib")
    frame, _ = _data(40, seed=13)
    with_nan = frame.copy()
    with_nan.loc[3, "b"] = np.nan  # scikit-learn's trees route missing values themselves
    native = _native_forest(path)
    assert native.predict_proba(with_nan).tobytes() == model.predict_proba(with_nan).tobytes()
    assert native._real is not None
    huge = frame.copy()
    huge.loc[2, "d"] = 1e300  # finite in float64, infinite in the float32 the trees read
    native = _native_forest(path)
    with pytest.raises(ValueError) as ours:
        native.predict_proba(huge)
    with pytest.raises(ValueError) as theirs:
        model.predict_proba(huge)
    assert str(ours.value) == str(theirs.value)
    native = _native_forest(path)
    with pytest.raises(ValueError, match="feature names"):
        native.predict_proba(frame[list(reversed(FEATURES))])


def test_forests_the_compiled_path_does_not_claim_are_declined(tmp_path: Path) -> None:
    frame, label = _data(300, seed=14)

    def declined(model: Any, name: str) -> bool:
        path = _dump(model, tmp_path / f"{name}.joblib")
        return native_model(path, "auto", lambda: joblib.load(path)) is None

    small = dict(n_estimators=3, max_depth=3, random_state=0)
    # threads sum the trees in the order they finish: scikit-learn's own result is not one order
    assert declined(RandomForestClassifier(n_jobs=2, **small).fit(frame, label), "jobs")
    assert declined(RandomForestClassifier(**small).fit(frame, np.c_[label, 1 - label]), "two-outputs")
    assert declined(RandomForestClassifier(**small).fit(frame.to_numpy(), label), "no-names")
    assert declined(RandomForestRegressor(**small).fit(frame, label * 1.5), "regressor")
    claimed = _dump(RandomForestClassifier(**small).fit(frame, label), tmp_path / "plain.joblib")
    assert native_model(claimed, "predict", lambda: None) is None  # only predict_proba
    assert native_model(claimed, "auto", lambda: None) is not None


def test_a_worker_scores_a_forest_without_importing_scikit_learns_packages(tmp_path: Path) -> None:
    """In a fresh process: the scorer a worker builds for a forest scores it as scikit-learn does
    with none of scikit-learn's package __init__ files run (nor SciPy's statistics); and
    scikit-learn imported afterwards in that process (a batch it must judge) works as usual."""
    train, label = _data(800, seed=15)
    model = RandomForestClassifier(n_estimators=10, max_depth=7, random_state=0).fit(train, label)
    path = _dump(model, tmp_path / "f.joblib")
    frame, data = _batch_csv(tmp_path, 300, seed=16)
    code = f"""
import json, sys
import numpy as np
import pandas as pd
from serverless_score.runner.python_scorer import PythonScorer
scorer = PythonScorer(model_path={path!r}, scorer="predict", predict_method="auto", id_columns=["id"])
batch = pd.read_csv({str(data)!r}, dtype={{"id": str}})
out = scorer.score_frame(batch)
loaded = sorted(m for m in ("sklearn", "sklearn.utils", "sklearn.ensemble", "scipy.stats") if m in sys.modules)
nan = batch.drop(columns=["id"]).copy()
nan.iloc[0, 1] = np.nan
with_nan = scorer.model.predict_proba(nan)  # goes to scikit-learn, imported only now
import sklearn.tree
from sklearn.ensemble import RandomForestClassifier
refit = RandomForestClassifier(n_estimators=2, random_state=0).fit(nan.fillna(0), [0, 1] * 150)
import sklearn.utils, sklearn.utils._random, sklearn.utils.validation
rebound = [sklearn.utils._random.check_random_state is sklearn.utils.validation.check_random_state,
           sklearn.tree._tree._align_api_if_sparse is sklearn.utils._align_api_if_sparse]
print(json.dumps([out.to_dict("list"), loaded, with_nan.tolist(), type(scorer.model).__name__,
                  sklearn.tree._tree.Tree is type(scorer.model._trees[0]), refit.score(nan.fillna(0), [0, 1] * 150),
                  rebound]))
"""
    run = _in_a_fresh_process(code)
    scores, loaded, with_nan, kind, same_tree, refit_score, rebound = json.loads(run)
    # once scikit-learn is loaded for real, its compiled modules hold its real functions again
    assert rebound == [True, True]
    assert kind == "NativeForest" and loaded == []
    expected = model.predict_proba(frame[FEATURES])
    assert scores["id"] == list(frame["id"])
    assert scores["proba_0"] == expected[:, 0].tolist() and scores["proba_1"] == expected[:, 1].tolist()
    nan_frame = frame[FEATURES].copy()
    nan_frame.iloc[0, 1] = np.nan
    assert with_nan == model.predict_proba(nan_frame).tolist()
    assert same_tree is True and 0.5 <= refit_score <= 1.0


def test_a_compressed_forest_is_claimed_and_one_of_another_version_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, label = _data(400, seed=17)
    model = RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(train, label)
    compressed = _dump(model, tmp_path / "z.joblib", compress=3)  # peeked through joblib
    frame, _ = _data(100, seed=18)
    assert _native_forest(compressed).predict_proba(frame).tobytes() == model.predict_proba(frame).tobytes()
    plain = _dump(model, tmp_path / "f.joblib")
    installed = native_models.installed_sklearn()
    assert installed is not None
    monkeypatch.setattr(native_models, "installed_sklearn", lambda: installed + ".post1")
    assert native_model(plain, "auto", lambda: None) is None  # pickled by another version
    monkeypatch.undo()
    monkeypatch.setattr(native_forest, "SUPPORTED_SKLEARN", frozenset({(0, 1)}))
    assert native_model(plain, "auto", lambda: None) is None  # a version this was not read for


def test_with_scikit_learn_imported_first_the_compiled_tree_is_its_own(tmp_path: Path) -> None:
    """A process that imported scikit-learn before the forest is read: no stand-ins, the same
    Tree class, the same scores."""
    train, label = _data(300, seed=19)
    model = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(train, label)
    path = _dump(model, tmp_path / "f.joblib")
    frame, _ = _data(50, seed=20)
    data = tmp_path / "x.csv"
    frame.to_csv(data, index=False)
    code = f"""
import json
import pandas as pd
import sklearn.ensemble
import sklearn.tree._tree
from serverless_score.runner import native_forest
from serverless_score.runner.native_models import native_model
scorer = native_model({path!r}, "auto", lambda: None)
print(json.dumps([type(scorer).__name__, native_forest.compiled_tree_class() is sklearn.tree._tree.Tree,
                  native_forest._loaded_bare, scorer.predict_proba(pd.read_csv({str(data)!r})).tolist()]))
"""
    run = _in_a_fresh_process(code)
    kind, same_tree, loaded_bare, scores = json.loads(run)
    assert (kind, same_tree, loaded_bare) == ("NativeForest", True, [])
    assert scores == model.predict_proba(frame).tolist()


# -- a job's workers: Arrow's table straight to the native scorer, no DataFrame, no pandas -----
_WATCH_PANDAS = '''
import os, sys
class _WatchPandas:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            with open(os.environ["WATCH_PANDAS_FILE"], "a") as f:
                f.write(" ".join(sys.argv) + "\\n")
        return None
if os.environ.get("WATCH_PANDAS_FILE"):
    sys.meta_path.insert(0, _WatchPandas())
'''


@pytest.mark.parametrize("kind", ["forest", "logistic"])
def test_a_job_of_a_native_model_scores_without_pandas_and_writes_what_frames_give(
        tmp_path: Path, make_job: Any, cli: Any, kind: str) -> None:
    """Workers of a job whose model is native score clean CSV batches from Arrow's table and
    never import pandas; the output is byte for byte the one scikit-learn's own model writes
    through DataFrames (the same job with ``SERVERLESS_SCORE_NATIVE_MODELS=0``)."""
    train, label = _data(1000, seed=21)
    model = (RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0) if kind == "forest"
             else LogisticRegression(max_iter=1000)).fit(train, label)
    path = _dump(model, tmp_path / "m.joblib")
    frame, _ = _data(6000, seed=22)
    frame.insert(0, "id", [f"row {i}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "in.csv", index=False)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_WATCH_PANDAS)
    outputs, watched = [], []
    for native in ("1", "0"):
        marks = tmp_path / f"pandas-{native}.txt"
        marks.touch()
        job = make_job(tmp_path, filename=f"job-{native}.toml", name=f"native-{native}", model=path,
                       input="in.csv", output=f"out-{native}/scores.csv", id_columns=["id"], chunks=3)
        result = cli("run", job, "--json", env={
            "SERVERLESS_SCORE_NATIVE_MODELS": native, "WATCH_PANDAS_FILE": str(marks),
            "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)])})
        assert result.code == 0, result
        assert result.json["rows_out"] == len(frame)
        outputs.append((tmp_path / f"out-{native}" / "scores.csv").read_bytes())
        watched.append([line for line in marks.read_text().splitlines() if "runner" in line])
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith(b"id,proba_0,proba_1\nrow 0,")
    assert watched[0] == []  # no worker imported pandas ...
    assert watched[1], "the watch saw no worker import pandas: it proves nothing"  # ... as these did


def test_doubles_are_read_off_arrow_as_pyarrow_reads_them() -> None:
    import pyarrow as pa

    from serverless_score.runner.csv_arrow import chunk_doubles, column_doubles, doubles_array

    rng = np.random.default_rng(23)
    values = rng.normal(size=1000)
    mask = rng.random(1000) < 0.1
    array = pa.array(values, mask=mask)
    for piece in (array, array.slice(3), array.slice(17, 500), pa.array(values)):
        ours = chunk_doubles(piece)
        theirs = piece.to_numpy(zero_copy_only=False)
        assert ours.tobytes() == theirs.tobytes()
    chunked = pa.chunked_array([array.slice(0, 400), array.slice(400)])
    assert column_doubles(chunked).tobytes() == chunked.to_numpy().tobytes()
    assert doubles_array(values[::3]).equals(pa.array(values[::3]))


@pytest.mark.parametrize("kind", ["forest", "logistic"])
def test_scoring_arrows_table_writes_what_the_frame_writes(tmp_path: Path, kind: str) -> None:
    """Batch by batch: ``score_table`` and ``score_frame`` of the same records give the same part
    bytes (ids that need quoting, several Arrow chunks, string classes); batches it does not
    claim (an integer column, an empty field) are left to the frame."""
    import io as stdio

    from serverless_score.runner.csv_arrow import read_csv_table, table_frame
    from serverless_score.runner.writers import PartWriter

    train, label = _data(800, seed=24)
    labels = np.array(["no", "yes"])[label]
    model = (RandomForestClassifier(n_estimators=6, max_depth=6, random_state=0) if kind == "forest"
             else LogisticRegression(max_iter=1000)).fit(train, labels)
    scorer = PythonScorer(model_path=_dump(model, tmp_path / "m.joblib"), scorer="predict",
                          predict_method="auto", id_columns=["id"])
    assert scorer.scores_tables
    frame, _ = _data(40_000, seed=25)  # ~3 MB: Arrow reads it in several chunks
    frame.insert(0, "id", [f'r{i},"q"' if i % 7 == 0 else f"r{i}" for i in range(len(frame))])
    ints = frame.assign(b=(frame.b * 10).round().astype("int64"))
    gap = frame.copy()
    gap.loc[5, "c"] = np.nan
    for name, batch in (("clean", frame), ("an integer column", ints), ("an empty field", gap)):
        text = batch.to_csv(index=False).encode()
        header, _, body = text.partition(b"\n")
        table = read_csv_table(body, header + b"\n", ["id"], len(batch))
        assert table is not None, name
        fast = scorer.score_table(table)
        assert (fast is not None) == (name == "clean"), name
        if name == "clean":
            assert table.column("a").num_chunks > 1
        if name == "an empty field":
            continue  # (the row guard's to judge: scikit-learn refuses a NaN, a forest takes it)
        parts = []
        for scores in ([fast] if fast is not None else []) + [scorer.score_frame(table_frame(table, ["id"]))]:
            out = stdio.BytesIO()
            writer = PartWriter(out, "csv")
            writer.write_frame(scores)
            parts.append((writer.header, out.getvalue()))
        assert all(part == parts[-1] for part in parts), name
        assert parts[-1][0] == "id,proba_no,proba_yes\n"


def test_a_nan_score_and_a_batch_arrow_declines_take_the_frames_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN score is an empty field through a DataFrame (pandas' table makes it a null), so the
    table path leaves it to the frame; a batch Arrow's table declines (a text column) is parsed
    once more, by pandas, not twice by Arrow first."""
    import io as stdio

    import pyarrow.csv as pcsv

    from serverless_score.records.scan import Batch
    from serverless_score.runner.csv_arrow import read_csv_table, table_frame
    from serverless_score.runner.python_scorer import pandas_csv
    from serverless_score.runner.row_guard import ErrorLog, RowGuard, TablePath
    from serverless_score.runner.writers import PartWriter

    train, label = _data(300, seed=26)
    model = LogisticRegression().fit(train, label)
    model.coef_ = np.array([[1e300, 1e300, 0.0, 0.0]])  # 1e10 and -1e10: inf - inf, a NaN score
    scorer = PythonScorer(model_path=_dump(model, tmp_path / "m.joblib"), scorer="predict",
                          predict_method="auto", id_columns=["id"])
    header = b"id,a,b,c,d\n"
    body = b"r1,0.5,0.25,0.1,1.5\nr2,1e10,-1e10,0.1,1.5\n"

    def guard() -> RowGuard:
        return RowGuard(
            scorer=scorer, parse=lambda d, _: pytest.fail("the guard's own parse was used"),
            skip=False, header=header, csv_format=True, id_columns=["id"], encoding="utf-8",
            errors=ErrorLog("t0", 1, "in.csv", "utf-8"), task_id="t0", begin=lambda: 0,
            tables=TablePath(parse=lambda d, n: read_csv_table(d, header, ["id"], n),
                             frame=lambda t: table_frame(t, ["id"]),
                             declined=lambda d: pandas_csv(d, header, ["id"])))

    scores = guard().score_batch(Batch(memoryview(body), 2, start=0), first=0)
    out = stdio.BytesIO()
    PartWriter(out, "csv").write_frame(scores)
    assert out.getvalue().splitlines()[1] == b"r2,,"

    arrow_reads = []
    real_read = pcsv.read_csv
    monkeypatch.setattr(pcsv, "read_csv", lambda *a, **k: arrow_reads.append(1) or real_read(*a, **k))
    text = b"id,a,b,c,d\nr1,0.5,0.25,0.1,low\nr2,0.5,0.25,0.1,high\n"
    header = text.split(b"\n", 1)[0] + b"\n"
    with pytest.raises(ScoreError):  # ("d" is text: the model refuses it, as through pandas)
        guard().score_batch(Batch(memoryview(text[len(header):]), 2, start=0), first=0)
    assert len(arrow_reads) == 1
