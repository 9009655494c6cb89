"""Estimates calibrated from real runs: what a finished job measured, the per-user history, which
earlier run an estimate uses (and says it used), and a job run twice through the CLI: the second
plan is calibrated from the first run, and the manifest and status show estimate and actual."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from shelljobs import SCORE, write_rows

from serverless_score.controller.calibration import (
    KEEP,
    Measured,
    RunKey,
    calibrate,
    history_file,
    measure,
    read_history,
    remember,
)
from serverless_score.planning.cost import Assumptions, estimate
from serverless_score.planning.tasks import Task

FALLBACK = Assumptions(throughput_mb_per_s=5.0, startup_seconds=2.0, shard_seconds=60.0)
KEY = RunKey("python", "sha-a", "img:1", "local")


def _tasks(sizes: list[int]) -> list[Task]:
    return [Task(index=i, kind="bytes", path="/d/x.csv", start=0, end=s, size=s)
            for i, s in enumerate(sizes)]


def _usage(seconds: list[float], startups: list[float | None]) -> dict[str, object]:
    return {"container_seconds": sum(seconds), "evictions": 0,
            "per_group": [{"name": f"g{i}", "seconds": s, "startup_seconds": st,
                           "pull_seconds": None} for i, (s, st) in enumerate(zip(seconds, startups,
                                                                                strict=True))]}


def _measured(key: RunKey = KEY, *, container: float = 30.0, scoring: float = 20.0,
              mb: int = 40, name: str = "j") -> Measured:
    got = measure(key=key, job_id="id", name=name,
                  task_sizes=[(mb * 10**6 // 4, False)] * 4, rows=1000,
                  task_seconds=[scoring / 4] * 4,
                  usage=_usage([container / 2, container / 2], [1.0, 3.0]), attempts=5)
    assert got is not None
    return got


def test_a_run_measures_throughput_start_up_overhead_and_retries() -> None:
    m = _measured()
    assert m.input_bytes == 40 * 10**6 and m.groups == 2 and m.tasks == 4
    assert m.bytes_per_scoring_second == pytest.approx(2 * 10**6)  # 40 MB in 20 s of scoring
    assert m.overhead_per_group == pytest.approx(5.0)  # (30 - 20) / 2 groups
    assert m.startup_seconds == pytest.approx(2.0) and m.retries == 1
    data = m.to_dict()
    assert data["bytes_per_container_second"] == pytest.approx(40 * 10**6 / 30, rel=1e-3)
    assert data["rows_per_container_second"] == pytest.approx(1000 / 30, rel=1e-3)
    assert Measured.from_dict(json.loads(json.dumps(data))) == m
    assert m.load_average is not None and m.load_average >= 0  # the machine's, at the finish
    older = {k: v for k, v in data.items() if k != "load_average"}  # a line of an older version
    assert Measured.from_dict(older).load_average is None


def test_a_run_reestimated_with_its_own_calibration_gives_its_container_seconds() -> None:
    m = _measured(container=37.0, scoring=21.0)
    tasks = _tasks([10 * 10**6] * 4)
    est = estimate([tasks[:2], tasks[2:]], backend="local", max_parallel=2, cpu=1, memory_gb=1,
                   assumptions=m.assumptions(FALLBACK), billed=False, price=None)
    assert est.container_seconds == pytest.approx(37.0)


def test_a_job_that_ran_no_group_measures_nothing() -> None:
    assert measure(key=KEY, job_id="i", name="n", task_sizes=[(10, False)], rows=1,
                   task_seconds=[], usage={"per_group": []}, attempts=1) is None


def test_the_same_model_runtime_and_backend_wins_then_the_nearest_then_assumptions() -> None:
    other_model = _measured(RunKey("python", "sha-b", "img:1", "local"), scoring=10.0, name="near")
    other_image = _measured(RunKey("python", "sha-c", "img:2", "local"), scoring=5.0, name="far")
    same = _measured(scoring=40.0, name="same")
    chosen = calibrate(KEY, FALLBACK, [same, other_model, other_image])
    assert chosen.run is same and "same model, runtime and backend" in chosen.source
    assert chosen.assumptions.throughput_mb_per_s == pytest.approx(1.0)  # 40 MB / 40 s
    near = calibrate(RunKey("python", "sha-z", "img:1", "local"), FALLBACK,
                     [other_model, other_image])
    assert near.run is other_model and "nearest" in near.source and "near" in near.describe()
    none = calibrate(RunKey("r", "sha-z", "img:9", "aci"), FALLBACK, [other_model])
    assert none.run is None and none.assumptions == FALLBACK
    assert "none yet" in none.describe()


def test_the_median_of_the_last_runs_damps_one_slow_run() -> None:
    runs = [_measured(scoring=s) for s in (20.0, 20.0, 80.0)]  # the newest was 4x slower
    chosen = calibrate(KEY, FALLBACK, runs)
    assert chosen.assumptions.throughput_mb_per_s == pytest.approx(2.0)
    assert "median of its last 3 runs" in chosen.source


def test_the_history_lives_where_told_keeps_the_newest_and_skips_bad_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVERLESS_SCORE_HISTORY", str(tmp_path / "h"))
    assert history_file() == tmp_path / "h" / "runs.jsonl"
    history_file().parent.mkdir(parents=True)
    history_file().write_text("not json\n" + json.dumps({"key": {"runtime": "x"}}) + "\n")
    remember(_measured(name="first"))
    assert [r.name for r in read_history()] == ["first"]
    for i in range(KEEP + 3):
        remember(_measured(name=f"r{i}"))
    runs = read_history()
    assert len(runs) == KEEP and runs[-1].name == f"r{KEEP + 2}"


@pytest.mark.slow
def test_a_job_run_twice_is_estimated_from_its_first_run(job_dir, make_job, cli) -> None:
    keys = write_rows(job_dir / "data.csv", 400)
    job = make_job(job_dir, name="calib", input="data.csv", output="out/a.txt",
                   runtime="command", scorer=f"sleep 0.5; {SCORE}", chunks=4, max_parallel=2)
    first_plan = cli("plan", job, "--json")
    assert first_plan.code == 0 and first_plan.json["calibrated_from"] is None
    assert "none yet" in first_plan.json["calibration"]
    first = cli("run", job, "--json", "-q")
    assert first.code == 0, first
    manifest = json.loads((job_dir / "out" / "a.txt.manifest.json").read_text())
    measured = manifest["calibration"]
    assert measured["key"]["backend"] == "local" and measured["tasks"] == 4
    assert measured["scoring_seconds"] >= 4 * 0.5  # each task slept half a second
    assert measured["startup_seconds"] is not None and measured["rows"] == len(keys)
    versus = manifest["usage"]["estimate"]
    assert versus["actual_over_estimate"]["container_seconds"] == pytest.approx(
        manifest["usage"]["container_seconds"] / versus["container_seconds"], rel=0.05)
    history = Path(os.environ["SERVERLESS_SCORE_HISTORY"]) / "runs.jsonl"
    assert len(history.read_text().splitlines()) == 1

    second_plan = cli("plan", job, "--json", "--set", 'output="out/b.txt"')
    assert second_plan.json["calibrated_from"]["job_id"] == manifest["job_id"]
    assert "same model, runtime and backend" in second_plan.json["calibration"]
    # The estimate now rests on the first run's measured figures, not the 5 MB/s assumed.
    assert second_plan.json["estimate"]["assumptions"]["throughput_mb_per_s"] == pytest.approx(
        measured["bytes_per_scoring_second"] / 1e6, rel=1e-3)
    status = cli("status", job)
    assert "estimated:" in status.stdout and "actual / estimate" in status.stdout


@pytest.mark.slow
def test_plan_sample_scores_the_first_records_here_and_estimates_from_them(job_dir, make_job,
                                                                           cli) -> None:
    write_rows(job_dir / "data.csv", 400)
    job = make_job(job_dir, name="sampled", input="data.csv", output="out/a.txt",
                   runtime="command", scorer=f"sleep 0.4; {SCORE}", chunks=4, max_parallel=2)
    planned = cli("plan", job, "--json", "--sample", "50")
    assert planned.code == 0, planned
    text = planned.json["calibration"]
    assert text.startswith("calibration: sampled: the first 50 records")
    head = b"".join((job_dir / "data.csv").read_bytes().splitlines(keepends=True)[1:51])
    speed = planned.json["estimate"]["assumptions"]["throughput_mb_per_s"] * 1e6
    # the sample's bytes over at least the 0.4 s its one task slept
    assert 0 < speed <= (len(head) + len("k,v\n")) / 0.4
    assert not (job_dir / "out").exists()  # nothing of the job itself was made
    assert not (Path(os.environ["SERVERLESS_SCORE_HISTORY"]) / "runs.jsonl").exists()
    sharded = make_job(job_dir, "shards.toml", name="sh", runtime="command", scorer="cat",
                       shards=2, output="out/s.txt")
    refused = cli("plan", sharded, "--sample", "5")
    assert refused.code == 2 and "this job has none (shards)" in refused.flat_stderr


@pytest.mark.azurite
def test_plan_never_downloads_a_remote_model_to_look_up_its_calibration(
        job_dir, make_job, cli, blob_env, azurite, container) -> None:
    blobs = azurite.service()
    blobs.get_blob_client(container, "m/model.joblib").upload_blob(b"x" * 100_000)
    blobs.get_blob_client(container, "in/d.csv").upload_blob(b"a,b\n1,2\n")
    job = make_job(job_dir, name="remote", model=f"az://{container}/m/model.joblib",
                   input=f"az://{container}/in/d.csv", output=str(job_dir / "out.csv"))
    planned = cli("plan", job, "--json")
    assert planned.code == 0, planned
    assert "none yet" in planned.json["calibration"]
    cache = Path(blob_env["SERVERLESS_SCORE_CACHE"])
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
