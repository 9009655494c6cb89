"""The Request trigger's endpoint, over real HTTP, with the service's asynchronous Response
pattern: POST the callback URL -> 202 Accepted + ``Location`` (+ ``Retry-After``) at once; GET the
``Location`` -> 202 until the workflow reaches its Response action, then that response. A run that
ends without responding answers 502. Runs execute in a background thread each; a trigger with
``runtimeConfiguration.concurrency`` runs that many at once, queues the waiting ones (their POST
gets its 202 at once, the poll answers 202 while they wait) and answers 429 when the queue is
full."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .engine import RunResult, TooManyRuns, Workflow

INVOKE = "/workflows/{name}/triggers/manual/paths/invoke"


class _Runs:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.responses: dict[str, dict[str, Any]] = {}
        self.results: dict[str, RunResult] = {}
        self.threads: list[threading.Thread] = []


def _handler(workflow: Workflow, runs: _Runs) -> type[BaseHTTPRequestHandler]:
    asynchronous = any(
        str(a.get("operationOptions", "")).lower() == "asynchronous"
        for a in _all(workflow.definition.get("actions") or {})
        if str(a.get("type")).lower() == "response")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _send(self, code: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path.split("?")[0] != INVOKE.format(name=workflow.name):
                self._send(404, {"error": {"code": "NotFound", "message": self.path}})
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            answered = threading.Event()

            def respond(response: dict[str, Any]) -> None:
                with runs.lock:
                    runs.responses[run_id] = response
                answered.set()

            holder: dict[str, str] = {}
            started = threading.Event()

            def execute() -> None:
                try:
                    result = workflow.run(body, dict(self.headers), on_response=respond,
                                          on_start=lambda rid: (holder.update(id=rid), started.set()))
                except TooManyRuns:
                    started.set()
                    return
                with runs.lock:
                    runs.results[result.run_id] = result
                answered.set()

            thread = threading.Thread(target=execute, daemon=True)
            runs.threads.append(thread)
            thread.start()
            started.wait(10)
            if "id" not in holder:  # the trigger's concurrency queue is full
                self._send(429, {"error": {"code": "TooManyRuns", "message":
                                           "too many runs are running or waiting"}})
                return
            run_id = holder["id"]
            if asynchronous:
                self._send(202, None, {"Location": f"{self._base()}/runs/{run_id}/response",
                                       "Retry-After": "1", "x-ms-workflow-run-id": run_id})
                return
            answered.wait(120)  # the synchronous inbound limit
            self._reply(run_id)

        def do_GET(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) != 3 or parts[0] != "runs" or parts[2] != "response":
                self._send(404, {"error": {"code": "NotFound", "message": self.path}})
                return
            self._reply(parts[1])

        def _reply(self, run_id: str) -> None:
            with runs.lock:
                response = runs.responses.get(run_id)
                finished = run_id in runs.results
            if response is not None:
                self._send(int(response["statusCode"]), response.get("body"),
                           {k: v for k, v in response.get("headers", {}).items()
                            if k.lower() != "content-type"})
            elif finished:
                self._send(502, {"error": {"code": "NoResponse", "message":
                                           "the workflow run ended without a Response action"}})
            else:
                self._send(202, None, {"Location": f"{self._base()}/runs/{run_id}/response",
                                       "Retry-After": "1"})

        def _base(self) -> str:
            host, port = self.server.server_address[:2]
            return f"http://{host}:{port}"

    return Handler


def _all(actions: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for action in actions.values():
        yield action
        for key in ("actions",):
            if action.get(key):
                yield from _all(action[key])
        if action.get("else"):
            yield from _all(action["else"].get("actions") or {})


class TriggerEndpoint:
    def __init__(self, server: ThreadingHTTPServer, runs: _Runs, workflow: Workflow) -> None:
        self.server, self.runs, self.workflow = server, runs, workflow

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}" + INVOKE.format(name=self.workflow.name)

    def results(self) -> list[RunResult]:
        for thread in list(self.runs.threads):
            thread.join(timeout=600)
        with self.runs.lock:
            return list(self.runs.results.values())


@contextmanager
def serving(workflow: Workflow) -> Iterator[TriggerEndpoint]:
    runs = _Runs()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(workflow, runs))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TriggerEndpoint(server, runs, workflow)
    finally:
        server.shutdown()
        server.server_close()
