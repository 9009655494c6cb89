"""What a fault campaign runs against (bench/chaos.py): the input, the model and a scorer that
keeps a journal, and the two backends as *targets*: where a trial's output is, how its groups and
processes are found, which faults the backend can take, and how to clear up after a trial.

* ``LocalTarget``: ``backend = "local"``, everything in a folder; groups are runner processes.
* ``AciTarget``: ``backend = "aci"`` against the local ACI emulator (tests/aci_emulator, driven by
  the real SDK), model, input and output in Azurite; one emulator per parallel slot, so one
  trial's faults never reach another's requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the ACI emulator, Azurite and /proc helpers

GROUP_ENV = "SERVERLESS_SCORE_GROUP"
TRIAL_ENV = "CHAOS_TRIAL"  # every controller (and the local workers it starts) carries it
JOURNAL_ENV = "CHAOS_JOURNAL"
SLEEP_ENV = "CHAOS_SCORE_SLEEP"
IGNORE_TERM_ENV = "CHAOS_IGNORE_TERM"
IMAGE = "chaos.azurecr.io/serverless-score-python:chaos"  # the emulator runs the runner for it

# The scorer every trial uses: per-row arithmetic (the same bytes whatever the batch), a sleep
# per batch so a trial lasts long enough to be hit, and one journal line per worker start: its
# group, pid and (task, attempt) pairs, which is how two groups for one attempt show up.
SCORER = '''"""Chaos campaign scorer: a logistic score per row, a journal line per worker."""
import json
import math
import os
import signal
import time


def load_model(path):
    journal = os.environ.get("CHAOS_JOURNAL")
    if journal:
        work = json.loads(os.environ.get("SERVERLESS_SCORE_WORK") or "{}")
        line = json.dumps({"group": os.environ.get("SERVERLESS_SCORE_GROUP"), "pid": os.getpid(),
                           "orders": [["t%05d" % o["task"]["index"], o["attempt"]]
                                      for o in work.get("orders", [])]})
        with open(journal, "a", encoding="utf-8") as f:  # O_APPEND: one short write per line
            f.write(line + "\\n")
    if os.environ.get("CHAOS_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a worker slow to stop: a slow delete
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def score(model, data):
    time.sleep(float(os.environ.get("CHAOS_SCORE_SLEEP") or 0))
    return [1.0 / (1.0 + math.exp(-(model["w0"] + model["wa"] * a + model["wb"] * b)))
            for a, b in zip(data["a"], data["b"])]
'''
MODEL = {"w0": -0.25, "wa": 0.8, "wb": -0.035}


def write_inputs(folder: Path, rows: int, seed: int = 7) -> tuple[Path, Path, Path]:
    """``data.csv`` (id, a, b, note; every 97th note a quoted field with a comma, a doubled quote
    and a newline, so a chunk boundary can fall inside a record), ``model.json``, ``score.py``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines = ["id,a,b,note"]
    for i in range(rows):
        note = (f'"line one of {i}, said ""hi""\nline two of {i}"' if i % 97 == 13
                else f"plain {i}")
        lines.append(f"r{i:06d},{rng.gauss(0, 1):.6f},{rng.randint(0, 40)},{note}")
    data = folder / "data.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = folder / "model.json"
    model.write_text(json.dumps(MODEL), encoding="utf-8")
    scorer = folder / "score.py"
    scorer.write_text(SCORER, encoding="utf-8")
    return data, model, scorer


def job_text(**keys: Any) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


@dataclass
class Journal:
    """Worker starts the scorer wrote: (group, pid, orders) for one job-name prefix."""

    path: Path

    def entries(self, prefix: str) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if str(entry.get("group") or "").startswith(prefix):
                    found.append(entry)
        return found


def live_pids(match_prefix: str | None = None, trial: str | None = None) -> dict[int, str]:
    """Live processes (pid -> group, or "" for none) whose group starts with ``match_prefix`` or
    that carry the ``trial`` marker."""
    from aci_emulator.procfs import live_pids_with_env

    group_key = f"{GROUP_ENV}=".encode()
    found: dict[int, str] = {}

    def match(environ: list[bytes]) -> bool:
        group = next((v[len(group_key):] for v in environ if v.startswith(group_key)), None)
        ok = (match_prefix is not None and group is not None
              and group.startswith(match_prefix.encode()))
        ok = ok or (trial is not None and f"{TRIAL_ENV}={trial}".encode() in environ)
        return ok

    for pid in live_pids_with_env(match):
        found[pid] = _group_of(pid)
    return found


def _group_of(pid: int) -> str:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return ""
    key = f"{GROUP_ENV}=".encode()
    return next((v[len(key):].decode(errors="replace") for v in environ if v.startswith(key)), "")


def group_leaders(prefix: str) -> dict[int, str]:
    """Runner processes (group leaders) of groups named ``prefix...``: the local backend's groups,
    an emulated container's main process. Reads ``stat`` first: only leaders' environments."""
    leaders = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] == "Z" or int(stat[2]) != int(entry.name):
                continue
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        key = f"\0{GROUP_ENV}={prefix}".encode()
        at = (b"\0" + environ).find(key)
        if at >= 0:
            end = environ.find(b"\0", at)
            value = environ[at + len(GROUP_ENV) + 1:end if end >= 0 else None]
            leaders[int(entry.name)] = value.decode(errors="replace")
    return leaders


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class LocalTarget:
    backend = "local"
    kinds: tuple[str, ...] = ("kill9", "sigint", "sigterm", "worker_kill", "delete_slow",
                              "second_controller")

    def __init__(self, root: Path, data: Path, model: Path, scorer: Path,
                 journal: Journal) -> None:
        self.root, self.data, self.model, self.scorer = root, data, model, scorer
        self.journal = journal

    def env(self) -> dict[str, str]:
        return {}

    def output(self, trial_dir: Path) -> str:
        return str(trial_dir / "out" / "scores.csv")

    def job_keys(self) -> dict[str, Any]:
        return {"model": str(self.model), "input": str(self.data), "scorer": str(self.scorer)}

    def read_output(self, output: str) -> bytes | None:
        try:
            return Path(output).read_bytes()
        except FileNotFoundError:
            return None

    def read_job_id(self, output: str) -> str | None:
        with contextlib.suppress(OSError, ValueError):
            return str(json.loads(Path(f"{output}.work/job.json").read_text())["job_id"])
        return None

    def attempt_files(self, output: str) -> dict[str, bytes]:
        """Every claim and status of the job's attempts: path under the work folder -> bytes."""
        work = Path(f"{output}.work")
        return {str(p.relative_to(work)): p.read_bytes()
                for name in ("claim.json", "status.json")
                for p in work.glob(f"tasks/*/attempt-*/{name}")}

    def groups(self, prefix: str) -> list[str]:
        return sorted(set(group_leaders(prefix).values()))

    def created(self, prefix: str) -> list[dict[str, Any]]:
        return []  # no ARM here: the scorer's journal and /proc are the record

    def hits(self, since: float) -> dict[str, int]:
        return {}

    def clear_faults(self) -> None:
        pass

    def force_clean(self, prefix: str) -> None:
        kill_pids(list(live_pids(prefix)))


class AciTarget:
    backend = "aci"
    kinds: tuple[str, ...] = ("kill9", "sigint", "sigterm", "worker_kill", "storm429",
                              "lost_create", "delete_fail", "delete_slow", "second_controller")

    def __init__(self, emulator: Any, azurite: Any, container: str, model_uri: str,
                 input_uri: str, scorer: Path, journal: Journal) -> None:
        self.emu, self.azurite, self.container = emulator, azurite, container
        self.model_uri, self.input_uri, self.scorer = model_uri, input_uri, scorer
        self.journal = journal

    def env(self) -> dict[str, str]:
        return {**self.azurite.env(), **self.emu.env()}

    def output(self, trial_dir: Path) -> str:
        return f"az://{self.container}/{trial_dir.name}/scores.csv"

    def job_keys(self) -> dict[str, Any]:
        return {"model": self.model_uri, "input": self.input_uri, "scorer": str(self.scorer),
                "backend": "aci", "image": IMAGE}

    def _blob(self, uri: str) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        name = uri.removeprefix(f"az://{self.container}/")
        try:
            client = self.azurite.service().get_blob_client(self.container, name)
            return bytes(client.download_blob().readall())
        except ResourceNotFoundError:
            return None

    def read_output(self, output: str) -> bytes | None:
        return self._blob(output)

    def attempt_files(self, output: str) -> dict[str, bytes]:
        """Every claim and status of the job's attempts: path under the work folder -> bytes."""
        work = f"{output.removeprefix(f'az://{self.container}/')}.work/"
        client = self.azurite.service().get_container_client(self.container)
        found = {}
        for blob in client.list_blobs(name_starts_with=f"{work}tasks/"):
            if blob.name.endswith(("/claim.json", "/status.json")):
                data = self._blob(f"az://{self.container}/{blob.name}")
                if data is not None:
                    found[blob.name.removeprefix(work)] = data
        return found

    def read_job_id(self, output: str) -> str | None:
        data = self._blob(f"{output}.work/job.json")
        with contextlib.suppress(ValueError, TypeError, KeyError):
            return str(json.loads(data or b"")["job_id"])
        return None

    def groups(self, prefix: str) -> list[str]:
        return [n for n in self.emu.group_names() if n.startswith(prefix)]

    def created(self, prefix: str) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.emu.chaos.created() if c.name.startswith(prefix)]

    def hits(self, since: float) -> dict[str, int]:
        """Injected answers the emulator gave since ``since`` (monotonic): 429s, failed deletes."""
        answers = [(method, status) for at, method, kind, _, status in self.emu.requests
                   if at >= since]
        return {"429": sum(1 for _, status in answers if status == 429),
                "delete 5xx": sum(1 for method, status in answers
                                  if method == "DELETE" and status >= 500)}

    def clear_faults(self) -> None:
        self.emu.clear_faults()

    def force_clean(self, prefix: str) -> None:
        """Delete what a trial left (faults cleared first, so the deletes go through)."""
        self.emu.clear_faults()
        client = self.emu.client()
        for name in self.groups(prefix):
            with contextlib.suppress(Exception):
                client.container_groups.begin_delete(self.emu.resource_group, name,
                                                     polling_interval=0.1).result(timeout=30)
        deadline = time.monotonic() + 5
        while live_pids(prefix) and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_pids(list(live_pids(prefix)))
