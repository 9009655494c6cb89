"""Records longer than a task: quoted CSV fields, JSON lines and multi-line ``records`` that span
0..k tasks, read by whole jobs and compared with a one-process parse, record for record.

The jobs are real (plan, scheduler, chain repairs, the runner's reading and scoring, merge), only
the backend is in process: a group runs the runner's entrypoint in this process at creation, so
hundreds of jobs fit in seconds. ``retries = 0``: a repair of a wrong boundary guess must never
spend a retry, so any failure it does not heal fails the job.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from manifests import manifest_tasks

from serverless_score.backends import GroupSpec, GroupState, Phase
from serverless_score.backends.base import GroupInfo
from serverless_score.controller.job import Job, JobResult
from serverless_score.errors import JobInterrupted
from serverless_score.planning.partition import even_cuts
from serverless_score.runner import __main__ as runner_main
from serverless_score.runner.contract import ENV_WORK
from serverless_score.spec import spec_from_dict

JOBS = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class InProcessBackend:
    """Runs each group's worker (the real runner entrypoint) in this process when it is created:
    the scheduler then sees it finished at its next look."""

    name = "in-process"
    sees_local_files = True

    def __init__(self, tasks_per_group: int) -> None:
        self._per_group = tasks_per_group
        self._states: dict[str, GroupState] = {}
        self._logs: dict[str, str] = {}

    def tasks_per_group(self, pending: int, max_parallel: int) -> int:
        return self._per_group

    def begin_create_group(self, group: GroupSpec) -> None:
        out = io.StringIO()
        env = {**group.env, **group.secure_env}
        # It runs before the scheduler looks again: it takes what the queue holds now and
        # exits, instead of waiting for tickets that cannot come while it runs.
        work = json.loads(env[ENV_WORK])
        work["queue"]["linger"] = 0
        env[ENV_WORK] = json.dumps(work)
        # (the worker's malloc tuning and its capture of descriptors 1 and 2 are for a worker
        # process, not for pytest's: a capture per group would leave pytest's own output in pipes)
        with (mock.patch.dict(os.environ, env), mock.patch.object(runner_main, "_keep_freed_memory"),
              mock.patch.object(runner_main, "_capture", lambda: None),
              contextlib.redirect_stdout(out), contextlib.redirect_stderr(out)):
            code = runner_main.main([])
        phase = Phase.SUCCEEDED if code == 0 else Phase.FAILED
        self._states[group.name] = GroupState(group.name, phase, code)
        self._logs[group.name] = out.getvalue()

    def get_states(self, names: Sequence[str]) -> dict[str, GroupState]:
        return {name: self._states[name] for name in names if name in self._states}

    def get_logs(self, name: str) -> str:
        return self._logs.get(name, "")

    def delete_group(self, name: str) -> None:
        self._states.pop(name, None)

    def list_groups(self, job_id: str) -> list[str]:
        return []

    def list_all_groups(self) -> list[GroupInfo]:
        return []


TABLE_SCORER = """\
import hashlib
import pandas as pd

def load_model(path):
    return None

def score(model, data):
    text = data["text"].astype(str).where(data["text"].notna(), "")
    return pd.DataFrame({
        "n": text.str.len(),
        "h": [hashlib.sha1(t.encode()).hexdigest()[:12] for t in text],
        "x": data["x"].fillna(-1).astype(int),
    })
"""

RECORD_SCORER = """\
import hashlib

def load_model(path):
    return None

def score(model, records):
    return [f"{r.split(chr(10))[1]}|{len(r)}|{hashlib.sha1(r.encode()).hexdigest()[:12]}"
            for r in records]
"""


def digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def run_job(directory: Path, data: bytes, *, fmt: str, chunks: int, per_group: int,
            **keys: Any) -> tuple[JobResult, list[str]]:
    """Run a job on ``data`` in process; its result and its output's lines."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = {"csv": "csv", "jsonl": "jsonl", "records": "txt"}[fmt]
    out_suffix = "txt" if fmt == "records" else "csv"  # scores as CSV, records as lines
    (directory / f"input.{suffix}").write_bytes(data)
    (directory / "model.bin").write_bytes(b"unused")
    scorer = RECORD_SCORER if fmt == "records" else TABLE_SCORER
    (directory / "scorer.py").write_text(scorer)
    spec = spec_from_dict({
        "name": "long", "input": f"input.{suffix}", "output": f"out/scores.{out_suffix}",
        "format": fmt, "model": "model.bin", "scorer": "scorer.py", "chunks": chunks,
        "max_parallel": 2, "retries": 0, "timeout": "60s", "overwrite": True,
        **({} if fmt == "records" else {"id_columns": ["id"]}), **keys,
    }, base=directory)
    with Job(spec, backend=InProcessBackend(per_group), poll_interval=0.001) as job:
        result = job.run()
    output = (directory / "out" / f"scores.{out_suffix}").read_text(encoding="utf-8")
    return result, output.splitlines()


# -- csv ----------------------------------------------------------------------------------------
_SHORT = st.text(alphabet=st.sampled_from(list('ab,"\n é')), max_size=8)
# Units of long texts; the second kind holds no quote whose role (opening or closing) its
# neighbours tell, so a task starting inside such a field guesses its first record wrong.
_UNIT = st.one_of(st.text(alphabet=st.sampled_from(list('ab,"\n é')), min_size=1, max_size=6),
                  st.sampled_from(['a,""b""\n', '""\n', ',\n', '\n"",']))


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Empty, plain, short with delimiters, or long enough to cover several tasks. Non-empty
    texts start with a letter, so pandas never reads one as a number."""
    kind = draw(st.sampled_from(["empty", "plain", "short", "long"]))
    if kind == "empty":
        return ""
    if kind == "plain":
        return "t" + draw(st.text(alphabet="ab é", max_size=6))
    if kind == "short":
        return "t" + draw(_SHORT)
    return "t" + draw(_UNIT) * draw(st.integers(20, 300))


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, int]:
    """A valid CSV ``id,text,x`` (LF or CRLF, maybe a BOM, maybe no final newline) and its rows.
    Line ends inside quoted fields are the file's own (CRLF files hold CRLF in fields too)."""
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    rows = draw(st.lists(st.tuples(texts(), st.one_of(st.none(), st.integers(-9, 99)),
                                   st.booleans()), min_size=1, max_size=14))
    lines = ["id,text,x"]
    for i, (text, x, force_quotes) in enumerate(rows):
        text = text.replace("\n", newline)
        field = text
        if force_quotes or any(c in text for c in ',"\r\n'):
            field = '"' + text.replace('"', '""') + '"'
        lines.append(f"r{i:03d},{field},{'' if x is None else x}")
    body = newline.join(lines) + (newline if draw(st.booleans()) else "")
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + body).encode(), len(rows)


def expected_csv(data: bytes) -> list[str]:
    """One process, Python's csv module: what every job must output."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))[1:]
    return [f"{r[0]},{len(r[1])},{digest(r[1])},{int(r[2]) if r[2] else -1}" for r in rows]


def unquote(lines: list[str]) -> list[str]:
    return [",".join(row) for row in csv.reader(io.StringIO("\n".join(lines) + "\n"))]


@settings(JOBS, max_examples=40)
@given(csv_files(), st.integers(1, 24), st.sampled_from([1, 3]))
def test_csv_jobs_read_what_one_process_reads(tmp_path_factory: Any, sample: tuple[bytes, int],
                                              chunks: int, per_group: int) -> None:
    data, rows = sample
    result, lines = run_job(tmp_path_factory.mktemp("csv"), data, fmt="csv",
                            chunks=min(chunks, len(data)), per_group=per_group)
    assert lines[0] == "id,n,h,x"
    assert unquote(lines[1:]) == expected_csv(data)
    assert result.rows_in == result.rows_out == rows
    event("boundaries repaired" if result.repaired_boundaries else "no repair needed")


def test_the_reported_case_in_process(tmp_path: Path) -> None:
    """The issue's file (shrunk): a field of 4,000 lines in row 150, and one of 3,000 lines whose
    quotes tell no role in row 200 (there every guess inside is wrong and repaired). The tasks
    inside either field end empty at its end; none is run more than twice."""
    data = reported_csv(reps=4000, roleless=3000, newline="\r\n", bom=True)
    expected = expected_csv(data)
    fields = [(data.index(b"r150,"), data.index(b"r151,")),
              (data.index(b"r200,"), data.index(b"r201,"))]
    for chunks in (3, 7, 16):
        result, lines = run_job(tmp_path / str(chunks), data, fmt="csv", chunks=chunks,
                                per_group=2)
        assert unquote(lines[1:]) == expected, chunks
        # (retries = 0: a retry instead of a repair would have failed the job)
        ranges = list(pairwise(even_cuts(len(data), chunks)))
        if any(fields[1][0] + 5 < start < fields[1][1] for start, _ in ranges):
            assert result.repaired_boundaries > 0, chunks
        inside = 0
        for (start, stop), task in zip(ranges, manifest_tasks(result.output), strict=True):
            assert task["attempts"] <= 2, task  # a guess, then at most one repair
            for first, after in fields:
                if first < start and stop <= after:  # the whole range inside the field
                    assert task["records_out"] == 0 and task["begin"] == task["end"] == after
                    inside += 1
        assert inside >= chunks // 2 - 1, (chunks, inside)


class InterruptedBackend(InProcessBackend):
    """Ctrl-C as a group is about to run ``task_id`` (what a crashed controller leaves)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(1)
        self._task_id = task_id

    def begin_create_group(self, group: GroupSpec) -> None:
        from serverless_score.runner import attempt

        real = attempt.run_attempt

        def run_attempt(work: Any, order: Any, *args: Any, **kwargs: Any) -> bool:
            if order.task.id == self._task_id:
                raise KeyboardInterrupt
            return real(work, order, *args, **kwargs)

        with mock.patch.object(attempt, "run_attempt", run_attempt):
            super().begin_create_group(group)


def test_a_resumed_job_repairs_a_finished_task_of_the_run_before(tmp_path: Path) -> None:
    """A task an earlier run finished on a wrong begin (the controller died before the chain
    check) is re-run pinned by the resumed run's scheduler: a repair, no retry."""
    data = reported_csv(reps=1500, roleless=4000)
    directory = tmp_path / "job"
    directory.mkdir()
    (directory / "input.csv").write_bytes(data)
    (directory / "model.bin").write_bytes(b"unused")
    (directory / "scorer.py").write_text(TABLE_SCORER)
    spec = spec_from_dict({
        "name": "resume", "input": "input.csv", "output": "out/scores.csv", "model": "model.bin",
        "scorer": "scorer.py", "id_columns": ["id"], "chunks": 7, "max_parallel": 1,
        "retries": 0, "timeout": "60s"}, base=directory)
    with pytest.raises(JobInterrupted), Job(spec, backend=InterruptedBackend("t00006")) as job:
        job.run()
    status_file = directory / "out" / "scores.csv.work" / "tasks" / "t00003" / "attempt-1" / "status.json"
    status = json.loads(status_file.read_text())
    finished = status["result"]
    wrong = finished["begin"] + 3  # as if its guess had been 3 bytes off
    status_file.write_text(json.dumps({**status, "begin": wrong,
                                       "result": {**finished, "begin": wrong}}))
    with Job(spec, backend=InProcessBackend(1), poll_interval=0.001) as job:
        result = job.run()
    assert result.reused_tasks == 6
    # (t00004 too, probably: the first run queued its repair but was stopped before running it)
    assert result.repaired_boundaries >= 1
    lines = (directory / "out" / "scores.csv").read_text().splitlines()
    assert unquote(lines[1:]) == expected_csv(data)
    tasks = manifest_tasks(result.output)
    assert tasks[3]["begin"] == finished["begin"] and tasks[3]["attempts"] == 2


def reported_csv(*, reps: int, roleless: int = 0, newline: str = "\n", bom: bool = False) -> bytes:
    """300 rows ``id,text,x``; row 150's text is ``a,""b""`` + newline repeated ``reps`` times +
    ``end`` (quoted); every 9th row has a short quoted field with a newline. With ``roleless``,
    row 200's text is ``""`` + newline + ``,`` repeated that many times (quoted): no quote in it
    tells whether it opens or closes a field, so a task starting inside guesses wrong."""
    lines = ["id,text,x"]
    for i in range(300):
        if i == 150:
            text = '"' + ('a,""b""' + newline) * reps + 'end"'
        elif i == 200 and roleless:
            text = '"' + ('""' + newline + ",") * roleless + '"'
        elif i % 9 == 0:
            text = f'"short {i}{newline}line"'
        else:
            text = f"t{i}"
        lines.append(f"r{i:03d},{text},{i}")
    return (("\ufeff" if bom else "") + newline.join(lines) + newline).encode()


# -- jsonl --------------------------------------------------------------------------------------
@JOBS
@given(st.lists(st.tuples(texts(), st.integers(-9, 99)), min_size=1, max_size=10),
       st.sampled_from(["\n", "\r\n"]), st.booleans(), st.integers(1, 20), st.sampled_from([1, 3]))
def test_jsonl_lines_longer_than_tasks(tmp_path_factory: Any, rows: list[tuple[str, int]],
                                       newline: str, final: bool, chunks: int,
                                       per_group: int) -> None:
    lines = [json.dumps({"id": f"r{i:03d}", "text": t, "x": x}, ensure_ascii=False)
             for i, (t, x) in enumerate(rows)]
    data = (newline.join(lines) + (newline if final else "")).encode()
    result, out = run_job(tmp_path_factory.mktemp("jsonl"), data, fmt="jsonl",
                          chunks=min(chunks, len(data)), per_group=per_group)
    expected = [f"r{i:03d},{len(t)},{digest(t)},{x}" for i, (t, x) in enumerate(rows)]
    assert unquote(out[1:]) == expected
    assert result.rows_in == result.rows_out == len(rows)


# -- records ------------------------------------------------------------------------------------
BLOCK = r"BEGIN\n(?:[^\n]*\n)*?END\n"


@JOBS
@given(st.lists(st.lists(st.sampled_from(["BEGIN", "x", "", "BEGIN x", "a,b"]), max_size=4)
                .map(lambda payload: payload * 40 if len(payload) == 4 else payload),
                min_size=1, max_size=8),
       st.booleans(), st.integers(1, 20), st.sampled_from([1, 3]))
def test_records_longer_than_tasks(tmp_path_factory: Any, payloads: list[list[str]],
                                   final: bool, chunks: int, per_group: int) -> None:
    """Multi-line records (some of 160 lines) whose payload lines may read 'BEGIN': a guess
    inside a record can match there, and the chain repairs it."""
    blocks = ["\n".join(["BEGIN", f"id{i}", *payload, "END"]) for i, payload in enumerate(payloads)]
    data = ("\n".join(blocks) + ("\n" if final else "")).encode()
    result, out = run_job(tmp_path_factory.mktemp("records"), data, fmt="records",
                          chunks=min(chunks, len(data)), per_group=per_group,
                          record_pattern=BLOCK)
    text = data.decode() if final else data.decode() + "\n"
    records = [m.group(0).rstrip("\n") for m in re.finditer(BLOCK, text)]
    assert len(records) == len(payloads)
    assert out == [f"{r.split(chr(10))[1]}|{len(r)}|{digest(r)}" for r in records]
    event("boundaries repaired" if result.repaired_boundaries else "no repair needed")
