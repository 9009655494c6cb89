"""The timed variants of the scoring bench, each run as its own process.

Every variant is a whole child process, timed from start to exit, so interpreter start-up,
imports and model loading count the same way for the baseline, the tool and Lithops.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
import numpy as np
import pandas as pd

TOOL = common.VENV_BIN / "serverless-score"
LITHOPS_WORKERS = 2
# Generous: a 1M-row forest run takes well under a minute; this only stops a hung variant.
VARIANT_TIMEOUT_S = 1800


@dataclass
class VariantResult:
    """One timed variant. ``seconds`` is None when the variant could not run; a run that
    finished with wrong output keeps its time but has ``ok`` False."""

    variant: str
    seconds: float | None = None
    # CPU time of the whole process tree: less sensitive than wall time to whatever else runs
    # on the machine, and it shows work the tool adds even where two cores hide it.
    cpu_seconds: float | None = None
    ok: bool = False
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(
    cmd: list[str], env: dict[str, str] | None = None
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall time and CPU time (user + system, every descendant that was waited for) of a whole
    child process, start-up and exit included."""
    cpu_before = _children_cpu()
    with common.timed() as t:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=VARIANT_TIMEOUT_S, check=False, env=env
        )
    return t.seconds, _children_cpu() - cpu_before, proc


def tail(text: str, lines: int = 6) -> str:
    """The end of a child's output, on one line: where a traceback says what went wrong."""
    return " | ".join(text.strip().splitlines()[-lines:])


def best_of(repeat: int, once: Callable[[], VariantResult], *, by_cpu: bool = False) -> VariantResult:
    """Run a variant ``repeat`` times; keep the fastest correct run (minimum is the least
    noisy estimate of what the code costs), by CPU seconds for the hand-tuned yardstick (its
    CPU seconds are what it is measured by). Stop at the first failure."""
    best: VariantResult | None = None

    def cost(r: VariantResult) -> float:
        return (r.cpu_seconds if by_cpu else r.seconds) or 0.0

    for _ in range(repeat):
        load = os.getloadavg()[0]
        result = once()
        # what else ran on the machine: the 1-minute load average just before this run
        result.details["load1_before"] = round(load, 2)
        if not result.ok:
            return result
        if best is None or cost(result) < cost(best):
            best = result
    assert best is not None
    return best


# --- bare -----------------------------------------------------------------------------------


def run_bare(model: Path, csv: Path, out: Path, rows: int) -> VariantResult:
    seconds, cpu, proc = run_timed(
        [
            common.python_exe(),
            str(common.BENCH_DIR / "bare_predict.py"),
            str(model),
            str(csv),
            str(out),
        ]
    )
    if proc.returncode != 0:
        return VariantResult("bare", note=f"exit {proc.returncode}: {tail(proc.stderr)}")
    got = int(proc.stdout.strip() or -1)
    if got != rows:
        return VariantResult("bare", note=f"wrote {got} rows, expected {rows}")
    return VariantResult("bare", seconds, cpu, ok=True)


def run_handtuned(model: Path, csv: Path, out: Path, rows: int,
                  batch_rows: int | None = None) -> VariantResult:
    """The yardstick (``handtuned.py``): pyarrow reads, numpy features, ``predict_proba``,
    pyarrow writes, in one process. Its CPU seconds / cores is the limit. With ``batch_rows``,
    ``handtuned-batched``: the same, predicting slices of that many rows."""
    name = "handtuned" if batch_rows is None else "handtuned-batched"
    seconds, cpu, proc = run_timed(
        [common.python_exe(), str(common.BENCH_DIR / "handtuned.py"), str(model), str(csv),
         str(out), *([] if batch_rows is None else [str(batch_rows)])]
    )
    report = parse_tool_json(proc.stdout)
    if proc.returncode != 0 or report is None:
        return VariantResult(name, note=f"exit {proc.returncode}: {tail(proc.stderr)}")
    if report.get("rows") != rows:
        return VariantResult(name, note=f"wrote {report.get('rows')} rows, expected {rows}")
    return VariantResult(name, seconds, cpu, ok=True, note="the yardstick",
                         details={"timings": report.get("timings")})


def run_pool(model: Path, csv: Path, out: Path, rows: int, workers: int) -> VariantResult:
    """``pool_predict.py``: the pandas baseline in a ``multiprocessing.Pool(workers)``."""
    name = f"pool-{workers}"
    seconds, cpu, proc = run_timed(
        [common.python_exe(), str(common.BENCH_DIR / "pool_predict.py"), str(model), str(csv),
         str(out), str(workers)]
    )
    if proc.returncode != 0:
        return VariantResult(name, note=f"exit {proc.returncode}: {tail(proc.stderr)}")
    got = int(proc.stdout.strip() or -1)
    if got != rows:
        return VariantResult(name, note=f"wrote {got} rows, expected {rows}")
    return VariantResult(name, seconds, cpu, ok=True)


def run_bare_parallel(model: Path, parts: list[Path], rows: int) -> VariantResult:
    """The ceiling for N workers on this machine: N bare processes started together, each on
    a pre-cut 1/N of the file (the cut itself untimed). Not a tool variant: it tells how much
    of a missed speedup is the machine (cores shared with others, memory bandwidth) rather
    than the tool."""
    name = f"bare-x{len(parts)}"
    cmd = [common.python_exe(), str(common.BENCH_DIR / "bare_predict.py"), str(model)]
    cpu_before = _children_cpu()
    with common.timed() as t:
        procs = [
            subprocess.Popen(
                [*cmd, str(p), str(common.DATA_DIR / "out" / f"{p.stem}.scores.csv")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in parts
        ]
        outputs = [proc.communicate(timeout=VARIANT_TIMEOUT_S) for proc in procs]
    cpu = _children_cpu() - cpu_before
    failed = [
        (proc.returncode, err)
        for proc, (_, err) in zip(procs, outputs, strict=True)
        if proc.returncode
    ]
    if failed:
        return VariantResult(name, note=f"exit {failed[0][0]}: {tail(failed[0][1])}")
    got = sum(int(out.strip() or 0) for out, _ in outputs)
    if got != rows:
        return VariantResult(name, note=f"wrote {got} rows, expected {rows}")
    return VariantResult(name, t.seconds, cpu, ok=True, note="ideal split, reference only")


# --- tool -----------------------------------------------------------------------------------


def tool_output(job: Path) -> Path:
    """The output a bench job file names."""
    for line in job.read_text(encoding="utf-8").splitlines():
        if line.startswith("output = "):
            return Path(json.loads(line.split("=", 1)[1].strip()))
    raise ValueError(f"{job}: no output line")


def write_job(model_name: str, model: Path, csv: Path, rows: int) -> Path:
    """The job file for the tool, per the CLI contract; absolute paths so the job directory
    does not matter."""
    out = common.DATA_DIR / "out" / f"tool-{model_name}-{rows}" / "scores.csv"
    job = common.DATA_DIR / "jobs" / f"bench-{model_name}-{rows}.toml"
    job.parent.mkdir(parents=True, exist_ok=True)
    job.write_text(
        "\n".join(
            [
                f'name = "bench-{model_name}"',
                f"model = {json.dumps(str(model))}",
                f"input = {json.dumps(str(csv))}",
                f"output = {json.dumps(str(out))}",
                'format = "csv"',
                'id_columns = ["id"]',
                "max_parallel = 2",
                "overwrite = true",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return job


def parse_tool_json(stdout: str) -> dict[str, Any] | None:
    """The ``--json`` object; taken from the last line that parses, in case anything else
    slipped onto stdout before it."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    try:
        value = json.loads(stdout)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def run_tool(job: Path, workers: int, rows: int) -> VariantResult:
    name = f"tool-{workers}"
    if not TOOL.exists():
        return VariantResult(name, note=f"{TOOL} not installed yet")
    cmd = [str(TOOL), "run", str(job), "--json", "--set", f"max_parallel={workers}"]
    # A finished output of the same job is "up to date" and would not be scored again: every
    # timed run starts from nothing (untimed).
    output = tool_output(job)
    for leftover in (output, output.with_name(output.name + ".manifest.json")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(output.with_name(output.name + ".work"), ignore_errors=True)
    # This checkout's package, whatever the venv has installed (a git worktree sharing a venv)
    paths = [str(common.REPO_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    seconds, cpu, proc = run_timed(cmd, env)
    report = parse_tool_json(proc.stdout)
    if proc.returncode != 0 or report is None:
        why = tail(proc.stderr) or tail(proc.stdout)
        return VariantResult(name, note=f"exit {proc.returncode}: {why}", details=report or {})
    keys = (
        "job_id",
        "status",
        "tasks",
        "rows_in",
        "rows_out",
        "output",
        "manifest",
        "attempts",
        "reused_tasks",
        "repaired_boundaries",
        "timings",
    )
    details = {k: report.get(k) for k in keys}
    details["task_seconds"] = task_seconds(report.get("manifest"))
    if report.get("status") != "succeeded" or report.get("rows_out") != rows:
        note = f"status={report.get('status')!r} rows_out={report.get('rows_out')!r}, expected succeeded/{rows}"
        return VariantResult(name, note=note, details=details)
    if report.get("reused_tasks"):
        # A resumed run skips finished parts: its time would measure the resume, not scoring.
        return VariantResult(
            name, note=f"reused {report['reused_tasks']} finished part(s)", details=details
        )
    return VariantResult(name, seconds, cpu, ok=True, details=details)


def task_seconds(manifest: Any) -> list[float]:
    """Per-task seconds from the tool's manifest (untimed read), to show where the time goes:
    inside the tasks or around them."""
    if not isinstance(manifest, str):
        return []
    from serverless_score.controller.manifest import read_tasks
    from serverless_score.layout import JobLayout
    from serverless_score.storage.local import LocalStore

    try:
        summary = json.loads(Path(manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    layout = JobLayout(manifest.removesuffix(".manifest.json"))
    tasks = read_tasks(LocalStore(), layout, summary) or []
    return [float(t["seconds"]) for t in tasks if isinstance(t, dict) and "seconds" in t]


def compare_outputs(reference: Path, candidate: Path) -> str:
    """Untimed sanity check that a variant's output says the same as the baseline's: same ids
    in the same order, same probability of the last class. A note, not a verdict: the tool's
    column names may differ from the baseline's."""
    try:
        ref = pd.read_csv(reference)
        got = pd.read_csv(candidate)
    except (OSError, ValueError) as err:
        return f"output not comparable: {err}"
    if len(ref) != len(got):
        return f"output has {len(got)} rows, baseline {len(ref)}"
    if "id" in got.columns and not np.array_equal(ref["id"].to_numpy(), got["id"].to_numpy()):
        return "ids differ from the baseline (order or values)"
    numeric = [c for c in got.columns if c != "id" and pd.api.types.is_float_dtype(got[c])]
    if not numeric:
        return "output matches baseline row count (no float column to compare)"
    diff = float(np.max(np.abs(ref.iloc[:, -1].to_numpy() - got[numeric[-1]].to_numpy())))
    return f"max |p - p_bare| = {diff:.2e}"


# --- lithops --------------------------------------------------------------------------------


def run_lithops(model: Path, csv: Path, out: Path, rows: int) -> VariantResult:
    name = f"lithops-{LITHOPS_WORKERS}"
    script = common.BENCH_DIR / "lithops_variant.py"
    seconds, cpu, proc = run_timed(
        [common.python_exe(), str(script), str(model), str(csv), str(out), str(LITHOPS_WORKERS)]
    )
    report = parse_tool_json(proc.stdout)
    if proc.returncode != 0 or report is None:
        return VariantResult(
            name, note=f"Lithops could not run here: exit {proc.returncode}: {tail(proc.stderr)}"
        )
    returned, unique = report["rows_returned"], report["unique_ids"]
    # "Correct where it is not" is part of the comparison: the time is kept, but a run that
    # lost or duplicated rows is flagged as wrong.
    if returned != rows or unique != rows:
        note = f"WRONG: returned {returned} rows, {unique} distinct ids, expected {rows}"
        return VariantResult(name, seconds, cpu, ok=False, note=note, details=report)
    return VariantResult(name, seconds, cpu, ok=True, note="row count correct", details=report)
