"""Bad rows (README: Bad rows). With ``on_error = "skip"`` a record that cannot be parsed or
scored is left out of the output and listed, in input order, in ``<output>.errors.csv`` with
where it is; the other rows are scored exactly as a clean run scores them; a budget stops the
job early with no output. With ``on_error = "fail"`` the job fails at once (no retries) with a
message naming the record, the column and the fix."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from manifests import manifest_tasks

ROWS = 900
# (row, how it is broken): a text in a numeric column, a record with an extra field, a
# Latin-1 byte in a UTF-8 file, an empty feature.
BROKEN = {7: "n/a", 301: "extra", 455: "latin1", 640: "empty", 899: "n/a"}


def _bad_csv(path: Path, make_frame: Any) -> tuple[Any, bytes]:
    """The test CSV with BROKEN rows; returns (the frame of the good rows, the file's bytes)."""
    frame = make_frame(ROWS, 5)
    lines = frame.to_csv(index=False, lineterminator="\n").encode().splitlines(keepends=True)
    for row, kind in BROKEN.items():
        fields = lines[row + 1].rstrip(b"\n").split(b",")
        if kind == "n/a":
            fields[1] = b"n/a"
        elif kind == "extra":
            fields.append(b"surplus")
        elif kind == "latin1":
            fields[0] = "caf\u00e9".encode("latin-1")
        else:
            fields[3] = b""
        lines[row + 1] = b",".join(fields) + b"\n"
    data = b"".join(lines)
    path.write_bytes(data)
    return frame.drop(index=list(BROKEN)).reset_index(drop=True), data


def _errors(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_skip_scores_the_good_rows_and_lists_the_bad_ones_where_they_are(
        job_dir: Path, make_job: Any, trained_model: Any, cli: Any,
        make_frame: Any) -> None:
    good, data = _bad_csv(job_dir / "data.csv", make_frame)
    job = make_job(job_dir, name="bad-skip", model=trained_model.path, input="data.csv",
                   output="out/scores.csv", id_columns=["id"], chunks=3, on_error="skip")
    result = cli("run", job, "--json")
    assert result.code == 0, result
    out = job_dir / "out" / "scores.csv"
    assert result.json["rows_out"] == ROWS - len(BROKEN)
    assert result.json["rows_failed"] == len(BROKEN)
    assert result.json["errors"] == f"{out}.errors.csv"
    assert f"{len(BROKEN)} rows failed" in result.flat_stderr  # the summary says so
    # The good rows: exactly what the model gives them, in input order.
    import pandas as pd

    scores = pd.read_csv(out, dtype={"id": str})
    assert list(scores["id"]) == list(good["id"])
    # (to the last bits only: BLAS sums a matrix of other rows in another order)
    np.testing.assert_allclose(scores[["proba_0", "proba_1"]].to_numpy(),
                               trained_model.proba(good), rtol=1e-12, atol=1e-15)
    rows = _errors(Path(f"{out}.errors.csv"))
    assert [r["record"] for r in rows] == [str(r) for r in BROKEN]  # input order, 0-based
    assert list(rows[0]) == ["source", "offset", "record", "id", "task", "attempt", "error",
                             "text"]
    for row in rows:  # the offset is where the record's raw text starts in the file
        start = int(row["offset"])
        assert data[start:].decode("utf-8", "replace").startswith(row["text"]), row
        assert row["source"] == str(job_dir / "data.csv") and row["attempt"] == "1"
    by_record = {int(r["record"]): r for r in rows}
    assert by_record[7]["error"].startswith("column 'a': ValueError: could not convert")
    assert by_record[7]["id"] == "r5-0007"
    assert "UnicodeDecodeError" in by_record[455]["error"]
    assert by_record[455]["id"] == "caf\ufffd"  # the id as far as it decodes
    assert "NaN" in by_record[640]["error"]
    assert by_record[301]["error"] == "ValueError: a record has more fields than the header"
    assert {r["task"] for r in rows} == {"t00000", "t00001", "t00002"}  # every chunk had some
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["totals"]["rows_failed"] == len(BROKEN)
    assert manifest["output"]["errors"] == f"{out}.errors.csv"
    assert sum(t["rows_failed"] for t in manifest_tasks(out)) == len(BROKEN)
    status = cli("status", job, "--json")
    assert status.json["rows_failed"] == len(BROKEN)
    assert [t["rows_failed"] for t in status.json["tasks"]] == [
        t["rows_failed"] for t in manifest_tasks(out)]


def test_fail_names_the_record_and_column_and_is_not_retried(
        job_dir: Path, make_job: Any, trained_model: Any, cli: Any,
        make_frame: Any) -> None:
    _, data = _bad_csv(job_dir / "data.csv", make_frame)
    job = make_job(job_dir, name="bad-fail", model=trained_model.path, input="data.csv",
                   output="out/scores.csv", id_columns=["id"], chunks=2, retries=2,
                   max_parallel=1)
    result = cli("run", job, "--json")
    assert result.code == 1, result
    offset = data.index(b"r5-0007,n/a")
    message = result.flat_stderr
    assert f"the record at byte {offset} of {job_dir / 'data.csv'} (record 7 of task t00000" in message
    assert "(column 'a'): ValueError: could not convert string to float: 'n/a'" in message
    assert "not retried" in message and "on_error = \"skip\"" in message
    assert "The model was given the columns ['a', 'b', 'c']" in message
    assert "Traceback" not in result.stderr
    assert not (job_dir / "out" / "scores.csv").exists()
    attempts = list((job_dir / "out" / "scores.csv.work" / "tasks" / "t00000").iterdir())
    assert [a.name for a in attempts] == ["attempt-1"]  # permanent: no retry


def test_a_latin1_file_says_set_encoding_and_then_scores(
        job_dir: Path, make_job: Any, trained_model: Any, cli: Any,
        make_frame: Any) -> None:
    frame = make_frame(50, 2)
    frame.loc[3, "id"] = "Jos\u00e9"
    (job_dir / "data.csv").write_bytes(frame.to_csv(index=False).encode("latin-1"))
    job = make_job(job_dir, name="latin", model=trained_model.path, input="data.csv",
                   output="out/scores.csv", id_columns=["id"])
    result = cli("run", job)
    assert result.code == 1, result
    assert "is not utf-8 text" in result.flat_stderr
    assert 'Set encoding = "latin-1"' in result.flat_stderr
    fixed = cli("run", job, "--set", "encoding=latin-1", "--json")
    assert fixed.code == 0, fixed
    ids = (job_dir / "out" / "scores.csv").read_text(encoding="utf-8").splitlines()
    assert ids[4].startswith("Jos\u00e9,")  # decoded, written as UTF-8


def test_a_budget_stops_the_job_without_output_and_a_bigger_one_resumes(
        job_dir: Path, make_job: Any, trained_model: Any, cli: Any,
        make_frame: Any) -> None:
    _bad_csv(job_dir / "data.csv", make_frame)
    job = make_job(job_dir, name="bad-budget", model=trained_model.path, input="data.csv",
                   output="out/scores.csv", id_columns=["id"], chunks=3, max_parallel=1,
                   on_error="skip", max_failed_rows=1)
    result = cli("run", job, "--json")
    assert result.code == 1, result
    out = job_dir / "out" / "scores.csv"
    message = result.flat_stderr
    # Task t00000 (rows 7) is within the budget, t00001 (rows 301, 455) exceeds it: the job
    # stops there, before t00002 runs.
    assert "3 rows failed of 600 read after 2 of 3 tasks, more than max_failed_rows = 1" in message
    assert f"The failed rows are in {out}.errors.csv" in message
    assert "record 7 (byte" in message and "could not convert string to float: 'n/a'" in message
    assert result.json["rows_failed"] == 3 and result.json["errors"] == f"{out}.errors.csv"
    assert not out.exists() and not Path(f"{out}.manifest.json").exists()
    assert [r["record"] for r in _errors(Path(f"{out}.errors.csv"))] == ["7", "301", "455"]
    again = cli("run", job, "--json", "--set", "max_failed_fraction=0.01",
                "--set", "max_failed_rows=10")
    assert again.code == 0, again
    assert again.json["job_id"] == result.json["job_id"]  # budgets are not part of the job
    # every task either finished before the stop (kept) or runs now
    assert again.json["reused_tasks"] >= 2
    # each task left runs once now; one the stop cut short (claimed, never finished) counts
    # that attempt too
    ran_now = 3 - again.json["reused_tasks"]
    assert ran_now <= again.json["attempts"] <= 2 * ran_now
    assert again.json["rows_failed"] == len(BROKEN)


def test_jsonl_skips_a_cut_record_and_a_text_value(trained_model: Any) -> None:
    """The runner's part of it, without a job: one JSONL batch through the row guard."""
    from serverless_score.records.scan import Batch
    from serverless_score.runner.python_scorer import PythonScorer, read_batch
    from serverless_score.runner.row_guard import ErrorLog, RowGuard

    lines = [json.dumps({"id": f"j{i}", "a": 0.5, "b": i, "c": 0.1}) for i in range(40)]
    lines[13] = '{"id": "j13", "a": 0.5, "b": '  # cut short
    lines[20] = json.dumps({"id": "j20", "a": "high", "b": 1, "c": 0.1})
    data = ("\n".join(lines) + "\n").encode()
    errors = ErrorLog("t00001", 2, "in.jsonl", "utf-8")
    guard = RowGuard(
        scorer=PythonScorer(model_path=str(trained_model.path), scorer="predict",
                            predict_method="auto", id_columns=["id"]),
        parse=lambda d, _: read_batch(d, "jsonl", b"", ["id"]), skip=True, header=b"",
        csv_format=False, id_columns=["id"], encoding="utf-8", errors=errors, task_id="t00001",
        begin=lambda: 1000)
    scores = guard.score_batch(Batch(memoryview(data), 40, start=1000), first=100)
    assert list(scores["id"]) == [f"j{i}" for i in range(40) if i not in (13, 20)]
    rows = [json.loads(line) for line in errors.lines]
    assert [(r["task_record"], r["id"], r["offset"]) for r in rows] == [
        (113, "", 1000 + data.index(b'{"id": "j13"')), (120, "j20", 1000 + data.index(b'{"id": "j20"'))]
    assert rows[0]["text"] == lines[13] and rows[1]["error"].startswith("column 'a': ")


def test_one_bad_row_costs_about_log2_of_the_batch_in_calls() -> None:
    """A row no cheap check can flag (the scorer refuses one value): bisection, not a call
    per row."""
    import pandas as pd

    from serverless_score.runner.bad_rows import assemble, score_frame_rows

    frame = pd.DataFrame({"x": np.arange(4096, dtype=float)})
    calls = []

    def score(piece: Any) -> Any:
        calls.append(len(piece))
        if (piece["x"] == 3000).any():
            raise ValueError("refused 3000")
        return pd.DataFrame({"s": piece["x"] * 2})

    found = score_frame_rows(frame, score, ["x"])
    assert [b.position for b in found.bad] == [3000]
    assert len(calls) <= 2 * 12 + 1  # log2(4096) = 12 levels, two halves each
    scores = assemble(found, len(frame))
    assert list(scores["s"]) == [2 * x for x in range(4096) if x != 3000]


@pytest.mark.parametrize("bad", ["n/a", "1,5"])
def test_suspects_are_tried_alone_and_everything_else_in_one_call(bad: str) -> None:
    import pandas as pd

    from serverless_score.runner.bad_rows import score_frame_rows

    values = [str(i) for i in range(1000)]
    values[10] = values[900] = bad
    frame = pd.DataFrame({"x": values, "t": ["u"] * 1000})
    calls = []

    def score(piece: Any) -> Any:
        calls.append(len(piece))
        return pd.DataFrame({"s": pd.to_numeric(piece["x"], errors="raise")})

    found = score_frame_rows(frame, score, ["x", "t"])  # t: text, not a suspect column
    assert [(b.position, b.column) for b in found.bad] == [(10, "x"), (900, "x")]
    assert calls == [998, 1, 1]


@pytest.mark.parametrize(("command", "header", "keys", "needle"), [
    ("plan", "id,a,b,c", {"id_columns": ["ID"]},
     "id_columns: ['ID'] not in the header of {data}, whose columns are ['id', 'a', 'b', 'c']"),
    ("run", "id,A,b,c", {"id_columns": ["id"]},
     "input: the model was fitted with the columns ['a', 'b', 'c'] and ['a'] are not in the "
     "header of {data}"),
])
def test_plan_checks_the_header_before_anything_runs(
        job_dir: Path, make_job: Any, trained_model: Any, cli: Any, command: str, header: str,
        keys: dict[str, Any], needle: str) -> None:
    data = job_dir / "data.csv"
    data.write_text(f"{header}\nr1,0.5,1,0.2\n")
    job = make_job(job_dir, name="cols", model=trained_model.path, input="data.csv",
                   output="out/scores.csv", **keys)
    result = cli(command, job, "--json")
    assert result.code == 2, result
    assert needle.format(data=data) in result.flat_stderr
    assert not (job_dir / "out").exists()  # nothing created


# -- the same on the docker and aci backends -----------------------------------------------------
@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(1200)
def test_skip_through_docker(job_dir: Path, make_job: Any, trained_model: Any, cli: Any,
                             make_frame: Any, python_image: Any, docker_engine: Any) -> None:
    from dockerhelp import our_containers

    _bad_csv(job_dir / "data.csv", make_frame)
    job = make_job(job_dir, name="dbad", model=trained_model.path, input="data.csv",
                   output="out/scores.csv", id_columns=["id"], chunks=2, on_error="skip",
                   backend="docker")
    result = cli("run", job, "--json", "-q", timeout=600)
    assert result.code == 0, result
    assert (result.json["rows_out"], result.json["rows_failed"]) == (ROWS - len(BROKEN),
                                                                     len(BROKEN))
    rows = _errors(job_dir / "out" / "scores.csv.errors.csv")
    assert [r["record"] for r in rows] == [str(r) for r in BROKEN]
    assert our_containers(docker_engine, result.json["job_id"]) == []


@pytest.mark.slow
@pytest.mark.azurite
@pytest.mark.aci
def test_skip_through_aci_writes_the_errors_blob(job_dir: Path, make_job: Any, trained_model: Any,
                                                 cli: Any, make_frame: Any, aci_emulator: Any,
                                                 azurite: Any, container: str,
                                                 blob_env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in aci_emulator.CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**blob_env, **aci_emulator.env()}.items():
        monkeypatch.setenv(name, value)
    _, data = _bad_csv(job_dir / "data.csv", make_frame)
    service = azurite.service()
    service.get_blob_client(container, "in/data.csv").upload_blob(data)
    service.get_blob_client(container, "models/m.joblib").upload_blob(
        trained_model.path.read_bytes())
    job = make_job(job_dir, name="abad", model=f"az://{container}/models/m.joblib",
                   input=f"az://{container}/in/data.csv", output=f"az://{container}/out/s.csv",
                   id_columns=["id"], chunks=2, on_error="skip", backend="aci",
                   image="myreg.azurecr.io/serverless-score-python:test")
    result = cli("run", job, "--json", "-q")
    assert result.code == 0, result
    assert result.json["rows_failed"] == len(BROKEN)
    assert result.json["errors"] == f"az://{container}/out/s.csv.errors.csv"
    blob = service.get_blob_client(container, "out/s.csv.errors.csv").download_blob().readall()
    rows = list(csv.DictReader(io.StringIO(blob.decode())))
    assert [r["record"] for r in rows] == [str(r) for r in BROKEN]
    assert {r["source"] for r in rows} == {f"az://{container}/in/data.csv"}
    assert aci_emulator.group_names() == []


def test_suspects_a_model_takes_are_scored_not_dropped() -> None:
    """A mostly numeric column whose few text values the model handles (a category code):
    every row scores, in order, nothing is reported."""
    import pandas as pd

    from serverless_score.runner.bad_rows import assemble, score_frame_rows

    frame = pd.DataFrame({"x": ["1", "2", "other", "4", "other", "6"]})

    def score(piece: Any) -> Any:
        return pd.DataFrame({"s": [0.0 if v == "other" else float(v) for v in piece["x"]]})

    found = score_frame_rows(frame, score, ["x"])
    assert found.bad == []
    assert list(assemble(found, len(frame))["s"]) == [1.0, 2.0, 0.0, 4.0, 0.0, 6.0]


def test_the_fraction_budget_stops_early_only_when_the_end_cannot_save_it() -> None:
    from serverless_score.controller.bad_rows import Budget
    from serverless_score.planning.tasks import Task
    from serverless_score.runner.contract import TaskResult
    from serverless_score.spec import spec_from_dict

    spec = spec_from_dict({"name": "b", "model": "/m.joblib", "input": "/x.csv",
                           "output": "/o.csv", "on_error": "skip", "max_failed_fraction": 0.01})
    tasks = [Task(index=i, kind="bytes", path="/x.csv", start=1000 * i,
                  end=1000 * (i + 1), file_size=4000) for i in range(4)]

    def result(task: Task, failed: int) -> TaskResult:  # 100 records of 10 bytes each
        return TaskResult(task.id, 1, 100, 100 - failed, task.start, task.end, None, "", [], "",
                          "", 0, 0.0, rows_failed=failed)

    budget = Budget(spec, tasks)
    # 5 of 100 read: 5 % now, but 5 of 400 (1.25 %) at the end, or 5 of the bound 2 x 400
    assert not budget.task_done(tasks[0], result(tasks[0], 5))
    assert budget.task_done(tasks[1], result(tasks[1], 4))  # 9 > 1 % of 800: cannot end within
    exact = Budget(spec, tasks)
    for task, failed in zip(tasks, (1, 1, 1, 1), strict=True):
        assert not exact.task_done(task, result(task, failed))
    assert not exact.exceeded(final=True)  # 4 of 400 = 1 %: not more than the budget
    # t00003 re-run (a boundary repair) with 2 failed: its counts are replaced, not added
    assert exact.task_done(tasks[3], result(tasks[3], 2))
    assert exact.rows_failed == 5 and exact.rows_seen == 400
    assert exact.exceeded(final=True)


def test_a_batch_whose_first_record_has_an_extra_field_is_refused_not_shifted() -> None:
    """pandas would take the first column for an index and shift every column of the batch."""
    from serverless_score.runner.python_scorer import read_batch

    with pytest.raises(ValueError, match="more fields than the header"):
        read_batch(b"r1,0.5,1,0.2,surplus\nr2,0.1,2,0.3\n", "csv", b"id,a,b,c\n", ["id"])


def test_an_empty_id_is_read_as_an_empty_id_and_an_empty_feature_as_missing() -> None:
    import math

    from serverless_score.runner.python_scorer import read_batch

    frame = read_batch(b",1.5\nk2,\n", "csv", b"id,x\n", ["id"])
    assert frame["id"].tolist() == ["", "k2"]  # not NaN: JSONL/Parquet outputs would say null
    assert frame["x"].iloc[0] == 1.5 and math.isnan(frame["x"].iloc[1])


@pytest.mark.slow
@pytest.mark.parametrize("output", ["out/s.parquet", "out/s.jsonl"])
def test_ids_that_look_like_bad_numbers_are_ids_for_a_scorer_script(job_dir, make_job, cli,
                                                                   output) -> None:
    """A scorer script is given every column, ids included; an id column of mostly numbers with
    "" and "NA" among them is not a numeric column with bad values."""
    import pandas as pd

    ids = ["", "NA"] + [f"{i:05d}" for i in range(3, 41)]
    (job_dir / "data.csv").write_text("id,x\n" + "".join(f"{k},{i}\n" for i, k in enumerate(ids)))
    (job_dir / "model.txt").write_text("2\n")
    (job_dir / "score.py").write_text(
        "import pandas as pd\n"
        "def load_model(path):\n"
        "    return int(open(path).read())\n"
        "def score(model, data):\n"
        "    return pd.DataFrame({'prediction': data['x'] * model})\n")
    job = make_job(job_dir, name="ids", input="data.csv", output=output, scorer="score.py",
                   model="model.txt", id_columns=["id"], chunks=2)
    result = cli("run", job, "--json", "-q")
    assert result.code == 0, result
    path = job_dir / output
    frame = (pd.read_parquet(path) if output.endswith(".parquet")
             else pd.read_json(path, lines=True, dtype={"id": str}))
    assert frame["id"].tolist() == ids
    assert frame["prediction"].tolist() == [2 * i for i in range(len(ids))]
