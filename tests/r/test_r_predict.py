"""runtime = "r" with the built-in predict scorer, against predict() in a plain R session."""

from __future__ import annotations

from pathlib import Path

import pytest
from rhelpers import RModels, read_rows

pytestmark = pytest.mark.slow
RELATIVE = 1e-12


def assert_close(got: list[str], expected: list[str], *, exact: bool = False) -> None:
    assert len(got) == len(expected)
    worst = 0.0
    for g, e in zip(got, expected, strict=True):
        a, b = float(g), float(e)
        worst = max(worst, abs(a - b) / max(abs(b), 1e-300))
    assert worst <= (0.0 if exact else RELATIVE), f"largest relative difference {worst:g}"


def test_lm_scores_every_row_in_order_with_the_exact_doubles(r_models: RModels, r_job, job_dir: Path) -> None:
    result = r_job(model=r_models.model("lm"), input=r_models.data, id_columns=["id"], chunks=4,
                   max_parallel=2)
    assert result.code == 0, result
    assert result.json["status"] == "succeeded" and result.json["rows_out"] == 3000
    rows = read_rows(job_dir / "out/scores.csv")
    reference = r_models.reference()
    assert list(rows[0]) == ["id", "prediction"]
    assert [r["id"] for r in rows] == [r["id"] for r in reference]
    # The same parsed inputs and the same predict(): the very same doubles, not just close ones.
    assert_close([r["prediction"] for r in rows], [r["lm"] for r in reference], exact=True)


def test_one_r_process_per_worker_reads_the_model_once_for_all_its_tasks(r_models: RModels, r_job, job_dir: Path) -> None:
    result = r_job(model=r_models.model("lm"), input=r_models.data, chunks=4, max_parallel=2)
    assert result.code == 0, result
    logs = [log.read_text() for log in (job_dir / "out/scores.csv.work/groups").glob("*.log")]
    assert len(logs) == 2  # 2 workers pulled the 4 tasks
    ran = [text.count("runner: task ") // 2 for text in logs]  # a start and an end line each
    assert sum(ran) == 4 and max(ran) >= 2, ran
    for text, tasks in zip(logs, ran, strict=True):
        # once, for all its tasks (a worker that got none may have loaded it early, once)
        assert text.count("model lm loaded") == 1 if tasks else text.count("model lm loaded") <= 1


def test_glm_passes_predict_args_through(r_models: RModels, r_job, job_dir: Path) -> None:
    result = r_job(model=r_models.model("glm"), input=r_models.data, id_columns=["id"],
                   predict_args={"type": "response"})
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    assert_close([r["prediction"] for r in rows], [r["glm_response"] for r in r_models.reference()])
    assert all(0 < float(r["prediction"]) < 1 for r in rows)  # probabilities, not the link


def test_random_forest_probabilities_keep_the_class_names(r_models: RModels, r_job, job_dir: Path) -> None:
    result = r_job(model=r_models.model("rf"), input=r_models.data, id_columns=["id"],
                   predict_args={"type": "prob"})
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    assert list(rows[0]) == ["id", "no", "yes"]
    assert_close([r["yes"] for r in rows], [r["rf_prob_yes"] for r in r_models.reference()])
    assert all(abs(float(r["no"]) + float(r["yes"]) - 1) < 1e-12 for r in rows)


def test_random_forest_classes_are_written_as_labels(r_models: RModels, r_job, job_dir: Path) -> None:
    result = r_job(model=r_models.model("rf"), input=r_models.data, id_columns=["id"])
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    assert [r["prediction"] for r in rows] == [r["rf_class"] for r in r_models.reference()]
    assert {r["prediction"] for r in rows} == {"no", "yes"}


def test_ranger_probability_forest(r_models: RModels, cli, job_dir: Path) -> None:
    # R argument names with a dot are quoted TOML keys (unquoted, the dot would make a table).
    job = job_dir / "job.toml"
    job.write_text(
        'name = "ranger"\nruntime = "r"\noutput = "out/scores.csv"\nid_columns = ["id"]\n'
        f'model = "{r_models.model("ranger")}"\ninput = "{r_models.data}"\nretries = 0\n'
        'predict_args = { "num.threads" = 1 }\n'
    )
    result = cli("run", job, "--json", "--quiet")
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    assert list(rows[0]) == ["id", "no", "yes"]
    assert_close([r["yes"] for r in rows], [r["ranger_yes"] for r in r_models.reference()])


def test_glmnet_scores_its_matrix_columns_with_s_and_type(r_models: RModels, r_job, job_dir: Path) -> None:
    result = r_job(model=r_models.model("glmnet"), input=r_models.matrix_data, id_columns=["id"],
                   predict_args={"s": 0.01, "type": "response"})
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    assert list(rows[0]) == ["id", "s1"]  # predict.glmnet's own column name for one s
    assert_close([r["s1"] for r in rows], [r["glmnet_s"] for r in r_models.reference()])


def test_glmnet_without_its_matrix_columns_says_how_to_write_the_input(r_models: RModels, r_job) -> None:
    result = r_job(model=r_models.model("glmnet"), input=r_models.data, id_columns=["id"],
                   predict_args={"s": 0.01}, chunks=1)
    assert result.code == 1
    message = result.json["error"]["message"]
    assert "the input lacks regionnorth, regionsouth, regionwest" in message
    assert "model.matrix" in result.json["error"]["hint"] or "model.matrix" in result.stderr


def test_unseen_factor_level_is_an_error_naming_column_level_and_record(r_models: RModels, r_job) -> None:
    result = r_job(model=r_models.model("glm"), input=r_models.unseen, retries=2, chunks=1)
    assert result.code == 1
    message = result.json["error"]["message"]
    assert "column 'region': level 'mars' (2 row(s), first at record 11 of task t00000)" in message
    assert "known levels: east, north, south, west" in message
    assert "not retried" in message  # running again cannot help
    assert 'on_unknown_level = "na"' in result.stderr


def test_unseen_level_scores_na_when_asked(r_models: RModels, r_job, job_dir: Path) -> None:
    result = r_job(model=r_models.model("rf"), input=r_models.unseen, id_columns=["id"],
                   predict_args={"type": "prob"}, on_unknown_level="na")
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    reference = r_models.reference()
    assert len(rows) == 3000
    for index in (10, 2500):  # records 11 and 2501
        assert rows[index]["id"] == reference[index]["id"]
        assert rows[index]["yes"] == "" and rows[index]["no"] == ""
    others = [i for i in range(3000) if i not in (10, 2500)]
    # randomForest refuses NA predictors: the other rows were scored without the unseen ones.
    assert_close([rows[i]["yes"] for i in others], [reference[i]["rf_prob_yes"] for i in others])


def test_id_columns_are_carried_as_text_and_quoted_fields_survive(r_models: RModels, r_job, job_dir: Path) -> None:
    result = r_job(model=r_models.model("lm"), input=r_models.data, id_columns=["id", "note"])
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    assert len(rows) == 3000
    assert rows[6]["note"] == 'said "hi",\nthen left'
    assert rows[7]["note"] == "ok"
