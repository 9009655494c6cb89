"""ARM calls and controller overhead of the ACI backend: 200 tasks against the local ACI emulator.

What it measures, all in one run (tests/aci_emulator as Azure, Azurite as Blob Storage; every
container is a local ``python -m serverless_score.runner`` process):

* **ARM calls per task** by kind (create, delete, logs, group GETs, async-operation GETs, lists,
  quota) for 200 tasks, packed as the backend packs them (one container per group running its
  tasks one after another) and, as the worst case, one task per group.
* **Polling grows with time, not with tasks x time**: the same job with tasks that last longer;
  group GETs of the backend's schedule vs a naive poller (a GET per running group at every
  scheduler tick, the loop of most ACI runners), measured on the same job.
* **Controller wall-time overhead per task**: the job's wall time through the ACI backend minus
  the same job through the local backend (same runner processes, no ARM), divided by the tasks.

Usage: ``python bench/bench_aci.py [--tasks 200] [--json FILE]`` (needs Azurite: ``make azurite``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the emulator and the Azurite helper live with the tests

IMAGE = "bench.azurecr.io/serverless-score-python:bench"  # the emulator runs the runner for it
KINDS = {"create": ("PUT", "group"), "delete": ("DELETE", "group"), "logs": ("GET", "logs"),
         "get": ("GET", "group"), "operation": ("GET", "operation"), "list": ("GET", "list_rg"),
         "quota": ("GET", "usages")}


def _job(container: str, label: str, *, backend: str, tasks: int, seconds: float,
         max_parallel: int) -> Any:
    from serverless_score.spec import spec_from_dict

    return spec_from_dict({
        "name": f"bench-{label}", "runtime": "command", "scorer": f"sleep {seconds}; cat",
        "format": "jsonl", "input": f"az://{container}/in/rows.jsonl",
        "output": f"az://{container}/out/{label}.jsonl", "chunks": tasks, "retries": 0,
        "max_parallel": max_parallel, "timeout": "10m", "backend": backend, "image": IMAGE,
        # The backend's own calls are measured, not ACI's windows (5 runs, 300+ creates).
        "azure": {"creates_per_minute": 100, "create_rate": [[100_000, 300]],
                  "delete_rate": [[100_000, 300]]},
    })


class _OnePerGroup:
    """The worst case for ARM calls: no packing, one group per task."""

    @staticmethod
    def tasks_per_group(pending: int, max_parallel: int) -> int:
        return 1


def _naive_schedule() -> Any:
    """A GET per running group at every scheduler tick (0.2 s), no read budget."""
    from serverless_score.backends.aci.polling import PollSchedule

    return PollSchedule(first=0.0, growth=0.0, min_interval=0.2, max_interval=0.2,
                        reads_per_minute=1e9, list_every=1e9)


def _run(emu: Any, spec: Any, *, one_per_group: bool = False, naive: bool = False) -> dict[str, Any]:
    from serverless_score.backends import get_backend
    from serverless_score.controller.job import Job

    backend: Any = get_backend(spec.backend, spec=spec, state_dir=tempfile.mkdtemp())
    if one_per_group:
        backend.tasks_per_group = _OnePerGroup.tasks_per_group
    if naive:
        backend.schedule = _naive_schedule()
    if emu is not None:
        emu.reset_calls()
    started = time.perf_counter()
    with Job(spec, backend=backend) as job:
        result = job.run()
    wall = time.perf_counter() - started
    assert result.status == "succeeded", result
    calls: Counter[tuple[str, str]] = Counter(emu.calls) if emu is not None else Counter()
    groups = calls[KINDS["create"]] or None
    return {"wall_s": round(wall, 2), "tasks": result.tasks, "groups": groups,
            "calls": {k: calls[v] for k, v in KINDS.items()},
            "per_task": {k: round(calls[v] / result.tasks, 3) for k, v in KINDS.items()},
            "gets_per_group": round(calls[KINDS["get"]] / groups, 2) if groups else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from aci_emulator import AciEmulator
    from azurite import running

    results: dict[str, Any] = {"tasks": args.tasks, "max_parallel": args.parallel,
                               "load_average_at_start": os.getloadavg()[0]}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-aci-")))
        azurite = stack.enter_context(running("3.37", tmp / "azurite"))
        emu = stack.enter_context(AciEmulator(work_dir=tmp / "emu"))
        emu.set_rate_limits(creates=[], deletes=[])  # the backend's own rate cap is measured
        stack.enter_context(emu.environ())
        os.environ.update(azurite.env())
        os.environ["SERVERLESS_SCORE_CACHE"] = str(tmp / "cache")
        container = "bench"
        azurite.service().create_container(container)
        rows = b"".join(json.dumps({"id": i}).encode() + b"\n" for i in range(args.tasks * 50))
        azurite.service().get_blob_client(container, "in/rows.jsonl").upload_blob(rows)

        def job(label: str, backend: str, seconds: float) -> Any:
            return _job(container, label, backend=backend, tasks=args.tasks, seconds=seconds,
                        max_parallel=args.parallel)

        variants = [
            ("local, tasks 0.5 s (baseline)", lambda: _run(None, job("local", "local", 0.5))),
            ("aci packed, tasks 0.5 s", lambda: _run(emu, job("packed", "aci", 0.5))),
            ("aci packed, tasks 0.5 s, naive poller", lambda: _run(emu, job("naive", "aci", 0.5),
                                                                 naive=True)),
            ("aci packed, tasks 2 s", lambda: _run(emu, job("packed2", "aci", 2.0))),
            ("aci one task per group, tasks 0.5 s", lambda: _run(emu, job("single", "aci", 0.5),
                                                                 one_per_group=True)),
        ]
        for label, variant in variants:
            print(f"-- {label}", flush=True)
            results[label] = variant()
            print(json.dumps(results[label]), flush=True)
        assert emu.group_names() == [], "a group was left behind"

    base = results["local, tasks 0.5 s (baseline)"]
    packed = results["aci packed, tasks 0.5 s"]
    naive = results["aci packed, tasks 0.5 s, naive poller"]
    longer = results["aci packed, tasks 2 s"]
    single = results["aci one task per group, tasks 0.5 s"]
    results["summary"] = {
        "overhead_per_task_s": round((packed["wall_s"] - base["wall_s"]) / args.tasks, 4),
        "naive_gets_over_schedule_gets": round(naive["calls"]["get"] / max(1, packed["calls"]["get"]), 1),
        "gets_per_group_0.5s_vs_2s_tasks": [packed["gets_per_group"], longer["gets_per_group"]],
        "task_seconds_ratio": 4.0,
        "one_per_group_per_task": single["per_task"],
    }
    print("\n== summary")
    print(f"tasks {args.tasks}, max_parallel {args.parallel}, load average at start "
          f"{results['load_average_at_start']:.2f}")
    for label in (k for k in results if isinstance(results[k], dict) and "wall_s" in results[k]):
        r = results[label]
        print(f"{label:42s} wall {r['wall_s']:7.2f} s  groups {r['groups'] or '-':>4}  "
              f"per task: {', '.join(f'{k} {v}' for k, v in r['per_task'].items() if v)}")
    s = results["summary"]
    print(f"controller wall-time overhead per task (aci packed - local) / tasks: "
          f"{s['overhead_per_task_s'] * 1000:.1f} ms")
    print(f"group GETs: naive poller / backend schedule = {s['naive_gets_over_schedule_gets']}x "
          f"on the same job")
    print(f"group GETs per group with 4x longer tasks: {s['gets_per_group_0.5s_vs_2s_tasks'][0]} -> "
          f"{s['gets_per_group_0.5s_vs_2s_tasks'][1]} (grows with time, sub-linearly)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
