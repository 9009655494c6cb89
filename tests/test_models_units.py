"""Pure parts of models from MLflow and pins: pin URIs, the job file's paths and [mlflow]
table, and the job id of a resolved model (the URI and version, never the cache path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serverless_score.errors import InputError, SpecError
from serverless_score.planning import _job_id
from serverless_score.sources import ModelSource, describe_record, is_source_uri
from serverless_score.sources.pins_board import parse_pin_uri
from serverless_score.spec import spec_from_dict


@pytest.mark.parametrize(("uri", "parsed"), [
    ("pins:///srv/boards/churn", ("/srv/boards", "churn", None)),
    ("pins:///srv/boards/churn@20261207T160218Z-85052",
     ("/srv/boards", "churn", "20261207T160218Z-85052")),
    ("pins://az://models/boards/churn", ("az://models/boards", "churn", None)),
    ("pins://board/churn/", ("board", "churn", None)),
])
def test_pin_uris(uri: str, parsed: tuple[str, str, str | None]) -> None:
    assert parse_pin_uri(uri) == parsed


@pytest.mark.parametrize("uri", ["pins://churn", "pins:///", "pins://board/@v1"])
def test_a_pin_uri_without_board_or_name_is_refused(uri: str) -> None:
    with pytest.raises(InputError, match="is not a pin URI"):
        parse_pin_uri(uri)


def test_which_uris_are_resolved() -> None:
    assert all(map(is_source_uri, ["models:/a/1", "models:/a@b", "runs:/r/model", "pins://b/n"]))
    assert not any(map(is_source_uri, [None, "", "model.joblib", "az://c/m.joblib",
                                       "/srv/models:/x"]))


def test_the_job_file_resolves_boards_and_sqlite_registries_against_its_folder(tmp_path: Path) -> None:
    raw = {"name": "j", "input": "in.csv", "output": "out.csv", "model": "pins://boards/churn",
           "mlflow": {"tracking_uri": "sqlite:///reg/mlflow.db"}}
    spec = spec_from_dict(raw, base=tmp_path)
    assert spec.model == f"pins://{tmp_path / 'boards'}/churn"
    assert spec.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'reg' / 'mlflow.db'}"
    same = spec_from_dict({**raw, "model": "models:/churn@champion",
                           "mlflow": {"tracking_uri": "sqlite:////abs/mlflow.db"}}, base=tmp_path)
    assert same.model == "models:/churn@champion"  # an MLflow URI is not a path
    assert same.mlflow.tracking_uri == "sqlite:////abs/mlflow.db"
    with pytest.raises(SpecError, match="registry_uri"):
        spec_from_dict({**raw, "mlflow": {"registry_uri": "x"}}, base=tmp_path)


def _source(version: str, artifact: str) -> ModelSource:
    return ModelSource(uri="models:/churn@champion", kind="mlflow", artifact=artifact,
                       version=version, details={"name": "churn", "version": version})


def test_the_job_id_follows_the_resolved_version_not_the_cache_path(tmp_path: Path) -> None:
    spec = spec_from_dict({"name": "j", "input": "in.csv", "output": "out.csv",
                           "model": "models:/churn@champion"}, base=tmp_path)

    def job_id(source: ModelSource) -> str:
        return _job_id(spec.model_copy(update={"model": source.artifact}), [], [], None, source)

    here = job_id(_source("3", "/home/a/.cache/mlflow/x/model.pkl"))
    assert here == job_id(_source("3", "/home/b/.cache/mlflow/y/model.pkl"))
    assert here != job_id(_source("4", "/home/a/.cache/mlflow/x/model.pkl"))


def test_the_model_line_of_status_and_run() -> None:
    record = {"uri": "/c/model.pkl", "sha256": "ab" * 32,
              "source": {"uri": "models:/churn@champion", "kind": "mlflow", "version": "3",
                         "name": "churn", "run_id": "5f2c"}}
    assert describe_record(record) == ("models:/churn@champion -> version 3 (run 5f2c), "
                                       "sha256 abababababababab...")
    run = {"uri": "/c/x.tar", "source": {"uri": "runs:/5f2c/model", "kind": "mlflow",
                                         "version": "5f2c", "run_id": "5f2c"}}
    assert describe_record(run) == "runs:/5f2c/model -> run 5f2c"
    assert describe_record({"uri": "/c/model.joblib", "sha256": "ab" * 32}) is None
