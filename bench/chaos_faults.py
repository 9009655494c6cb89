"""The faults of the campaign (bench/chaos.py): which ones a trial gets, when, and how each is
injected. Pure choice (``plan_faults``) apart from the injection (``Fault.fire``).

| kind | what happens |
| --- | --- |
| ``kill9`` | the controller is SIGKILLed at a random moment; "twice": the first resume is too |
| ``sigint`` / ``sigterm`` | the controller gets the signal; "twice": again 0.05-1 s later (during its cleanup) |
| ``worker_kill`` | a live worker of the job (a runner process, a container's process) is SIGKILLed |
| ``storm429`` | ACI: the next 5-25 ARM requests of any kind answer 429 with a Retry-After |
| ``lost_create`` | ACI: the next 1-4 creates are applied, but their answer never arrives: the connection is dropped at once or after 0.5-3 s (a client timing out) |
| ``delete_fail`` | ACI: the next 1-3 deletes answer 500 or 503 |
| ``delete_slow`` | ACI: the next 1-4 deletes wait 1-5 s; local: workers ignore SIGTERM (delete waits out the grace) |
| ``second_controller`` | a second controller is started on the same job while the first runs |
"""

from __future__ import annotations

import random
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

CONTROLLER_KINDS = ("kill9", "sigint", "sigterm")
SIGNALS = {"kill9": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}


class Context(Protocol):
    """What a fault acts on: the trial's running controllers and its backend."""

    def controller(self, run: int) -> subprocess.Popen[str] | None: ...
    def workers(self) -> list[int]: ...
    def emulator(self) -> Any: ...
    def start_second(self) -> None: ...


@dataclass
class Fault:
    kind: str
    at: float  # seconds after its run's controller started
    run: int = 0  # 0: the first run; 1: the first resume
    params: dict[str, Any] = field(default_factory=dict)
    fired: bool = False
    note: str = ""

    def describe(self) -> str:
        extra = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in sorted(self.params.items()))
        where = f"@{self.at:.2f}s" + (" of resume 1" if self.run else "")
        return f"{self.kind}({extra}){where}" if extra else f"{self.kind}{where}"

    def fire(self, ctx: Context) -> bool:
        """Inject now; False while something of it is still to come (no worker alive yet, a
        second signal due): the trial calls again at a later tick. ``fired`` tells whether any
        of it was injected."""
        return _ACTIONS[self.kind](self, ctx)


def plan_faults(rng: random.Random, kinds: tuple[str, ...], clean_seconds: float) -> list[Fault]:
    """One or two faults of different kinds, at most one of them signalling the controller."""
    count = 1 if rng.random() < 0.5 else 2
    chosen: list[str] = []
    while len(chosen) < count:
        kind = rng.choice(kinds)
        if kind in chosen or (kind in CONTROLLER_KINDS and set(chosen) & set(CONTROLLER_KINDS)):
            continue
        chosen.append(kind)
    faults = []
    for kind in chosen:
        faults.extend(_one(rng, kind, clean_seconds))
    return faults


def _one(rng: random.Random, kind: str, clean: float) -> list[Fault]:
    """A fault's moment is uniform over most of a clean run, so it lands in any stage: planning,
    creating, scoring, collecting, merging."""
    at = round(rng.uniform(0.05, 0.9) * clean, 3)
    if kind == "kill9":
        faults = [Fault(kind, at)]
        if rng.random() < 0.3:
            faults.append(Fault(kind, round(rng.uniform(0.05, 0.9) * clean, 3), run=1))
        return faults
    if kind in ("sigint", "sigterm"):
        twice = rng.random() < 0.5
        params = {"second_after": round(rng.uniform(0.05, 1.0), 3)} if twice else {}
        return [Fault(kind, at, params=params)]
    if kind == "storm429":
        return [Fault(kind, round(rng.uniform(0.0, 0.6) * clean, 3),
                      params={"times": rng.randint(5, 25),
                              "retry_after": round(rng.uniform(0.2, 1.5), 1)})]
    if kind == "lost_create":  # creates come early (and again for retries and resumes)
        return [Fault(kind, round(rng.uniform(0.0, 0.3) * clean, 3),
                      params={"times": rng.randint(1, 4),  # half of them hang a while first
                              "delay": round(rng.choice([0.0, rng.uniform(0.5, 3.0)]), 1)})]
    if kind == "delete_fail":
        return [Fault(kind, round(rng.uniform(0.0, 0.6) * clean, 3),
                      params={"times": rng.randint(1, 3), "status": rng.choice([500, 503])})]
    if kind == "delete_slow":
        return [Fault(kind, 0.0, params={"times": rng.randint(1, 4),
                                         "seconds": round(rng.uniform(1.0, 5.0), 1)})]
    return [Fault(kind, at)]


# -- injection -----------------------------------------------------------------------------------
def _signal(fault: Fault, ctx: Context) -> bool:
    proc = ctx.controller(fault.run)
    if proc is None or proc.poll() is not None:
        return False
    proc.send_signal(SIGNALS[fault.kind])
    fault.fired = True
    if "second_after" in fault.params and not fault.note:
        fault.note = "first sent"  # the second is due a moment later
        fault.at += fault.params["second_after"]
        return False
    fault.note = "both sent" if fault.note else ""
    return True


def _worker(fault: Fault, ctx: Context) -> bool:
    import os

    pids = ctx.workers()
    if not pids:
        return False
    pid = sorted(pids)[0]
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    fault.note = f"pid {pid}"
    fault.fired = True
    return True


def _storm(fault: Fault, ctx: Context) -> bool:
    retry = fault.params["retry_after"]
    ctx.emulator().fail_requests(
        429, "TooManyRequests", f"Too many requests; please try again after '{retry:g}' seconds.",
        times=fault.params["times"], retry_after=retry)
    fault.fired = True
    return True


def _lost_create(fault: Fault, ctx: Context) -> bool:
    ctx.emulator().drop_answers(fault.params["times"], method="PUT", kind="group",
                                delay=fault.params["delay"])
    fault.fired = True
    return True


def _delete_fail(fault: Fault, ctx: Context) -> bool:
    status = fault.params["status"]
    code = "InternalServerError" if status == 500 else "ServiceUnavailable"
    ctx.emulator().fail_requests(status, code, "The delete could not be completed right now.",
                                 times=fault.params["times"], method="DELETE", kind="group")
    fault.fired = True
    return True


def _delete_slow(fault: Fault, ctx: Context) -> bool:
    emu = ctx.emulator()
    if emu is not None:
        emu.slow_requests(fault.params["seconds"], times=fault.params["times"])
    fault.fired = True
    return True  # locally: the workers were started ignoring SIGTERM (see the trial's env)


def _second(fault: Fault, ctx: Context) -> bool:
    proc = ctx.controller(0)
    if proc is None or proc.poll() is not None:
        return False
    ctx.start_second()
    fault.fired = True
    return True


_ACTIONS: dict[str, Callable[[Fault, Context], bool]] = {
    "kill9": _signal, "sigint": _signal, "sigterm": _signal, "worker_kill": _worker,
    "storm429": _storm, "lost_create": _lost_create, "delete_fail": _delete_fail,
    "delete_slow": _delete_slow, "second_controller": _second,
}
