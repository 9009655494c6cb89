"""Shared helpers for the benchmarks: deterministic data, cached models, timing, paths.

Everything generated lives under ``bench/.data/`` (gitignored) and is built only when missing,
so a second bench run measures the tool, not the data generator.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".data"
VENV_BIN = REPO_DIR / ".venv" / "bin"

N_FEATURES = 10
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
TRAIN_ROWS = 100_000
DEFAULT_ROWS = 1_000_000
SEED = 20240611
# Rows are generated in fixed blocks, each from its own seed, so the data for N rows is a
# prefix of the data for any M > N rows: a --rows 20000 smoke test scores the same rows a
# full run starts with.
BLOCK_ROWS = 100_000
MODEL_NAMES = ("forest", "logistic")


def python_exe() -> str:
    """The interpreter of the project venv, so subprocesses see the same packages."""
    venv_python = VENV_BIN / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def _block(block_index: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of one block; the label depends on the features non-linearly so a
    forest has something to learn that a linear model cannot."""
    rng = np.random.default_rng([SEED, block_index])
    x = rng.normal(size=(rows, N_FEATURES)).astype(np.float64)
    logit = (
        1.5 * x[:, 0]
        - 2.0 * x[:, 1]
        + x[:, 2] * x[:, 3]
        + np.sin(2.0 * x[:, 4])
        + 0.5 * (x[:, 5] > 0.5)
        - 0.3 * x[:, 6] ** 2
    )
    label = (logit + rng.logistic(size=rows) > 0).astype(np.int8)
    return x, label


def generate_frame(rows: int, *, with_label: bool) -> pd.DataFrame:
    """The first ``rows`` rows of the deterministic data set (``id`` counts from 0)."""
    frames: list[pd.DataFrame] = []
    done = 0
    block_index = 0
    while done < rows:
        take = min(BLOCK_ROWS, rows - done)
        x, label = _block(block_index, BLOCK_ROWS)
        frame = pd.DataFrame(x[:take], columns=FEATURES)
        frame.insert(0, "id", np.arange(done, done + take, dtype=np.int64))
        if with_label:
            frame["label"] = label[:take]
        frames.append(frame)
        done += take
        block_index += 1
    return pd.concat(frames, ignore_index=True)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary name and rename, so an interrupted run never leaves a truncated
    file that a later run would take for a finished one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_bytes_atomically(path: Path, payload: bytes) -> None:
    def write(target: Path) -> None:
        target.write_bytes(payload)

    _write_atomically(path, write)


def scoring_csv(rows: int) -> Path:
    """CSV with ``id,f0..f9`` and ``rows`` rows; no label, since it is the scoring input."""
    path = DATA_DIR / f"scoring_{rows}.csv"
    if not path.exists():
        log(f"generating {path.name} ({rows:,} rows)")
        frame = generate_frame(rows, with_label=False)
        # Six decimals keep the file ~100 MB for 1M rows; full repr would double it.
        _write_atomically(path, lambda p: frame.to_csv(p, index=False, float_format="%.6f"))
    return path


def split_csv(path: Path, parts: int) -> list[Path]:
    """The CSV cut into ``parts`` files of whole rows, each with the header: the hand-made
    split an ideal parallel run would start from (cut on line ends; the data has no quotes)."""
    outs = [path.with_name(f"{path.stem}_part{i + 1}of{parts}.csv") for i in range(parts)]
    if all(p.exists() for p in outs):
        return outs
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    cuts = [header_end]
    for i in range(1, parts):
        guess = header_end + (len(data) - header_end) * i // parts
        cuts.append(data.index(b"\n", guess) + 1)
    cuts.append(len(data))
    for out, a, b in zip(outs, cuts, cuts[1:], strict=False):
        _write_bytes_atomically(out, data[:header_end] + data[a:b])
    return outs


def training_frame() -> pd.DataFrame:
    """The labelled training subset: the first TRAIN_ROWS rows, with the label. They are also
    the first rows scored; that only matters for accuracy, which no bench measures."""
    return generate_frame(TRAIN_ROWS, with_label=True)


def _build_model(name: str) -> Any:
    # sklearn is imported lazily: the healing bench does not need it.
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if name == "forest":
        # n_jobs=1: the baseline must be single-core, otherwise "2 workers vs bare" would compare
        # against a baseline that already uses both cores. max_depth bounds predict time.
        return RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0, n_jobs=1)
    if name == "logistic":
        return LogisticRegression(max_iter=1000)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")


def model_path(name: str) -> Path:
    """Path of the cached joblib model ``name``; trained (on a DataFrame, so the model keeps
    ``feature_names_in_``) only when the file is missing."""
    import joblib

    path = DATA_DIR / f"{name}.joblib"
    if not path.exists():
        log(f"training {name} on {TRAIN_ROWS:,} rows")
        frame = training_frame()
        model = _build_model(name)
        model.fit(frame[FEATURES], frame["label"])
        _write_atomically(path, lambda p: joblib.dump(model, p))
    return path


def warm_page_cache(path: Path) -> None:
    """Read a file once so that the first timed pass does not pay for a cold disk read that
    the later ones get for free."""
    with path.open("rb") as f:
        while f.read(16 << 20):
            pass


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Timer:
    seconds: float = 0.0
    # CPU time of this process only (not of children): for in-process work it tells what the
    # code costs even when other load stretches the wall time.
    cpu_seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    """Wall time of the block, with perf_counter (monotonic, sub-microsecond), and its CPU time."""
    timer = Timer()
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start
        timer.cpu_seconds = time.process_time() - cpu_start


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def machine_info() -> dict[str, Any]:
    """What the figures were measured on, recorded next to them."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "loadavg_at_start": list(os.getloadavg()),
    }


def warn_if_busy() -> None:
    """Figures taken while something else keeps the cores busy are not worth much; say so
    rather than let a noisy run pass for a measurement."""
    load1 = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load1 > 0.5:
        log(
            f"WARNING: load average {load1:.2f} on {cpus} CPU(s) before starting; "
            "other processes will distort the timings"
        )


def format_table(headers: list[str], rows: list[list[str]], left: int = 2) -> str:
    """A plain aligned text table (no extra dependency): the first ``left`` columns and the
    last one (free text) are left-aligned, the numbers in between right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i < left or i == last else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])
