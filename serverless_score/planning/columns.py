"""Before anything runs: the input's columns hold the job's id columns and, for a model that
names its features (scikit-learn's ``feature_names_in_``), those too. A missing one is an error
of ``plan`` / ``run`` (exit 2), not of a running task.

Only the first file's header is read (CSV: its first record; JSONL: the keys of its first
line); Parquet, record and shard inputs are left to the workers.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..storage import StoreConfig, get_store, is_local
from .tasks import InputFile

if TYPE_CHECKING:
    from ..spec import JobSpec

log = logging.getLogger(__name__)
_FIRST_LINE_LIMIT = 1024 * 1024


def input_columns(spec: JobSpec, first: InputFile, config: StoreConfig) -> list[str] | None:
    """The column names of the first input file, or None when the format has no header."""
    from ..records import read_header

    if spec.format not in ("csv", "jsonl") or first.size == 0:
        return None
    with get_store(first.path, config).open_read(first.path) as f:
        if spec.format == "csv":
            text = read_header(f, first.size).decode(spec.encoding, "replace")
            return next(csv.reader([text.lstrip("\ufeff")]), [])
        line = f.readline(_FIRST_LINE_LIMIT)
    try:
        keys = json.loads(line.decode(spec.encoding, "replace"))
    except ValueError:
        return None  # the workers say what is wrong with it, and where
    return [str(k) for k in keys] if isinstance(keys, dict) else None


def model_features(spec: JobSpec) -> Sequence[str] | None:
    """The feature names a local scikit-learn-style model was fitted with (None: unknown)."""
    if spec.runtime != "python" or spec.scorer != "predict" or not spec.model or not is_local(spec.model):
        return None
    from ..runner.pickled import feature_names

    # Read off the pickle without importing scikit-learn (0.1 s instead of 1.5 s before any
    # worker starts); a model whose names only its own code knows is loaded for real.
    names = feature_names(spec.model)
    if names is not None:
        return names
    try:
        import joblib

        model: Any = joblib.load(spec.model)
    except Exception as err:  # the workers report a model that does not load, with the fix
        log.debug("model %s not loaded for its feature names: %s", spec.model, err)
        return None
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def check_columns(spec: JobSpec, files: Sequence[InputFile], config: StoreConfig) -> None:
    if not files:
        return
    columns = input_columns(spec, files[0], config)
    if not columns or columns == [""]:
        return  # no header to check (a blank one is the runner's error, naming the file)
    where = f"the header of {files[0].path}" if spec.format == "csv" else \
        f"the first record of {files[0].path}"
    missing = [c for c in spec.id_columns if c not in columns]
    if missing:
        raise InputError(f"id_columns: {missing} not in {where}, whose columns are {columns}",
                         hint="Name columns the input has (names are case-sensitive).")
    features = model_features(spec)
    absent = [c for c in features or () if c not in columns]
    if absent:
        raise InputError(
            f"input: the model was fitted with the columns {list(features or ())} and "
            f"{absent} are not in {where}, whose columns are {columns}",
            hint="Score an input with the model's columns (names are case-sensitive), or "
                 "a model fitted on this input's.")
