"""Controller scale benchmark: does planning and the controller's bookkeeping stay O(tasks)?

For each plan size (1,000 / 10,000 / 100,000 tasks by default) a fresh process plans a job of one
CSV file cut into that many tasks (``chunks = N``, a shell scorer: nothing is scored) on the local
backend with local files, and times, one stage at a time, what the controller does per task:

  plan          ``make_plan``: list the input, cut it into tasks, hash the plan into the job id
  estimate      ``plan_estimate``: the groups and the cost ``plan`` and ``run`` print
  plan --json   the ``plan --json`` command itself, in-process (every task as JSON)
  resume-fresh  ``load_state`` of a new job: clears the work folder, writes job.json (every task)
  status-run    ``status`` while the job runs: every task's stored status read
  resume        ``load_state`` once every task finished: one listing, then every task's status
                read and its part checked against its size and sha256 (what a rerun does)
  progress      every finished task through the job's progress reporter (the bad-rows budget and
                the progress lines ``run`` prints without a terminal, as the R package reads them)
  verify        the job's final checks: the boundary chain and the byte accounting
  merge-plan    ``merge_plan``: which parts, in which order, under which header
  merge         ``merge``: the parts concatenated into the output, hashed on the way
  manifest      ``write_manifest``: the summary and its task lines
  status        ``status`` of the succeeded job (from the manifest's task lines)

Setting up a finished job (each task's part and status written as a runner leaves them) is not
timed. Each stage prints wall seconds and wall and CPU microseconds per task (CPU: this process's,
which other load on the machine disturbs much less than wall time); the last table divides each
stage's per-task time at the largest size by that at the smallest: about 1x is O(tasks), 10x at
100x the tasks would be O(tasks^2) creeping in. Peak memory is each process's maximum resident set, and
its growth over the same process just before planning (the imports).

Usage: python bench/bench_scale.py [--sizes 1000,10000,100000] [--keep] [--dir DIR]
Writes bench/.data/scale/ (or DIR; deleted at the end unless --keep) and
bench/.data/last_scale.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"
WORK_DIR = DATA_DIR / "scale"
RESULT_JSON = DATA_DIR / "last_scale.json"
STAGES = ("plan", "estimate", "plan --json", "resume-fresh", "status-run", "resume", "progress",
          "verify", "merge-plan", "merge", "manifest", "status")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(tasks: int, root: Path) -> dict[str, Any]:
    """One size, in this process: every stage's seconds, peak memory and the files' sizes."""
    from rich.console import Console
    from typer.testing import CliRunner

    from serverless_score.cli import app
    from serverless_score.cli.progress import RichProgress
    from serverless_score.controller.access import WorkerAccess
    from serverless_score.controller.bad_rows import Budget
    from serverless_score.controller.estimate import plan_estimate
    from serverless_score.controller.inspect import job_status, locate
    from serverless_score.controller.job import Job
    from serverless_score.controller.manifest import write_manifest
    from serverless_score.controller.merge import merge, merge_plan
    from serverless_score.controller.state import load_state
    from serverless_score.layout import JobLayout
    from serverless_score.planning import make_plan
    from serverless_score.runner.contract import AttemptStatus, Outcome, TaskResult
    from serverless_score.spec import load_spec
    from serverless_score.storage import StoreConfig, get_store

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    data = root / "in.csv"
    with open(data, "w", encoding="ascii") as f:  # two 11-byte records per task
        f.write("k,v\n")
        f.writelines(f"{i:08d},1\n" for i in range(2 * tasks))
    job_file = root / "job.toml"
    job_file.write_text(f'name = "scale"\nruntime = "command"\nscorer = "tail -n +2"\n'
                        f'input = "in.csv"\noutput = "out/scores.txt"\nchunks = {tasks}\n'
                        f"max_parallel = 4\n")
    spec = load_spec(job_file)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(stage: str, run: Callable[[], Any]) -> Any:
        started, cpu_started = time.perf_counter(), time.process_time()
        value = run()
        seconds[stage] = time.perf_counter() - started
        cpu[stage] = time.process_time() - cpu_started
        return value

    rss_before = _rss_mb()
    plan = timed("plan", lambda: make_plan(spec))
    assert len(plan.tasks) == tasks, len(plan.tasks)
    timed("estimate", lambda: plan_estimate(plan))
    shown = timed("plan --json", lambda: CliRunner().invoke(app, ["plan", str(job_file), "--json"]))
    assert shown.exit_code == 0 and len(json.loads(shown.stdout)["tasks"]) == tasks, shown.output
    del shown
    store, layout = get_store(spec.output), JobLayout(spec.output)
    (root / "out").mkdir()
    timed("resume-fresh", lambda: load_state(store, layout, plan))

    # Every task finished once, as its runner leaves it: the part, then its status (untimed).
    for t in plan.tasks:
        folder = Path(layout.attempt_dir(t.id, 1))
        folder.mkdir(parents=True)
        part = f"{t.index},scored\n".encode()
        (folder / "part").write_bytes(part)
        result = TaskResult(t.id, 1, 2, 2, t.start, t.end, None, "", [], layout.part(t.id, 1),
                            hashlib.sha256(part).hexdigest(), len(part), 0.01)
        (folder / "status.json").write_text(
            AttemptStatus(t.id, 1, f"scale-{t.id}-1", Outcome.SUCCEEDED, result=result).to_json())

    running = timed("status-run", lambda: job_status(locate(spec.output), None))
    assert running.done == tasks and running.state == "stopped", (running.done, running.state)
    del running
    state = timed("resume", lambda: load_state(store, layout, plan))
    results = state.results
    assert len(results) == tasks

    def progress() -> None:
        budget = Budget(spec, plan.tasks)
        shown = RichProgress(Console(file=io.StringIO(), width=80), tasks, "scale")
        for t in plan.tasks:
            shown.task_done(t, results[t.id])
            budget.task_done(t, results[t.id])
        assert budget.rows_seen == 2 * tasks and not budget.exceeded(final=True)

    timed("progress", progress)
    by_id = {t.id: t for t in plan.tasks}

    def verify() -> None:
        assert Job._boundary_breaks(by_id, results) == []
        Job._check_accounting(plan, by_id, results)

    timed("verify", verify)
    merged = timed("merge-plan", lambda: merge_plan(list(by_id.values()), results, layout,
                                                    plan.output_format))
    composed = timed("merge", lambda: merge(store, merged, spec.output, plan.output_format))
    assert composed.size == sum(r.part_bytes for r in results.values())
    summary = {"job_id": plan.job_id, "name": spec.name, "status": "succeeded",
               "spec": spec.model_dump(mode="json"),
               "inputs": [{"path": f.path, "size": f.size, "version": f.version} for f in plan.files],
               "output": {"path": spec.output, "sha256": composed.sha256, "bytes": composed.size},
               "storage": {"worker_access": WorkerAccess.decide(spec, StoreConfig.from_spec(spec)).mode},
               "totals": {"tasks": tasks}, "usage": None}
    timed("manifest", lambda: write_manifest(store, layout, summary, plan.tasks, results, {}, {}))
    done = timed("status", lambda: job_status(locate(spec.output), None))
    assert done.done == tasks and done.state == "succeeded", (done.done, done.state)
    return {
        "tasks": tasks, "seconds": {s: round(v, 4) for s, v in seconds.items()},
        "cpu_seconds": {s: round(v, 4) for s, v in cpu.items()},
        "peak_rss_mb": round(_rss_mb(), 1), "rss_growth_mb": round(_rss_mb() - rss_before, 1),
        "manifest_kb": round(os.path.getsize(layout.manifest) / 1e3, 1),
        "manifest_lines": len(Path(layout.manifest).read_text().splitlines()),
        "task_lines_mb": round(os.path.getsize(layout.manifest_tasks) / 1e6, 2),
        "job_json_mb": round(os.path.getsize(layout.job_file) / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="plan sizes in tasks, comma-separated (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep each size's files")
    parser.add_argument("--dir", type=Path, default=WORK_DIR,
                        help="where the jobs go (default: %(default)s; e.g. /dev/shm for a "
                             "file system that other load disturbs less)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: measure one size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.dir / f"n{args.one}")))
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f}: other work distorts the timings", file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=str(BENCH_DIR.parent))
    figures = []
    for tasks in sizes:
        print(f"measuring {tasks:,} tasks...", file=sys.stderr, flush=True)
        child = subprocess.run([sys.executable, __file__, "--one", str(tasks), "--dir",
                                str(args.dir)], env=env, capture_output=True, text=True,
                               check=False)
        if child.returncode != 0:
            sys.exit(f"bench_scale: {tasks} tasks failed:\n{child.stderr}")
        figures.append(json.loads(child.stdout.strip().splitlines()[-1]))
    report(figures)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    RESULT_JSON.write_text(json.dumps({
        "date": dt.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
        "cpus": os.cpu_count(), "load_before": load, "sizes": figures}, indent=1))
    if not args.keep:  # (after the report: 100,000 task folders take a while to delete)
        for tasks in sizes:
            shutil.rmtree(args.dir / f"n{tasks}", ignore_errors=True)


def report(figures: list[dict[str, Any]]) -> None:
    """Per stage and size: wall seconds, wall and CPU microseconds per task; then the ratios."""
    print(f"{'':<14}" + "".join(f"{f['tasks']:>27,} tasks" for f in figures))
    print(f"{'stage':<14}" + "".join(f"{'wall s':>12}{'us/task':>10}{'cpu us':>11}" for _ in figures))
    totals = {f["tasks"]: (sum(f["seconds"].values()), sum(f["cpu_seconds"].values()))
              for f in figures}
    for stage in (*STAGES, "total"):
        row = f"{stage:<14}"
        for f in figures:
            wall, cpu = ((f["seconds"][stage], f["cpu_seconds"][stage]) if stage != "total"
                         else totals[f["tasks"]])
            row += f"{wall:>12.3f}{wall / f['tasks'] * 1e6:>10.1f}{cpu / f['tasks'] * 1e6:>11.1f}"
        print(row)
    for key, label in (("peak_rss_mb", "peak RSS MB"), ("rss_growth_mb", "RSS growth MB"),
                       ("manifest_kb", "manifest KB"), ("manifest_lines", "manifest lines"),
                       ("task_lines_mb", "task lines MB"), ("job_json_mb", "job.json MB")):
        print(f"{label:<14}" + "".join(f"{f[key]:>33}" for f in figures))
    if len(figures) < 2:
        return
    small, big = figures[0], figures[-1]
    print(f"\nper-task time at {big['tasks']:,} tasks / at {small['tasks']:,} "
          "(~1x: O(tasks); growing with the size: worse)")
    print(f"  {'stage':<14}{'wall':>7}{'cpu':>7}")
    for stage in (*STAGES, "total"):
        ratios = []
        for key, index in (("seconds", 0), ("cpu_seconds", 1)):
            if stage == "total":
                a, b = totals[small["tasks"]][index], totals[big["tasks"]][index]
            else:
                a, b = small[key][stage], big[key][stage]
            per_small, per_big = a / small["tasks"], b / big["tasks"]
            ratios.append(f"{per_big / per_small:>6.2f}x" if per_small > 0 else f"{'-':>7}")
        print(f"  {stage:<14}{''.join(ratios)}")


if __name__ == "__main__":
    main()
