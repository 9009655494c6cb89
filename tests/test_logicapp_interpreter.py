"""The workflow interpreter itself (tests/logicapp): the expression language, runAfter and run
status rules, Until limits, Terminate, the Http action over real HTTP (managed-identity tokens,
retries, the 202 pattern) and the static checks that refuse what it does not implement."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from logicapp.engine import Workflow
from logicapp.expressions import ExpressionError, parse_string
from logicapp.frontend import serving
from logicapp.functions import pure_functions
from logicapp.http import ManagedIdentity

NOW = datetime(2026, 11, 29, 10, 5, 7, 123456, tzinfo=UTC)


def ev(text: str, **params: Any) -> Any:
    functions = pure_functions(lambda: NOW)
    functions["parameters"] = lambda name: params[name]
    return parse_string(text).evaluate(functions)


@pytest.mark.parametrize(("text", "expected"), [
    ("plain text", "plain text"),
    ("@@{not an expression}", "@{not an expression}"),
    ("@parameters('n')", 3),  # a whole expression keeps its type
    ("n = @{parameters('n')}!", "n = 3!"),  # interpolation is always text
    ("@{parameters('o')}", '{"a":{"b":[1,2]}}'),
    ("@parameters('o')['a']['b'][1]", 2),
    ("@parameters('o').a.b", [1, 2]),
    ("@parameters('o')?['x']?['y']", None),
    ("@parameters('o')?.x?.y", None),
    ("@PARAMETERS('n')", 3),  # function names ignore case
    ("@parameters('o')['A']['B']", [1, 2]),  # so do property names
    ("@concat('it''s ', 1, true)", "it's 1True"),
    ("@equals(1, 1.0)", True),
    ("@equals('a', 'A')", False),
    ("@or(equals(1, 2), not(false))", True),
    ("@and(true, equals(parameters('n'), 3))", True),
    ("@if(greater(parameters('n'), 2), 'big', 'small')", "big"),
    ("@coalesce(null, parameters('o')?['x'], 'd')", "d"),
    ("@empty('')", True),
    ("@encodeURIComponent('a b/c')", "a%20b%2Fc"),
    ("@decodeUriComponent('%0A')", "\n"),
    ("@json(last(split(trim(' x\n{\"k\": 1}\n'), decodeUriComponent('%0A'))))", {"k": 1}),
    ("@utcNow('yyyy-MM-dd')", "2026-11-29"),
    ("@utcNow()", "2026-11-29T10:05:07.1234560Z"),
    ("@formatDateTime('2026-01-02T03:04:05Z', 'yyyyMMddHHmmss')", "20260102030405"),
    ("@substring('abcdef', 1, 3)", "bcd"),
    ("@length(createArray(1, 2, 3))", 3),
    ("@union(parameters('o'), json('{\"z\": 1}'))", {"a": {"b": [1, 2]}, "z": 1}),
    ("@string(parameters('n'))", "3"),
    ("@int('42')", 42),
    ("@div(7, 2)", 3),
    ("@add(sub(10, 4), mul(2, 3))", 12),
])
def test_expressions(text: str, expected: Any) -> None:
    assert ev(text, n=3, o={"a": {"b": [1, 2]}}) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("@parameters('o')['missing']", "doesn't exist"),
    ("@parameters('o')?['x']['y']", "from null"),
    ("@nosuchfunction(1)", "unknown function"),
    ("@and(1, true)", "booleans"),
    ("@json('not json')", "not valid JSON"),
    ("@substring('abc', 2, 5)", "out of range"),
    ("@if(true, 'a')", "if()"),  # wrong arity is an error, not a guess
    ("@concat('a'", "expected"),
    ("@{concat('a')", "unclosed"),
])
def test_expression_errors(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        ev(text, o={"a": 1})


def test_guid_is_a_fresh_uuid_each_call() -> None:
    first, second = ev("@guid()"), ev("@guid()")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", first)
    assert first != second and len(ev("@guid('N')")) == 32


def test_arguments_are_all_evaluated_like_the_service_no_short_circuit() -> None:
    # In Logic Apps `and(false, <error>)` still fails: a template must not rely on short-circuits.
    with pytest.raises(ExpressionError):
        ev("@and(false, equals(parameters('o')['missing'], 1))", o={})


def test_every_implemented_function_is_a_documented_workflow_function() -> None:
    documented = {line.strip().lower() for line in
                  (Path(__file__).parent / "logicapp" / "schemas" / "wdl_functions.txt")
                  .read_text().splitlines() if line.strip() and not line.startswith("#")}
    implemented = set(pure_functions(lambda: NOW)) | {
        "parameters", "variables", "body", "outputs", "actions", "triggerbody",
        "triggeroutputs", "trigger", "workflow"}
    assert implemented - documented == set()


# -- actions, runAfter, run status -----------------------------------------------------------
def compose(value: Any, **run_after: list[str]) -> dict[str, Any]:
    return {"type": "Compose", "inputs": value, "runAfter": run_after}


def workflow(actions: dict[str, Any], trigger: str = "Recurrence", **kw: Any) -> Workflow:
    triggers = {"Recurrence": {"type": "Recurrence", "recurrence": {"frequency": "Day", "interval": 1}},
                "Request": {"type": "Request", "kind": "Http", "inputs": {"schema": {}}}}
    return Workflow({"triggers": {"t": triggers[trigger]}, "actions": actions,
                     "parameters": kw.pop("parameters", {})}, kw.pop("values", {}), **kw)


BROKEN = compose("@json('not json')")


def test_a_failed_action_skips_its_successors_and_fails_the_run() -> None:
    result = workflow({"A": BROKEN, "B": compose(1, A=["Succeeded"]),
                       "C": compose(2, B=["Succeeded"])}).run()
    assert [(n, s) for n, s in result.history] == [("A", "Failed"), ("B", "Skipped"), ("C", "Skipped")]
    assert result.status == "Failed"  # the branch ends skipped after a failure: failed


def test_run_after_failed_and_skipped_runs_cleanup_and_a_handled_failure_succeeds() -> None:
    result = workflow({"A": BROKEN, "B": compose(1, A=["Succeeded"]),
                       "Cleanup": compose("@outputs('A')", B=["Succeeded", "Failed", "Skipped",
                                                              "TimedOut"])}).run()
    # A failed action's outputs can be read (here there are none); the cleanup ran.
    assert result.actions["Cleanup"].status == "Succeeded" and result.actions["Cleanup"].outputs is None
    result = workflow({"A": BROKEN, "B": compose(1, A=["Succeeded"]),
                       "Cleanup": compose("done", B=["Skipped"])}).run()
    assert result.actions["Cleanup"].status == "Succeeded"
    assert result.status == "Succeeded"  # the failure was handled by a later action


def test_outputs_of_an_action_that_did_not_run_are_an_error() -> None:
    result = workflow({"A": BROKEN, "B": compose(1, A=["Succeeded"]),
                       "C": compose("@outputs('B')", B=["Skipped"])}).run()
    assert result.actions["C"].status == "Failed" and "did not run" in result.actions["C"].error


def test_variables_and_if_branches() -> None:
    actions = {
        "Init": {"type": "InitializeVariable", "inputs": {"variables": [
            {"name": "v", "type": "object", "value": {}}]}},
        "Set": {"type": "SetVariable", "inputs": {"name": "v", "value": {"k": "@utcNow('yyyy')"}},
                "runAfter": {"Init": ["Succeeded"]}},
        "Check": {"type": "If", "expression": {"and": [{"equals": ["@variables('v')?['k']", "2026"]}]},
                  "actions": {"Yes": compose("yes")}, "else": {"actions": {"No": compose("no")}},
                  "runAfter": {"Set": ["Succeeded"]}},
    }
    result = workflow(actions, now=lambda: NOW).run()
    assert result.actions["Yes"].status == "Succeeded" and result.actions["No"].status == "Skipped"
    assert result.status == "Succeeded"


def test_a_scope_fails_when_its_last_action_fails_and_can_be_caught() -> None:
    actions = {
        "Try": {"type": "Scope", "actions": {"Ok": compose(1), "Bad": compose(
            "@json('x')", Ok=["Succeeded"])}},
        "Catch": compose("@outputs('Ok')", Try=["Failed"]),
        "Happy": compose(2, Try=["Succeeded"]),
    }
    result = workflow(actions).run()
    steps = dict(result.history)
    assert steps["Try"] == "Failed" and steps["Catch"] == "Succeeded" and steps["Happy"] == "Skipped"
    assert result.actions["Catch"].outputs == 1  # inner actions are visible outside the scope
    # Two branches end here: Catch (succeeded) and Happy, skipped, which counts as the status of
    # what it waited for (Try: failed), so the run fails, as the service reports such runs.
    assert result.status == "Failed"


def test_terminate_sets_the_run_status_and_stops_the_run() -> None:
    actions = {"Stop": {"type": "Terminate", "inputs": {"runStatus": "Failed", "runError": {
        "code": "X", "message": "@{concat('because ', 'reasons')}"}}},
        "After": compose(1, Stop=["Succeeded"])}
    result = workflow(actions).run()
    assert result.status == "Failed" and result.error == {"code": "X", "message": "because reasons"}
    assert "After" not in result.actions


def _counter_loop(limit: dict[str, Any], until: str, delay: int = 0) -> dict[str, Any]:
    return {
        "Init": {"type": "InitializeVariable", "inputs": {"variables": [
            {"name": "n", "type": "integer", "value": 0}]}},
        "Loop": {"type": "Until", "expression": until, "limit": limit, "runAfter": {"Init": ["Succeeded"]},
                 "actions": {
                     "Pause": {"type": "Wait", "inputs": {"interval": {"count": delay, "unit": "Second"}}},
                     "Inc": {"type": "SetVariable", "inputs": {"name": "n", "value": "@add(variables('n'), 1)"},
                             "runAfter": {"Pause": ["Succeeded"]}}}},
        "Cleanup": compose("@variables('n')", Loop=["Succeeded", "Failed", "Skipped", "TimedOut"]),
    }


def test_until_checks_after_the_body_and_stops_at_its_condition_or_count() -> None:
    result = workflow(_counter_loop({"count": 10}, "@equals(1, 1)")).run()
    assert result.actions["Loop"].iterations == 1  # the body runs before the first check
    result = workflow(_counter_loop({"count": 10}, "@equals(variables('n'), 3)")).run()
    assert result.actions["Cleanup"].outputs == 3 and result.actions["Loop"].status == "Succeeded"
    result = workflow(_counter_loop({"count": 4}, "@equals(1, 2)")).run()
    assert result.actions["Cleanup"].outputs == 4  # count spent: the loop just ends


def test_until_timeout_ends_timed_out_and_cleanup_after_timed_out_still_runs() -> None:
    started = time.monotonic()
    result = workflow(_counter_loop({"count": 1000, "timeout": "PT2S"}, "@equals(1, 2)", delay=1)).run()
    assert result.actions["Loop"].status == "TimedOut"
    assert 2 <= result.actions["Cleanup"].outputs <= 3 and time.monotonic() - started < 6
    assert result.actions["Cleanup"].status == "Succeeded"


# -- static checks ---------------------------------------------------------------------------
@pytest.mark.parametrize(("actions", "message"), [
    ({"A": {"type": "ApiConnection", "inputs": {}}}, "not implemented"),
    ({"A": compose("@nosuch()")}, "not implemented"),
    ({"A": compose("@outputs('B')"), "B": compose(1)}, "does not run before"),
    ({"A": compose("@outputs('Z')")}, "no such action"),
    ({"A": compose(1, Z=["Succeeded"])}, "not in"),
    ({"A": compose(1, A=["Succeeded"])}, "cycle"),
    ({"A": compose(1, B=["Done"]), "B": compose(1)}, "statuses"),
    ({"A": {"type": "Compose", "inputs": 1, "limit": {"timeout": "PT1M"}}}, "keys not supported"),
    ({"A": {"type": "Http", "inputs": {}, "operationOptions": "Sequential"}}, "operationOptions"),
    ({"A": {"type": "Response", "inputs": {"statusCode": 200}}}, "Request trigger"),
    ({"A": {"type": "Scope", "actions": {"I": {"type": "InitializeVariable", "inputs": {}}}}},
     "top level"),
])
def test_static_checks_refuse_what_is_not_implemented(actions: dict[str, Any], message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        workflow(actions)


def test_response_inside_until_is_refused() -> None:
    loop = {"type": "Until", "expression": "@true", "limit": {"count": 1},
            "actions": {"R": {"type": "Response", "inputs": {"statusCode": 200}}}}
    with pytest.raises(ExpressionError, match="loop"):
        workflow({"L": loop}, trigger="Request")


# -- Http over real HTTP ---------------------------------------------------------------------
class Server:
    """A scripted HTTP server: ``replies[path]`` is a list of (status, headers, body) served in
    turn (the last one repeats); every request is recorded."""

    def __init__(self) -> None:
        self.replies: dict[str, list[tuple[int, dict[str, str], Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                server.requests.append((self.command, self.path, dict(self.headers), body))
                queue = server.replies.get(path) or [(404, {}, {"error": "no route"})]
                status, headers, payload = queue.pop(0) if len(queue) > 1 else queue[0]
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value.replace("BASE", server.base))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.replies["/token"] = [(200, {}, {"access_token": "tok-1", "expires_on": str(int(time.time()) + 3600)})]
    yield s
    s.httpd.shutdown()


def http(uri: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Http", "inputs": {"method": "GET", "uri": uri, "authentication": {
        "type": "ManagedServiceIdentity", "identity": "/id/x", "audience": "https://aud/"}, **extra}}


def test_http_gets_a_managed_identity_token_and_follows_the_202_pattern(server: Server) -> None:
    server.replies["/op"] = [(202, {"Location": "BASE/status", "Retry-After": "0"}, None)]
    server.replies["/status"] = [(202, {"Location": "BASE/status", "Retry-After": "0"}, None),
                                 (200, {}, {"done": True})]
    msi = ManagedIdentity(f"{server.base}/token", "secret-header")
    result = workflow({"Call": http(f"{server.base}/op", queries={"api-version": "1"})}, msi=msi).run()
    assert result.status == "Succeeded"
    assert result.actions["Call"].outputs["body"] == {"done": True}
    token_call = server.requests[0]
    assert token_call[0] == "GET" and "resource=https%3A%2F%2Faud%2F" in token_call[1]
    assert "mi_res_id=%2Fid%2Fx" in token_call[1]
    assert token_call[2]["X-IDENTITY-HEADER"] == "secret-header"
    calls = [(m, p.split("?")[0]) for m, p, _, _ in server.requests[1:]]
    assert calls == [("GET", "/op"), ("GET", "/status"), ("GET", "/status")]
    assert all(h["Authorization"] == "Bearer tok-1" for _, _, h, _ in server.requests[1:])
    assert "api-version=1" in server.requests[1][1]


def test_http_retries_429_honouring_retry_after_and_fails_on_404_with_outputs(server: Server) -> None:
    server.replies["/busy"] = [(429, {"Retry-After": "1"}, None), (200, {}, {"ok": 1})]
    server.replies["/gone"] = [(404, {}, {"error": {"code": "ResourceNotFound"}})]
    msi = ManagedIdentity(f"{server.base}/token", "h")
    started = time.monotonic()
    result = workflow({
        "Busy": http(f"{server.base}/busy"),
        "Gone": {**http(f"{server.base}/gone"), "runAfter": {"Busy": ["Succeeded"]}},
        "Read": compose("@body('Gone')?['error']?['code']", Gone=["Failed"]),
    }, msi=msi).run()
    assert result.actions["Busy"].status == "Succeeded" and time.monotonic() - started >= 1
    assert result.actions["Gone"].status == "Failed"
    assert result.actions["Read"].outputs == "ResourceNotFound"
    assert len([r for r in server.requests if r[1].startswith("/gone")]) == 1  # 404: no retry


def test_the_request_endpoint_answers_202_then_the_async_response(server: Server) -> None:
    actions = {
        "Slow": {"type": "Wait", "inputs": {"interval": {"count": 1, "unit": "Second"}}},
        "Reply": {"type": "Response", "operationOptions": "Asynchronous", "runAfter": {"Slow": ["Succeeded"]},
                  "inputs": {"statusCode": 201, "body": {"got": "@triggerBody()?['x']",
                                                         "run": "@workflow()['run']['name']"}}},
    }
    with serving(workflow(actions, trigger="Request")) as endpoint:
        first = requests.post(endpoint.url, json={"x": 5}, timeout=10)
        assert first.status_code == 202 and first.headers["Retry-After"] == "1"
        poll = requests.get(first.headers["Location"], timeout=10)
        assert poll.status_code == 202  # still waiting
        time.sleep(1.5)
        final = requests.get(first.headers["Location"], timeout=10)
        assert final.status_code == 201 and final.json()["got"] == 5
        assert final.json()["run"] == first.headers["x-ms-workflow-run-id"]
        assert [r.status for r in endpoint.results()] == ["Succeeded"]


def test_trigger_concurrency_runs_one_at_a_time_queues_then_refuses_with_429() -> None:
    """runs = 1: a second request's run waits for the first (its POST still gets 202 at once);
    beyond maximumWaitingRuns the request is refused with 429 (logic-apps-workflow-actions-
    triggers.md, "Change waiting runs limit")."""
    actions = {
        "Slow": {"type": "Wait", "inputs": {"interval": {"count": 1, "unit": "Second"}}},
        "Reply": {"type": "Response", "operationOptions": "Asynchronous",
                  "runAfter": {"Slow": ["Succeeded"]},
                  "inputs": {"statusCode": 200, "body": {"n": "@triggerBody()?['n']"}}},
    }
    flow = workflow(actions, trigger="Request")
    flow.trigger["runtimeConfiguration"] = {"concurrency": {"runs": 1, "maximumWaitingRuns": 1}}
    flow = Workflow(flow.definition)  # read the trigger's concurrency as a deployment would
    with serving(flow) as endpoint:
        first = requests.post(endpoint.url, json={"n": 1}, timeout=10)
        second = requests.post(endpoint.url, json={"n": 2}, timeout=10)
        third = requests.post(endpoint.url, json={"n": 3}, timeout=10)
        assert first.status_code == second.status_code == 202
        assert third.status_code == 429, third.text  # one running, one waiting: full
        assert requests.get(second.headers["Location"], timeout=10).status_code == 202
        results = sorted(endpoint.results(), key=lambda r: r.began)
    assert [r.status for r in results] == ["Succeeded", "Succeeded"]
    assert results[0].ended <= results[1].began  # never both at once
    assert sorted(r.response["body"]["n"] for r in results if r.response) == [1, 2]


@pytest.mark.parametrize("concurrency", [{"runs": 0}, {"runs": 1, "maximumWaitingRuns": 101},
                                         {"repetitions": 2}, {"runs": True}])
def test_trigger_concurrency_outside_the_documented_ranges_is_refused(concurrency: Any) -> None:
    flow = workflow({}, trigger="Request")
    flow.trigger["runtimeConfiguration"] = {"concurrency": concurrency}
    with pytest.raises(ExpressionError, match="concurrency"):
        Workflow(flow.definition)
