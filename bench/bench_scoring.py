"""Scoring benchmark: the tool against a bare single-process baseline and against Lithops.

For each model (forest, logistic) it times, each as a separate process started from here:
  bare        python bench/bare_predict.py MODEL CSV OUT            (the pandas baseline)
  handtuned   python bench/handtuned.py MODEL CSV OUT               (the yardstick: see below)
  handtuned-batched  the same, predict_proba on slices of 65,536 rows (reference: see below)
  bare-x2     two bare_predict.py on pre-cut halves                 (reference only)
  pool-2      python bench/pool_predict.py MODEL CSV OUT 2          (pandas in Pool(2))
  tool-2      serverless-score run JOB.toml --json --set max_parallel=2
  tool-1      serverless-score run JOB.toml --json --set max_parallel=1
  lithops-2   python bench/lithops_variant.py MODEL CSV OUT 2       (Lithops localhost backend)

The limit: the hand-tuned process's CPU seconds / the cores (2), the least wall time any run of
the same work can take on them. Each variant's "of limit" = limit / its wall time (1.0 = at the
limit). Targets for tool-2: forest >= 0.90, logistic >= 0.80.

The tool scores each task in batches of 8 MB of CSV (~80,000 rows), the hand-tuned process hands
a million rows to every tree at once. Whether the slices alone make a faster process, the bench
also times the hand-tuned process predicting 65,536-row slices (``handtuned-batched``) and prints
the tool against that limit too (measured: within the machine's noise, -10% to +9% CPU seconds).

Prints a table and the headline figures, and writes them to bench/.data/last_scoring.json.
A variant that cannot run here (tool not installed yet, Lithops failing) is reported with the
reason and the rest of the bench goes on.

Usage: python bench/bench_scoring.py [--rows N] [--models forest,logistic] [--repeat K]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import sys
from dataclasses import asdict
from pathlib import Path

import common
from variants import (
    LITHOPS_WORKERS,
    VariantResult,
    best_of,
    compare_outputs,
    run_bare,
    run_bare_parallel,
    run_handtuned,
    run_lithops,
    run_pool,
    run_tool,
    write_job,
)

TOOL_WORKERS = (2, 1)  # the first is also the bare-xN ceiling
RESULT_JSON = common.DATA_DIR / "last_scoring.json"
TARGET_SPEEDUP = 1.7
TARGET_OVERHEAD_PCT = 10.0
# The cores a 2-worker run has: the hand-tuned process's CPU seconds over them is the limit.
LIMIT_CORES = min(os.cpu_count() or 1, TOOL_WORKERS[0])
TARGET_OF_LIMIT = {"forest": 0.90, "logistic": 0.80}
HANDTUNED_BATCH_ROWS = 65_536


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=common.DEFAULT_ROWS, help="rows to score (default 1,000,000)"
    )
    parser.add_argument(
        "--models", default=",".join(common.MODEL_NAMES), help="comma-separated: forest,logistic"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per variant; the best (minimum) time is kept"
    )
    parser.add_argument("--no-lithops", action="store_true", help="skip the Lithops variant")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(common.MODEL_NAMES))
    if unknown:
        parser.error(
            f"--models: unknown {', '.join(unknown)}; choose from {', '.join(common.MODEL_NAMES)}"
        )
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be >= 1")
    args.models = models
    return args


def short(note: str, width: int = 110) -> str:
    """Table cell version of a note; the JSON keeps the whole of it."""
    last = note.split(" | ")[-1] if " | " in note else note
    prefix = note.split(":", 1)[0] + ": " if " | " in note else ""
    text = prefix + last
    return text if len(text) <= width else text[: width - 3] + "..."


# --- report ---------------------------------------------------------------------------------


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def limit_seconds(results: list[VariantResult], yardstick: str = "handtuned") -> float | None:
    """The hand-tuned process's CPU seconds over the cores: no run of this work on these cores
    can take less wall time."""
    hand = next((r for r in results if r.variant == yardstick and r.ok), None)
    return None if hand is None or hand.cpu_seconds is None else hand.cpu_seconds / LIMIT_CORES


def table_rows(model: str, results: list[VariantResult], rows: int) -> list[list[str]]:
    bare = next((r for r in results if r.variant == "bare" and r.ok), None)
    bare_s = bare.seconds if bare else None
    bare_cpu = bare.cpu_seconds if bare else None
    limit = limit_seconds(results)
    lines = []
    for r in results:
        lines.append(
            [
                model,
                r.variant,
                fmt(r.seconds, ".2f"),
                fmt(ratio(float(rows), r.seconds), ",.0f"),
                fmt(ratio(r.seconds, bare_s), ".2f", "x"),
                fmt(r.cpu_seconds, ".1f"),
                fmt(ratio(r.cpu_seconds, bare_cpu), ".2f", "x"),
                fmt(ratio(limit, r.seconds), ".2f"),
                fmt(r.details.get("load1_before"), ".2f"),
                short(r.note),
            ]
        )
    return lines


def summarize(model: str, results: list[VariantResult]) -> dict[str, float | None]:
    by_name = {r.variant: r for r in results}

    def secs(name: str) -> float | None:
        r = by_name.get(name)
        return r.seconds if r is not None and r.ok else None

    bare, tool2, tool1 = secs("bare"), secs("tool-2"), secs("tool-1")
    lithops = by_name.get(f"lithops-{LITHOPS_WORKERS}")
    lithops_s = lithops.seconds if lithops is not None else None
    overhead = None if tool1 is None or bare is None else (tool1 - bare) / bare * 100.0
    limit = limit_seconds(results)
    batched_limit = limit_seconds(results, "handtuned-batched")
    hand = by_name.get("handtuned")
    hand_cpu = hand.cpu_seconds if hand is not None and hand.ok else None
    return {
        "limit_seconds": limit,
        "batched_limit_seconds": batched_limit,
        **{f"of_batched_limit_{r.variant}": ratio(batched_limit, r.seconds) for r in results if r.ok},
        # hand-tuned CPU / the variant's CPU: the most of the limit the variant could reach even
        # on an idle machine with both cores busy all the time (less disturbed by other load)
        **{f"cpu_bound_{r.variant}": ratio(hand_cpu, r.cpu_seconds) for r in results if r.ok},
        # limit / wall time of each variant: 1.0 is the hardware's limit for this work
        **{f"of_limit_{r.variant}": ratio(limit, r.seconds) for r in results if r.ok},
        "speedup_2_workers_vs_bare": ratio(bare, tool2),
        # What two bare processes on pre-cut halves reach: the most any 2-worker run can.
        "ceiling_speedup_bare_x2": ratio(bare, secs("bare-x2")),
        "overhead_1_worker_vs_bare_pct": overhead,
        # > 1 means the tool is faster than Lithops (Lithops time / tool time, both 2 workers).
        "lithops_time_over_tool_time": ratio(lithops_s, tool2),
    }


def verdict(value: float | None, target: str, met: bool) -> str:
    return "" if value is None else f"  (target {target}, {'met' if met else 'MISSED'})"


def headline(model: str, summary: dict[str, float | None]) -> list[str]:
    speedup = summary["speedup_2_workers_vs_bare"]
    overhead = summary["overhead_1_worker_vs_bare_pct"]
    vs_lithops = summary["lithops_time_over_tool_time"]
    # The speedup target is set for the forest only: the logistic model costs nearly nothing to
    # predict, so its run is all I/O and parsing and shows the tool's fixed costs instead.
    speedup_target = (
        verdict(speedup, f">= {TARGET_SPEEDUP}x", (speedup or 0) >= TARGET_SPEEDUP)
        if model == "forest"
        else ""
    )
    overhead_target = verdict(
        overhead, f"<= {TARGET_OVERHEAD_PCT:.0f}%", (overhead or 0) <= TARGET_OVERHEAD_PCT
    )
    of_limit = summary.get(f"of_limit_tool-{TOOL_WORKERS[0]}")
    target = TARGET_OF_LIMIT[model]
    return [
        f"limit {model} (hand-tuned CPU s / {LIMIT_CORES} cores): "
        f"{fmt(summary['limit_seconds'], '.2f', ' s')}; tool {TOOL_WORKERS[0]} workers at "
        f"{fmt(of_limit, '.2f')} of it"
        + verdict(of_limit, f">= {target:.2f}", (of_limit or 0) >= target),
        f"  at most {fmt(summary.get(f'cpu_bound_tool-{TOOL_WORKERS[0]}'), '.2f')} on an idle "
        f"machine (hand-tuned CPU s / the tool's CPU s)",
        f"  stricter limit (hand-tuned predicting {HANDTUNED_BATCH_ROWS:,}-row slices, CPU s / "
        f"{LIMIT_CORES}): {fmt(summary.get('batched_limit_seconds'), '.2f', ' s')}; tool "
        f"{TOOL_WORKERS[0]} workers at "
        f"{fmt(summary.get(f'of_batched_limit_tool-{TOOL_WORKERS[0]}'), '.2f')} of it",
        f"speedup {model} 2 workers vs bare: {fmt(speedup, '.2f', 'x')}{speedup_target}",
        f"  ceiling on this machine (2 bare processes on pre-cut halves): "
        f"{fmt(summary['ceiling_speedup_bare_x2'], '.2f', 'x')}",
        f"overhead {model} 1 worker vs bare: {fmt(overhead, '+.1f', '%')}{overhead_target}",
        f"{model}: Lithops time / tool time (2 workers each): {fmt(vs_lithops, '.2f', 'x')}"
        + ("  (>1: the tool is faster)" if vs_lithops is not None else ""),
    ]


def breakdown(model: str, results: list[VariantResult]) -> list[str]:
    """Where the time goes, as each variant reports it itself: inside the tasks or around them."""
    lines = []
    for r in results:
        timings = r.details.get("timings")
        if not isinstance(timings, dict):
            continue
        parts = ", ".join(f"{k} {v}" for k, v in timings.items())
        tasks = r.details.get("task_seconds") or [
            p.get("seconds") for p in r.details.get("parts", [])
        ]
        task_text = (
            f"; per task: {', '.join(f'{t:.2f}s' for t in tasks if t is not None)}"
            if any(tasks)
            else ""
        )
        lines.append(f"{model} {r.variant} ({fmt(r.seconds, '.2f')}s wall): {parts}{task_text}")
    return lines


# --- main -----------------------------------------------------------------------------------


def bench_model(name: str, csv: Path, rows: int, args: argparse.Namespace) -> list[VariantResult]:
    model = common.model_path(name)
    out_dir = common.DATA_DIR / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    bare_out = out_dir / f"bare-{name}-{rows}.csv"
    results: list[VariantResult] = []

    common.log(f"{name}: bare")
    results.append(best_of(args.repeat, lambda: run_bare(model, csv, bare_out, rows)))

    common.log(f"{name}: hand-tuned (the yardstick)")
    hand_out = out_dir / f"handtuned-{name}-{rows}.csv"
    hand = best_of(args.repeat, lambda: run_handtuned(model, csv, hand_out, rows), by_cpu=True)
    if hand.ok and results[0].ok:
        hand.note = f"the yardstick; {compare_outputs(bare_out, hand_out)}"
    results.append(hand)

    common.log(f"{name}: hand-tuned, predicting {HANDTUNED_BATCH_ROWS:,}-row slices")
    batched_out = out_dir / f"handtuned-batched-{name}-{rows}.csv"
    batched = best_of(args.repeat, lambda: run_handtuned(model, csv, batched_out, rows,
                                                         HANDTUNED_BATCH_ROWS), by_cpu=True)
    if batched.ok and results[0].ok:
        batched.note = f"stricter yardstick; {compare_outputs(bare_out, batched_out)}"
    results.append(batched)

    common.log(f"{name}: bare x{TOOL_WORKERS[0]} (ideal split)")
    parts = common.split_csv(csv, TOOL_WORKERS[0])
    results.append(best_of(args.repeat, lambda: run_bare_parallel(model, parts, rows)))

    common.log(f"{name}: pandas in Pool({TOOL_WORKERS[0]})")
    pool_out = out_dir / f"pool-{name}-{rows}.csv"
    pool = best_of(args.repeat, lambda: run_pool(model, csv, pool_out, rows, TOOL_WORKERS[0]))
    if pool.ok and results[0].ok:
        pool.note = compare_outputs(bare_out, pool_out)
    results.append(pool)

    job = write_job(name, model, csv, rows)
    for workers in TOOL_WORKERS:
        common.log(f"{name}: tool, {workers} worker(s)")
        result = best_of(args.repeat, functools.partial(run_tool, job, workers, rows))
        if result.ok and results[0].ok and result.details.get("output"):
            result.note = compare_outputs(bare_out, Path(str(result.details["output"])))
        results.append(result)

    if not args.no_lithops:
        common.log(f"{name}: lithops, {LITHOPS_WORKERS} workers")
        lithops_out = out_dir / f"lithops-{name}-{rows}.csv"
        results.append(best_of(args.repeat, lambda: run_lithops(model, csv, lithops_out, rows)))
    return results


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    csv = common.scoring_csv(args.rows)
    for name in args.models:
        common.model_path(name)  # train up front so no variant's timing includes it
    common.warm_page_cache(csv)
    common.warn_if_busy()
    machine = common.machine_info()

    all_results: dict[str, list[VariantResult]] = {}
    for name in args.models:
        all_results[name] = bench_model(name, csv, args.rows, args)

    headers = ["model", "variant", "seconds", "rows/s", "vs bare", "cpu s", "cpu vs bare",
               "of limit", "load", "note"]
    table = [line for name, res in all_results.items() for line in table_rows(name, res, args.rows)]
    print(f"\nscoring {args.rows:,} rows x {common.N_FEATURES} features, best of {args.repeat}\n")
    print(common.format_table(headers, table))
    print()
    summaries = {name: summarize(name, res) for name, res in all_results.items()}
    for name, summary in summaries.items():
        print("\n".join(headline(name, summary)))
    print()
    for name, res in all_results.items():
        print("\n".join(breakdown(name, res)))

    common.write_json(
        RESULT_JSON,
        {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "rows": args.rows,
            "repeat": args.repeat,
            "results": {name: [asdict(r) for r in res] for name, res in all_results.items()},
            "summary": summaries,
            "limit_cores": LIMIT_CORES,
            "targets": {
                "of_limit_tool_2_workers": TARGET_OF_LIMIT,
                "speedup_forest_2_workers": TARGET_SPEEDUP,
                "overhead_1_worker_pct": TARGET_OVERHEAD_PCT,
            },
        },
    )
    print(f"\nfigures written to {RESULT_JSON}")
    # Exit 0 even when a variant could not run: the bench reports, it does not gate.
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
