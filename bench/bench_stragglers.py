"""Stragglers on the local backend: one chunk's first attempt made 10x slower than the others
(a noisy neighbour, a slow disk), against the same job without it, in the same run: once a
chunk a third of the way in, once the last chunk (it starts when nothing is left to pull).

The job: 16 chunks of a CSV, 2 workers, each task scoring its rows with a real computation in
a ``runtime = "command"`` scorer (one Python process per task). Attempt 1 of one chunk, after
scoring, sleeps 9x its own scoring time: it takes 10x as long as it would.

Printed per scenario: wall time of the whole job (median of ``--repeat`` runs) and its ratio to
the clean job. Target (issue 14): with second attempts (the default) the slowed job ends within
1.3x the clean one; ``straggler_factor = 0`` shows what it costs without them.

    .venv/bin/python bench/bench_stragglers.py [--rows 400000] [--chunks 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCORER = r'''
import math, os, sys, time
started = time.monotonic()
out = sys.stdout
header = sys.stdin.readline()

for line in sys.stdin:
    key, *values = line.rstrip("\n").split(",")
    x = sum(float(v) * (i + 1) for i, v in enumerate(values))
    for _ in range(60):  # the model: some arithmetic per row
        x = math.tanh(x * 0.5 + 0.1)
    out.write(f"{key},{x:.12g}\n")
out.flush()
slow = os.environ.get("SLOW_TASK")
if slow and os.environ.get("TASK_ID") == slow and os.environ.get("ATTEMPT") == "1":
    time.sleep(9 * (time.monotonic() - started))  # this attempt: 10x its scoring time
'''


def write_data(path: Path, rows: int) -> None:
    with path.open("w") as f:
        f.write("id,a,b,c,d\n")
        for i in range(rows):
            f.write(f"r{i},{i % 7},{i % 11 / 3:.3f},{i % 13},{(i * 7) % 17 / 5:.3f}\n")


def run_job(folder: Path, name: str, *, slow: str | None, factor: float,
            chunks: int) -> tuple[float, bool]:
    """(wall seconds, whether the slowed task got a second attempt)."""
    out = folder / f"out-{name}"
    shutil.rmtree(out, ignore_errors=True)
    job = folder / f"{name}.toml"
    slow_env = f"SLOW_TASK={slow} " if slow else ""
    job.write_text(
        f'name = "{name}"\ninput = "data.csv"\noutput = "out-{name}/scores.csv"\n'
        f'format = "csv"\nruntime = "command"\n'
        f"scorer = '{slow_env}{sys.executable} {folder / 'score.py'}'\n"
        f"chunks = {chunks}\nmax_parallel = 2\nretries = 2\ntimeout = \"10m\"\n"
        f"straggler_factor = {factor}\nbackend = \"local\"\n")
    started = time.monotonic()
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "serverless-score"), "run", str(job),
                           "--json", "-q"], capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if set(result["retried_tasks"]) - {slow}:
        raise SystemExit(f"{name}: only {slow} may be run twice: {result['retried_tasks']}")
    # A slowed attempt shorter than the straggler rule's floor (3x the median task, at least
    # 2 s) is no straggler: pulling alone absorbs it, and no second attempt is made.
    return wall, slow in result["retried_tasks"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stragglers-") as tmp:
        folder = Path(tmp)
        write_data(folder / "data.csv", args.rows)
        (folder / "score.py").write_text(SCORER)
        # early: a third of the way in, so the other worker has the rest of the queue to pull;
        # late: the last chunk, started when nothing is left to pull, the hard case
        early, late = f"t{args.chunks // 3:05d}", f"t{args.chunks - 1:05d}"
        scenarios = [("clean", None, 3.0),
                     ("slowed", early, 3.0), ("slowed-no-second", early, 0.0),
                     ("slowed-last", late, 3.0), ("slowed-last-no-second", late, 0.0)]
        walls: dict[str, list[float]] = {name: [] for name, _, _ in scenarios}
        seconds: dict[str, int] = {name: 0 for name, _, _ in scenarios}
        for _ in range(args.repeat):  # alternated, so drift on a shared machine hits all alike
            for name, which, factor in scenarios:
                wall, second = run_job(folder, name, slow=which, factor=factor,
                                       chunks=args.chunks)
                walls[name].append(wall)
                seconds[name] += second
        clean = statistics.median(walls["clean"])
        print(f"{args.rows:,} rows, {args.chunks} chunks, 2 workers; attempt 1 of {early} "
              f"(slowed) or {late} (slowed-last) made 10x slower; median of {args.repeat}")
        print(f"{'scenario':<22} {'wall s':>8} {'x clean':>8} {'2nd attempts':>13}")
        for name, _, _ in scenarios:
            wall = statistics.median(walls[name])
            print(f"{name:<22} {wall:8.2f} {wall / clean:8.2f} "
                  f"{seconds[name]:>6}/{args.repeat}")
        for name in ("slowed", "slowed-last"):
            ratio = statistics.median(walls[name]) / clean
            print(f"target: {name} <= 1.30x clean: {'met' if ratio <= 1.3 else 'NOT met'} "
                  f"({ratio:.2f}x)")


if __name__ == "__main__":
    main()
