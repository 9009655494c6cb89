"""Bad rows: what 1,000 unscorable rows cost a job of 1,000,000 with ``on_error = "skip"``.

    python bench/bench_bad_rows.py [--rows 1000000] [--bad 1000] [--repeat 2] [--runtimes python,r]

The bench's deterministic 1,000,000 x 10 CSV (``common.scoring_csv``) and a copy in which
``--bad`` rows, spread evenly over the file (so over every chunk and most 8 MB batches), have
``n/a`` in a numeric feature. Each runtime's job (Python: the bench's logistic regression; R:
its glm) runs on the clean file and on the bad one, interleaved, in this process through the
Python API (local backend, 2 workers), ``--repeat`` times; the best of each is compared.
Checked on every run: the bad run scores rows - bad rows and lists bad rows in its errors file.
Target: bad / clean <= 1.3x. Beside the wall times, the CPU seconds of the workers (this
process's waited-for children: user + system), which other load on a shared machine disturbs
less. Figures go to stdout and ``.data/last_bad_rows.json``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from common import (
    DATA_DIR,
    DEFAULT_ROWS,
    log,
    machine_info,
    model_path,
    scoring_csv,
    timed,
    warm_page_cache,
    write_json,
)

TARGET = 1.3


def bad_csv(clean: Path, bad: int) -> Path:
    """``clean`` with ``bad`` rows spread evenly whose f3 is ``n/a``."""
    path = clean.with_name(f"{clean.stem}_bad{bad}.csv")
    if path.exists():
        return path
    log(f"writing {path.name}")
    lines = clean.read_bytes().split(b"\n")
    rows = len(lines) - 2  # header, and the empty piece after the last newline
    for k in range(bad):
        i = 1 + (k * rows) // bad + rows // (2 * bad)
        fields = lines[i].split(b",")
        fields[4] = b"n/a"  # id, f0, f1, f2, f3
        lines[i] = b",".join(fields)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"\n".join(lines))
    tmp.replace(path)
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(runtime: str, data: Path, out_dir: Path, model: Path) -> tuple[float, float, Any]:
    from serverless_score import run_job
    from serverless_score.spec import spec_from_dict

    shutil.rmtree(out_dir, ignore_errors=True)
    keys: dict[str, Any] = {
        "name": f"bad-rows-{runtime}", "model": str(model), "input": str(data),
        "output": str(out_dir / "scores.csv"), "id_columns": ["id"], "max_parallel": 2,
        "retries": 0, "runtime": runtime, "on_error": "skip",
    }
    if runtime == "r":
        keys["predict_args"] = {"type": "response"}
    cpu = _children_cpu()
    with timed() as timer:
        result = run_job(spec_from_dict(keys))
    return timer.seconds, _children_cpu() - cpu, result


def r_glm() -> Path:
    from bench_r import r_models

    return r_models()["glm"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--bad", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--runtimes", default="python,r")
    args = parser.parse_args(argv)
    clean = scoring_csv(args.rows)
    bad = bad_csv(clean, args.bad)
    for path in (clean, bad):
        warm_page_cache(path)
    report: dict[str, Any] = {"machine": machine_info(), "rows": args.rows, "bad": args.bad}
    lines = ["| runtime | clean s (best / median) | bad s (best / median) | bad / clean (best) "
             "| worker cpu s clean / bad (median) | cpu bad / clean | rows out | rows failed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for runtime in args.runtimes.split(","):
        model = model_path("logistic") if runtime == "python" else r_glm()
        times: dict[str, list[float]] = {"clean": [], "bad": []}
        cpus: dict[str, list[float]] = {"clean": [], "bad": []}
        last: Any = None
        for attempt in range(args.repeat):
            for kind, data in (("clean", clean), ("bad", bad)):
                seconds, cpu, result = run(runtime, data,
                                           DATA_DIR / f"bad_rows_{runtime}_{kind}", model)
                cpus[kind].append(cpu)
                log(f"{runtime} {kind} #{attempt + 1}: {seconds:.2f}s (workers' cpu {cpu:.2f}s), "
                    f"{result.rows_out:,} out, {result.rows_failed:,} failed")
                times[kind].append(seconds)
                if kind == "bad":
                    expected = (args.rows - args.bad, args.bad)
                    if (result.rows_out, result.rows_failed) != expected:
                        raise SystemExit(f"{runtime}: expected {expected} rows out and failed, "
                                         f"got {(result.rows_out, result.rows_failed)}")
                    errors = Path(result.errors).read_text().count("\n") - 1
                    if errors != args.bad:
                        raise SystemExit(f"{runtime}: {errors} rows in the errors file")
                    last = result
        best_clean, best_bad = min(times["clean"]), min(times["bad"])
        ratio = best_bad / best_clean
        cpu_clean, cpu_bad = statistics.median(cpus["clean"]), statistics.median(cpus["bad"])
        report[runtime] = {"clean_s": times["clean"], "bad_s": times["bad"], "ratio": ratio,
                           "cpu_clean_s": cpus["clean"], "cpu_bad_s": cpus["bad"],
                           "timings": last.timings}
        lines.append(
            f"| {runtime} | {best_clean:.2f} / {statistics.median(times['clean']):.2f} | "
            f"{best_bad:.2f} / {statistics.median(times['bad']):.2f} | **{ratio:.2f}x** "
            f"({'met' if ratio <= TARGET else 'missed'}, target <= {TARGET}x) | "
            f"{cpu_clean:.1f} / {cpu_bad:.1f} | {cpu_bad / cpu_clean:.2f}x | "
            f"{last.rows_out:,} | {last.rows_failed:,} |")
    print("\n".join(lines))
    write_json(DATA_DIR / "last_bad_rows.json", report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
