"""Models a worker scores without importing scikit-learn's packages, bit for bit as scikit-learn
scores them: which ones, and the checks every such scorer shares.

Why: importing scikit-learn (its packages pull in most of SciPy) costs a worker 1.3-1.8 s of CPU
before it scores a row, in every worker of every task group; for a logistic regression that is
more than scoring a million rows. Two kinds of model are claimed:

* a binary ``LogisticRegression``: numpy alone (``native_linear``);
* a ``RandomForestClassifier`` / ``ExtraTreesClassifier``: scikit-learn's own compiled tree code,
  loaded without its packages' ``__init__`` files (``native_forest``).

A claim is made only where it was read in scikit-learn's source and tested (each module's
``SUPPORTED_SKLEARN``), for a model pickled by the scikit-learn installed here, and only on batches
scikit-learn would accept without a word (numeric columns named as at fit, every value finite, at
least one row). Anything else - another version, another method, a batch with a NaN - goes to
scikit-learn itself, loaded on first need, so errors, warnings and bad-row handling stay
scikit-learn's. ``SERVERLESS_SCORE_NATIVE_MODELS=0`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any, Literal, Protocol

from .pickled import peek, top_class

ENV_SWITCH = "SERVERLESS_SCORE_NATIVE_MODELS"


@cache
def installed_sklearn() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None


def minor(version: str) -> tuple[int, ...]:
    parts = version.split(".")[:2]
    return tuple(int(p) for p in parts if p.isdigit())


def switched_off() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


class NativeScorer(Protocol):
    """What the runner asks of a model, and scikit-learn's own model behind it."""

    feature_names_in_: Any
    classes_: Any

    def predict_proba(self, X: Any) -> Any: ...

    def predict_proba_columns(self, columns: list[Any]) -> Any:
        """``predict_proba`` of the frame made of these float64 columns (the model's features,
        in its order), without the frame; None where scikit-learn would be asked instead."""

    def real_model(self) -> Any: ...


def native_model(path: str, predict_method: str,
                 load_real: Callable[[], Any]) -> NativeScorer | None:
    """A scorer for the model at ``path`` that needs no scikit-learn package import, or None when
    scikit-learn must load and score it."""
    from . import native_forest, native_linear

    if switched_off() or predict_method not in ("auto", "predict_proba"):
        return None
    version = installed_sklearn()
    if version is None:
        return None
    named = top_class(path)  # a few opcodes: no pickle is read whole for a model not claimed
    kinds: tuple[ModuleType, ...] = (native_linear, native_forest)
    if named is not None:
        kinds = tuple(k for k in kinds if ".".join(named) in k.CLASSES)
    kinds = tuple(k for k in kinds if minor(version) in k.SUPPORTED_SKLEARN)
    if not kinds:
        return None
    peeked = peek(path)
    if peeked is None or peeked.state.get("_sklearn_version") != version:
        return None  # unreadable, or pickled by another version (whose load warns)
    for kind in kinds:
        if peeked.qualified_name in kind.CLASSES:
            scorer: NativeScorer | None = kind.claim(peeked, load_real)
            return scorer
    return None


class NativeScorerBase:
    """What the native scorers share: the fitted names and classes, the array made as
    scikit-learn makes it (else scikit-learn's own model, loaded the first time a batch needs
    it), and ``_proba`` of that array, each kind's own. ``DTYPE`` is the dtype scikit-learn
    converts the input to (None: the frame's own); ``FRAME_ORDER`` / ``COLUMNS_ORDER`` lay out the
    array made of a frame / of Arrow's columns (the values are the same whatever the layout)."""

    DTYPE: Any = None
    FRAME_ORDER: Literal["K", "C"] = "K"
    COLUMNS_ORDER: Literal["C", "F"] = "C"

    def __init__(self, state: dict[str, Any], load_real: Callable[[], Any]) -> None:
        self.classes_ = state["classes_"]
        self.feature_names_in_ = state["feature_names_in_"]
        self._names = [str(n) for n in self.feature_names_in_]
        self._load_real = load_real
        self._real: Any = None

    def real_model(self) -> Any:
        if self._real is None:
            self._real = self._load_real()
        return self._real

    def predict_proba(self, X: Any) -> Any:
        array = validated_array(X, self._names, self.DTYPE, self.FRAME_ORDER)
        if array is None:
            return self.real_model().predict_proba(X)
        return self._proba(array)

    def predict_proba_columns(self, columns: list[Any]) -> Any:
        import numpy as np

        array = columns_array(columns, self.DTYPE or np.float64, self.COLUMNS_ORDER)
        return None if array is None else self._proba(array)

    def _proba(self, array: Any) -> Any:
        raise NotImplementedError


def validated_array(X: Any, names: list[str], dtype: Any = None,
                    order: Literal["K", "C"] = "K") -> Any:
    """The array scikit-learn's ``check_array`` makes of the frame ``X`` (``np.asarray(X,
    dtype=dtype)`` for an all-numeric frame; ``order`` may lay the same values out otherwise),
    when scikit-learn would accept ``X`` as is; else None: scikit-learn decides, and says what is
    wrong."""
    import numpy as np

    columns = getattr(X, "columns", None)
    dtypes = getattr(X, "dtypes", None)
    if columns is None or dtypes is None or list(columns) != names:
        return None  # columns not as fitted, or not all strings (which scikit-learn judges)
    if not all(isinstance(d, np.dtype) and d.kind in "fiu" for d in dtypes):
        return None  # strings, booleans, pandas' nullable or Arrow-backed columns
    array = np.asarray(X, dtype=dtype, order=order)
    if array.ndim != 2 or array.shape[0] == 0:
        return None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return None  # a NaN, an infinity, or a float64 too large for float32
    return array


def columns_array(columns: list[Any], dtype: Any, order: Literal["C", "F"]) -> Any:
    """The array ``np.asarray`` makes of a frame whose columns (separate float64 blocks) are
    ``columns``, as ``dtype``: row-major (``"C"``) or as pandas lays it out (``"F"``: it fills a
    columns x rows array and transposes it); None where ``validated_array`` would be None
    (no rows, a value not finite in ``dtype``)."""
    import numpy as np

    rows = len(columns[0]) if columns else 0
    if rows == 0:
        return None
    if order == "C":
        array = np.empty((rows, len(columns)), dtype=dtype)
    else:
        array = np.empty((len(columns), rows), dtype=dtype).T
    for i, column in enumerate(columns):
        array[:, i] = column
    return array if np.isfinite(array).all() else None
