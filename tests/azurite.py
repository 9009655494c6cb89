"""Azurite, the Azure Storage emulator, for the blob tests: installed from npm by
``scripts/ensure-azurite.sh`` when missing, started on a free port with a fresh data directory,
stopped after. Two versions: 3.37 implements Put Block From URL (the server-side merge), 3.35 does
not (the merge's fallback). Over plain http by default; ``tls=True`` serves https with a throw-away
CA (tests/aci_emulator/tls.py), which token credentials need: the SDK refuses them over http."""

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
    ca_bundle: Path | None = None  # with tls: the trusted roots plus the test CA

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.ca_bundle else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={self.endpoint};")

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string, **self.tls_env()}

    def tls_env(self) -> dict[str, str]:
        """What a subprocess needs to trust this server (azure-core's requests transport reads
        REQUESTS_CA_BUNDLE); nothing over http."""
        return {"REQUESTS_CA_BUNDLE": str(self.ca_bundle)} if self.ca_bundle else {}

    def service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        extra = {"connection_verify": str(self.ca_bundle)} if self.ca_bundle else {}
        return BlobServiceClient.from_connection_string(self.connection_string, **extra)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(version: str, location: Path, *, timeout: float = 60, tls: bool = False) -> Azurite:
    node = TOOLS / "node_modules" / ".bin" / "node"
    main = TOOLS / "node_modules" / PACKAGES[version] / "dist" / "src" / "blob" / "main.js"
    if not (node.exists() and main.exists()):
        ensure_installed()
    location.mkdir(parents=True, exist_ok=True)
    port = free_port()
    tls_args: list[str] = []
    bundle = None
    if tls:
        from aci_emulator.tls import make_certificates

        files = make_certificates(location / "tls")
        tls_args = ["--cert", str(files.cert_file), "--key", str(files.key_file)]
        bundle = files.bundle_file
    log = open(location / "azurite.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(node), str(main), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--location", str(location), "--silent", "--disableTelemetry",
         # azure-storage-blob sends a newer API version than Azurite knows (reference/azure.md)
         "--skipApiVersionCheck", *tls_args],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Azurite(version, port, location, proc, bundle)
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
def running(version: str, location: Path, *, tls: bool = False) -> Iterator[Azurite]:
    server = start(version, location, tls=tls)
    try:
        yield server
    finally:
        server.stop()
