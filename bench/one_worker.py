"""One runner process over a CSV, started the way the local backend starts a worker
(``python -m serverless_score.runner``, the work order in ``SERVERLESS_SCORE_WORK``), with no
controller around it: for profiling a worker and for measuring its peak memory.

The file is cut into ``tasks`` byte ranges; the one worker runs them one after another, as a
group with several tasks does. Measured with ``os.wait4`` on that very process: wall seconds,
CPU seconds (user + system) and peak resident memory (the process's ``VmHWM``, see
``_PeakWatch``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import common

# This checkout's package for the work order too (a worktree sharing a venv would get the
# installed checkout's, whose contract may differ from the worker's).
sys.path.insert(0, str(common.REPO_DIR))

from serverless_score.layout import JobLayout
from serverless_score.planning.tasks import Task
from serverless_score.runner.contract import (
    ENV_WORK,
    AttemptStatus,
    TaskOrder,
    WorkOrder,
)


@dataclass
class WorkerRun:
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    exit_code: int
    records_in: int
    records_out: int
    part_bytes: int
    task_seconds: list[float]


class _PeakWatch:
    """The process's own high-water mark of resident memory (``VmHWM``), read from ``/proc``
    until it exits. Not ``ru_maxrss``: the kernel carries a process's maxrss across ``exec``, so
    a worker forked from a bench that holds 100 MB of data would report the bench's size."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.kb = 0
        self._path = f"/proc/{pid}/status"
        self._every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            try:
                with open(self._path, encoding="ascii") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.kb = max(self.kb, int(line.split()[1]))
            except (OSError, ValueError):
                return
            self._done.wait(self._every)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def work_order(model: Path, csv: Path, out_dir: Path, tasks: int) -> WorkOrder:
    # absolute: the worker runs in out_dir
    model, csv, out_dir = model.resolve(), csv.resolve(), out_dir.resolve()
    size = csv.stat().st_size
    layout = JobLayout(str(out_dir / "scores.csv"))
    cuts = [size * i // tasks for i in range(tasks + 1)]
    orders = [
        TaskOrder.of(layout, Task(index=i, kind="bytes", path=str(csv), start=a, end=b,
                                  size=b - a, file_size=size), 1)
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
    ]
    return WorkOrder(job_id="one-worker", format="csv", record_pattern=None, runtime="python",
                     scorer="predict", predict_method="auto", id_columns=["id"],
                     model=str(model), output_format="csv", orders=orders)


def run_worker(model: Path, csv: Path, out_dir: Path, tasks: int = 1,
               env: dict[str, str] | None = None) -> WorkerRun:
    """Run one worker over the whole of ``csv`` (output under ``out_dir``, emptied first)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    work = work_order(model, csv, out_dir, tasks)
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "MKL_NUM_THREADS": "1",
                 # the checkout's package, whatever the venv has installed
                 "PYTHONPATH": str(common.REPO_DIR),
                 **(env or {}), ENV_WORK: work.to_json()}
    log = out_dir / "worker.log"
    start = time.perf_counter()
    with log.open("wb") as out:
        # cwd: not a checkout, whose package would come before PYTHONPATH's for ``-m``
        proc = subprocess.Popen([common.python_exe(), "-m", "serverless_score.runner"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=child_env, cwd=out_dir)
        peak = _PeakWatch(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    peak.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        common.log(f"worker exit {proc.returncode}: "
                   + " | ".join(log.read_text(errors="replace").splitlines()[-5:]))
    results = [AttemptStatus.from_json(Path(o.status).read_bytes()).result
               for o in work.orders if Path(o.status).exists()]
    done = [r for r in results if r is not None]
    return WorkerRun(
        seconds=seconds, cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak.kb / 1024, exit_code=proc.returncode,
        records_in=sum(r.records_in or 0 for r in done),
        records_out=sum(r.records_out for r in done),
        part_bytes=sum(r.part_bytes for r in done), task_seconds=[r.seconds for r in done])


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: python bench/one_worker.py MODEL CSV OUT_DIR [TASKS]", file=sys.stderr)
        return 2
    tasks = int(argv[3]) if len(argv) == 4 else 1
    run = run_worker(Path(argv[0]), Path(argv[1]), Path(argv[2]), tasks)
    print(json.dumps(run.__dict__))
    return 0 if run.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
