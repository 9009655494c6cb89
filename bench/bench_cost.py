"""Estimate against actual: is a calibrated estimate within 15% of the container-seconds a run
really used?

For each job (model, runtime, backend), in a history of its own: run A scores one input and
calibrates (``--calibrate`` times, 3 by default: the estimate takes the median of the last 3
runs, so a history of 3 is what a user who ran the job a few times has; a first run pays cold
caches); run B then scores *another* input of about the same
size, and its estimate (made before anything was created, from run A's measured throughput and
per-group overhead) is set beside the container-seconds B used. The figure is actual /
estimate for run B.

Jobs: the bench models (`forest`, `logistic`, bench/common.py) on two halves of the scoring data
on the local backend; the Python and R examples (`python-churn`, `r-glm`) on two halves of their
prepared data on the local backend; the bench models through the ACI emulator (tests/
aci_emulator, each container a local runner process; Azurite as Blob Storage); the bench models
and python-churn on Docker when an engine answers at DOCKER_HOST with the built-in image (`make
docker` builds it; skipped otherwise).

Usage: ``python bench/bench_cost.py [--rows 400000] [--calibrate 3] [--skip-aci] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "tests"))  # the ACI emulator and the Azurite helper
sys.path.insert(0, str(REPO))  # this checkout's package, not the venv's editable one

from common import DATA_DIR, log, machine_info, model_path, scoring_csv, split_csv  # noqa: E402

TARGET = 0.15
IMAGE = "bench.azurecr.io/serverless-score-python:bench"  # the emulator runs the runner for it


@contextmanager
def _history(folder: Path) -> Iterator[None]:
    """A history of the job's own: run A is the only run B can be calibrated from."""
    old = os.environ.get("SERVERLESS_SCORE_HISTORY")
    os.environ["SERVERLESS_SCORE_HISTORY"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SERVERLESS_SCORE_HISTORY", None)
        else:
            os.environ["SERVERLESS_SCORE_HISTORY"] = old


def _run(job: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    from serverless_score.controller.job import run_job
    from serverless_score.spec import load_spec, spec_from_dict

    sets = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    spec = load_spec(job, sets) if job is not None else spec_from_dict(overrides)
    result = run_job(spec)
    assert result.status == "succeeded" and result.reused_tasks == 0, result
    return result.usage or {}


def _pair(label: str, history: Path, run: Callable[[str], dict[str, Any]],
          calibrate: int = 2) -> dict[str, Any]:
    """Run A ``calibrate`` times, then B; B's estimate against B's actual. More than one run
    of A: a user's history has several runs (the estimate takes the median of the last 3),
    and the first run on a machine pays cold caches (page cache, R's byte code) the next ones
    do not."""
    with _history(history):
        for i in range(calibrate):
            a = run("a" if i == 0 else f"a{i + 1}")  # input A each time, another output
        b = run("b")
    est = b["estimate"]
    actual, expected = b["container_seconds"], est["container_seconds"]
    ratio = actual / expected if expected else None
    row = {"job": label, "run_a_container_s": a["container_seconds"],
           "run_a_estimate_s": a["estimate"]["container_seconds"],
           "estimate_s": expected, "actual_s": actual, "ratio": ratio,
           "cost_estimate": est["cost"], "cost_actual": b["cost"],
           "calibration": est["calibration"], "groups": b["groups"]}
    log(f"{label}: estimate {expected:.1f} s, actual {actual:.1f} s, ratio "
        f"{ratio if ratio is None else f'{ratio:.3f}'}")
    return row


def _bench_models(rows: int) -> dict[str, tuple[Path, list[Path]]]:
    halves = split_csv(scoring_csv(rows), 2)
    return {name: (model_path(name), halves) for name in ("forest", "logistic")}


def _local_model_job(tmp: Path, name: str, model: Path, halves: list[Path],
                     backend: str = "local") -> Callable[[str], Any]:
    def run(which: str) -> dict[str, Any]:
        data = halves[0] if which.startswith("a") else halves[1]
        return _run(None, {
            "name": f"cost-{name}", "model": str(model), "input": str(data),
            "output": str(tmp / f"{backend}-{name}-{which}.csv"), "id_columns": ["id"],
            "chunks": 4, "max_parallel": 2, "retries": 0, "timeout": "10m",
            "backend": backend})
    return run


def _example(tmp: Path, name: str, prepare: list[str], data: str) -> Callable[[str, str], Any]:
    folder = tmp / name
    shutil.copytree(REPO / "examples" / name, folder)
    subprocess.run(prepare, cwd=folder, check=True, capture_output=True, timeout=900)
    halves = split_csv(folder / data, 2)

    def run(which: str, backend: str = "local") -> dict[str, Any]:
        return _run(folder / "job.toml", {
            "input": str(halves[0] if which.startswith("a") else halves[1]), "backend": backend,
            "output": str(folder / "out" / f"{backend}-{which}.csv"), "retries": 0})
    return run


def _docker_answers() -> bool:
    """An engine at DOCKER_HOST with the built-in Python image (`make docker` builds it)."""
    if not os.environ.get("DOCKER_HOST") or not shutil.which("docker"):
        return False
    from serverless_score.images import default_tag

    done = subprocess.run(["docker", "image", "inspect", default_tag("python")],
                          capture_output=True, timeout=30)
    return done.returncode == 0


def _aci_jobs(stack: ExitStack, tmp: Path, models: dict[str, tuple[Path, list[Path]]],
              ) -> list[tuple[str, Callable[[str], Any]]]:
    from aci_emulator import AciEmulator
    from azurite import running

    azurite = stack.enter_context(running("3.37", tmp / "azurite"))
    # East US: the region the shipped price table has (offline here), so B has a cost too
    emu = stack.enter_context(AciEmulator(work_dir=tmp / "emu", location="eastus"))
    emu.set_rate_limits(creates=[], deletes=[])
    stack.enter_context(emu.environ())
    os.environ.update(azurite.env())
    os.environ["SERVERLESS_SCORE_CACHE"] = str(tmp / "cache")
    service = azurite.service()
    service.create_container("bench")

    def upload(path: Path, name: str) -> str:
        with path.open("rb") as f:
            service.get_blob_client("bench", name).upload_blob(f, overwrite=True)
        return f"az://bench/{name}"

    jobs = []
    for name, (model, halves) in models.items():
        blob_model = upload(model, f"models/{name}.joblib")
        inputs = [upload(h, f"in/{name}-{i}.csv") for i, h in enumerate(halves)]

        def run(which: str, name: str = name, blob_model: str = blob_model,
                inputs: list[str] = inputs) -> dict[str, Any]:
            return _run(None, {
                "name": f"cost-aci-{name}", "model": blob_model,
                "input": inputs[0] if which.startswith("a") else inputs[1],
                "output": f"az://bench/out/{name}-{which}.csv", "id_columns": ["id"],
                "chunks": 4, "max_parallel": 2, "retries": 0, "timeout": "10m",
                "backend": "aci", "image": IMAGE,
                "azure": {"creates_per_minute": 100, "location": emu.location}})
        jobs.append((f"aci-emulator {name}", run))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=400_000,
                        help="rows of the bench data, cut in two halves (A and B)")
    parser.add_argument("--example-rows", type=int, default=200_000)
    parser.add_argument("--skip-aci", action="store_true")
    parser.add_argument("--skip-r", action="store_true")
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--json", type=Path, default=DATA_DIR / "cost.json")
    parser.add_argument("--calibrate", type=int, default=3,
                        help="runs of input A in the job's history before B is estimated")
    args = parser.parse_args()
    os.environ["SERVERLESS_SCORE_RETAIL_PRICES_URL"] = "off"  # the shipped table: offline here
    info = machine_info()
    models = _bench_models(args.rows)
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cost-")))
        jobs: list[tuple[str, Callable[[str], Any]]] = [
            (f"local {name}", _local_model_job(tmp, name, model, halves))
            for name, (model, halves) in models.items()]
        churn = _example(
            tmp, "python-churn", [sys.executable, "prepare.py", "--rows", str(args.example_rows)],
            "data/customers.csv")
        jobs.append(("local python-churn", churn))
        if not args.skip_r and shutil.which("Rscript"):
            jobs.append(("local r-glm", _example(
                tmp, "r-glm", ["Rscript", "prepare.R", str(args.example_rows)], "data/loans.csv")))
        if not args.skip_docker and _docker_answers():
            jobs += [(f"docker {name}", _local_model_job(tmp, name, model, halves, "docker"))
                     for name, (model, halves) in models.items()]
            jobs.append(("docker python-churn", lambda w: churn(w, "docker")))
        else:
            log("docker: no engine at DOCKER_HOST with the built-in image; skipped")
        if not args.skip_aci:
            jobs += _aci_jobs(stack, tmp, models)
        for i, (label, run) in enumerate(jobs):
            rows.append(_pair(label, tmp / f"history-{i}", run, args.calibrate))
    info["loadavg_at_end"] = list(os.getloadavg())
    print(f"\n{'job':28s} {'estimate s':>10s} {'actual s':>9s} {'ratio':>6s}  within 15%")
    for r in rows:
        ok = r["ratio"] is not None and abs(r["ratio"] - 1) <= TARGET
        print(f"{r['job']:28s} {r['estimate_s']:10.1f} {r['actual_s']:9.1f} "
              f"{r['ratio']:6.3f}  {'yes' if ok else 'NO'}")
    print(f"load average at start {info['loadavg_at_start']}, at end {info['loadavg_at_end']} "
          f"({info['cpus']} CPUs)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
