"""Merging 100 parts (>= 200 MB) into one blob in Azurite: server-side compose
(``stage_block_from_url`` + ``commit_block_list``, the controller never touches the bytes) versus
download + re-upload (the fallback: each block downloaded and staged again), in one run.

    .venv/bin/python bench/bench_blob_merge.py [--parts 100] [--part-mb 2.1] [--repeat 3]
    .venv/bin/python bench/bench_blob_merge.py --tiny 1000,2000,4000 [--max-blocks 500]

``--tiny`` measures instead the server-side merge of that many tiny parts (a few bytes each):
time per part at each count, as a ratio to the smallest count's (about 1.0 when the merge grows
linearly with its parts); ``--max-blocks`` lowers the blocks a blob may hold, so that the counts
pass it and the merge composes intermediate blobs first, as past Azure's 50,000.

Starts its own Azurite 3.37 (installed by scripts/ensure-azurite.sh) on a free port with a fresh
data directory and stops it after. Prints, per method, the wall time, the controller's CPU time and
the bytes the controller itself moved (from /proc/self/io), and the ratio; target: server-side >= 5x.

With SERVERLESS_SCORE_AZURE_STORAGE_ACCOUNT set (and credentials: az login, a managed identity, or
AZURE_STORAGE_CONNECTION_STRING / AZURE_STORAGE_KEY), the same measurement runs against that real
account instead, in container SERVERLESS_SCORE_AZURE_TEST_CONTAINER (default serverless-score-bench),
deleting what it wrote afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from azurite import running

from serverless_score.storage import StoreConfig
from serverless_score.storage.base import hash_stream
from serverless_score.storage.blob import BlobStore

MB = 1_000_000


class _SocketBytes:
    """Counts the bytes this process sends and receives on sockets: what the controller itself
    moves (Azurite's own loopback fetches for Put Block From URL happen in its process)."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()
        send, recv_into = socket.socket.sendall, socket.socket.recv_into

        def sendall(sock: socket.socket, data: Any, *args: Any) -> None:
            self._add(memoryview(data).nbytes)
            send(sock, data, *args)

        def counted_recv_into(sock: socket.socket, buffer: Any, *args: Any) -> int:
            count = recv_into(sock, buffer, *args)
            self._add(count)
            return count

        socket.socket.sendall = sendall  # type: ignore[method-assign]
        socket.socket.recv_into = counted_recv_into  # type: ignore[method-assign]

    def _add(self, count: int) -> None:
        with self._lock:
            self.total += count


_BYTES = _SocketBytes()


def _io_bytes() -> int:
    return _BYTES.total


@contextlib.contextmanager
def _target() -> Iterator[tuple[str, StoreConfig, str]]:
    """(where, config, container URI prefix): Azurite, or a live account when one is configured."""
    account = os.environ.get("SERVERLESS_SCORE_AZURE_STORAGE_ACCOUNT")
    if account:
        name = os.environ.get("SERVERLESS_SCORE_AZURE_TEST_CONTAINER", "serverless-score-bench")
        config = StoreConfig.from_env(account=account)
        prefix = f"az://{name}/bench-{int(time.time())}"
        try:
            yield f"Azure Storage account {account}", config, prefix
        finally:
            BlobStore(config).delete_prefix(prefix)
        return
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as tmp, running("3.37", Path(tmp)) as azurite:
        azurite.service().create_container("bench")
        yield "Azurite 3.37", StoreConfig.from_env(azurite.env()), "az://bench"


def _part(index: int, size: int) -> bytes:
    seed = hashlib.sha256(str(index).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _digest(store: BlobStore, uri: str) -> str:
    with store.open_read(uri) as f:
        return hash_stream(f)[1]


def tiny(counts: list[int], max_blocks: int) -> None:
    """Merge time per part against the number of tiny parts (server-side, in one run)."""
    with _target() as (where, config, root):
        store = BlobStore(config, max_blocks=max_blocks)
        biggest = max(counts)
        parts = [f"{root}/tiny/{i:06d}" for i in range(biggest)]
        data = [b"%d,0.5\n" % i for i in range(biggest)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: store.write_bytes(parts[i], data[i]), range(biggest)))
        print(f"{where}: tiny parts, blobs of at most {max_blocks} blocks "
              f"(python {sys.version.split()[0]}, {os.cpu_count()} cores)")
        # A merge first, untimed: connections, SAS signing keys and Azurite's caches warm up.
        store.compose(f"{root}/tiny-out/warm-up.csv", parts[:min(counts)], header=b"id,score\n")
        baseline = None
        for count in sorted(counts):
            out = f"{root}/tiny-out/{count}.csv"
            started = time.perf_counter()
            result = store.compose(out, parts[:count], header=b"id,score\n",
                                   sizes=[len(d) for d in data[:count]],
                                   scratch=f"{out}.work/merge")
            wall = time.perf_counter() - started
            assert store.read_bytes(out) == b"id,score\n" + b"".join(data[:count])
            per_part = wall / count
            baseline = baseline or per_part
            print(f"{count:7d} parts: {wall:7.2f} s, {1000 * per_part:5.2f} ms a part "
                  f"({per_part / baseline:4.2f}x the {min(counts)}-part baseline), "
                  f"{result.intermediates} intermediate blobs, {result.blocks} blocks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=100)
    parser.add_argument("--part-mb", type=float, default=2.1)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each method; the median is reported")
    parser.add_argument("--tiny", help="comma-separated counts of tiny parts: merge time per part")
    parser.add_argument("--max-blocks", type=int, default=50_000,
                        help="with --tiny: blocks a blob may hold (Azure: 50,000)")
    args = parser.parse_args()
    if args.tiny:
        tiny([int(c) for c in args.tiny.split(",")], args.max_blocks)
        return
    size = int(args.part_mb * MB)
    with _target() as (where, config, root):
        server = BlobStore(config)
        fallback = BlobStore(config, server_side_compose=False)
        parts = [f"{root}/parts/{i:03d}" for i in range(args.parts)]
        expected = hashlib.sha256()
        for i in range(args.parts):
            expected.update(_part(i, size))
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: server.write_bytes(parts[i], _part(i, size)), range(args.parts)))
        total = size * args.parts
        print(f"{where}: {args.parts} parts of {size / MB:.1f} MB = {total / MB:.0f} MB "
              f"(python {sys.version.split()[0]}, {os.cpu_count()} cores)")
        times: dict[str, list[float]] = {"server": [], "download": []}
        cpu: dict[str, list[float]] = {"server": [], "download": []}
        moved: dict[str, list[int]] = {"server": [], "download": []}
        for run in range(args.repeat):
            for method, store in (("server", server), ("download", fallback)):
                out = f"{root}/out/{method}-{run}.bin"
                started, cpu_started, io_started = time.perf_counter(), time.process_time(), _io_bytes()
                result = store.compose(out, parts, overwrite=False)
                times[method].append(time.perf_counter() - started)
                cpu[method].append(time.process_time() - cpu_started)
                moved[method].append(_io_bytes() - io_started)
                assert result.method == method, result
                assert result.size == total
                if run == 0:  # same bytes either way (checked outside the timing)
                    assert _digest(server, out) == expected.hexdigest(), method
        for method, label in (("server", "server-side compose (stage_block_from_url)"),
                              ("download", "download + re-upload (fallback)          ")):
            wall = statistics.median(times[method])
            print(f"{label}: {wall:6.2f} s ({total / MB / wall:5.0f} MB/s), controller CPU "
                  f"{statistics.median(cpu[method]):5.2f} s, controller I/O "
                  f"{statistics.median(moved[method]) / MB:6.1f} MB; runs {[round(t, 2) for t in times[method]]}")
        ratio = statistics.median(times["download"]) / statistics.median(times["server"])
        print(f"ratio (download / server-side wall time): {ratio:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
