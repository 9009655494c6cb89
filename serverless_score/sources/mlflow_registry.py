"""``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``models:/NAME/latest`` and
``runs:/RUN_ID/PATH``: a model in an MLflow registry (an Azure ML workspace is one).

The registry is asked once which version the URI means; that version's artifacts are
downloaded into the cache (``<cache>/mlflow/<key>/``, reused by later runs) and reduced to one
file the workers load:

* a scikit-learn flavour saved with pickle or cloudpickle: its pickle, loaded with joblib like
  any Python model (the scoring image needs no mlflow);
* a scikit-learn flavour saved with skops (MLflow 3's default): its ``.skops`` file, loaded with
  skops;
* any other pyfunc: the model folder packed into one ``.mlflow.tar`` (a file can be hashed,
  granted and copied like any model), which the runner unpacks and loads with
  ``mlflow.pyfunc.load_model`` (so the worker needs mlflow).

The MLflow client retries a refused connection for minutes; an unreachable tracking server is
instead found with one short TCP probe, and the client's retries are capped while resolving.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import InputError
from ..runner.model_formats import PYFUNC_SUFFIX
from ..storage.config import cache_root
from . import ModelSource

_PROBE_SECONDS = 3.0
_HINT = "pip install 'serverless-score[mlflow]'"


def tracking_uri_of(configured: str | None) -> str:
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise InputError(
            "model: an MLflow model URI needs a tracking server, and none is set",
            hint="Set MLFLOW_TRACKING_URI, or tracking_uri under [mlflow] in the job file "
                 "(an http(s):// server, sqlite:///path/mlflow.db, or an Azure ML workspace's "
                 "MLflow URI).", retryable=False)
    return uri


def resolve_mlflow(uri: str, configured: str | None) -> ModelSource:
    tracking = tracking_uri_of(configured)
    _probe(tracking)
    try:
        import mlflow  # noqa: F401  (slow: ~1 s; only jobs that name an MLflow model pay it)
        from mlflow import MlflowClient
    except ModuleNotFoundError:
        raise InputError(f"model: {uri} is an MLflow model URI, and mlflow is not installed",
                         hint=_HINT, retryable=False) from None
    with _quick_client():
        client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        if uri.startswith("runs:/"):
            download_uri, version, details = _run_artifact(client, uri)
        else:
            download_uri, version, details = _registered(client, uri)
        folder = _download(download_uri, tracking, details)
    return _as_source(uri, folder, version, details)


def _probe(tracking: str) -> None:
    """One TCP connect to an http(s) tracking server, so that a wrong or stopped server is an
    error within seconds, not after the client's minutes of retries."""
    parts = urlsplit(tracking)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=_PROBE_SECONDS):
            pass
    except OSError as err:
        raise InputError(
            f"model: the MLflow tracking server {tracking} cannot be reached "
            f"({err.strerror or err}); nothing was created",
            hint="Check MLFLOW_TRACKING_URI / [mlflow] tracking_uri and that the server runs.",
            retryable=False) from None


@contextlib.contextmanager
def _quick_client() -> Iterator[None]:
    """Cap the client's HTTP retries and timeout while resolving (unless the user set them)."""
    wanted = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    saved = {k: os.environ.get(k) for k in wanted}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, before in saved.items():
            if before is None:
                os.environ.pop(key, None)


def _mlflow_error(err: Exception) -> str:
    return str(getattr(err, "error_code", "") or "")


def _registered(client: Any, uri: str) -> tuple[str, str, dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    rest = uri[len("models:/"):].strip("/")
    name, alias, version = rest, None, None
    if "@" in rest:
        name, _, alias = rest.partition("@")
    elif "/" in rest:
        name, _, version = rest.rpartition("/")
    if not name or not (alias or version):
        raise InputError(f"model: {uri!r} names no version",
                         hint="Use models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/latest.",
                         retryable=False)
    try:
        client.get_registered_model(name)
    except MlflowException as err:
        raise _missing(f"the MLflow registry has no model named {name!r}", err) from None
    try:
        if alias:
            mv = client.get_model_version_by_alias(name, alias)
        elif version == "latest":
            found = client.search_model_versions(f"name = '{name}'")
            if not found:
                raise InputError(f"model: {name!r} has no versions", retryable=False)
            mv = max(found, key=lambda v: int(v.version))
        else:
            mv = client.get_model_version(name, version)
        download_uri = client.get_model_version_download_uri(name, mv.version)
    except MlflowException as err:
        what = f"alias {alias!r}" if alias else f"version {version!r}"
        raise _missing(f"MLflow model {name!r} has no {what}", err) from None
    details = {"name": name, "version": str(mv.version), "run_id": mv.run_id or None}
    if alias:
        details["alias"] = alias
    return str(download_uri), str(mv.version), details


def _run_artifact(client: Any, uri: str) -> tuple[str, str, dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    run_id, _, path = uri[len("runs:/"):].strip("/").partition("/")
    if not run_id or not path:
        raise InputError(f"model: {uri!r} is not a run URI", hint="Use runs:/RUN_ID/PATH, e.g. "
                         "runs:/5f2c.../model.", retryable=False)
    try:
        client.get_run(run_id)
    except MlflowException as err:
        raise _missing(f"the MLflow tracking server has no run {run_id!r}", err) from None
    return uri, run_id, {"run_id": run_id, "artifact_path": path}


def _missing(what: str, err: Exception) -> InputError:
    code = _mlflow_error(err)
    if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
        return InputError(f"model: {what}", hint="Check the name, version or alias in the MLflow "
                          "UI or with MlflowClient().search_model_versions().", retryable=False)
    return InputError(f"model: {what}? the registry said: {str(err).splitlines()[0][:300]}",
                      retryable=False)


def _download(download_uri: str, tracking: str, details: dict[str, Any]) -> Path:
    """The model's folder in the cache, downloaded once per version (a version's artifacts do
    not change): into a temporary folder beside it, then renamed, so a cut-off download is
    never taken for a model."""
    import mlflow

    key = hashlib.sha256(repr((tracking, sorted(details.items()))).encode()).hexdigest()[:20]
    folder = cache_root() / "mlflow" / key
    if (folder / "MLmodel").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=folder.parent))
    try:
        got = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=download_uri, dst_path=str(scratch), tracking_uri=tracking))
        if not (got / "MLmodel").is_file():
            raise InputError(f"model: {download_uri} is not an MLflow model (no MLmodel file)",
                             retryable=False)
        try:
            os.replace(got, folder)
        except OSError:
            if not (folder / "MLmodel").is_file():  # not another controller's finished copy
                raise
    except InputError:
        raise
    except Exception as err:  # the artifact store's own errors, whatever the store
        raise InputError(f"model: cannot download {download_uri}: {err}", retryable=False) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def _as_source(uri: str, folder: Path, version: str, details: dict[str, Any]) -> ModelSource:
    import yaml  # an mlflow dependency

    mlmodel = yaml.safe_load((folder / "MLmodel").read_text()) or {}
    flavors = mlmodel.get("flavors") or {}
    pyfunc = flavors.get("python_function") or {}
    predict = str(pyfunc.get("predict_fn") or "predict")
    sklearn = flavors.get("sklearn")
    if isinstance(sklearn, dict) and sklearn.get("pickled_model"):
        fmt = sklearn.get("serialization_format", "cloudpickle")
        artifact = folder / str(sklearn["pickled_model"])
        needs = ("skops",) if fmt == "skops" else ()
        return ModelSource(uri=uri, kind="mlflow", artifact=str(artifact), version=version,
                           details={**details, "flavor": f"sklearn ({fmt})"}, needs=needs,
                           predict_method=predict)
    if not pyfunc:
        raise InputError(f"model: {uri} has no python_function flavour (flavours: "
                         f"{', '.join(flavors) or 'none'}), so it cannot be scored",
                         hint="Log it with an MLflow flavour that supports pyfunc.",
                         retryable=False)
    return ModelSource(uri=uri, kind="mlflow", artifact=str(_packed(folder)), version=version,
                       details={**details, "flavor": "pyfunc"}, needs=("mlflow",),
                       predict_method="predict")


def _packed(folder: Path) -> Path:
    """The model folder as one tar file beside it, byte-identical each time it is made (sorted
    names, zero times and owners), so its sha256 is the version's."""
    target = folder.with_name(folder.name + PYFUNC_SUFFIX)
    if target.is_file():
        return target
    fd, scratch = tempfile.mkstemp(prefix=".pack-", dir=folder.parent)
    os.close(fd)
    try:
        with tarfile.open(scratch, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(p for p in folder.rglob("*")):
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o755 if info.isdir() else 0o644
                if info.isfile():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        os.replace(scratch, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
    return target
