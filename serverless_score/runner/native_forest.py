"""A scikit-learn random forest (or extra-trees) classifier scored by scikit-learn's own compiled
tree code, without importing scikit-learn's packages: bit for bit its ``predict_proba`` (the
shared rules: ``native_models``).

Why: unpickling a forest imports ``sklearn.ensemble``, and with it ``sklearn/__init__``,
``sklearn.utils`` and the ensemble package, which pull in SciPy's stats, optimize, integrate and
more: 1.3-1.8 s of CPU in every worker before it scores a row (``python -X importtime``), paid
again by each of a job's workers. Scoring needs only ``sklearn.tree._tree.Tree``, a compiled
module whose own imports are numpy, ``scipy.sparse`` and a few more compiled modules: it is
imported with stand-ins for its parent packages (``compiled_tree_class``), about 0.3 s.

Exactness is by construction: the trees are the pickle's own ``Tree`` objects, rebuilt as pickle
rebuilds them (``Tree(*args).__setstate__(state)``), and ``predict_proba`` is the forest's code
for one output, serial (``n_jobs`` None or 1, as fitted): the input made float32 as scikit-learn's
``check_array`` makes it (``np.asarray(X, dtype=np.float32)``, laid out by rows), each tree's ``Tree.predict`` cut
to the classes, summed into float64 zeros in the trees' order, divided by their number
(``ensemble/_forest.py``: ``ForestClassifier.predict_proba``, ``_accumulate_prediction``;
``tree/_classes.py``: ``DecisionTreeClassifier.predict_proba``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from .native_models import NativeScorerBase
from .pickled import Peeked, stand_in_parts, stood_in_for

log = logging.getLogger(__name__)

# A forest class and the class of its trees.
TREES_OF = {
    "sklearn.ensemble._forest.RandomForestClassifier": "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier": "sklearn.tree._classes.ExtraTreeClassifier",
}
CLASSES = frozenset(TREES_OF)
TREE = "sklearn.tree._tree.Tree"
# scikit-learn versions whose code above was read, and whose compiled tree module imports no
# more of its packages than ``_BARE_PACKAGES`` and the two names given below.
SUPPORTED_SKLEARN = frozenset({(1, 9)})


def claim(peeked: Peeked, load_real: Callable[[], Any]) -> NativeForest | None:
    """A scorer for this peeked forest, or None when it is not one claimed here."""
    trees = _plain_trees(peeked)
    if trees is None:
        return None
    tree_class = compiled_tree_class()
    if tree_class is None:
        return None
    try:
        built = [_rebuild(tree_class, args, state) for args, state in trees]
    except Exception as err:  # a state this Tree does not take: scikit-learn loads it
        log.debug("forest not rebuilt natively: %s: %s", type(err).__name__, err)
        return None
    return NativeForest(peeked.state, built, load_real)


def _plain_trees(peeked: Peeked) -> list[tuple[tuple[Any, ...], dict[str, Any]]] | None:
    """Each tree's ``Tree`` arguments and state, when the forest is a single-output classifier
    fitted on named columns whose prediction is serial; else None."""
    import numpy as np

    state = peeked.state
    tree_name = TREES_OF.get(peeked.qualified_name)
    names, classes, estimators = (state.get(k) for k in ("feature_names_in_", "classes_", "estimators_"))
    n_classes = state.get("n_classes_")
    if (tree_name is None or state.get("n_outputs_") != 1 or state.get("n_jobs") not in (None, 1)
            or not isinstance(names, np.ndarray) or not isinstance(classes, np.ndarray)
            or classes.ndim != 1 or not isinstance(n_classes, (int, np.integer))
            or int(n_classes) != len(classes) or not isinstance(estimators, list) or not estimators):
        return None
    trees = []
    for estimator in estimators:
        if stood_in_for(estimator) != tree_name:
            return None
        _, tree_state = stand_in_parts(estimator)
        if not isinstance(tree_state, dict) or tree_state.get("n_outputs_") != 1 \
                or tree_state.get("n_classes_") != n_classes \
                or tree_state.get("n_features_in_") != len(names):
            return None
        tree = tree_state.get("tree_")
        args, tree_tree_state = stand_in_parts(tree)
        if stood_in_for(tree) != TREE or not isinstance(args, tuple) \
                or not isinstance(tree_tree_state, dict):
            return None
        trees.append((args, tree_tree_state))
    return trees


def _rebuild(tree_class: type, args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    tree = tree_class(*args)  # what pickle's REDUCE then BUILD do
    tree.__setstate__(state)
    return tree


class NativeForest(NativeScorerBase):
    """Has what the runner asks of a model: ``feature_names_in_``, ``classes_``,
    ``predict_proba``."""

    DTYPE = "float32"  # as scikit-learn's trees read it
    # Row-major: a tree reads one row's features at a time, and a frame's array is column-major
    # (scikit-learn keeps that order): 17% less time in the trees, same values.
    FRAME_ORDER = "C"

    def __init__(self, state: dict[str, Any], trees: list[Any], load_real: Callable[[], Any]) -> None:
        super().__init__(state, load_real)
        self._n_classes = len(self.classes_)
        self._trees = trees

    def real_model(self) -> Any:
        model = super().real_model()
        reattach_compiled_modules()
        return model

    def _proba(self, array: Any) -> Any:
        import numpy as np

        proba = np.zeros((array.shape[0], self._n_classes), dtype=np.float64)
        for tree in self._trees:
            proba += tree.predict(array)[:, : self._n_classes]
        proba /= len(self._trees)
        return proba


# -- scikit-learn's compiled Tree without its packages -----------------------------------------
# The packages whose __init__ files a compiled tree module would run (and with them all of
# scikit-learn's utilities and most of SciPy), and the two Python names the compiled modules take
# from them at import time (sklearn 1.9: tree/_tree.pyx, utils/_random.pyx). Neither is called
# by Tree.predict on dense input; each forwards to the real function, imported on first call.
_BARE_PACKAGES = ("sklearn", "sklearn.tree", "sklearn.neighbors", "sklearn.utils")
_FORWARDED = (("sklearn.utils", "_align_api_if_sparse"),
              ("sklearn.utils.validation", "check_random_state"))
_loaded_bare: list[str] = []  # compiled modules imported under the stand-ins


@cache
def compiled_tree_class() -> type | None:
    """``sklearn.tree._tree.Tree``, imported without running scikit-learn's package ``__init__``
    files when scikit-learn is not loaded yet; None when that cannot be done here."""
    if "sklearn" in sys.modules:  # loaded already: nothing left to save
        return _tree_class_of(importlib.import_module("sklearn.tree._tree"))
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    stand_ins: dict[str, types.ModuleType] = {}
    for name in _BARE_PACKAGES:
        package = types.ModuleType(name)
        package.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        package.__package__ = name
        stand_ins[name] = package
    stand_ins["sklearn.utils.validation"] = types.ModuleType("sklearn.utils.validation")
    for module, name in _FORWARDED:
        setattr(stand_ins[module], name, _forward(module, name))
    before = set(sys.modules)
    # For these few milliseconds another thread importing scikit-learn would get a stand-in: a
    # worker builds its model before it starts any thread that imports (its pipe-draining
    # threads import nothing).
    sys.modules.update(stand_ins)
    try:
        tree_module = importlib.import_module("sklearn.tree._tree")
    except Exception as err:  # another layout than the one read: scikit-learn loads the forest
        log.debug("compiled tree not imported alone: %s: %s", type(err).__name__, err)
        tree_module = None
    finally:
        # The stand-ins go: a later real import of scikit-learn runs its __init__ files as
        # usual and finds these compiled modules (which cannot be imported twice) loaded.
        for name, package in stand_ins.items():
            if sys.modules.get(name) is package:
                del sys.modules[name]
        _loaded_bare.extend(sorted(n for n in set(sys.modules) - before - set(stand_ins)
                                   if n.startswith("sklearn.")))
    return None if tree_module is None else _tree_class_of(tree_module)


def _tree_class_of(module: types.ModuleType) -> type | None:
    tree = getattr(module, "Tree", None)
    return tree if isinstance(tree, type) else None


def _forward(module: str, name: str) -> Callable[..., Any]:
    def forwarded(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    forwarded.__name__ = name
    forwarded.forwards_to = (module, name)  # type: ignore[attr-defined]
    return forwarded


def reattach_compiled_modules() -> None:
    """Once scikit-learn's packages are really imported (the real model's load), make the
    compiled modules loaded under the stand-ins attributes of them, as an ordinary import would
    have (``sklearn.tree._tree`` of ``sklearn.tree``; scikit-learn's own code imports them with
    ``from``, which never needed it), and give them the real functions the forwards stood for."""
    for name in _loaded_bare:
        parent, _, child = name.rpartition(".")
        package = sys.modules.get(parent)
        if package is not None and name in sys.modules and not hasattr(package, child):
            setattr(package, child, sys.modules[name])
    for name in _loaded_bare:
        module = sys.modules.get(name)
        for attribute, value in list(vars(module).items()) if module is not None else ():
            source = getattr(value, "forwards_to", None)
            real = getattr(sys.modules.get(source[0]), source[1], None) if source else None
            if real is not None:
                setattr(module, attribute, real)
