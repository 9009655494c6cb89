"""A binary scikit-learn ``LogisticRegression`` scored with numpy alone, bit for bit as
scikit-learn scores it, so a worker never imports scikit-learn for it (the shared rules:
``native_models``).

Why: scoring a million rows with a linear model costs a worker about 0.5 s of CPU, and importing
scikit-learn to do it about 1.3 s more. The fitted coefficients are all a binary logistic
regression needs (read off the pickle by ``pickled``).

Exactness is by construction, not by tolerance: the same array scikit-learn's input validation
makes of the frame (``np.asarray`` of an all-numeric frame), the same ``X @ coef_.T +
intercept_``, SciPy's ``expit`` in place, the same stacking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .native_models import NativeScorerBase
from .pickled import Peeked

LOGISTIC = "sklearn.linear_model._logistic.LogisticRegression"
CLASSES = frozenset({LOGISTIC})
# scikit-learn versions whose binary LogisticRegression.predict_proba is
# expit(X @ coef_.T + intercept_) stacked as [1 - p, p] (linear_model/_base.py,
# _predict_proba_lr) with scipy.special.expit as its expit (utils/_array_api.py, _expit).
SUPPORTED_SKLEARN = frozenset({(1, 9)})


def claim(peeked: Peeked, load_real: Callable[[], Any]) -> NativeLogistic | None:
    """A numpy scorer for this peeked logistic regression, or None when it is not a plain
    binary one (scikit-learn scores it)."""
    return NativeLogistic(peeked.state, load_real) if _is_plain_binary(peeked) else None


def _is_plain_binary(peeked: Peeked) -> bool:
    import numpy as np

    state = peeked.state
    coef, intercept, classes = (state.get(k) for k in ("coef_", "intercept_", "classes_"))
    names = state.get("feature_names_in_")
    arrays = (coef, intercept, classes, names)
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return False  # e.g. sparse coefficients (sparsify()), or fitted without feature names
    assert isinstance(coef, np.ndarray) and isinstance(intercept, np.ndarray)
    assert isinstance(classes, np.ndarray) and isinstance(names, np.ndarray)
    return (classes.shape == (2,) and coef.dtype == np.float64 and intercept.dtype == np.float64
            and coef.shape == (1, len(names)) and intercept.shape == (1,))


class NativeLogistic(NativeScorerBase):
    """Has what the runner asks of a model: ``feature_names_in_``, ``classes_``,
    ``predict_proba``."""

    # the frame's own dtype and layout, as scikit-learn keeps them; Arrow's columns laid out as
    # pandas makes a frame's array: the product sums in the same order
    COLUMNS_ORDER = "F"

    def __init__(self, state: dict[str, Any], load_real: Callable[[], Any]) -> None:
        super().__init__(state, load_real)
        self.coef_ = state["coef_"]
        self.intercept_ = state["intercept_"]

    def _proba(self, array: Any) -> Any:
        import numpy as np
        from scipy.special import expit

        scores = array @ self.coef_.T + self.intercept_
        prob = scores.reshape((-1,))
        expit(prob, out=prob)
        return np.stack([1 - prob, prob], axis=1)
