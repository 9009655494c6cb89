"""The manifest beside a succeeded job's output, in two files, so that a 100,000-task job's
summary stays a page a person can read:

    <output>.manifest.json         the summary: job, spec, inputs, model, output, totals, timings,
                                   usage, and ``tasks_file`` (its name, how many task lines, their
                                   bytes and sha256)
    <output>.manifest.tasks.jsonl  one JSON object per task, in task order: input, begin, end,
                                   records in and out, rows failed, attempts, evictions (of its
                                   Spot groups), seconds, the part's sha256 and bytes,
                                   container seconds, and the groups that ran it (``[group,
                                   attempt]``; the summary's groups list their tasks as
                                   ``first..last`` runs)

The task lines are written first and the summary last: the summary is what says "this job
succeeded" (``run``'s up-to-date check, ``status``, ``scores``), so it never names task lines that
are not all there. The summary's count and sha256 tie the lines to it: lines a later job wrote
over (it was cut off before its own summary) are told apart and not read as this job's.

A manifest written before the split holds its tasks inline as ``tasks``; ``read_tasks`` reads
both, so ``status`` and the "what changed" message work on outputs of older versions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..layout import JobLayout
from ..planning.tasks import Task
from ..runner.contract import TaskResult
from ..storage import Store

_BATCH = 1024  # task lines per write: one call per batch, not per task (a blob stages blocks)


def task_rows(tasks: Sequence[Task], results: Mapping[str, TaskResult],
              attempts: Mapping[str, int], container_seconds: Mapping[str, float],
              groups: Mapping[str, list[list[Any]]] | None = None,
              evictions: Mapping[str, int] | None = None) -> Iterator[dict[str, Any]]:
    """One row per task, in task (index) order: what the task lines hold. ``groups``: task ->
    ``[group, attempt]`` of each of this run's groups that ran it (see ``split_usage``);
    ``evictions``: task -> how many of this run's attempts of it were lost to evicted groups."""
    for t in sorted(tasks, key=lambda task: task.index):
        r = results[t.id]
        seconds = container_seconds.get(t.id)
        yield {"id": t.id, "input": t.describe(), "begin": r.begin, "end": r.end,
               "records_in": r.records_in, "records_out": r.records_out,
               "rows_failed": r.rows_failed, "attempts": max(attempts.get(t.id, 0), r.attempt),
               "evictions": (evictions or {}).get(t.id, 0),
               "seconds": r.seconds, "part_sha256": r.part_sha256, "part_bytes": r.part_bytes,
               "container_seconds": round(seconds, 3) if seconds is not None else None,
               "groups": (groups or {}).get(t.id, [])}


def compact_ids(ids: Sequence[str]) -> list[str]:
    """Task ids with each run of 3 or more consecutive ones written ``first..last`` (as group
    labels write them): ``t00000..t24999`` for a group of 25,000 tasks, not 25,000 ids."""
    out: list[str] = []
    run: list[str] = []
    for task_id in ids:
        if run and _number(task_id) != _number(run[-1]) + 1:
            out.extend(_run(run))
            run = []
        run.append(task_id)
    out.extend(_run(run))
    return out


def _number(task_id: str) -> int:
    digits = task_id.removeprefix("t")
    return int(digits) if digits.isdigit() else -2  # (never consecutive)


def _run(ids: list[str]) -> list[str]:
    return [f"{ids[0]}..{ids[-1]}"] if len(ids) >= 3 else list(ids)


def split_usage(usage: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, list[list[Any]]]]:
    """The usage for the summary, each group's tasks compacted (``compact_ids``) and its
    per-task attempts left out, and, for the task lines, task -> ``[group, attempt]`` of the
    groups that ran it: the summary grows with the groups, not with the tasks."""
    if usage is None or "per_group" not in usage:
        return (dict(usage) if usage is not None else None), {}
    ran: dict[str, list[list[Any]]] = {}
    groups = []
    for group in usage.get("per_group") or []:
        attempts = group.get("attempts") or {}
        for task_id in group.get("tasks") or []:
            ran.setdefault(task_id, []).append([group.get("name"), attempts.get(task_id)])
        groups.append({**{k: v for k, v in group.items() if k != "attempts"},
                       "tasks": compact_ids(group.get("tasks") or [])})
    return {**usage, "per_group": groups}, ran


def write_manifest(store: Store, layout: JobLayout, summary: Mapping[str, Any],
                   tasks: Sequence[Task], results: Mapping[str, TaskResult],
                   attempts: Mapping[str, int],
                   container_seconds: Mapping[str, float],
                   evictions: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Write the task lines, then the summary naming them (count, bytes, sha256); return the
    summary as written. The lines go out a batch at a time, never the whole file in memory."""
    usage, ran = split_usage(summary.get("usage"))
    rows = task_rows(tasks, results, attempts, container_seconds, ran, evictions)
    digest = hashlib.sha256()
    count = size = 0
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with store.open_atomic(layout.manifest_tasks) as out:
        batch: list[str] = []
        for row in rows:
            batch.append(encode(row))
            count += 1
            if len(batch) == _BATCH:
                size += _write_lines(out, batch, digest)
                batch = []
        if batch:
            size += _write_lines(out, batch, digest)
    written = {**summary, "usage": usage}
    written["tasks_file"] = {"name": layout.manifest_tasks.rsplit("/", 1)[-1], "tasks": count,
                             "bytes": size, "sha256": digest.hexdigest()}
    store.write_bytes(layout.manifest, json.dumps(written, indent=1).encode())
    return written


def _write_lines(out: Any, lines: list[str], digest: Any) -> int:
    data = ("\n".join(lines) + "\n").encode()
    digest.update(data)
    out.write(data)
    return len(data)


def read_tasks(store: Store, layout: JobLayout, manifest: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The task rows of ``manifest`` (a summary as read from ``layout.manifest``), in task order:
    its inline ``tasks`` (a manifest from before the split), or its task lines. None when they
    cannot be had: the lines are missing, or are not the ones the summary names (another job's,
    cut off before its own summary)."""
    inline = manifest.get("tasks")
    if isinstance(inline, list):
        return [t for t in inline if isinstance(t, dict)]
    named = manifest.get("tasks_file")
    if not isinstance(named, dict):
        return None
    try:
        data = store.read_bytes(layout.manifest_tasks)
    except FileNotFoundError:
        return None
    if (len(data), hashlib.sha256(data).hexdigest()) != (named.get("bytes"), named.get("sha256")):
        return None
    try:
        rows = [json.loads(line) for line in data.splitlines() if line]
    except ValueError:
        return None
    return rows if len(rows) == named.get("tasks") else None
