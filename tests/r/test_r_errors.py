"""What an R user sees when R cannot score: R's own message and the task, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from rhelpers import RModels, run_r

pytestmark = pytest.mark.slow


def _fake_model(job_dir: Path, expression: str) -> Path:
    path = job_dir / "model.rds"
    run_r(f"saveRDS({expression}, '{path}')", cwd=job_dir)
    return path


def test_a_model_whose_package_is_missing_names_the_package(r_models: RModels, r_job, job_dir: Path) -> None:
    # An xgboost model scored where xgboost is not installed (it is not in Debian).
    model = _fake_model(job_dir, "structure(list(raw = as.raw(1:3)), class = 'xgb.Booster')")
    result = r_job(model=model, input=r_models.data, retries=2, chunks=1)
    assert result.code == 1
    message = result.json["error"]["message"]
    assert "needs the R package 'xgboost'; it is not installed" in message
    assert "not retried" in message
    assert "install.packages(\"xgboost\")" in result.stderr


def test_an_s4_style_class_names_its_own_package(r_models: RModels, r_job, job_dir: Path) -> None:
    model = _fake_model(job_dir, "structure(list(), class = structure('fitted', package = 'notapkg'))")
    result = r_job(model=model, input=r_models.data, chunks=1)
    assert result.code == 1
    assert "needs the R package 'notapkg'" in result.json["error"]["message"]


def test_a_class_without_predict_method_says_to_write_a_score_script(r_models: RModels, r_job, job_dir: Path) -> None:
    model = _fake_model(job_dir, "structure(list(), class = 'notapkg_model')")
    result = r_job(model=model, input=r_models.data, chunks=1)
    assert result.code == 1
    assert "no predict() method for a model of class 'notapkg_model'" in result.json["error"]["message"]
    assert "score.R" in result.stderr


def test_a_corrupt_rds_is_a_clear_permanent_error(r_models: RModels, r_job, job_dir: Path) -> None:
    model = job_dir / "model.rds"
    model.write_bytes(r_models.model("glm").read_bytes()[:2000])  # a copy cut short
    result = r_job(model=model, input=r_models.data, retries=2, chunks=2)
    assert result.code == 1
    message = result.json["error"]["message"]
    assert f"model: cannot read '{model}' as an R object (readRDS:" in message
    assert "not retried" in message
    assert "saveRDS" in result.stderr


def test_a_missing_column_is_reported_by_predict(r_models: RModels, r_job, job_dir: Path) -> None:
    data = job_dir / "data.csv"
    data.write_text("id,x1,k,region\na,0.1,3,north\n")
    result = r_job(model=r_models.model("lm"), input=data, chunks=1)
    assert result.code == 1
    assert "object 'x2' not found" in result.json["error"]["message"]


def test_id_columns_missing_from_the_input_are_named(r_models: RModels, r_job) -> None:
    """By the plan, from the input's header, before any worker starts (exit 2)."""
    result = r_job(model=r_models.model("lm"), input=r_models.data, id_columns=["customer"], chunks=1)
    assert result.code == 2
    assert ("id_columns: ['customer'] not in the header of "
            f"{r_models.data}, whose columns are ['id', 'x1', 'x2', 'k', 'region', 'note']"
            in result.json["error"]["message"])


def test_without_r_the_error_says_how_to_install_it(r_models: RModels, r_job, job_dir: Path, cli) -> None:
    job = job_dir / "job.toml"
    job.write_text(f'name = "nor"\nruntime = "r"\nmodel = "{r_models.model("lm")}"\n'
                   f'input = "{r_models.data}"\noutput = "out/s.csv"\nretries = 0\n')
    result = cli("run", job, "--json", "--quiet",
                 env={"SERVERLESS_SCORE_RSCRIPT": str(job_dir / "no-such-Rscript")})
    assert result.code == 1
    assert "R is not installed here" in result.json["error"]["message"]
    assert "make setup" in result.stderr
