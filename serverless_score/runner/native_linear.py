"""A binary scikit-learn ``LogisticRegression`` scored with numpy alone, bit for bit as
scikit-learn scores it, so a worker never imports scikit-learn for it.

Why: scoring a million rows with a linear model costs a worker about 0.5 s of CPU, and importing
scikit-learn to do it about 1.3 s more, in every worker of every task group. The fitted
coefficients are all a binary logistic regression needs (read off the pickle by ``pickled``).

Exactness is by construction, not by tolerance: the same array scikit-learn's input validation
makes of the frame (``np.asarray`` of an all-numeric frame), the same ``X @ coef_.T +
intercept_``, SciPy's ``expit`` in place, the same stacking. It is used only where that claim was
read in scikit-learn's source and tested (``SUPPORTED_SKLEARN``), for a model pickled by the
scikit-learn installed here, and only on batches scikit-learn would accept without a word (numeric
columns named as at fit, every value finite, at least one row). Anything else - another version,
another method, a batch with a NaN - goes to scikit-learn itself, loaded on first need, so errors,
warnings and row-level bad-row handling are exactly scikit-learn's.
``SERVERLESS_SCORE_NATIVE_MODELS=0`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

from .pickled import Peeked, peek, top_class

ENV_SWITCH = "SERVERLESS_SCORE_NATIVE_MODELS"
LOGISTIC = "sklearn.linear_model._logistic.LogisticRegression"
# scikit-learn versions whose binary LogisticRegression.predict_proba is
# expit(X @ coef_.T + intercept_) stacked as [1 - p, p] (linear_model/_base.py,
# _predict_proba_lr) with scipy.special.expit as its expit (utils/_array_api.py, _expit).
SUPPORTED_SKLEARN = frozenset({(1, 9)})


@cache
def installed_sklearn() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None


def _minor(version: str) -> tuple[int, ...]:
    parts = version.split(".")[:2]
    return tuple(int(p) for p in parts if p.isdigit())


def native_model(path: str, predict_method: str, load_real: Callable[[], Any]) -> NativeLogistic | None:
    """A numpy scorer for the model at ``path``, or None when scikit-learn must score it."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if predict_method not in ("auto", "predict_proba"):
        return None
    version = installed_sklearn()
    if version is None or _minor(version) not in SUPPORTED_SKLEARN:
        return None
    named = top_class(path)  # a few opcodes: a forest's whole pickle is not read for nothing
    if named is not None and ".".join(named) != LOGISTIC:
        return None
    peeked = peek(path)
    if peeked is None or not _is_plain_binary_logistic(peeked, version):
        return None
    return NativeLogistic(peeked.state, load_real)


def _is_plain_binary_logistic(peeked: Peeked, version: str) -> bool:
    import numpy as np

    state = peeked.state
    if peeked.qualified_name != LOGISTIC or state.get("_sklearn_version") != version:
        return False  # another class, or pickled by another version (which warns when loaded)
    coef, intercept, classes = (state.get(k) for k in ("coef_", "intercept_", "classes_"))
    names = state.get("feature_names_in_")
    arrays = (coef, intercept, classes, names)
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return False  # e.g. sparse coefficients (sparsify()), or fitted without feature names
    assert isinstance(coef, np.ndarray) and isinstance(intercept, np.ndarray)
    assert isinstance(classes, np.ndarray) and isinstance(names, np.ndarray)
    return (classes.shape == (2,) and coef.dtype == np.float64 and intercept.dtype == np.float64
            and coef.shape == (1, len(names)) and intercept.shape == (1,))


class NativeLogistic:
    """Has what the runner asks of a model: ``feature_names_in_``, ``classes_``,
    ``predict_proba``."""

    def __init__(self, state: dict[str, Any], load_real: Callable[[], Any]) -> None:
        self.coef_ = state["coef_"]
        self.intercept_ = state["intercept_"]
        self.classes_ = state["classes_"]
        self.feature_names_in_ = state["feature_names_in_"]
        self._names = [str(n) for n in self.feature_names_in_]
        self._load_real = load_real
        self._real: Any = None

    def real_model(self) -> Any:
        """scikit-learn's own model, loaded the first time a batch needs it."""
        if self._real is None:
            self._real = self._load_real()
        return self._real

    def predict_proba(self, X: Any) -> Any:
        import numpy as np
        from scipy.special import expit

        array = self._as_validated(X)
        if array is None:
            return self.real_model().predict_proba(X)
        scores = array @ self.coef_.T + self.intercept_
        prob = scores.reshape((-1,))
        expit(prob, out=prob)
        return np.stack([1 - prob, prob], axis=1)

    def _as_validated(self, X: Any) -> Any:
        """The array scikit-learn's check_array makes of ``X``, when it would accept ``X`` as is
        (else None: scikit-learn decides, and says what is wrong)."""
        import numpy as np

        columns = getattr(X, "columns", None)
        dtypes = getattr(X, "dtypes", None)
        if columns is None or dtypes is None or [str(c) for c in columns] != self._names:
            return None
        if not all(isinstance(d, np.dtype) and d.kind in "fiu" for d in dtypes):
            return None  # strings, booleans, pandas' nullable or Arrow-backed columns
        array = np.asarray(X)
        if array.ndim != 2 or array.shape[0] == 0:
            return None
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return None
        return array
