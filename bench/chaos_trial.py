"""One trial of the fault campaign (bench/chaos.py): run a job with its faults, resume it as the
README says (run the same job again; ``cleanup`` for a job that will not be run again), then
check the invariants. A broken invariant is a result, never an exception.

Invariants (``BROKEN`` keys):
* ``output differs``: the output is not the clean run's (ids and order exact, scores to 1e-12);
* ``orphan group``: a group of the job still exists (emulator group, local runner process);
* ``leftover process``: a process outlived its group or its controller;
* ``two groups for one attempt``: one (task, attempt) ran in two groups, or one group name was
  created twice (an identical PUT replayed after a lost answer is the same group);
* ``did not finish``: no run ended with the job done after the allowed resumes;
* ``controller hung``: a controller did not exit within the run timeout (it is then killed);
* ``harness error``: the trial itself failed (say, Azurite did not answer): not the product's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos_checks import (
    attempts_run_by_their_claimers,
    compare_outputs,
    two_groups_for_one_attempt,
)
from chaos_env import (
    IGNORE_TERM_ENV,
    TRIAL_ENV,
    group_leaders,
    job_text,
    kill_pids,
    live_pids,
)
from chaos_faults import Fault

BROKEN = ("output differs", "orphan group", "leftover process", "two groups for one attempt",
          "did not finish", "controller hung", "harness error")
DONE = ("succeeded", "up-to-date")


@dataclass
class Campaign:
    """What every trial of a campaign shares."""

    cli: list[str]  # how to start the CLI
    env: dict[str, str]  # the controllers' environment (without the trial's own variables)
    root: Path  # trial folders go here
    tag: str  # in every job name: trials of different campaigns never mix
    resumes: int = 3
    resume_delay: float = 0.0  # seconds before each resume (e.g. for a lease to lapse)
    run_timeout: float = 180.0
    settle: float = 5.0  # how long deleted groups and killed processes get to vanish
    keep: bool = False  # keep the folders of passing trials too


@dataclass
class Outcome:
    index: int
    seed: int
    job: str  # the job's name: its groups are named "<job>-<hash>-<task>-<attempt>"
    backend: str
    chunks: int
    faults: list[str]
    kinds: list[str]
    fired: dict[str, bool]
    broken: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what happened, not failures
    runs: list[dict[str, Any]] = field(default_factory=list)
    bytes_identical: bool | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.broken

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def job_name(tag: str, label: str) -> str:
    return f"chaos-{tag}-{label}"


def run_clean(campaign: Campaign, target: Any, label: str, chunks: int) -> tuple[bytes, float]:
    """A fault-free run: the reference output and how long a clean run takes."""
    folder = campaign.root / label
    folder.mkdir(parents=True, exist_ok=True)
    name = job_name(campaign.tag, label)
    output = target.output(folder)
    job = _write_job(folder, target, name, output, chunks)
    started = time.monotonic()
    proc = subprocess.run([*campaign.cli, "run", str(job), "--json", "-q"], env=campaign.env,
                          capture_output=True, text=True, timeout=campaign.run_timeout,
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    data = target.read_output(output)
    if proc.returncode != 0 or data is None:
        raise RuntimeError(f"the clean run {label} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return data, seconds


def _write_job(folder: Path, target: Any, name: str, output: str, chunks: int) -> Path:
    keys = {"name": name, **target.job_keys(), "output": output, "format": "csv",
            "id_columns": ["id"], "chunks": chunks, "max_parallel": 2, "retries": 2,
            "timeout": "60s"}
    path = folder / "job.toml"
    path.write_text(job_text(**keys), encoding="utf-8")
    return path


class Trial:
    def __init__(self, campaign: Campaign, target: Any, index: int, seed: int, chunks: int,
                 faults: list[Fault], reference: bytes) -> None:
        self.campaign, self.target, self.index, self.seed = campaign, target, index, seed
        self.chunks, self.faults, self.reference = chunks, faults, reference
        self.folder = campaign.root / f"trial-{index:04d}"
        self.name = job_name(campaign.tag, f"{index:04d}")
        self.prefix = self.name + "-"
        self.output = target.output(self.folder)
        self._procs: dict[int, subprocess.Popen[str]] = {}
        self._second: subprocess.Popen[str] | None = None
        self._sightings: set[tuple[str, int]] = set()  # (group, pid) seen in /proc
        self._next_look = 0.0
        self._started = 0.0
        self._env = dict(campaign.env, **{TRIAL_ENV: self.name})
        if any(f.kind == "delete_slow" for f in self.faults) and target.backend == "local":
            self._env[IGNORE_TERM_ENV] = "1"

    # -- the fault Context ---------------------------------------------------------------------
    def controller(self, run: int) -> subprocess.Popen[str] | None:
        return self._procs.get(run)

    def workers(self) -> list[int]:
        return list(group_leaders(self.prefix))

    def emulator(self) -> Any:
        return getattr(self.target, "emu", None)

    def start_second(self) -> None:
        self._second = self._start("second")

    # -- the trial -------------------------------------------------------------------------------
    def run(self) -> Outcome:
        started = self._started = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.job = _write_job(self.folder, self.target, self.name, self.output, self.chunks)
        outcome = Outcome(self.index, self.seed, self.name, self.target.backend, self.chunks,
                          [f.describe() for f in self.faults],
                          sorted({f.kind for f in self.faults}), {})
        try:
            self._play(outcome)
            self._check(outcome)
        except Exception as err:  # the harness's own trouble is reported, the campaign goes on
            outcome.broken.append("harness error")
            outcome.details.append(f"{type(err).__name__}: {err}"[:300])
        finally:
            self._clear_up()
        outcome.fired = {k: any(f.fired for f in self.faults if f.kind == k)
                         for k in outcome.kinds}
        outcome.seconds = round(time.monotonic() - started, 2)
        if outcome.passed and not self.campaign.keep:
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            (self.folder / "outcome.json").write_text(json.dumps(outcome.to_dict(), indent=1))
        return outcome

    def _play(self, outcome: Outcome) -> None:
        finished = self._drive(0, outcome)
        run = 1
        while not finished and run <= self.campaign.resumes:
            time.sleep(self.campaign.resume_delay)
            finished = self._drive(run, outcome)
            run += 1
        if not finished:
            outcome.broken.append("did not finish")
            outcome.details.append(f"did not finish after {self.campaign.resumes} resume(s)")
            # The README: `cleanup` for a job that will not be run again.
            self._cli_run("cleanup", "cleanup", str(self.job), "--json", outcome=outcome)

    def _start(self, label: str, *args: str) -> subprocess.Popen[str]:
        argv = [*self.campaign.cli, *(args or ("run", str(self.job), "--json", "-q"))]
        out = (self.folder / f"{label}.out").open("w")
        err = (self.folder / f"{label}.err").open("w")
        with out, err:  # the child holds its own copies
            return subprocess.Popen(argv, env=self._env, stdout=out, stderr=err, text=True,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def _drive(self, run: int, outcome: Outcome) -> bool:
        """Run the job once (run 0 with its faults; later runs are resumes) and say whether it
        finished. The second controller, if a fault starts one, is waited for in run 0."""
        label = f"run{run}"
        proc = self._procs[run] = self._start(label)
        t0 = time.monotonic()
        pending = [f for f in self.faults if f.run == run]
        while True:
            now = time.monotonic() - t0
            for fault in list(pending):
                if fault.at <= now and fault.fire(self):
                    pending.remove(fault)
            self._observe()
            alive = [p for p in (proc, self._second if run == 0 else None)
                     if p is not None and p.poll() is None]
            if not alive:
                break
            if now > self.campaign.run_timeout:
                kill_pids([p.pid for p in alive])
                for p in alive:
                    p.wait()
                outcome.broken.append("controller hung")
                outcome.details.append(f"{label}: a controller was still running after "
                                       f"{self.campaign.run_timeout:g}s and was killed")
                break
            time.sleep(0.05)
        finished = self._record(label, proc, t0, outcome)
        if run == 0 and self._second is not None:
            finished = self._record("second", self._second, t0, outcome) or finished
        return finished

    def _record(self, label: str, proc: subprocess.Popen[str], t0: float,
                outcome: Outcome) -> bool:
        proc.wait()
        stdout = (self.folder / f"{label}.out").read_text(errors="replace")
        stderr = (self.folder / f"{label}.err").read_text(errors="replace")
        result = _last_json(stdout)
        status = result.get("status") if result else None
        entry = {"run": label, "exit": proc.returncode, "status": status,
                 "seconds": round(time.monotonic() - t0, 2)}
        if "Traceback (most recent call last)" in stderr:
            entry["traceback"] = stderr.strip().splitlines()[-1][:300]
        outcome.runs.append(entry)
        return proc.returncode == 0 and status in DONE

    def _cli_run(self, label: str, *args: str, outcome: Outcome) -> None:
        proc = self._start(label, *args)
        try:
            proc.wait(timeout=self.campaign.run_timeout)
        except subprocess.TimeoutExpired:
            kill_pids([proc.pid])
            proc.wait()
        self._record(label, proc, time.monotonic(), outcome)

    def _observe(self, force: bool = False) -> None:
        """Note the job's live groups (a /proc scan, so at most every 0.25 s): a backup for
        the scorer's journal, which a worker killed before it loads the model never writes."""
        now = time.monotonic()
        if not force and now < self._next_look:
            return
        self._next_look = now + 0.25
        for pid, group in group_leaders(self.prefix).items():
            self._sightings.add((group, pid))

    # -- the invariants ----------------------------------------------------------------------------
    def _check(self, outcome: Outcome) -> None:
        deadline = time.monotonic() + self.campaign.settle
        while (self.target.groups(self.prefix) or live_pids(self.prefix, self.name)) \
                and time.monotonic() < deadline:
            self._observe()
            time.sleep(0.1)
        orphans = self.target.groups(self.prefix)
        if orphans:
            outcome.broken.append("orphan group")
            outcome.details.append(f"groups left: {', '.join(orphans)}")
        left = {pid: group for pid, group in live_pids(self.prefix, self.name).items()
                if group not in orphans}
        left.update({p.pid: "controller" for p in self._all_procs() if p.poll() is None})
        if left:
            outcome.broken.append("leftover process")
            outcome.details.append("processes left: " + ", ".join(
                f"{pid} ({group or _comm(pid)})" for pid, group in sorted(left.items())))
        got = self.target.read_output(self.output)
        same, identical, why = compare_outputs(self.reference, got)
        outcome.bytes_identical = identical
        if not same:
            outcome.broken.append("output differs")
            outcome.details.append(why)
        journal = self.target.journal.entries(self.prefix)
        starts = [(e["group"], int(e["pid"]), [tuple(o) for o in e.get("orders", [])])
                  for e in journal]
        starts += [(group, pid, []) for group, pid in self._sightings]
        created = self.target.created(self.prefix)
        lost = sum(1 for c in created if not c["answered"])
        replayed = sum(1 for c in created if c["status"] == 200)
        if lost or replayed:
            outcome.notes.append(f"{lost} create answer(s) lost, {replayed} PUT(s) replayed")
        hits = self.target.hits(self._started)
        outcome.notes += [f"{n} {what} answered" for what, n in hits.items() if n]
        # A fault armed in the emulator counts as injected only if a request met it.
        met = {"lost_create": lost, "storm429": hits.get("429", 0),
               "delete_fail": hits.get("delete 5xx", 0)}
        for fault in self.faults:
            if fault.kind in met and not met[fault.kind]:
                fault.fired = False
        outcome.notes += [f"{r['run']}: {r['traceback']}" for r in outcome.runs
                          if "traceback" in r]
        twice = two_groups_for_one_attempt(starts, created)
        twice += attempts_run_by_their_claimers(self.target.attempt_files(self.output))
        if twice:
            outcome.broken.append("two groups for one attempt")
            outcome.details.extend(twice)

    def _all_procs(self) -> list[subprocess.Popen[str]]:
        return [*self._procs.values(), *([self._second] if self._second else [])]

    def _clear_up(self) -> None:
        """Whatever the trial left is removed, so the next trial starts clean."""
        kill_pids([p.pid for p in self._all_procs() if p.poll() is None])
        for proc in self._all_procs():
            proc.wait()
        self.target.force_clean(self.prefix)
        kill_pids(list(live_pids(self.prefix, self.name)))


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.strip().startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The controllers' environment: this one, without a worker's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SERVERLESS_SCORE_WORK", "SERVERLESS_SCORE_GROUP")}
    env["COLUMNS"] = "300"
    env.update(extra)
    return env
