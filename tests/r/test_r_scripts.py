"""runtime = "r" with a user's score.R: score(model, data), optional load_model(path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rhelpers import RModels, read_rows

from serverless_score.runner.contract import AttemptStatus, Outcome

pytestmark = pytest.mark.slow


def test_score_function_gets_data_frames_and_its_columns_are_written(r_models: RModels, r_job, job_dir: Path) -> None:
    (job_dir / "score.R").write_text(
        "score <- function(model, data) {\n"
        "  print('user output goes to the task log, not into the scores')\n"
        "  stopifnot(is.data.frame(data), is.factor(data$region))  # levels as in training\n"
        "  p <- predict(model, newdata = data, type = 'response')\n"
        "  data.frame(p_yes = p, band = ifelse(p > 0.5, 'high', 'low'),\n"
        "             task = Sys.getenv('TASK_ID'))\n"
        "}\n"
    )
    result = r_job(model=r_models.model("glm"), input=r_models.data, id_columns=["id"],
                   scorer="score.R")
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    reference = r_models.reference()
    assert list(rows[0]) == ["id", "p_yes", "band", "task"]
    assert [float(r["p_yes"]) for r in rows] == [float(r["glm_response"]) for r in reference]
    assert {r["band"] for r in rows} == {"high", "low"}
    assert {r["task"] for r in rows} == {"t00000", "t00001"}  # TASK_ID is set for each task
    logs = "".join(p.read_text() for p in (job_dir / "out/scores.csv.work/tasks").glob("*/*/log.txt"))
    assert "user output goes to the task log" in logs


def test_load_model_and_a_vector_result(r_models: RModels, r_job, job_dir: Path) -> None:
    # A model that is not an .rds: load_model() decides how to read it.
    (job_dir / "coef.txt").write_text("0.5 2\n")
    (job_dir / "score.R").write_text(
        "load_model <- function(path) scan(path, quiet = TRUE)\n"
        "score <- function(model, data) model[1] + model[2] * data$x1\n"
    )
    result = r_job(model=job_dir / "coef.txt", input=r_models.data, id_columns=["id"],
                   scorer="score.R")
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    source = read_rows(r_models.data)
    assert list(rows[0]) == ["id", "score"]
    assert [float(r["score"]) for r in rows] == [0.5 + 2 * float(s["x1"]) for s in source]


def test_stop_in_score_reaches_the_user_with_the_r_message_and_the_task(r_models: RModels, r_job, job_dir: Path) -> None:
    (job_dir / "score.R").write_text(
        "score <- function(model, data) {\n"
        "  if (Sys.getenv('TASK_ID') == 't00001') stop('the threshold table is empty')\n"
        "  rep(1, nrow(data))\n"
        "}\n"
    )
    result = r_job(model=r_models.model("lm"), input=r_models.data, scorer="score.R")
    assert result.code == 1
    error = result.json["error"]
    assert error["task_id"] == "t00001"
    assert "task t00001" in error["message"]
    assert "R error in score(model, data): the threshold table is empty" in error["message"]
    assert "Traceback" not in result.stderr and "Traceback" not in error["log_tail"]
    assert not (job_dir / "out/scores.csv").exists()


def test_score_returning_the_wrong_number_of_rows_is_refused(r_models: RModels, r_job, job_dir: Path) -> None:
    (job_dir / "score.R").write_text("score <- function(model, data) 1:3\n")
    result = r_job(model=r_models.model("lm"), input=r_models.data, scorer="score.R", chunks=1)
    assert result.code == 1
    assert "score() returned 3 rows for 3000 input rows" in result.json["error"]["message"]


def test_a_script_without_score_is_named(r_models: RModels, r_job, job_dir: Path) -> None:
    (job_dir / "score.R").write_text("scor <- function(model, data) 1\n")
    result = r_job(model=r_models.model("lm"), input=r_models.data, scorer="score.R", chunks=1)
    assert result.code == 1
    assert "defines no function score(model, data)" in result.json["error"]["message"]


def test_a_task_after_a_failed_one_is_scored_by_the_same_r(r_models: RModels, r_job, job_dir: Path) -> None:
    # The first task fails inside R; R skips to the task's end and scores the next task. With
    # a retry left the job goes on (with none it fails at once, and may stop the worker before
    # it took the next task): the one worker takes t00001, then t00000's second attempt.
    (job_dir / "score.R").write_text(
        "score <- function(model, data) {\n"
        "  if (Sys.getenv('TASK_ID') == 't00000' && Sys.getenv('ATTEMPT') == '1') stop('bad batch')\n"
        "  predict(model, newdata = data)\n"
        "}\n"
    )
    result = r_job(model=r_models.model("lm"), input=r_models.data, scorer="score.R", retries=1)
    assert result.code == 0, result
    assert result.json["retried_tasks"] == ["t00000"]
    tasks = job_dir / "out/scores.csv.work/tasks"
    failed = AttemptStatus.from_json((tasks / "t00000/attempt-1/status.json").read_bytes())
    assert failed.outcome is Outcome.FAILED
    assert failed.reason.startswith("R error in score(model, data): bad batch")
    scored = AttemptStatus.from_json((tasks / "t00001/attempt-1/status.json").read_bytes())
    assert scored.result is not None and scored.group == failed.group  # the same worker, the same R
    assert scored.result.records_in == scored.result.records_out == 1500
    again = AttemptStatus.from_json((tasks / "t00000/attempt-2/status.json").read_bytes())
    assert again.result is not None and again.group == failed.group
    group_log = (job_dir / "out/scores.csv.work/groups" / f"{failed.group}.log").read_text()
    assert group_log.count("model lm loaded") == 1


def test_r_dying_mid_task_is_retried_with_a_new_r(r_models: RModels, r_job, job_dir: Path) -> None:
    (job_dir / "score.R").write_text(
        "score <- function(model, data) {\n"
        "  if (Sys.getenv('ATTEMPT') == '1') tools::pskill(Sys.getpid(), tools::SIGKILL)\n"
        "  predict(model, newdata = data)\n"
        "}\n"
    )
    result = r_job(model=r_models.model("lm"), input=r_models.data, scorer="score.R", retries=1,
                   chunks=1)
    assert result.code == 0, result
    assert result.json["retried_tasks"] == ["t00000"]
    first = (job_dir / "out/scores.csv.work/tasks/t00000/attempt-1/log.txt").read_text()
    assert "R was killed by signal 9 while scoring task t00000" in first
    rows = read_rows(job_dir / "out/scores.csv")
    assert [float(r["score"]) for r in rows] == [float(r["lm"]) for r in r_models.reference()]
