"""Peak memory of one worker, against the size of its input.

    python bench/bench_memory.py                      # 10 GB CSV, one task, logistic model
    python bench/bench_memory.py --size-gb 1 --models logistic,forest

Writes a CSV of ``--size-gb`` (the 1,000,000-row scoring data, ``id,f0..f9``, repeated) to
``bench/.data/``, runs one runner process over all of it as one task (the whole file is one
range: the worst case for a worker), and reports the worker's peak resident memory (its
``VmHWM``, watched in ``/proc`` until it exits) beside the same worker on the 100 MB file.
**Target: < 300 MB per worker, whatever the input size.** The big file and the scores are
deleted afterwards (``--keep`` keeps them). Figures go to ``bench/.data/last_memory.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import common
from one_worker import WorkerRun, run_worker

TARGET_MB = 300.0
BASE_ROWS = common.DEFAULT_ROWS


def big_csv(size_gb: float) -> tuple[Path, int]:
    """The scoring CSV's rows repeated up to ``size_gb`` (10^9 bytes): path and row count."""
    base = common.scoring_csv(BASE_ROWS).read_bytes()
    header_end = base.index(b"\n") + 1
    body = base[header_end:]
    copies = max(1, round(size_gb * 1e9 / len(body)))
    path = common.DATA_DIR / f"memory_{copies}x.csv"
    need = header_end + copies * len(body)
    free = shutil.disk_usage(common.DATA_DIR).free
    # the input, and the scores (about 0.4 of it) beside it
    if not path.exists() or path.stat().st_size != need:
        if free < need * 1.5:
            raise SystemExit(f"bench_memory: {need / 1e9:.1f} GB input + scores need "
                             f"{need * 1.5 / 1e9:.1f} GB free on {common.DATA_DIR}, "
                             f"{free / 1e9:.1f} GB are; use a smaller --size-gb")
        common.log(f"writing {path.name} ({need / 1e9:.1f} GB, {copies} copies of the "
                   f"{BASE_ROWS:,}-row data)")
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(base[:header_end])
            for _ in range(copies):
                f.write(body)
        os.replace(tmp, path)
    return path, copies * BASE_ROWS


def describe(label: str, run: WorkerRun, size: int) -> list[str]:
    return [label, f"{size / 1e9:.2f}", f"{run.records_out:,}", f"{run.seconds:.1f}",
            f"{run.cpu_seconds:.1f}", f"{run.peak_rss_mb:.0f}",
            "ok" if run.exit_code == 0 and run.records_out == run.records_in else
            f"exit {run.exit_code}"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=10.0)
    parser.add_argument("--models", default="logistic",
                        help="comma-separated: logistic,forest (the forest scores 10 GB slowly)")
    parser.add_argument("--keep", action="store_true", help="keep the big CSV and its scores")
    args = parser.parse_args(argv)
    common.warn_if_busy()
    small = common.scoring_csv(BASE_ROWS)
    big, big_rows = big_csv(args.size_gb)
    out = common.DATA_DIR / "out" / "memory"
    rows: list[list[str]] = []
    figures: dict[str, dict[str, object]] = {}
    worst = 0.0
    try:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            model = common.model_path(name)
            for label, path, expected in ((f"{name}, 100 MB", small, BASE_ROWS),
                                          (f"{name}, {args.size_gb:g} GB", big, big_rows)):
                common.log(f"one worker: {label}")
                run = run_worker(model, path, out / name)
                if run.records_out != expected:
                    run.exit_code = run.exit_code or 1
                rows.append(describe(label, run, path.stat().st_size))
                figures[label] = run.__dict__
                worst = max(worst, run.peak_rss_mb)
                shutil.rmtree(out / name, ignore_errors=True)
    finally:
        if not args.keep:
            big.unlink(missing_ok=True)
            shutil.rmtree(out, ignore_errors=True)
    print(common.format_table(["worker", "input GB", "rows", "wall s", "cpu s", "peak RSS MB",
                               "result"], rows, left=1))
    print(f"\npeak memory per worker: {worst:.0f} MB (target < {TARGET_MB:.0f} MB: "
          f"{'met' if worst < TARGET_MB else 'MISSED'})")
    common.write_json(common.DATA_DIR / "last_memory.json",
                      {"machine": common.machine_info(), "size_gb": args.size_gb,
                       "runs": figures, "target_mb": TARGET_MB})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
