"""A fault campaign, as a benchmark: randomized trials of one small job, each hit by one or two
faults (the controller SIGKILLed / SIGINTed / SIGTERMed once or twice, a worker killed, a 429
storm, a create whose answer is lost, a failed or slow delete, a second controller on the same
job), then resumed as the README says. Every trial must end with the clean run's output (ids and
order exact, scores to 1e-12), no orphan group, no leftover process and never two groups for one
attempt. A failing trial is recorded with its seed, and the campaign goes on.

Usage::

    python bench/chaos.py --backend local --trials 100 --seed 1
    python bench/chaos.py --backend aci --trials 100 --seed 1      # the ACI emulator + Azurite
    python bench/chaos.py --backend local --replay 2718281828       # one trial again, by its seed

Prints the counts per fault kind and per outcome as Markdown tables and writes them, with every
failure and its repro seed, to ``bench/.data/chaos/<backend>-<seed>/summary.md`` (every outcome
in ``outcomes.json``; the folder of each failed trial is kept beside them).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_env import (
    JOURNAL_ENV,
    REPO,
    SLEEP_ENV,
    AciTarget,
    Journal,
    LocalTarget,
    write_inputs,
)
from chaos_faults import plan_faults
from chaos_trial import BROKEN, Campaign, Outcome, Trial, base_env, run_clean

CHUNKS = (4, 5, 6, 7, 8)
DATA = REPO / "bench" / ".data" / "chaos"


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "serverless-score"  # the console entry point
    return [str(script)] if script.exists() else [sys.executable, "-m", "serverless_score.cli"]


class References:
    """The clean run of each chunking, made on first use (per parallel slot and chunk count),
    after one warm-up run: the first run of a campaign pays for cold caches (model download,
    imports, Azurite's first blobs) and would stretch the time scale of the fault moments."""

    def __init__(self, campaign: Campaign, target: Any, slot: int) -> None:
        self.campaign, self.target, self.slot = campaign, target, slot
        self.outputs: dict[int, bytes] = {}
        self.seconds: dict[int, float] = {}
        self._warm = False
        self._lock = threading.Lock()

    def get(self, chunks: int) -> tuple[bytes, float]:
        with self._lock:
            if not self._warm and self.target.backend == "aci":
                run_clean(self.campaign, self.target, f"s{self.slot}warm", chunks)
                self._warm = True
            if chunks not in self.outputs:
                data, seconds = run_clean(self.campaign, self.target, f"s{self.slot}c{chunks}",
                                          chunks)
                self.outputs[chunks], self.seconds[chunks] = data, seconds
            return self.outputs[chunks], self.seconds[chunks]


def campaign_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else DATA / f"{args.backend}-{args.seed}"


def run_campaign(args: argparse.Namespace) -> tuple[list[Outcome], dict[int, float]]:
    tag = uuid.uuid4().hex[:4]
    root = campaign_dir(args)
    if root.exists() and any(root.iterdir()):
        if not (root / "journal.jsonl").exists():
            raise SystemExit(f"--dir: {root} is not empty and holds no earlier campaign; "
                             "give an empty or new folder")
        shutil.rmtree(root)  # an earlier campaign of the same seed
    root.mkdir(parents=True, exist_ok=True)
    journal = Journal(root / "journal.jsonl")
    journal.path.touch()  # also marks the folder as a campaign's (see --dir)
    data, model, scorer = write_inputs(root / "inputs", args.rows)
    extra = {JOURNAL_ENV: str(journal.path), SLEEP_ENV: str(args.score_sleep),
             "SERVERLESS_SCORE_CACHE": str(root / "cache"),
             "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                         os.environ.get("PYTHONPATH")]))}
    os.environ["PYTHONPATH"] = extra["PYTHONPATH"]  # the emulator's containers: this checkout
    draw = random.Random(args.seed)
    seeds = ([args.replay] if args.replay is not None else
             [draw.getrandbits(32) for _ in range(args.trials)])
    slots = max(1, min(args.jobs, len(seeds)))
    with ExitStack() as stack:
        if args.backend == "local":
            targets = [LocalTarget(root, data, model, scorer, journal)] * slots
            env_extra = extra
        else:
            targets, env_extra = _aci_targets(stack, root, data, model, scorer, journal, extra,
                                              slots)
        for target in targets:
            target.kinds = tuple(k for k in target.kinds if not args.kinds or k in args.kinds)
        campaigns = [Campaign(_cli(), base_env({**env_extra, **t.env()}), root, tag,
                              resumes=args.resumes, resume_delay=args.resume_delay,
                              run_timeout=args.run_timeout, keep=args.keep)
                     for t in targets]
        refs = [References(c, t, slot)
                for slot, (c, t) in enumerate(zip(campaigns, targets, strict=True))]
        chunk_choices = tuple(args.chunks) if args.chunks else CHUNKS

        def one(index: int, slot: int) -> Outcome:
            rng = random.Random(seeds[index])  # the trial's seed decides its whole draw
            chunks = rng.choice(chunk_choices)
            reference, seconds = refs[slot].get(chunks)
            faults = plan_faults(rng, targets[slot].kinds, seconds)
            trial = Trial(campaigns[slot], targets[slot], index, seeds[index], chunks, faults,
                          reference)
            outcome = trial.run()
            _progress(outcome, len(seeds))
            return outcome

        if slots == 1:
            outcomes = [one(i, 0) for i in range(len(seeds))]
        else:
            with ThreadPoolExecutor(max_workers=slots) as pool:
                futures = [pool.submit(one, i, i % slots) for i in range(len(seeds))]
                outcomes = [f.result() for f in futures]
        return outcomes, {c: s for r in refs for c, s in r.seconds.items()}


def _aci_targets(stack: ExitStack, root: Path, data: Path, model: Path, scorer: Path,
                 journal: Journal, extra: dict[str, str],
                 slots: int) -> tuple[list[Any], dict[str, str]]:
    """Azurite (model and input uploaded once) and one ACI emulator per parallel slot."""
    from aci_emulator import AciEmulator
    from azurite import running

    azurite = stack.enter_context(running("3.37", root / "azurite"))
    container = "chaos"
    service = azurite.service()
    service.create_container(container)
    for path, name in ((data, "in/data.csv"), (model, "model/model.json")):
        service.get_blob_client(container, name).upload_blob(path.read_bytes(), overwrite=True)
    env = {k: v for k, v in extra.items()}
    targets = []
    for slot in range(slots):
        emu = stack.enter_context(AciEmulator(
            work_dir=root / f"emulator-{slot}",
            extra_env={JOURNAL_ENV: extra[JOURNAL_ENV], SLEEP_ENV: extra[SLEEP_ENV]}))
        emu.set_rate_limits(creates=[], deletes=[])  # hundreds of trials: no ARM rate caps
        targets.append(AciTarget(emu, azurite, container, f"az://{container}/model/model.json",
                                 f"az://{container}/in/data.csv", scorer, journal))
    for name in AciEmulator.CREDENTIAL_VARS:
        os.environ.pop(name, None)  # the controllers take the emulator's managed identity
    return targets, env


def _progress(outcome: Outcome, total: int) -> None:
    verdict = "ok" if outcome.passed else "FAIL: " + "; ".join(outcome.broken)
    print(f"[{outcome.index + 1}/{total}] seed {outcome.seed} chunks {outcome.chunks} "
          f"{' + '.join(outcome.faults)} -> {verdict} ({outcome.seconds:.1f}s)", flush=True)


# -- the report ------------------------------------------------------------------------------------
def git_revision() -> str:
    """The commit under test, read when the campaign starts ("+changes" for a dirty tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                              text=True).stdout.strip()
    rev = git("rev-parse", "--short", "HEAD") or "?"
    return rev + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def summary(outcomes: list[Outcome], args: argparse.Namespace, seconds: float,
            clean: dict[int, float], rev: str) -> str:
    passed = sum(o.passed for o in outcomes)
    lines = [f"### Fault campaign: backend {args.backend}, seed {args.seed}, "
             f"{len(outcomes)} trials",
             "",
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {rev}, {args.jobs} at a time, "
             f"{seconds / 60:.1f} min; `python bench/chaos.py --backend {args.backend} "
             f"--trials {args.trials} --seed {args.seed}`. **{passed}/{len(outcomes)} trials "
             f"kept every invariant.**",
             "",
             "| fault kind | trials | injected | passed | failed |",
             "| --- | ---: | ---: | ---: | ---: |"]
    kinds = sorted({k for o in outcomes for k in o.kinds})
    for kind in kinds:
        with_kind = [o for o in outcomes if kind in o.kinds]
        lines.append(f"| {kind} | {len(with_kind)} | "
                     f"{sum(o.fired.get(kind, False) for o in with_kind)} | "
                     f"{sum(o.passed for o in with_kind)} | "
                     f"{sum(not o.passed for o in with_kind)} |")
    counts = Counter(b for o in outcomes for b in o.broken)
    lines += ["", "| outcome | trials |", "| --- | ---: |", f"| every invariant kept | {passed} |"]
    lines += [f"| {key} | {counts[key]} |" for key in BROKEN if counts[key]]
    identical = sum(1 for o in outcomes if o.bytes_identical)
    clean_runs = ", ".join(f"{c} chunks {s:.1f} s" for c, s in sorted(clean.items()))
    tracebacks = sum(1 for o in outcomes if any("traceback" in r for r in o.runs))
    lines += ["", f"Outputs byte-identical to the clean run: {identical}/{len(outcomes)}. "
              f"Controllers that ended in a Python traceback: {tracebacks} trial(s). "
              f"Clean runs: {clean_runs}."]
    exits = Counter(_exit_word(r["exit"]) for o in outcomes for r in o.runs
                    if r["run"] == "run0")
    lines += ["", "First runs (the faulted controller) ended: " + ", ".join(
        f"{word} x{n}" for word, n in sorted(exits.items(), key=lambda kv: -kv[1])) + "."]
    failures = [o for o in outcomes if not o.passed]
    if failures:
        lines += ["", f"Failures (repro: `python bench/chaos.py --backend {args.backend} "
                  "--replay SEED`; fault moments are timing-dependent):", "",
                  "| trial | seed | chunks | faults | broken | detail |",
                  "| ---: | ---: | ---: | --- | --- | --- |"]
        for o in failures:
            detail = "; ".join(o.details + o.notes)[:400].replace("|", "/")
            lines.append(f"| {o.index} | {o.seed} | {o.chunks} | {' + '.join(o.faults)} | "
                         f"{', '.join(o.broken)} | {detail} |")
    return "\n".join(lines) + "\n"


def _exit_word(code: int) -> str:
    """Exit 0 / 1 / 130, or the signal that killed it (the default action: no handler ran)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("local", "aci"), default="local")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replay", type=int, help="run one trial with this trial seed")
    parser.add_argument("--jobs", type=int, default=1, help="trials at once (2 cores: 1 or 2)")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--chunks", type=int, nargs="*", help=f"chunk counts to draw from "
                        f"(default {' '.join(map(str, CHUNKS))})")
    parser.add_argument("--kinds", type=lambda text: tuple(text.split(",")),
                        help="only these fault kinds, comma-separated")
    parser.add_argument("--score-sleep", type=float, default=0.3,
                        help="seconds each scoring batch sleeps, so faults land mid-task")
    parser.add_argument("--resumes", type=int, default=3)
    parser.add_argument("--resume-delay", type=float, default=0.0,
                        help="seconds to wait before each resume")
    parser.add_argument("--run-timeout", type=float, default=180.0)
    parser.add_argument("--keep", action="store_true", help="keep passing trials' folders too")
    parser.add_argument("--dir", help="campaign folder: new, empty or an earlier campaign's "
                        "(replaced); default bench/.data/chaos/BACKEND-SEED")
    parser.add_argument("--json", type=Path, help="also write every outcome here")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.jobs < 1:
        parser.error("--trials and --jobs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> list[Outcome]:
    args = parse_args(argv)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # controllers must get SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.kinds:
        possible = (LocalTarget if args.backend == "local" else AciTarget).kinds
        unknown = set(args.kinds) - set(possible)
        if unknown:
            raise SystemExit(f"--kinds: {', '.join(sorted(unknown))} not possible on "
                             f"{args.backend}; choose from {', '.join(possible)}")
    started, rev = time.monotonic(), git_revision()
    outcomes, clean = run_campaign(args)
    text = summary(outcomes, args, time.monotonic() - started, clean, rev)
    print("\n" + text)
    root = campaign_dir(args)
    (root / "summary.md").write_text(text, encoding="utf-8")
    payload = json.dumps([o.to_dict() for o in outcomes], indent=1)
    (root / "outcomes.json").write_text(payload, encoding="utf-8")
    if args.json:
        args.json.write_text(payload, encoding="utf-8")
    print(f"summary: {root / 'summary.md'}; every outcome: {root / 'outcomes.json'}; the "
          "folders of failed trials (job, controller output, outcome.json) beside them")
    return outcomes


if __name__ == "__main__":
    main()
