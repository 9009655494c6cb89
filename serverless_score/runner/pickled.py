"""Read a joblib/pickle model's fitted attributes without importing the libraries it was made with.

Importing scikit-learn costs a process about 1.3 s of CPU; the controller only wants a model's
``feature_names_in_`` and a worker scoring a plain linear model only its coefficients. Here every
class the pickle names, except numpy's, joblib's and the standard library's containers, becomes a
stand-in that records what the pickle hands it (constructor arguments and state), so nothing of the
model's own code runs: 0.08 s for a 100-tree forest, instead of 1.5 s for ``joblib.load``.

What comes back is a :class:`Peeked` (the pickled class's module and name, and its state), or None
when the file cannot be read this way; callers then load the model for real, so a peek can make
things faster but never changes what is scored.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
from dataclasses import dataclass
from typing import Any, ClassVar

log = logging.getLogger(__name__)

# Modules whose classes are rebuilt for real: the arrays and containers a fitted model's state is
# made of. Everything else stays a stand-in.
_REAL_ROOTS = frozenset({"numpy", "joblib", "builtins", "copyreg", "collections", "_codecs"})


class _StandIn:
    """What an unpickled object of a class we did not import becomes."""

    _stand_in_for: tuple[str, str] = ("", "")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stand_in_args = args

    def __setstate__(self, state: Any) -> None:
        self._stand_in_state = state


def _stand_in(module: str, name: str) -> type:
    return type(name, (_StandIn,), {"_stand_in_for": (module, name)})


def stood_in_for(obj: Any) -> str | None:
    """``module.Name`` of the class an unpickled stand-in stands for; None for anything else."""
    return ".".join(type(obj)._stand_in_for) if isinstance(obj, _StandIn) else None


def stand_in_parts(obj: Any) -> tuple[Any, Any]:
    """What the pickle handed a stand-in: its constructor arguments (a tuple, or None when the
    pickle built it without calling the class) and its state (None when it set none)."""
    return getattr(obj, "_stand_in_args", None), getattr(obj, "_stand_in_state", None)


@dataclass(frozen=True)
class Peeked:
    module: str  # where the pickled class lives, e.g. "sklearn.linear_model._logistic"
    name: str  # e.g. "LogisticRegression"
    state: dict[str, Any]  # its fitted attributes (numpy arrays are real arrays)

    @property
    def qualified_name(self) -> str:
        return f"{self.module}.{self.name}"


def peek(path: str) -> Peeked | None:
    """The top-level object of the joblib/pickle file at ``path``, with stand-ins for its classes."""
    try:
        obj = _load_with_stand_ins(path)
    except Exception as err:  # anything unusual: the caller loads the model for real
        log.debug("model %s not peeked: %s: %s", path, type(err).__name__, err)
        return None
    qualified = stood_in_for(obj)
    _, state = stand_in_parts(obj)
    if qualified is None or not isinstance(state, dict):
        return None
    module, _, name = qualified.rpartition(".")
    return Peeked(module, name, state)


def _load_with_stand_ins(path: str) -> Any:
    with open(path, "rb") as f:
        if f.peek(2)[:2] in _PLAIN_PICKLE:
            return _StandInUnpickler(f).load()
    return _load_compressed_with_stand_ins(path)


# A file joblib.dump wrote without compression (or pickle.dump) starts with the PROTO opcode and
# its protocol (2-5); anything else is compressed (zlib, gzip, bz2, lzma, lz4) or not a pickle.
_PLAIN_PICKLE = frozenset(bytes([0x80, proto]) for proto in range(2, 6))


class _ArrayWrapper:
    """Stands for ``joblib.numpy_pickle.NumpyArrayWrapper``: where joblib.dump put an array, the
    pickle holds one of these (subclass, shape, order, dtype, alignment), and the array's bytes
    follow it in the file, outside the pickle stream."""

    shape: tuple[int, ...]
    order: str
    dtype: Any


# The pure-Python unpickler (joblib's base too): its opcode table can be extended, the C one's not.
_PurePythonUnpickler: Any = pickle._Unpickler


class _StandInUnpickler(_PurePythonUnpickler):
    """Unpickles a plain pickle or an uncompressed joblib file with stand-ins for every class
    outside ``_REAL_ROOTS``, reading joblib's out-of-stream arrays itself as joblib's
    NumpyUnpickler does (the same pure-Python unpickler underneath): importing joblib costs
    0.12 s (its ``__init__`` loads its parallel machinery), more than the peek itself."""

    dispatch: ClassVar[dict[int, Any]] = dict(_PurePythonUnpickler.dispatch)

    def __init__(self, file: io.BufferedReader) -> None:
        super().__init__(file)
        self._raw = file

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
            return _ArrayWrapper
        root = module.split(".", 1)[0]
        if root == "joblib":  # joblib's formats before 0.10: not read here (joblib.load reads them)
            raise pickle.UnpicklingError(f"{module}.{name} is not read by the peek")
        if root in _REAL_ROOTS:
            return super().find_class(module, name)
        return _stand_in(module, name)

    def load_build(self) -> None:
        super().load_build()
        if isinstance(self.stack[-1], _ArrayWrapper):
            self.stack.append(self._read_array(self.stack.pop()))

    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, wrapper: _ArrayWrapper) -> Any:
        """The array's bytes as joblib's ``NumpyArrayWrapper.read_array`` reads them."""
        import numpy as np

        dtype = np.dtype(wrapper.dtype)
        if dtype.hasobject:  # a nested pickle stream of its own (object arrays: feature names)
            return _StandInUnpickler(self._raw).load()
        if getattr(wrapper, "numpy_array_alignment_bytes", None) is not None:
            padding = self._raw.read(1)
            self._raw.read(int.from_bytes(padding, "little"))
        shape = tuple(int(n) for n in wrapper.shape)
        array = np.empty(math.prod(shape), dtype=dtype)
        view = memoryview(array).cast("B") if array.nbytes else memoryview(bytearray())  # type: ignore[arg-type]
        if self._raw.readinto(view) != array.nbytes:
            raise pickle.UnpicklingError("the file ends inside an array")
        if wrapper.order == "F":
            array = array.reshape(shape[::-1]).transpose()
        else:
            array = array.reshape(shape)
        if array.dtype.fields is None and not array.dtype.isnative:  # as joblib does: records
            array = array.byteswap().view(array.dtype.newbyteorder("="))  # keep their own orders
        return array


def _load_compressed_with_stand_ins(path: str) -> Any:
    # joblib's own unpickler for what it compressed; only where classes come from is changed.
    from joblib import numpy_pickle

    class StandInUnpickler(numpy_pickle.NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module.split(".", 1)[0] in _REAL_ROOTS:
                return super().find_class(module, name)
            return _stand_in(module, name)

    with open(path, "rb") as f, \
            numpy_pickle._validate_fileobject_and_memmap(f, path, None) as (fobj, _):
        return StandInUnpickler(path, fobj, True).load()


def top_class(path: str) -> tuple[str, str] | None:
    """The (module, name) of the first class a plain pickle names outside numpy and the standard
    library: the model's own class for a joblib.dump of an estimator. Reads opcodes only (a few
    hundred bytes); None when it cannot tell (compressed, or names built from memo references)."""
    import pickletools

    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            if f.peek(2)[:2] not in _PLAIN_PICKLE:
                return None
            for opcode, arg, _ in pickletools.genops(f):
                if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                    strings.append(str(arg))
                    continue
                if opcode.name == "GLOBAL":
                    module, _, name = str(arg).partition(" ")
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    module, name = strings[-2], strings[-1]
                elif opcode.name in ("BINGET", "LONG_BINGET", "GET", "STACK_GLOBAL"):
                    return None  # a name from the memo: not followed here
                else:
                    continue
                if module.split(".", 1)[0] not in _REAL_ROOTS:
                    return module, name
    except Exception:  # not a pickle after all: the caller loads it for real
        return None
    return None


def feature_names(path: str) -> list[str] | None:
    """The ``feature_names_in_`` a model was fitted with, when its pickled state holds them;
    None when the peek cannot tell (no such attribute: fitted on arrays, or a pipeline that
    computes it from its first step): then only loading the model will."""
    peeked = peek(path)
    if peeked is None or "feature_names_in_" not in peeked.state:
        return None
    return [str(n) for n in peeked.state["feature_names_in_"]]
