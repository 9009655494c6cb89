"""Static checks of a workflow definition, before it runs: only the triggers, action types, options
and functions this interpreter implements; runAfter names that exist, without cycles; actions that
reference only actions that run before them (the service refuses the definition otherwise);
Response only after a Request trigger and never inside a loop; variables initialised at top level.
An untested feature is an error here, not a silent pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .expressions import ExpressionError, Literal, calls, parse_string, strings

ACTION_TYPES = {"http", "until", "wait", "if", "scope", "initializevariable", "setvariable",
                "response", "terminate", "compose"}
TRIGGER_TYPES = {"recurrence", "request"}
RUN_STATUSES = {"succeeded", "failed", "skipped", "timedout"}
COMMON_KEYS = {"type", "inputs", "runAfter", "description", "metadata"}
EXTRA_KEYS = {
    "http": {"operationOptions"}, "response": {"operationOptions", "kind"},
    "until": {"expression", "limit", "actions"}, "if": {"expression", "actions", "else"},
    "scope": {"actions"},
}
OPERATION_OPTIONS = {"http": {"disableasyncpattern"}, "response": {"asynchronous"}}
REFERENCE_FUNCTIONS = {"body", "outputs", "actions"}


def children(action: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The action containers nested in an action (Until/Scope body, both If branches)."""
    if "actions" in action:
        yield action["actions"] or {}
    if "else" in action:
        yield (action["else"] or {}).get("actions") or {}


def all_actions(actions: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, action in actions.items():
        yield name, action
        for inner in children(action):
            yield from all_actions(inner)


def _descendants(action: dict[str, Any]) -> set[str]:
    return {name for inner in children(action) for name, _ in all_actions(inner)}


def _predecessors(container: dict[str, Any], name: str) -> set[str]:
    """Actions of the same container that finish before ``name`` (transitive runAfter), with
    everything nested in them."""
    seen: set[str] = set()
    stack = list((container[name].get("runAfter") or {}).keys())
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend((container[current].get("runAfter") or {}).keys())
    return seen | {d for s in seen for d in _descendants(container[s])}


def _check_run_after(container: dict[str, Any], where: str) -> None:
    for name, action in container.items():
        for before, statuses in (action.get("runAfter") or {}).items():
            if before not in container:
                raise ExpressionError(f"{name}: runAfter names {before!r}, which is not in {where}")
            bad = [s for s in statuses if s.lower() not in RUN_STATUSES]
            if bad or not statuses:
                raise ExpressionError(f"{name}: runAfter statuses must be among Succeeded, Failed, "
                                      f"Skipped, TimedOut; got {statuses!r}")
        if name in _predecessors(container, name):
            raise ExpressionError(f"{name}: runAfter makes a cycle")


def _check_strings(owner: str, value: Any, known: set[str], visible: set[str],
                   defined: set[str]) -> None:
    for text in strings(value):
        try:
            template = parse_string(text)
        except ExpressionError as err:
            raise ExpressionError(f"{owner}: {err}") from None
        for node in template.nodes():
            for call in calls(node):
                if call.name not in known:
                    raise ExpressionError(f"{owner}: function {call.name!r} is not implemented by "
                                          "the interpreter (add it with a test first)")
                if call.name in REFERENCE_FUNCTIONS and call.args:
                    arg = call.args[0]
                    if not isinstance(arg, Literal):
                        raise ExpressionError(f"{owner}: {call.name}() needs a literal action name")
                    if arg.value not in defined:
                        raise ExpressionError(f"{owner}: {call.name}({arg.value!r}): no such action")
                    if arg.value not in visible:
                        raise ExpressionError(f"{owner}: {call.name}({arg.value!r}) refers to an "
                                              "action that does not run before it (runAfter)")


def trigger_concurrency(trigger: dict[str, Any]) -> tuple[int, int] | None:
    """(runs, maximumWaitingRuns) of ``runtimeConfiguration.concurrency``, or None when the
    trigger sets none (runs unlimited here). Ranges and default as the service documents them
    (logic-apps-workflow-actions-triggers.md, logic-apps-limits-and-config.md): runs 1..100,
    waiting runs 1..100, default 10 + runs."""
    config = trigger.get("runtimeConfiguration")
    if config is None:
        return None
    if not isinstance(config, dict) or set(config) - {"concurrency"}:
        raise ExpressionError(f"trigger runtimeConfiguration supported here: concurrency only; "
                              f"got {config!r}")
    concurrency = config.get("concurrency") or {}
    if set(concurrency) - {"runs", "maximumWaitingRuns"} or "runs" not in concurrency:
        raise ExpressionError(f"trigger concurrency needs runs (and maybe maximumWaitingRuns); "
                              f"got {concurrency!r}")
    runs = concurrency["runs"]
    waiting = concurrency.get("maximumWaitingRuns", 10 + runs if isinstance(runs, int) else 0)
    for name, value in (("runs", runs), ("maximumWaitingRuns", waiting)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise ExpressionError(f"trigger concurrency {name} must be an integer 1..100, "
                                  f"got {value!r}")
    if str(trigger.get("operationOptions", "")).lower() == "singleinstance":
        raise ExpressionError("set runtimeConfiguration.concurrency.runs or SingleInstance, not both")
    return runs, waiting


def check_definition(definition: dict[str, Any], known_functions: set[str]) -> None:
    extra = set(definition) - {"$schema", "contentVersion", "parameters", "triggers", "actions",
                               "outputs", "description", "metadata"}
    if extra:
        raise ExpressionError(f"definition keys not supported here: {', '.join(sorted(extra))}")
    triggers = definition.get("triggers") or {}
    if len(triggers) != 1:
        raise ExpressionError("a workflow has exactly one trigger")
    trigger = next(iter(triggers.values()))
    kind = str(trigger.get("type", "")).lower()
    if kind not in TRIGGER_TYPES:
        raise ExpressionError(f"trigger type {trigger.get('type')!r} is not implemented here")
    if set(trigger) - {"type", "kind", "inputs", "recurrence", "description", "metadata",
                       "runtimeConfiguration"}:
        raise ExpressionError(f"trigger keys not supported here: {sorted(trigger)}")
    trigger_concurrency(trigger)
    actions = definition.get("actions") or {}
    defined = {name for name, _ in all_actions(actions)}
    if len(defined) != sum(1 for _ in all_actions(actions)):
        raise ExpressionError("action names must be unique in the whole definition")
    _check_strings("trigger", trigger, known_functions, set(), defined)
    _check_container(actions, "the top level", [], kind == "request", known_functions, defined)


def _check_container(container: dict[str, Any], where: str, outer: list[set[str]],
                     has_request: bool, known: set[str], defined: set[str],
                     in_loop: bool = False, top: bool = True) -> None:
    _check_run_after(container, where)
    for name, action in container.items():
        kind = str(action.get("type", "")).lower()
        if kind not in ACTION_TYPES:
            raise ExpressionError(f"{name}: action type {action.get('type')!r} is not implemented "
                                  "by the interpreter")
        unknown = set(action) - COMMON_KEYS - EXTRA_KEYS.get(kind, set())
        if unknown:
            raise ExpressionError(f"{name}: keys not supported here: {', '.join(sorted(unknown))}")
        option = action.get("operationOptions")
        if option is not None and str(option).lower() not in OPERATION_OPTIONS.get(kind, set()):
            raise ExpressionError(f"{name}: operationOptions {option!r} is not supported here")
        if kind == "response" and (not has_request or in_loop):
            raise ExpressionError(f"{name}: Response needs a Request trigger and cannot be in a loop")
        if kind == "terminate" and in_loop:
            raise ExpressionError(f"{name}: Terminate cannot be inside an Until loop")
        if kind == "initializevariable" and not top:
            raise ExpressionError(f"{name}: InitializeVariable must be at the top level")
        visible = set().union(_predecessors(container, name), *outer)
        _check_strings(name, action.get("inputs"), known, visible, defined)
        if kind == "until":
            # The loop's condition is checked after its body: it sees the body's actions.
            body = _descendants(action) | visible
            _check_strings(name, [action.get("expression"), action.get("limit")], known, body,
                           defined)
        elif kind == "if":
            _check_strings(name, action.get("expression"), known, visible, defined)
        for inner in children(action):
            _check_container(inner, name, [*outer, visible], has_request, known, defined,
                             in_loop or kind == "until", top=False)
