"""Scoring in process with a Python model: the built-in ``predict`` or a user's ``score(model, data)``.

The model is loaded once per process (a group's runner may run several tasks in a row), and
pandas / the model's libraries are imported only here, so a command runtime never pays for them.
"""

from __future__ import annotations

import importlib.util
import io
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ScoreError
from .csv_arrow import UTF8, column_doubles, doubles_array, read_csv_batch

SCORE_PREFIX = "proba_"


@cache
def load_user_script(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"user_scorer_{Path(path).stem}", path)
    if spec is None or spec.loader is None:
        raise ScoreError(f"scorer: cannot load the script {path!r}", retryable=False)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise ScoreError(f"scorer: the script {path!r} failed while loading: "
                         f"{type(err).__name__}: {err}", retryable=False) from err
    if not callable(getattr(module, "score", None)):
        raise ScoreError(f"scorer: the script {path!r} defines no function score(model, data)", retryable=False)
    return module


@cache
def load_model(path: str, script: str | None) -> Any:
    module = load_user_script(script) if script else None
    try:
        if module is not None and callable(getattr(module, "load_model", None)):
            return module.load_model(path)
        from .model_formats import is_special, load_special

        if is_special(path):  # an MLflow model's skops file or packed pyfunc folder
            return load_special(path)
        import joblib

        return joblib.load(path)
    except FileNotFoundError:
        raise ScoreError(f"model: {path!r} does not exist", retryable=False) from None
    except ModuleNotFoundError as err:
        raise ScoreError(
            f"model: {path!r} needs the Python package {err.name!r}, which is not installed",
            hint=f"pip install {err.name} (the version the model was trained with)",
            retryable=False,
        ) from None
    except Exception as err:
        raise ScoreError(
            f"model: cannot load {path!r} ({type(err).__name__}: {err})",
            hint="Save models with joblib.dump(model, path) or pickle; check the file is complete.",
            retryable=False,
        ) from None


@cache
def native_scorer(path: str, predict_method: str) -> Any:
    """Once per process, as ``load_model``: a group's runner scores task after task with it."""
    from .native_models import native_model

    return native_model(path, predict_method, lambda: load_model(path, None))


class PythonScorer:
    def __init__(self, *, model_path: str | None, scorer: str, predict_method: str,
                 id_columns: list[str]) -> None:
        self.script = None if scorer == "predict" else scorer
        self.model = None
        if model_path:
            self.model = self._native(model_path, predict_method) or load_model(model_path, self.script)
        self.module = load_user_script(self.script) if self.script else None
        self.predict_method = predict_method
        self.id_columns = id_columns

    def _native(self, model_path: str, predict_method: str) -> Any:
        """A scorer for a model scikit-learn's packages need not be imported for (native_models)."""
        if self.script is not None:
            return None  # a user's score() may use anything of the model
        return native_scorer(model_path, predict_method)

    # -- tables -------------------------------------------------------------------------------
    def score_frame(self, frame: Any) -> Any:
        """id columns + score columns for every row of ``frame``, in order."""
        import pandas as pd

        missing = [c for c in self.id_columns if c not in frame.columns]
        if missing:
            raise ScoreError(f"id_columns: {missing} not in the input's columns {list(frame.columns)}", retryable=False)
        if self.module is not None:
            scores = _as_frame(self.module.score(self.model, frame), len(frame))
        else:
            scores = self._predict(frame.drop(columns=self.id_columns))
        ids = frame[self.id_columns].reset_index(drop=True)
        clash = set(ids.columns) & set(scores.columns)
        if clash:
            raise ScoreError(f"score columns {sorted(clash)} clash with id_columns; rename them", retryable=False)
        return pd.concat([ids, scores.reset_index(drop=True)], axis=1)

    @property
    def scores_tables(self) -> bool:
        """Whether ``score_table`` can score batches (a native model, no scorer script)."""
        return self.module is None and callable(getattr(self.model, "predict_proba_columns", None))

    def score_table(self, table: Any) -> Any:
        """``score_frame`` of the frame this Arrow table makes (``csv_arrow.table_frame``), as an
        Arrow table, computed without the frame (so without pandas) where that is the same:
        a native scorer's ``predict_proba`` on float64 feature columns with no nulls, score
        names that need no quoting. None: ``score_frame`` decides (and words any error)."""
        import numpy as np
        import pyarrow as pa

        model = self.model
        if model is None or not self.scores_tables:
            return None
        names = [str(n) for n in model.feature_names_in_]
        present = set(table.column_names)
        if any(c not in present for c in self.id_columns) or any(
                n not in present or n in self.id_columns for n in names):
            return None
        columns = [table.column(n) for n in names]
        if any(c.type != pa.float64() or c.null_count for c in columns):
            return None  # an int64 column, or a NaN: the frame's way
        proba = model.predict_proba_columns([column_doubles(c) for c in columns])
        classes = list(model.classes_)
        if proba is None or proba.ndim != 2 or proba.shape[1] != len(classes) \
                or np.isnan(proba).any():
            return None  # (a NaN score: pandas' table makes it a null, an empty field)
        score_names = [f"{SCORE_PREFIX}{c}" for c in classes]
        out_names = [*self.id_columns, *score_names]
        if len(set(out_names)) != len(out_names) or any(
                ch in name for name in out_names for ch in ',"\r\n'):
            return None
        return pa.Table.from_arrays([*(table.column(c) for c in self.id_columns),
                                     *(doubles_array(proba[:, i]) for i in range(len(classes)))],
                                    names=out_names)

    def model_columns(self, frame: Any) -> list[str]:
        """The columns the model is given: all of them for a scorer script, else the model's
        named features, else every column but the ids."""
        if self.module is not None:
            return [str(c) for c in frame.columns]
        names = getattr(self.model, "feature_names_in_", None)
        if names is not None:
            return [str(n) for n in names if n in frame.columns]
        return [str(c) for c in frame.columns if c not in self.id_columns]

    def _predict(self, features: Any) -> Any:
        import numpy as np
        import pandas as pd

        model = self.model
        names = getattr(model, "feature_names_in_", None)
        if names is not None:
            missing = [n for n in names if n not in features.columns]
            if missing:
                raise ScoreError(f"input: the model needs columns {missing}, absent from the input", retryable=False)
            features = features[list(names)]
        method = self.predict_method
        if method == "auto":
            method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
        fn = getattr(model, method, None)
        if fn is None:
            raise ScoreError(f"predict_method: the model ({type(model).__name__}) has no method {method!r}", retryable=False)
        result = np.asarray(fn(features))
        if result.ndim == 1:
            return pd.DataFrame({"prediction" if method == "predict" else "score": result})
        classes = getattr(model, "classes_", None)
        if method == "predict_proba" and classes is not None and len(classes) == result.shape[1]:
            names_out = [f"{SCORE_PREFIX}{c}" for c in classes]
        else:
            names_out = [f"score_{i}" for i in range(result.shape[1])]
        return pd.DataFrame(result, columns=names_out)

    # -- records ------------------------------------------------------------------------------
    def score_records(self, records: list[str]) -> list[str]:
        assert self.module is not None
        scores = list(self.module.score(self.model, records))
        if len(scores) != len(records):
            raise ScoreError(f"scorer: score() returned {len(scores)} results for {len(records)} records")
        lines = [str(s) for s in scores]
        if any("\n" in line for line in lines):
            raise ScoreError("scorer: a score contains a newline; return one line per record")
        return lines


def _as_frame(result: Any, rows: int) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        frame = result
    elif isinstance(result, pd.Series):
        frame = result.to_frame(name=result.name if result.name is not None else "score")
    else:
        array = np.asarray(result)
        if array.ndim == 1:
            frame = pd.DataFrame({"score": array})
        elif array.ndim == 2:
            frame = pd.DataFrame(array, columns=[f"score_{i}" for i in range(array.shape[1])])
        else:
            raise ScoreError(f"scorer: score() returned an array of {array.ndim} dimensions")
    if len(frame) != rows:
        raise ScoreError(f"scorer: score() returned {len(frame)} rows for {rows} input rows")
    return frame


def read_batch(data: bytes | memoryview, fmt: str, header: bytes, id_columns: list[str],
               encoding: str = "utf-8", records: int | None = None) -> Any:
    """Parse whole records of csv/jsonl into a DataFrame; id columns kept as text so they are
    carried to the output exactly as they were. ``records``: how many the batch holds, when
    known (Arrow's frame is taken only when it has that many rows)."""
    import pandas as pd

    if fmt == "csv" and encoding.lower() in UTF8:
        frame = read_csv_batch(data, header, id_columns, records)
        if frame is not None:
            return frame
    if fmt == "csv":
        return pandas_csv(data, header, id_columns, encoding)
    frame = pd.read_json(io.BytesIO(data), lines=True, precise_float=True, dtype=False,
                         encoding=encoding)
    for column in id_columns:
        if column in frame.columns:
            frame[column] = frame[column].astype(str)
    return frame


def pandas_csv(data: bytes | memoryview, header: bytes, id_columns: list[str],
               encoding: str = "utf-8") -> Any:
    """pandas' reading of a CSV batch: the contract that ``csv_arrow`` reproduces."""
    import pandas as pd

    # pandas 2's default float parser is not correctly rounded; pandas 3's is (and deprecates
    # the option), so ask for round-trip parsing only where it is needed.
    exact = {"float_precision": "round_trip"} if pd.__version__.startswith("2.") else {}
    frame = pd.read_csv(io.BytesIO(header + data), dtype={c: str for c in id_columns},
                        keep_default_na=False, na_values=[""], encoding=encoding, **exact)
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas reads a first record with one field more than the header as "the first
        # column is the index" and shifts every column of the batch: refuse it instead
        raise ValueError("a record has more fields than the header")
    for column in id_columns:
        # na_values=[""] makes an empty feature missing; an empty id is an id: with
        # keep_default_na=False "" is the only thing read as missing, so "" restores it exactly
        if column in frame.columns and frame[column].hasnans:
            frame[column] = frame[column].fillna("")
    return frame
