"""Blob merges of more parts than a blob has blocks, on Azurite through the real SDK: intermediates
in the work folder, the output within the block limit and byte for byte the header then the parts,
the intermediates gone after; a merge killed midway and run again; and more than 50,000 parts at
Azure's own limits. (Azurite 3.37 does not refuse a block blob of more than 50,000 committed
blocks, so the tests count the committed blocks themselves; tests/test_compose_plan.py proves the
plan keeps the limit for any sizes.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from polling import wait_for

from serverless_score.errors import NotFoundError
from serverless_score.storage import StoreConfig
from serverless_score.storage.blob import BlobStore
from serverless_score.storage.blocks import MAX_BLOCKS, plan_compose

pytestmark = pytest.mark.azurite
HEADER = b"id,score\n"


def blob_store(azurite: Any, **options: Any) -> BlobStore:
    config = StoreConfig.from_env(azurite.env(), retry_backoff=0.05, retry_total=3)
    return BlobStore(config, **options)


def part(i: int, size: int) -> bytes:
    """Bytes that tell every part, and every offset in it, apart."""
    return bytes((i * 37 + j) % 251 for j in range(size))


def write_parts(azurite: Any, container: str, sizes: list[int], workers: int = 8) -> list[str]:
    """The parts, written in parallel straight through the SDK (the setup, not the test)."""
    client = azurite.service().get_container_client(container)

    def put(i: int) -> None:
        client.get_blob_client(f"parts/{i:06d}").upload_blob(part(i, sizes[i]))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, range(len(sizes))))
    return [f"az://{container}/parts/{i:06d}" for i in range(len(sizes))]


def committed_sizes(azurite: Any, container: str, name: str) -> list[int]:
    blob = azurite.service().get_blob_client(container, name)
    return [block.size for block in blob.get_block_list("committed")[0]]


# 0 .. 3 bytes (some empty) and one part of 300: 524 bytes, the most 5 blocks of 128 bytes hold
SIZES = [300 if i == 75 else (i * 7) % 4 for i in range(150)]


@pytest.mark.parametrize("fixture", ["azurite", "azurite_legacy"])
def test_more_parts_than_blocks_merge_through_intermediates(request, fixture: str) -> None:
    """At most 10 blocks of at most 128 bytes a blob: server-side (3.37), 150 parts need two
    levels of intermediates, and the big part is cut into ranged blocks; where the service cannot
    copy (3.35), the parts are downloaded and staged as blocks of 128 bytes of as many parts."""
    azurite = request.getfixturevalue(fixture)
    container = f"many-{fixture.replace('_', '-')}"
    azurite.service().create_container(container)
    store = blob_store(azurite, max_blocks=10, server_block_bytes=128, fallback_block_bytes=128)
    parts = write_parts(azurite, container, SIZES)
    out, scratch = f"az://{container}/out.csv", f"az://{container}/out.csv.work/merge"
    result = store.compose(out, parts, header=HEADER, overwrite=False, sizes=SIZES, scratch=scratch)
    expected = HEADER + b"".join(part(i, size) for i, size in enumerate(SIZES))
    assert store.read_bytes(out) == expected
    assert result.method == ("server" if fixture == "azurite" else "download")
    assert result.size == len(expected)
    blocks = committed_sizes(azurite, container, "out.csv")
    assert len(blocks) == result.blocks <= 10 and max(blocks) == 128
    if fixture == "azurite":
        plan = plan_compose(SIZES, header=True, block_bytes=128, max_blocks=10)
        assert result.intermediates == len(plan.intermediates) and len(plan.levels()) == 2
    else:  # the header, then 524 bytes of parts in blocks of 128
        assert result.intermediates == 0 and blocks == [len(HEADER), 128, 128, 128, 128, 12]
    assert list(store.list(scratch)) == []  # the intermediates are gone


def test_sizes_unknown_are_asked_for(azurite, container) -> None:
    store = blob_store(azurite, max_blocks=4, server_block_bytes=64)
    sizes = [5, 0, 70, 3, 3, 3]
    parts = write_parts(azurite, container, sizes)
    result = store.compose(f"az://{container}/out", parts, header=b"")
    assert store.read_bytes(f"az://{container}/out") == b"".join(
        part(i, size) for i, size in enumerate(sizes))
    assert result.intermediates >= 1 and result.blocks <= 4
    assert list(store.list(f"az://{container}/out.compose")) == []  # the default scratch, emptied


def test_a_failed_merge_leaves_no_output_and_removes_its_intermediates(azurite, container) -> None:
    """The first parts are grouped into intermediates (committed), then a part of the output's own
    blocks is missing: nothing is published, and the intermediates are deleted."""
    store = blob_store(azurite, max_blocks=5, server_block_bytes=64)
    sizes = [3] * 12
    parts = write_parts(azurite, container, sizes)
    parts[-1] = f"az://{container}/parts/gone"
    scratch = f"az://{container}/work/merge"
    assert plan_compose(sizes, max_blocks=5, block_bytes=64).output.blocks[-1].source == 11
    with pytest.raises(NotFoundError, match=f"az://{container}/parts/gone"):
        store.compose(f"az://{container}/out", parts, header=b"", sizes=sizes, scratch=scratch)
    assert not store.exists(f"az://{container}/out")
    assert list(store.list(scratch)) == []


_MERGE = """
import sys
from serverless_score.storage import StoreConfig
from serverless_score.storage.blob import BlobStore
out, scratch, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
container = out.split("/")[2]
parts = [f"az://{container}/parts/{i:06d}" for i in range(count)]
store = BlobStore(StoreConfig.from_env(), max_blocks=5, server_block_bytes=64)
store.compose(out, parts, header=b"id,score\\n", overwrite=False, scratch=scratch)
"""


def test_a_merge_killed_midway_is_simply_run_again(azurite, container) -> None:
    """kill -9 once intermediates exist: no output; the next merge publishes the same bytes as an
    uninterrupted one and deletes the dead merge's intermediates with its own."""
    sizes = [1 + i % 5 for i in range(400)]
    parts = write_parts(azurite, container, sizes)
    out, scratch = f"az://{container}/out.csv", f"az://{container}/out.csv.work/merge"
    store = blob_store(azurite, max_blocks=5, server_block_bytes=64)
    env = {**os.environ, **azurite.env()}
    proc = subprocess.Popen([sys.executable, "-c", _MERGE, out, scratch, str(len(sizes))], env=env)
    try:
        seen = wait_for(lambda: proc.poll() is not None or list(store.list(scratch)), timeout=120,
                        interval=0.02)
        assert seen and proc.poll() is None, "the merge ended before any intermediate was seen"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not store.exists(out)
    assert list(store.list(scratch))  # the dead merge's intermediates are still there
    result = store.compose(out, parts, header=HEADER, overwrite=False, sizes=sizes, scratch=scratch)
    assert store.read_bytes(out) == HEADER + b"".join(part(i, s) for i, s in enumerate(sizes))
    assert result.intermediates > 0 and len(committed_sizes(azurite, container, "out.csv")) <= 5
    assert list(store.list(scratch)) == []


@pytest.mark.scale
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_more_than_50000_tiny_parts_at_azures_own_limits(azurite, container) -> None:
    """50,001 parts (more than a blob has blocks), with the real limits (50,000 blocks, 16 MiB a
    downloaded block): through the download path, where they make one block. The server-side
    path at this scale stages 50,000 blocks into one blob, which Azurite slows down on with every
    block the blob has (~160 a second at the first, ~55 at the 10,000th, measured: tens of minutes
    for 50,000); test_compose_plan.py proves that plan at the real limits, and the test above runs
    it through the SDK at a low one. (Azurite 3.35, whose 501 picks that path by itself, slows
    down with every blob a container has: 3.37 and ``server_side_compose=False`` instead.)
    Writing the parts takes most of the time; both are printed."""
    count = MAX_BLOCKS + 1
    sizes = [1 + i % 9 for i in range(count)]
    started = time.monotonic()
    parts = write_parts(azurite, container, sizes)
    written = time.monotonic()
    print(f"\n{count} parts written in {written - started:.0f} s", flush=True)
    store = blob_store(azurite, server_side_compose=False)
    assert store.max_blocks == MAX_BLOCKS
    out = f"az://{container}/out.csv"
    result = store.compose(out, parts, header=HEADER, overwrite=False, sizes=sizes,
                           scratch=f"{out}.work/merge")
    print(f"{count} parts merged in {time.monotonic() - written:.0f} s", flush=True)
    assert result.method == "download" and result.blocks == 2  # the header, then all the parts
    assert store.read_bytes(out) == HEADER + b"".join(part(i, s) for i, s in enumerate(sizes))
