"""Azurite, the Azure Storage emulator, for the blob tests: installed from npm by
``scripts/ensure-azurite.sh`` when missing, started on a free port with a fresh data directory,
stopped after. Two versions: 3.37 implements Put Block From URL (the server-side merge), 3.35 does
not (the merge's fallback)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools" / "azurite"
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key: public, documented, good for this emulator only.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
PACKAGES = {"3.37": "azurite", "3.35": "azurite-legacy"}


def ensure_installed() -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-azurite.sh")], check=True, timeout=1200)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Azurite:
    version: str
    port: int
    location: Path
    proc: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={self.endpoint};")

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(version: str, location: Path, *, timeout: float = 60) -> Azurite:
    node = TOOLS / "node_modules" / ".bin" / "node"
    main = TOOLS / "node_modules" / PACKAGES[version] / "dist" / "src" / "blob" / "main.js"
    if not (node.exists() and main.exists()):
        ensure_installed()
    location.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(location / "azurite.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(node), str(main), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--location", str(location), "--silent", "--disableTelemetry",
         # azure-storage-blob sends a newer API version than Azurite knows (reference/azure.md)
         "--skipApiVersionCheck"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Azurite(version, port, location, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Azurite {version} exited: {(location / 'azurite.log').read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"Azurite {version} did not listen on port {port} within {timeout}s")


@contextlib.contextmanager
def running(version: str, location: Path) -> Iterator[Azurite]:
    server = start(version, location)
    try:
        yield server
    finally:
        server.stop()
