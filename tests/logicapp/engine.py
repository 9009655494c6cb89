"""Runs a Logic Apps workflow definition (the subset ``checks.py`` admits), the way the service does:
actions start when every ``runAfter`` predecessor has finished and run only if each finished in
an allowed status (else ``Skipped``); ``Until`` checks its condition after its body, stops at its
count, and ends ``TimedOut`` when its timeout passes before the next iteration; a branch's status
is its last action's (a ``Skipped`` one counts as its predecessor's); the run fails when a branch
ends failed, unless ``Terminate`` says otherwise (logic-apps-exception-handling.md).

Parallel branches run one after another, in definition order: the templates have none, and order
is then deterministic.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .checks import check_definition, trigger_concurrency
from .expressions import ExpressionError, parse_string, resolve
from .functions import format_datetime, pure_functions
from .http import HttpFailed, ManagedIdentity, send
from .timing import duration_seconds, interval_seconds

FAILED = {"failed", "timedout"}


@dataclass
class ActionRun:
    name: str
    status: str
    inputs: Any = None
    outputs: Any = None
    error: str | None = None
    iterations: int = 0

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "inputs": self.inputs,
                "outputs": self.outputs, "error": self.error and {"message": self.error}}


@dataclass
class RunResult:
    run_id: str
    status: str
    error: dict[str, Any] | None
    actions: dict[str, ActionRun]
    response: dict[str, Any] | None
    # Every action run in order, loop iterations included: what a test asserts on.
    history: list[tuple[str, str]] = field(default_factory=list)
    # When the run started executing (after waiting for a concurrency slot) and ended
    # (time.monotonic()): what a test of the trigger's concurrency asserts on.
    began: float = 0.0
    ended: float = 0.0


class TooManyRuns(Exception):
    """The trigger's concurrency slots and waiting queue are full: the service answers 429 to a
    request (and a recurrence skips its occurrence)."""


class _Terminated(Exception):
    def __init__(self, status: str, error: dict[str, Any] | None) -> None:
        super().__init__(status)
        self.status, self.error = status, error


def _allowed(status: str, statuses: list[str]) -> bool:
    return status.lower() in {s.lower() for s in statuses}


class Workflow:
    """A deployed workflow: its definition, parameter values and managed identity."""

    def __init__(self, definition: dict[str, Any], parameters: dict[str, Any] | None = None, *,
                 name: str = "workflow", msi: ManagedIdentity | None = None,
                 sleep: Callable[[float], None] = time.sleep, retry_scale: float = 1.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.definition = definition
        self.name = name
        self.msi = msi
        self.sleep = sleep
        self.retry_scale = retry_scale
        self.now = now
        self.parameters = self._parameter_values(parameters or {})
        check_definition(definition, set(pure_functions(now)) | set(self._context_names()))
        self.trigger_name, self.trigger = next(iter(definition["triggers"].items()))
        # The trigger's concurrency: at most `runs` run at once, `waiting` more wait their turn
        # (in arrival order, as far as threads waiting on a semaphore go), the rest are refused.
        limits = trigger_concurrency(self.trigger)
        self._slots = threading.Semaphore(limits[0]) if limits else None
        self._capacity = limits[0] + limits[1] if limits else None
        self._admitted = 0
        self._admit_lock = threading.Lock()

    def _parameter_values(self, given: dict[str, Any]) -> dict[str, Any]:
        declared = self.definition.get("parameters") or {}
        unknown = set(given) - set(declared)
        if unknown:
            raise ExpressionError(f"parameters not declared by the definition: {sorted(unknown)}")
        values = {}
        for name, spec in declared.items():
            if name in given:
                values[name] = given[name]
            elif "defaultValue" in spec:
                values[name] = spec["defaultValue"]
            else:
                raise ExpressionError(f"parameter {name!r} has no value and no default")
        return values

    @staticmethod
    def _context_names() -> list[str]:
        return ["parameters", "variables", "body", "outputs", "actions", "triggerbody",
                "triggeroutputs", "trigger", "workflow"]

    @property
    def is_request(self) -> bool:
        return str(self.trigger.get("type")).lower() == "request"

    def run(self, body: Any = None, headers: dict[str, str] | None = None,
            on_response: Callable[[dict[str, Any]], None] | None = None,
            on_start: Callable[[str], Any] | None = None) -> RunResult:
        """Fire the trigger once (a Recurrence occurrence, or a request with ``body``); with
        trigger concurrency, wait for a slot first, or raise TooManyRuns when the queue is full."""
        with self._admit_lock:
            if self._capacity is not None and self._admitted >= self._capacity:
                raise TooManyRuns(f"{self._admitted} runs running or waiting")
            self._admitted += 1
        try:
            run = _Run(self, body, headers or {}, on_response)
            if on_start:
                on_start(run.run_id)
            if self._slots is None:
                return run.execute()
            with self._slots:
                return run.execute()
        finally:
            with self._admit_lock:
                self._admitted -= 1


class _Run:
    def __init__(self, workflow: Workflow, body: Any, headers: dict[str, str],
                 on_response: Callable[[dict[str, Any]], None] | None) -> None:
        self.wf = workflow
        self.run_id = uuid.uuid4().hex[:20].upper()
        self.started = workflow.now()
        self.variables: dict[str, Any] = {}
        self.results: dict[str, ActionRun] = {}
        self.history: list[tuple[str, str]] = []
        self.response: dict[str, Any] | None = None
        self.on_response = on_response
        request = workflow.is_request
        self.trigger_outputs = {"headers": headers, "body": body} if request else {}
        functions = pure_functions(workflow.now)
        functions.update({
            "parameters": self._parameter, "variables": self._variable,
            "body": lambda name: self._outputs(name).get("body") if isinstance(
                self._outputs(name), dict) else None,
            "outputs": self._outputs, "actions": lambda name: self._action(name).record(),
            "triggerbody": lambda: self.trigger_outputs.get("body"),
            "triggeroutputs": lambda: self.trigger_outputs,
            "trigger": lambda: {"name": workflow.trigger_name, "outputs": self.trigger_outputs,
                                "startTime": format_datetime(self.started)},
            "workflow": lambda: {"name": workflow.name, "run": {"name": self.run_id}},
        })
        self.functions = functions

    # -- expression context --------------------------------------------------------------
    def _parameter(self, name: str) -> Any:
        if name not in self.wf.parameters:
            raise ExpressionError(f"parameters({name!r}): not declared")
        return self.wf.parameters[name]

    def _variable(self, name: str) -> Any:
        if name not in self.variables:
            raise ExpressionError(f"variables({name!r}): not initialised")
        return self.variables[name]

    def _action(self, name: str) -> ActionRun:
        result = self.results.get(name)
        if result is None or result.status.lower() == "skipped":
            raise ExpressionError(f"action {name!r} did not run (its outputs do not exist)")
        return result

    def _outputs(self, name: str) -> Any:
        return self._action(name).outputs

    def eval(self, value: Any) -> Any:
        return resolve(value, self.functions)

    def condition(self, expression: Any) -> bool:
        """A condition: an expression string, or the object form {"and": [{"equals": [a, b]}]}."""
        if isinstance(expression, str):
            value = parse_string(expression).evaluate(self.functions)
        else:
            value = self._condition_object(expression)
        if not isinstance(value, bool):
            raise ExpressionError(f"a condition must evaluate to a boolean; got {value!r}")
        return value

    def _condition_object(self, node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            raise ExpressionError(f"malformed condition {node!r}")
        (op, args), = node.items()
        op = op.lower()
        if op in ("and", "or"):
            values = [self._condition_object(a) for a in args]
            return all(values) if op == "and" else any(values)
        if op == "not":
            return not self._condition_object(args)
        function = self.functions.get(op)
        if function is None:
            raise ExpressionError(f"unknown condition operator {op!r}")
        return function(*self.eval(args))

    # -- running -------------------------------------------------------------------------
    def execute(self) -> RunResult:
        began = time.monotonic()
        actions = self.wf.definition.get("actions") or {}
        error = None
        try:
            self.run_container(actions)
            status = "Failed" if branch_failed(actions, self.results) else "Succeeded"
        except _Terminated as stop:
            status, error = stop.status, stop.error
        return RunResult(self.run_id, status, error, self.results, self.response, self.history,
                         began, time.monotonic())

    def run_container(self, actions: dict[str, Any]) -> None:
        for name in actions:
            self.results.pop(name, None)  # a loop iteration starts afresh
        pending = list(actions)
        while pending:
            name = next(n for n in pending if all(
                p in self.results for p in (actions[n].get("runAfter") or {})))
            pending.remove(name)
            action = actions[name]
            run_after = action.get("runAfter") or {}
            if all(_allowed(self.results[p].status, s) for p, s in run_after.items()):
                self.results[name] = self.run_action(name, action)
            else:
                self.mark_skipped(name, action)
            self.history.append((name, self.results[name].status))

    def mark_skipped(self, name: str, action: dict[str, Any]) -> None:
        self.results[name] = ActionRun(name, "Skipped")
        for inner in _children(action):
            for inner_name, inner_action in inner.items():
                self.mark_skipped(inner_name, inner_action)

    def run_action(self, name: str, action: dict[str, Any]) -> ActionRun:
        kind = str(action["type"]).lower()
        try:
            return getattr(self, f"do_{kind}")(name, action)
        except _Terminated:
            raise
        except HttpFailed as err:
            return ActionRun(name, "Failed", outputs=err.outputs, error=str(err))
        except ExpressionError as err:
            # A runtime expression error fails the action (the service: InvalidTemplate).
            return ActionRun(name, "Failed", error=f"InvalidTemplate: {err}")

    def do_compose(self, name: str, action: dict[str, Any]) -> ActionRun:
        value = self.eval(action.get("inputs"))
        return ActionRun(name, "Succeeded", inputs=value, outputs=value)

    def do_http(self, name: str, action: dict[str, Any]) -> ActionRun:
        inputs = self.eval(action["inputs"])
        asynchronous = str(action.get("operationOptions", "")).lower() != "disableasyncpattern"
        outputs = send(inputs, msi=self.wf.msi, async_pattern=asynchronous,
                       sleep=self.wf.sleep, retry_scale=self.wf.retry_scale)
        return ActionRun(name, "Succeeded", inputs=inputs, outputs=outputs)

    def do_wait(self, name: str, action: dict[str, Any]) -> ActionRun:
        inputs = self.eval(action["inputs"])
        if "interval" in inputs:
            self.wf.sleep(interval_seconds(inputs["interval"]))
        else:
            raise ExpressionError("Wait until a timestamp is not supported here")
        return ActionRun(name, "Succeeded", inputs=inputs)

    def do_initializevariable(self, name: str, action: dict[str, Any]) -> ActionRun:
        inputs = self.eval(action["inputs"])
        for variable in inputs["variables"]:
            if variable["name"] in self.variables:
                raise ExpressionError(f"variable {variable['name']!r} is already initialised")
            value = variable.get("value")
            _check_type(variable["name"], str(variable["type"]).lower(), value)
            self.variables[variable["name"]] = value
        return ActionRun(name, "Succeeded", inputs=inputs)

    def do_setvariable(self, name: str, action: dict[str, Any]) -> ActionRun:
        inputs = self.eval(action["inputs"])
        variable = inputs["name"]
        if variable not in self.variables:
            raise ExpressionError(f"SetVariable: variable {variable!r} is not initialised")
        self.variables[variable] = inputs.get("value")
        return ActionRun(name, "Succeeded", inputs=inputs, outputs={"body": {"value": inputs.get("value")}})

    def do_response(self, name: str, action: dict[str, Any]) -> ActionRun:
        if self.response is not None:
            return ActionRun(name, "Failed", error="the request already got a response")
        inputs = self.eval(action["inputs"])
        code = int(inputs.get("statusCode", 200))
        self.response = {"statusCode": code, "headers": inputs.get("headers") or {},
                         "body": inputs.get("body")}
        if self.on_response:
            self.on_response(self.response)
        return ActionRun(name, "Succeeded", inputs=inputs, outputs=self.response)

    def do_terminate(self, name: str, action: dict[str, Any]) -> ActionRun:
        inputs = self.eval(action["inputs"])
        status = str(inputs["runStatus"])
        if status.lower() not in ("failed", "cancelled", "succeeded"):
            raise ExpressionError(f"Terminate runStatus must be Failed, Cancelled or Succeeded; got {status!r}")
        self.results[name] = ActionRun(name, "Succeeded", inputs=inputs)
        self.history.append((name, "Succeeded"))
        raise _Terminated(status.capitalize(), inputs.get("runError"))

    def do_scope(self, name: str, action: dict[str, Any]) -> ActionRun:
        self.run_container(action["actions"])
        return ActionRun(name, "Failed" if branch_failed(action["actions"], self.results)
                         else "Succeeded")

    def do_if(self, name: str, action: dict[str, Any]) -> ActionRun:
        chosen = action.get("actions") or {}
        other = (action.get("else") or {}).get("actions") or {}
        if not self.condition(action["expression"]):
            chosen, other = other, chosen
        for inner_name, inner in other.items():
            self.mark_skipped(inner_name, inner)
        self.run_container(chosen)
        return ActionRun(name, "Failed" if branch_failed(chosen, self.results) else "Succeeded")

    def do_until(self, name: str, action: dict[str, Any]) -> ActionRun:
        limit = self.eval(action.get("limit") or {})
        count = int(limit.get("count", 60))
        timeout = duration_seconds(limit.get("timeout", "PT1H"))
        body = action["actions"]
        started = time.monotonic()
        iterations, status = 0, "Succeeded"
        while iterations < count:
            if time.monotonic() - started >= timeout:
                return ActionRun(name, "TimedOut", error="the loop reached its timeout",
                                 iterations=iterations)
            iterations += 1
            self.run_container(body)
            status = "Failed" if branch_failed(body, self.results) else "Succeeded"
            if self.condition(action["expression"]):
                return ActionRun(name, status, iterations=iterations)
        # The count is spent: the loop exits (the template must not read this as success).
        return ActionRun(name, status, iterations=iterations)


def _children(action: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if "actions" in action:
        out.append(action["actions"] or {})
    if "else" in action:
        out.append((action["else"] or {}).get("actions") or {})
    return out


def _check_type(name: str, kind: str, value: Any) -> None:
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
    }
    if kind not in checks:
        raise ExpressionError(f"variable {name!r}: type {kind!r} is not supported")
    if value is not None and not checks[kind](value):
        raise ExpressionError(f"variable {name!r}: {value!r} is not of type {kind}")


def branch_failed(actions: dict[str, Any], results: dict[str, ActionRun]) -> bool:
    """Whether a container ends failed: a last action (no one runs after it) that failed or timed
    out, where a skipped last action counts as the status of what it waited for."""
    followed = {p for a in actions.values() for p in (a.get("runAfter") or {})}

    def failed(name: str) -> bool:
        status = results[name].status.lower() if name in results else "skipped"
        if status == "skipped":
            return any(failed(p) for p in (actions[name].get("runAfter") or {}))
        return status in FAILED

    return any(failed(name) for name in actions if name not in followed)
