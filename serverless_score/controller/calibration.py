"""Estimates calibrated from real runs: what a finished job measured (throughput, start-up per
group, retries), kept in the manifest and in a small per-user history, and the assumptions
``plan`` takes from that history.

The estimate's model (planning/cost.py) is: a group's seconds = a per-group overhead + its tasks'
bytes / throughput (or seconds per shard). A finished job gives both, measured:

* throughput = input bytes / the seconds its runners spent scoring (each task's ``seconds``);
* overhead per group = (container-seconds billed - those scoring seconds) / groups: start-up
  (create to first task, the pull included), the gaps between tasks and the wait before the
  group is deleted: all billed, all the estimate must count.

The history (``SERVERLESS_SCORE_HISTORY``, else ``history/`` in the user's cache folder) is one
JSON line per finished job, the newest ``KEEP`` kept. ``plan`` uses the newest run of the same
model (sha256), runtime and backend; else the newest of the same runtime and image; else the
price table's assumptions; and says which.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..planning.cost import MB, Assumptions

HISTORY_ENV = "SERVERLESS_SCORE_HISTORY"
KEEP = 500  # runs kept in the history (the oldest go first)
# Runs of the same model, runtime and backend an estimate takes the median of: one slow run (a
# cold cache, a busy machine) moves it less than it would alone.
RECENT = 3


@dataclass(frozen=True)
class RunKey:
    """What makes two runs comparable."""

    runtime: str
    model: str  # the model's sha256; for runtime "command", a hash of the scorer
    image: str  # the image the groups ran ("" on the local backend: this machine)
    backend: str


@dataclass(frozen=True)
class Measured:
    """What one finished job measured."""

    key: RunKey
    finished_at: str
    job_id: str
    name: str
    input_bytes: int
    rows: int | None
    tasks: int
    shard_tasks: int
    groups: int
    container_seconds: float
    scoring_seconds: float  # the runners' own seconds per task, summed
    startup_seconds: float | None  # mean create -> first task taken, per group
    pull_seconds: float | None  # mean image pull per group, where the backend reports it
    retries: int  # attempts beyond the first, summed over tasks
    evictions: int
    # This machine's 1-minute load average when the job finished: a run on a busy machine is
    # slower, and the next estimate inherits it (the history says so).
    load_average: float | None = None

    @property
    def bytes_per_scoring_second(self) -> float | None:
        return self.input_bytes / self.scoring_seconds if self.scoring_seconds > 0 and \
            self.input_bytes > 0 else None

    @property
    def overhead_per_group(self) -> float:
        return max(0.0, self.container_seconds - self.scoring_seconds) / max(1, self.groups)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        cs = self.container_seconds
        data.update({
            "bytes_per_container_second": round(self.input_bytes / cs, 1) if cs > 0 else None,
            "rows_per_container_second": (round(self.rows / cs, 2)
                                          if cs > 0 and self.rows is not None else None),
            "bytes_per_scoring_second": (round(b, 1) if (b := self.bytes_per_scoring_second)
                                         else None),
            "overhead_per_group": round(self.overhead_per_group, 3),
        })
        for key in ("container_seconds", "scoring_seconds"):
            data[key] = round(data[key], 3)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measured:
        fields = {k: data[k] for k in cls.__dataclass_fields__
                  if k != "key" and (k in data or k != "load_average")}
        return cls(key=RunKey(**data["key"]), **fields)

    def assumptions(self, fallback: Assumptions) -> Assumptions:
        """The estimate's assumptions from this run (``fallback``'s where it measured none)."""
        throughput = self.bytes_per_scoring_second
        shard = (self.scoring_seconds / self.shard_tasks if self.shard_tasks else None)
        return Assumptions(
            throughput_mb_per_s=throughput / MB if throughput else fallback.throughput_mb_per_s,
            startup_seconds=self.overhead_per_group,
            shard_seconds=shard if shard else fallback.shard_seconds)


def model_key(runtime: str, model_sha256: str | None, scorer: str | None) -> str:
    if model_sha256:
        return model_sha256
    return "scorer:" + hashlib.sha256((scorer or "").encode()).hexdigest()


def measure(*, key: RunKey, job_id: str, name: str, task_sizes: Sequence[tuple[int, bool]],
            rows: int | None, task_seconds: Sequence[float], usage: Mapping[str, Any],
            attempts: int) -> Measured | None:
    """What a finished job measured; None when it ran no group (nothing to learn: every task
    was reused). ``task_sizes``: (bytes, is_shard) per task; ``task_seconds``: the runners'
    seconds per task that succeeded; ``usage``: the usage summary (controller/usage.py)."""
    per_group = [g for g in usage.get("per_group") or [] if g.get("seconds") is not None]
    if not per_group:
        return None
    startups = [float(g["startup_seconds"]) for g in per_group
                if g.get("startup_seconds") is not None]
    pulls = [float(g["pull_seconds"]) for g in per_group if g.get("pull_seconds") is not None]
    return Measured(
        key=key, finished_at=datetime.now(UTC).isoformat(timespec="seconds"), job_id=job_id,
        name=name, input_bytes=sum(size for size, shard in task_sizes if not shard), rows=rows,
        tasks=len(task_sizes), shard_tasks=sum(1 for _, shard in task_sizes if shard),
        groups=len(per_group), container_seconds=float(usage.get("container_seconds") or 0.0),
        scoring_seconds=float(sum(task_seconds)),
        startup_seconds=round(sum(startups) / len(startups), 3) if startups else None,
        pull_seconds=round(sum(pulls) / len(pulls), 3) if pulls else None,
        retries=max(0, attempts - len(task_sizes)), evictions=int(usage.get("evictions") or 0),
        load_average=_load())


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# -- the history ----------------------------------------------------------------------------------
def history_file() -> Path:
    from ..storage.config import cache_root

    folder = os.environ.get(HISTORY_ENV)
    return (Path(folder) if folder else cache_root() / "history") / "runs.jsonl"


def read_history(path: Path | None = None) -> list[Measured]:
    path = path or history_file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    runs = []
    for line in lines:
        try:
            runs.append(Measured.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue  # a line of an older or newer version: skipped, not fatal
    return runs


def remember(run: Measured, path: Path | None = None) -> None:
    """Add ``run`` to the history (keeping the newest ``KEEP``); a history that cannot be
    written costs only the next estimate its calibration."""
    path = path or history_file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        lines = [*lines, json.dumps(run.to_dict(), separators=(",", ":"))][-KEEP:]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


@dataclass(frozen=True)
class Calibration:
    assumptions: Assumptions
    source: str  # "history: same model, runtime and backend" | "history: nearest ..." | "assumed"
    run: Measured | None = None

    def describe(self) -> str:
        if self.source.startswith("sampled"):
            return f"calibration: {self.source}"
        if self.run is None:
            return ("calibration: none yet (no earlier run of this model, runtime and backend, "
                    "nor of this runtime and image): the price table's assumptions")
        r = self.run
        return (f"calibration: {self.source}: job {r.name!r} of {r.finished_at[:10]} "
                f"({r.input_bytes / MB:,.1f} MB, {r.groups} group(s), "
                f"{r.container_seconds:,.1f} container-s"
                + (f", load {r.load_average:g}" if r.load_average is not None else "")
                + f"; {self.assumptions.throughput_mb_per_s:.3g} MB/s scoring, "
                f"{self.assumptions.startup_seconds:.3g}s per group)")


def _median(runs: Sequence[Measured], fallback: Assumptions) -> Assumptions:
    each = [r.assumptions(fallback) for r in runs]
    return Assumptions(
        throughput_mb_per_s=statistics.median(a.throughput_mb_per_s for a in each),
        startup_seconds=statistics.median(a.startup_seconds for a in each),
        shard_seconds=statistics.median(a.shard_seconds for a in each))


def calibrate(key: RunKey, fallback: Assumptions, runs: Sequence[Measured]) -> Calibration:
    """The assumptions for a job of ``key``: from the newest run of the same model, runtime and
    backend; else the newest of the same runtime and image (same backend first); else
    ``fallback``."""
    same = [r for r in runs if (r.key.model, r.key.runtime, r.key.backend)
            == (key.model, key.runtime, key.backend)]
    if same:
        recent = same[-RECENT:]
        how = ("history: same model, runtime and backend" if len(recent) == 1 else
               f"history: same model, runtime and backend, median of its last {len(recent)} runs")
        return Calibration(_median(recent, fallback), how, same[-1])
    near = [r for r in runs if (r.key.runtime, r.key.image) == (key.runtime, key.image)]
    near.sort(key=lambda r: r.key.backend == key.backend)  # stable: newest last in each
    if near:
        return Calibration(near[-1].assumptions(fallback),
                           "history: nearest (same runtime and image, another model"
                           + ("" if near[-1].key.backend == key.backend
                              else f", backend {near[-1].key.backend}") + ")", near[-1])
    return Calibration(fallback, "assumed")
