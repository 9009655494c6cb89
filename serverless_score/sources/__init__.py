"""Models named where teams keep them: an MLflow registry (``models:/NAME/VERSION``,
``models:/NAME@ALIAS``, ``runs:/RUN_ID/PATH``) or a pins board (``pins://BOARD/NAME[@VERSION]``).

The controller resolves such a URI once, before anything is created, to one concrete file (a
local path or a blob) and a :class:`ModelSource` saying what it is (the URI as written, the
version it resolved to). Everything downstream (hashing, SAS grants, Docker binds, the workers'
checksum) then treats the job as if it named that file: a later registry change cannot mix
versions within a job, and a newer version behind the same URI is another job id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import InputError

if TYPE_CHECKING:
    from ..spec import JobSpec
    from ..storage import StoreConfig

SourceKind = Literal["mlflow", "pins"]
_MLFLOW_PREFIXES = ("models:/", "runs:/")
PINS_PREFIX = "pins://"


def is_source_uri(uri: str | None) -> bool:
    """True for the URIs this package resolves (not for a path or a blob)."""
    return bool(uri) and str(uri).startswith((*_MLFLOW_PREFIXES, PINS_PREFIX))


@dataclass(frozen=True)
class ModelSource:
    """What a job's model URI resolved to. ``details`` holds the registry's own names (MLflow:
    name, version, run_id, alias; pins: board, name, version, pin_hash, created)."""

    uri: str  # as the job wrote it
    kind: SourceKind
    artifact: str  # the one file the workers load: a local path or a blob URI
    version: str  # MLflow's model version (or the run id for runs:/), the pin's version
    details: dict[str, Any] = field(default_factory=dict)
    # Python packages the worker needs to load it beyond the runner's own (mlflow for a generic
    # pyfunc, skops for a skops-serialised scikit-learn model, a vetiver pin's required_pkgs).
    needs: tuple[str, ...] = ()
    predict_method: str | None = None  # MLflow's predict_fn, when the model names one
    prototype: tuple[str, ...] | None = None  # a vetiver model's input columns

    def stamp(self) -> list[Any]:
        """What the job id hashes for the model: the URI as written and what it resolved to,
        never the local cache path (the same job on another machine has the same id)."""
        return [self.uri, self.kind, self.version, sorted(self.details.items())]

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "kind": self.kind, "version": self.version, **self.details}

    def describe(self) -> str:
        """``models:/churn@champion -> version 3 (run 5f2c...)`` for plans and status."""
        if self.kind == "mlflow":
            run = self.details.get("run_id")
            if not self.details.get("name"):  # runs:/RUN/PATH: the run is the version
                return f"{self.uri} -> run {run}"
            return f"{self.uri} -> version {self.version}" + (f" (run {run})" if run else "")
        return f"{self.uri} -> version {self.version} (pin hash {self.details.get('pin_hash')})"


def describe_record(record: dict[str, Any] | None) -> str | None:
    """One line for ``status`` and ``run``: ``models:/churn@champion -> version 3 (run 5f2c...),
    sha256 9a1b...`` from the manifest's ``model`` record; None for a plain model file."""
    if not record or not isinstance(record.get("source"), dict):
        return None
    source = record["source"]
    text = f"{source.get('uri')} -> version {source.get('version')}"
    if source.get("kind") == "mlflow" and not source.get("name"):  # runs:/: the run is the version
        text = f"{source.get('uri')} -> run {source.get('run_id')}"
    elif source.get("kind") == "mlflow" and source.get("run_id"):
        text += f" (run {source['run_id']})"
    if source.get("kind") == "pins" and source.get("pin_hash"):
        text += f" (pin hash {source['pin_hash']})"
    if record.get("sha256"):
        text += f", sha256 {str(record['sha256'])[:16]}..."
    return text


@dataclass(frozen=True)
class Resolved:
    spec: JobSpec  # the job with ``model`` set to the concrete artifact
    source: ModelSource


def resolve_spec(spec: JobSpec, config: StoreConfig) -> Resolved:
    """Resolve the job's model URI (the caller checked ``is_source_uri``); every check that needs
    the resolved model (its runtime, the packages where the workers run) happens here, before
    anything is created."""
    assert spec.model is not None
    if spec.model.startswith(PINS_PREFIX):
        from .pins_board import resolve_pin

        source = resolve_pin(spec.model, config)
    else:
        from .mlflow_registry import resolve_mlflow

        source = resolve_mlflow(spec.model, spec.mlflow.tracking_uri)
    _check_runtime(spec, source)
    update: dict[str, Any] = {"model": source.artifact}
    if source.predict_method and spec.predict_method == "auto":
        update["predict_method"] = source.predict_method
    resolved = spec.model_copy(update=update)  # keeps the SAS tokens (a private attribute)
    from .needs import check_needs

    check_needs(resolved, source)
    return Resolved(resolved, source)


def _check_runtime(spec: JobSpec, source: ModelSource) -> None:
    is_rds = source.artifact.lower().endswith(".rds")
    if spec.runtime == "python" and is_rds:
        raise InputError(f"model: {source.uri} is an R model ({source.artifact.rsplit('/', 1)[-1]})",
                         hint='Set runtime = "r".', retryable=False)
    if spec.runtime == "r" and not is_rds:
        raise InputError(
            f"model: {source.uri} is not an R model ({source.artifact.rsplit('/', 1)[-1]}); "
            'runtime = "r" scores .rds files written by saveRDS (pins type "rds")',
            hint='Set runtime = "python", or pin the model with type = "rds".', retryable=False)
