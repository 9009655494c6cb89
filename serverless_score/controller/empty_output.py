"""The columns of an output with no rows (a header-only CSV, a Parquet file of no rows): no task
wrote a row, so none reported a header, and the controller works it out once, before the merge.

The columns are what a task would have written: the id columns, then the score columns. The
built-in Python ``predict`` names them from the model (``proba_<class>`` or ``prediction``)
without calling it on zero rows, which scikit-learn refuses; a ``score.py`` is called on the
empty frame and its columns are taken when it copes. Where the score columns cannot be known
without a row (an R model, a script that fails on no rows) the output has the id columns only.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from typing import Any

from ..planning import Plan
from ..storage import StoreConfig, get_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmptyOutput:
    header: bytes  # the CSV header line ("" when no column is known)
    schema: Any  # a pyarrow schema for a Parquet output


def empty_output(plan: Plan, config: StoreConfig | None, model_sha256: str | None) -> EmptyOutput:
    import pyarrow as pa

    spec = plan.spec
    inputs = _input_schema(plan, config)
    ids = [pa.field(c, inputs.field(c).type if c in inputs.names else pa.string())
           for c in spec.id_columns]
    scores: list[Any] = []
    if spec.runtime == "python":
        try:
            scores = _python_scores(plan, config, model_sha256, inputs)
        except Exception as err:  # no row to learn the columns from: the id columns only
            log.info("the score columns of an empty output are unknown (%s: %s)",
                     type(err).__name__, err)
    schema = pa.schema(ids + scores)
    header = b""
    if schema.names:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(schema.names)
        header = out.getvalue().encode()
    return EmptyOutput(header=header, schema=schema)


def _input_schema(plan: Plan, config: StoreConfig | None) -> Any:
    """The input's columns (CSV: as text, the way the runner reads id columns)."""
    import pyarrow as pa

    if not plan.files:
        return pa.schema([])
    first = plan.files[0]
    store = get_store(first.path, config)
    if plan.spec.format == "parquet":
        import pyarrow.parquet as pq

        with store.open_read(first.path) as f:
            return pq.ParquetFile(f).schema_arrow
    if plan.spec.format == "csv":
        from ..records import read_header  # (numpy: not on every command's import path)

        with store.open_read(first.path) as f:
            line = read_header(f, first.size).decode("utf-8", "replace")
        names = next(csv.reader(io.StringIO(line)), [])
        return pa.schema([pa.field(n, pa.string()) for n in names])
    return pa.schema([])  # jsonl, records: no header to read columns from


def _python_scores(plan: Plan, config: StoreConfig | None, model_sha256: str | None,
                   inputs: Any) -> list[Any]:
    import pyarrow as pa

    from ..runner.models import fetch_model
    from ..runner.python_scorer import SCORE_PREFIX, PythonScorer, load_model

    spec = plan.spec
    path = fetch_model(spec.model, model_sha256, config) if spec.model else None
    if spec.scorer == "predict":
        model = load_model(path, None) if path else None
        method = spec.predict_method
        if method == "auto":
            method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
        classes = getattr(model, "classes_", None)
        if method == "predict_proba" and classes is not None:
            return [pa.field(f"{SCORE_PREFIX}{c}", pa.float64()) for c in classes]
        if method == "predict":
            kind = pa.array(classes).type if classes is not None else pa.float64()
            return [pa.field("prediction", kind)]
        raise ValueError(f"{method} of a model without classes_: its columns need a row")
    empty = inputs.empty_table().to_pandas()
    scorer = PythonScorer(model_path=path, scorer=spec.scorer,
                          predict_method=spec.predict_method, id_columns=list(spec.id_columns))
    frame = scorer.score_frame(empty)
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    return [f for f in schema if f.name not in spec.id_columns]
