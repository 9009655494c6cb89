"""A fault-injecting HTTP proxy in front of the real Azurite: answers the first N requests that
match with a throttling error, as Azure Storage does under load, and forwards everything else
unchanged. The storage is real; only the failures are made up."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUSY_BODY = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
             b"<Message>The server is busy.</Message></Error>")


@dataclass
class Faults:
    """Fail the first ``count`` requests for which ``match(method, path)`` holds."""

    count: int
    match: Callable[[str, str], bool] = lambda method, path: True
    injected: int = 0
    forwarded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, method: str, path: str) -> bool:
        with self.lock:
            if self.injected < self.count and self.match(method, path):
                self.injected += 1
                return True
            self.forwarded += 1
            return False


def _handler(target_port: int, faults: Faults) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if faults.take(self.command, self.path):
                self.send_response(503, "The server is busy.")
                self.send_header("x-ms-error-code", "ServerBusy")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(BUSY_BODY)))
                self.end_headers()
                self.wfile.write(BUSY_BODY)
                return
            upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
            self.send_response(reply.status, reply.reason)
            for key, value in reply.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            upstream.close()

        do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients dropping keep-alive connections at shutdown: not a test failure


@contextmanager
def throttling_proxy(target_port: int, faults: Faults) -> Iterator[int]:
    """Yield the port of a proxy to ``127.0.0.1:target_port`` that injects ``faults``."""
    server = _Server(("127.0.0.1", 0), _handler(target_port, faults))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
