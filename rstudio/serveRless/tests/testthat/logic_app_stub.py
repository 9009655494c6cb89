"""A stand-in for a Logic App HTTP trigger with an asynchronous Response, for the R package's
unit tests (the real templates run through tests/test_logicapp_e2e.py and tests/r/): POST
/invoke?sig=... -> 202 + Location; the first GET of it -> 202 again; the next -> the answer. A body
with input "fail" gets 500 and a reason. Every request body is kept and served at /requests.
Prints its port on the first line of stdout."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

bodies = []
polls = {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body=None, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if not self.path.startswith("/invoke?sig="):
            return self.reply(401, {"error": {"code": "Unauthorized"}})
        length = int(self.headers.get("Content-Length") or 0)
        bodies.append(json.loads(self.rfile.read(length) or b"null"))
        run = str(len(bodies))
        polls[run] = 0
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.reply(202, None, [("Location", f"{base}/runs/{run}"), ("Retry-After", "1")])

    def do_GET(self):
        if self.path == "/requests":
            return self.reply(200, bodies)
        run = self.path.rsplit("/", 1)[-1]
        polls[run] += 1
        if polls[run] < 2:
            return self.reply(202, None, [("Location", self.path), ("Retry-After", "1")])
        body = bodies[int(run) - 1] or {}
        if body.get("input") == "fail":
            return self.reply(500, {"status": "Failed", "error": "task t00001 failed: boom",
                                    "runId": "run" + run, "groupDeleted": True})
        self.reply(200, {"status": "Succeeded", "jobId": "job-" + run, "runId": "run" + run,
                         "containerGroup": "ssc-x-1", "output": body.get("output", "az://s/o.csv"),
                         "manifest": "az://s/o.csv.manifest.json", "rowsOut": 25})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
