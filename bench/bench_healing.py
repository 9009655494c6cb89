"""Boundary-healing benchmark: how fast the record reader splits a 1 GB CSV into exactly-once ranges.

The file (generated once under bench/.data/) has a quoted text column; every 50th row's text
holds a comma, a doubled quote and an embedded newline, so a newline does not always end a record.

What is timed, in one process, on a warm page cache:
  even     the file cut into --ranges equal byte ranges, each scanned with
           ``serverless_score.records.scan_range``; consecutive ranges must chain
           (``prev.end == next.begin``) and the record counts must add up to the true row count.
           Where a chain breaks (a wrong boundary guess), the range is re-scanned from the
           previous range's end with ``pinned_begin``, as the controller repairs it.
  forced   the same, but --forced of the inner cut points are moved one byte inside a quoted
           multi-line field, where "the next line start" is not a record start: the reader
           either guesses right anyway (a quote-aware guess) or the repair path runs, and the
           `repairs` column says which, with its cost.
  read     the floor: the same ranges read with ``f.read`` in 8 MiB blocks and nothing else.
  even@REV with ``--against REV``: the ``even`` pass with the reader of git revision REV
           (``serverless_score/records/scan.py`` as it was there), in the same run, for a
           before/after comparison that the machine's load and speed affect alike.
  csv      the baseline: Python's ``csv`` module reading the whole file,
           ``sum(1 for _ in csv.reader(f))``.

Usage: python bench/bench_healing.py [--size-mb 1000] [--ranges 16] [--forced 3] [--repeat K]
                                     [--against REV]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import common
import numpy as np
import pandas as pd

TARGET_MB_S = 500.0
MB = 1_000_000
RESULT_JSON = common.DATA_DIR / "last_healing.json"
MULTILINE_EVERY = 50
GEN_BLOCK_ROWS = 500_000


def import_records_api() -> tuple[Any, Any, Any]:
    """The package's record reader; a clear message instead of a traceback while it is not
    there (it is being written alongside this bench)."""
    try:
        from serverless_score.records import RecordFormat, read_header, scan_range
    except ImportError as err:
        sys.exit(
            "bench_healing: cannot import the record reader API "
            "(`from serverless_score.records import scan_range, RecordFormat, read_header`): "
            f"{err}.\nIs the package installed in .venv (pip install -e .) and does "
            "serverless_score/records/ exist yet?"
        )
    return scan_range, RecordFormat, read_header


def records_api_at(rev: str) -> tuple[Any, Any, Any]:
    """The record reader as it was at git revision ``rev``, loaded beside the current one."""
    root = Path(__file__).resolve().parent.parent
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:serverless_score/records/scan.py"],
            cwd=root, check=True, capture_output=True, text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"bench_healing: cannot read the reader at revision {rev!r}: {err}")
    # Its one relative import, made absolute so the module can live outside the package.
    source = source.replace("from ..errors import", "from serverless_score.errors import")
    module = types.ModuleType(f"scan_at_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:serverless_score/records/scan.py", "exec"), module.__dict__)
    return module.scan_range, module.RecordFormat, module.read_header


# --- data -----------------------------------------------------------------------------------


def _text_column(ids: np.ndarray) -> np.ndarray:
    """Mostly short plain words; every MULTILINE_EVERY-th row a field that needs quoting: a
    comma, a doubled quote and an embedded newline."""
    plain = np.array(["alpha", "bravo", "charlie", "delta"], dtype=object)[ids % 4]
    multi = (ids % MULTILINE_EVERY) == 7
    plain[multi] = [f'note {i}, said "hi"\nsecond line of {i}' for i in ids[multi]]
    return plain


def _csv_block(block_index: int, first_id: int, rows: int) -> str:
    rng = np.random.default_rng([common.SEED, 1_000 + block_index])
    ids = np.arange(first_id, first_id + rows, dtype=np.int64)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)), columns=["x0", "x1", "x2", "x3"])
    frame.insert(0, "id", ids)
    frame["text"] = _text_column(ids)
    # QUOTE_MINIMAL quotes exactly the fields with a comma, quote or newline, as real exports do.
    return frame.to_csv(
        index=False, header=block_index == 0, float_format="%.6f", lineterminator="\n"
    )


def healing_csv(size_mb: int) -> tuple[Path, int]:
    """(path, data rows) of the ~size_mb MB CSV, generated once; the row count is kept in a
    sidecar JSON so later runs need not count it."""
    path = common.DATA_DIR / f"healing_{size_mb}mb.csv"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, int(json.loads(meta.read_text())["rows"])
    common.log(f"generating {path.name} (~{size_mb} MB, once)")
    tmp = path.with_name(path.name + ".tmp")
    rows = 0
    written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w", encoding="utf-8", newline="") as f:
        block = 0
        while written < size_mb * MB:
            text = _csv_block(block, rows, GEN_BLOCK_ROWS)
            f.write(text)
            written += len(text.encode())
            rows += GEN_BLOCK_ROWS
            block += 1
    os.replace(tmp, path)
    common.write_json(meta, {"rows": rows, "bytes": path.stat().st_size})
    return path, rows


def forced_cut_points(path: Path, cuts: list[int], forced: int) -> list[int]:
    """Move ``forced`` inner cut points (spread evenly) to just after the opening quote of the
    next multi-line field, where a newline-based first guess would land mid-record."""
    inner = list(range(1, len(cuts) - 1))
    if forced <= 0 or not inner:
        return cuts
    step = max(1, len(inner) // forced)
    moved = list(cuts)
    with path.open("rb") as f:
        for i in inner[::step][:forced]:
            f.seek(cuts[i])
            window = f.read(1 << 20)
            quote = window.find(b',"note ')
            if quote != -1:
                moved[i] = cuts[i] + quote + 2  # one byte inside the quoted field
    return moved


# --- scanning -------------------------------------------------------------------------------


@dataclass
class RangeScan:
    start: int
    end: int
    begin: int
    stop: int  # the reader's ``end``: where the record after this range's last one starts
    records: int
    repaired: bool = False


@dataclass
class PassResult:
    label: str
    seconds: float
    mb_s: float
    cpu_seconds: float
    mb_per_cpu_s: float
    records: int
    repairs: int
    repair_seconds: float
    chained: bool
    count_ok: bool
    problems: list[str]


def scan_one(
    api: tuple[Any, Any, Any],
    f: BinaryIO,
    header_end: int,
    start: int,
    end: int,
    size: int,
    pinned: int | None = None,
) -> RangeScan:
    """One call of the reader; the only place that knows its signature."""
    scan_range, record_format, _ = api
    result = scan_range(
        f,
        record_format(kind="csv"),
        start=start,
        end=end,
        file_size=size,
        header_end=header_end,
        pinned_begin=pinned,
    )
    return RangeScan(
        start, end, result.begin, result.end, result.records, repaired=pinned is not None
    )


def scan_pass(
    api: tuple[Any, Any, Any], path: Path, cuts: list[int], rows: int, label: str
) -> PassResult:
    """Scan every range, then repair broken chains the way the controller does: range i+1 is
    re-read from range i's (trusted) end. Range 0 starts at the header end, a known boundary,
    so trust propagates left to right."""
    size = path.stat().st_size
    with path.open("rb") as f:
        header_end = len(api[2](f, size))
        with common.timed() as total:
            scans = [scan_one(api, f, header_end, a, b, size) for a, b in itertools.pairwise(cuts)]
            with common.timed() as repair:
                repairs = 0
                for i in range(1, len(scans)):
                    if scans[i].begin != scans[i - 1].stop:
                        scans[i] = scan_one(
                            api,
                            f,
                            header_end,
                            scans[i].start,
                            scans[i].end,
                            size,
                            pinned=scans[i - 1].stop,
                        )
                        repairs += 1
    return _verify(label, scans, rows, header_end, size, total, repairs, repair.seconds)


def chain_problems(scans: list[RangeScan], header_end: int, size: int) -> list[str]:
    """Exactly-once coverage: data starts at the header's end, every range starts where the
    previous one stopped, and the last one stops at the end of the file."""
    problems = []
    if scans[0].begin != header_end:
        problems.append(f"first range begins at {scans[0].begin}, header ends at {header_end}")
    if scans[-1].stop != size:
        problems.append(f"last range ends at {scans[-1].stop}, file size {size}")
    problems += [
        f"ranges {i - 1} and {i} do not chain: end {scans[i - 1].stop} != begin {scans[i].begin}"
        for i in range(1, len(scans))
        if scans[i].begin != scans[i - 1].stop
    ]
    return problems


def _verify(
    label: str,
    scans: list[RangeScan],
    rows: int,
    header_end: int,
    size: int,
    timer: common.Timer,
    repairs: int,
    repair_seconds: float,
) -> PassResult:
    chain = chain_problems(scans, header_end, size)
    records = sum(s.records for s in scans)
    count = [] if records == rows else [f"records counted {records:,}, true row count {rows:,}"]
    return PassResult(
        label,
        timer.seconds,
        size / MB / timer.seconds,
        timer.cpu_seconds,
        size / MB / timer.cpu_seconds,
        records,
        repairs,
        repair_seconds,
        chained=not chain,
        count_ok=not count,
        problems=chain + count,
    )


def best_of(repeat: int, run: Any) -> PassResult:
    """The fastest of ``repeat`` runs of a pass: the one other load disturbed least."""
    return min((run() for _ in range(repeat)), key=lambda r: r.seconds)


def read_pass(path: Path, cuts: list[int], block: int = 8 << 20) -> PassResult:
    """The floor: every range read in the reader's block size, nothing looked at."""
    size = path.stat().st_size
    with path.open("rb") as f, common.timed() as t:
        for start, end in itertools.pairwise(cuts):
            f.seek(start)
            left = end - start
            while left > 0:
                left -= len(f.read(min(block, left)))
    return PassResult("read", t.seconds, size / MB / t.seconds, t.cpu_seconds,
                      size / MB / t.cpu_seconds, 0, 0, 0.0, True, True, [])


def csv_module_pass(path: Path, rows: int) -> PassResult:
    """Baseline: the standard library's quote-aware reader over the whole file, one thread."""
    size = path.stat().st_size
    with common.timed() as t, path.open("r", encoding="utf-8", newline="") as f:
        count = sum(1 for _ in csv.reader(f)) - 1  # minus the header
    problems = [] if count == rows else [f"csv.reader counted {count:,} rows, expected {rows:,}"]
    return PassResult(
        "csv",
        t.seconds,
        size / MB / t.seconds,
        t.cpu_seconds,
        size / MB / t.cpu_seconds,
        count,
        0,
        0.0,
        True,
        count == rows,
        problems,
    )


# --- report ---------------------------------------------------------------------------------


def report(results: list[PassResult], ranges: int, size: int, rows: int) -> None:
    headers = [
        "pass",
        "seconds",
        "MB/s",
        "cpu s",
        "MB/cpu-s",
        "records",
        "repairs",
        "repair s",
        "chained",
        "count",
        "vs csv",
        "vs read",
    ]
    baseline = next((r for r in results if r.label == "csv"), None)
    floor = next((r for r in results if r.label == "read"), None)

    def vs_csv(r: PassResult) -> str:
        return "n/a" if baseline is None else f"{r.mb_s / baseline.mb_s:.1f}x"

    def vs_read(r: PassResult) -> str:
        return "n/a" if floor is None else f"{r.mb_s / floor.mb_s:.2f}"

    table = [
        [
            r.label,
            f"{r.seconds:.2f}",
            f"{r.mb_s:,.0f}",
            f"{r.cpu_seconds:.2f}",
            f"{r.mb_per_cpu_s:,.0f}",
            f"{r.records:,}",
            str(r.repairs),
            f"{r.repair_seconds:.2f}",
            "yes" if r.chained else "NO",
            "ok" if r.count_ok else "WRONG",
            vs_csv(r),
            vs_read(r),
        ]
        for r in results
    ]
    print(
        f"\nboundary healing: {size / MB:,.0f} MB CSV, {rows:,} rows, {ranges} ranges "
        f"(every {MULTILINE_EVERY}th row has a quoted multi-line field)\n"
    )
    print(common.format_table(headers, table, left=1))
    print()
    for r in results:
        for problem in r.problems:
            print(f"PROBLEM ({r.label}): {problem}")
    even = next(r for r in results if r.label == "even")
    verdict = "met" if even.mb_s >= TARGET_MB_S else "MISSED"
    print(
        f"healing throughput (even ranges): {even.mb_s:,.0f} MB/s  (target >= {TARGET_MB_S:.0f} MB/s, {verdict});"
        f" per CPU second: {even.mb_per_cpu_s:,.0f} MB/s"
    )
    print(f"ratio vs csv module: {vs_csv(even)}")
    for r in results:
        if r.label.startswith("even@"):
            print(
                f"ratio vs the reader at {r.label[5:]} (same run): {even.mb_s / r.mb_s:.2f}x"
                f" wall, {even.mb_per_cpu_s / r.mb_per_cpu_s:.2f}x per CPU second"
            )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-mb", type=int, default=1000, help="CSV size in MB (10^6 bytes); default 1000"
    )
    parser.add_argument("--ranges", type=int, default=16, help="byte ranges to split the file into")
    parser.add_argument(
        "--forced",
        type=int,
        default=3,
        help="cut points moved into quoted fields (0: skip that pass)",
    )
    parser.add_argument(
        "--no-csv", action="store_true", help="skip the csv-module baseline (slow on 1 GB)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="keep the fastest of K runs of each reader pass"
    )
    parser.add_argument(
        "--against", metavar="REV", help="also run the even pass with the reader of git REV"
    )
    args = parser.parse_args(argv)
    if args.size_mb < 1 or args.ranges < 1 or args.repeat < 1:
        parser.error("--size-mb, --ranges and --repeat must be >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    api = import_records_api()  # before generating a gigabyte, so a missing API fails fast
    before = records_api_at(args.against) if args.against else None
    path, rows = healing_csv(args.size_mb)
    size = path.stat().st_size
    cuts = [size * i // args.ranges for i in range(args.ranges + 1)]
    # Every pass reads from memory: this measures the reader, not the disk.
    common.warm_page_cache(path)
    common.warn_if_busy()
    machine = common.machine_info()  # its load average is the one at the start
    load_start = os.getloadavg()
    repeat = args.repeat
    results = [best_of(repeat, lambda: scan_pass(api, path, cuts, rows, "even"))]
    if before is not None:
        label = f"even@{args.against}"
        results.append(best_of(repeat, lambda: scan_pass(before, path, cuts, rows, label)))
    if args.forced > 0:
        forced = forced_cut_points(path, cuts, args.forced)
        results.append(best_of(repeat, lambda: scan_pass(api, path, forced, rows, "forced")))
    results.append(best_of(repeat, lambda: read_pass(path, cuts)))
    if not args.no_csv:
        common.log("csv module baseline (the slow part)")
        results.append(csv_module_pass(path, rows))
    report(results, args.ranges, size, rows)
    load_end = os.getloadavg()
    print(f"load average (1, 5, 15 min): {load_start[0]:.2f} {load_start[1]:.2f} "
          f"{load_start[2]:.2f} at the start, {load_end[0]:.2f} {load_end[1]:.2f} "
          f"{load_end[2]:.2f} at the end; best of {repeat} run(s) per reader pass")
    common.write_json(
        RESULT_JSON,
        {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "file": {"path": str(path), "bytes": size, "rows": rows},
            "ranges": args.ranges,
            "repeat": repeat,
            "against": args.against,
            "loadavg_at_end": list(load_end),
            "results": [asdict(r) for r in results],
            "target_mb_s": TARGET_MB_S,
        },
    )
    print(f"\nfigures written to {RESULT_JSON}")
    failed = any(r.problems for r in results if r.label != "csv")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
