"""The Store contract on local files and on Azurite (one suite, two stores), then what only blobs
do: server-side compose and its fallback, ranged reads in bounded memory, and errors that name
the URI (missing, wrong account, bad key, expired SAS, throttling)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faults import Faults, throttling_proxy

from serverless_score.errors import AccessDeniedError, NotFoundError, ScoreError
from serverless_score.storage import StoreConfig
from serverless_score.storage.blob import BlobStore
from serverless_score.storage.local import LocalStore

pytestmark = pytest.mark.azurite
MiB = 1024 * 1024


def blob_store(azurite: Any, **options: Any) -> BlobStore:
    config = StoreConfig.from_env(azurite.env(), retry_backoff=0.05, retry_total=3)
    return BlobStore(config, **options)


@pytest.fixture(params=["local", "blob"])
def store_and_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, str]:
    if request.param == "local":
        return LocalStore(), str(tmp_path / "root")
    azurite = request.getfixturevalue("azurite")
    container = request.getfixturevalue("container")
    return blob_store(azurite, write_block_bytes=1000), f"az://{container}/root"


# -- the contract, on both stores ----------------------------------------------------------------
def test_write_read_size_info_exists_list_delete(store_and_root) -> None:
    store, root = store_and_root
    store.write_bytes(f"{root}/a/x.txt", b"hello world")
    store.write_bytes(f"{root}/a/b/y.txt", b"")
    store.write_bytes(f"{root}/ab.txt", b"not under a/")
    assert store.read_bytes(f"{root}/a/x.txt") == b"hello world"
    assert store.size(f"{root}/a/x.txt") == 11 and store.info(f"{root}/a/x.txt").size == 11
    assert store.exists(f"{root}/a/x.txt") and not store.exists(f"{root}/a/nope.txt")
    assert list(store.list(f"{root}/a")) == [f"{root}/a/b/y.txt", f"{root}/a/x.txt"]
    with store.open_read(f"{root}/a/x.txt") as f:
        f.seek(6)
        assert f.read(3) == b"wor"
    before = store.info(f"{root}/a/x.txt").version
    store.write_bytes(f"{root}/a/x.txt", b"changed")
    assert store.info(f"{root}/a/x.txt").version != before
    store.delete(f"{root}/a/x.txt")
    store.delete(f"{root}/a/x.txt")  # already gone: fine
    store.delete_prefix(f"{root}/a")
    assert list(store.list(f"{root}/a")) == []
    assert store.exists(f"{root}/ab.txt")  # a sibling sharing the prefix's first letters stays


def test_delete_many_deletes_exactly_those_named_gone_or_not(store_and_root) -> None:
    store, root = store_and_root
    names = [f"{root}/many/p{i:03d}" for i in range(40)]
    for name in names:
        store.write_bytes(name, name.encode())
    doomed = [*names[::2], f"{root}/many/never-written"]
    store.delete_many(doomed)
    assert list(store.list(f"{root}/many")) == names[1::2]
    store.delete_many(doomed)  # all gone already: fine
    store.delete_many([])
    assert list(store.list(f"{root}/many")) == names[1::2]


def test_atomic_writes_appear_only_complete(store_and_root) -> None:
    store, root = store_and_root
    uri = f"{root}/part"
    with store.open_atomic(uri) as f:
        f.write(b"x" * 2500)  # several blocks on the blob store
        assert not store.exists(uri)
    assert store.read_bytes(uri) == b"x" * 2500
    with pytest.raises(RuntimeError), store.open_atomic(uri) as f:
        f.write(b"y" * 3000)
        raise RuntimeError("the scorer crashed")
    assert store.read_bytes(uri) == b"x" * 2500  # the failed write left nothing


def test_no_overwrite_keeps_what_is_there(store_and_root) -> None:
    store, root = store_and_root
    uri = f"{root}/out.csv"
    store.write_bytes(uri, b"theirs")
    with pytest.raises(FileExistsError), store.open_atomic(uri, overwrite=False) as f:
        f.write(b"mine")
    with pytest.raises(FileExistsError):
        store.compose(uri, [], header=b"h\n", overwrite=False)
    assert store.read_bytes(uri) == b"theirs"


def test_compose_puts_header_then_parts_in_order(store_and_root) -> None:
    store, root = store_and_root
    parts = [f"{root}/p{i}" for i in range(5)]
    contents = [b"1,a\n" * 700, b"", b"2,b\n", b"3,c\n" * 300, b"4,d\n"]
    for uri, data in zip(parts, contents, strict=True):
        store.write_bytes(uri, data)
    result = store.compose(f"{root}/out.csv", parts, header=b"id,x\n")
    expected = b"id,x\n" + b"".join(contents)
    assert store.read_bytes(f"{root}/out.csv") == expected
    assert result.size == len(expected)
    assert result.sha256 in (None, hashlib.sha256(expected).hexdigest())


# -- blob only: compose --------------------------------------------------------------------------
def _parts(store: BlobStore, root: str, sizes: list[int]) -> tuple[list[str], bytes]:
    uris, data = [], b""
    for i, size in enumerate(sizes):
        chunk = bytes((i * 7 + j) % 251 for j in range(size))
        store.write_bytes(f"{root}/part{i}", chunk)
        uris.append(f"{root}/part{i}")
        data += chunk
    return uris, data


def test_compose_is_server_side_and_splits_big_parts_into_blocks(azurite, container) -> None:
    store = blob_store(azurite, server_block_bytes=1000)
    parts, data = _parts(store, f"az://{container}", [2500, 10, 0, 999])
    result = store.compose(f"az://{container}/out", parts, header=b"H\n", overwrite=False)
    assert result.method == "server"
    assert result.blocks == 1 + 3 + 1 + 1  # header, 2500 -> 3 blocks, 10, 999
    assert store.read_bytes(f"az://{container}/out") == b"H\n" + data
    committed = azurite.service().get_blob_client(container, "out").get_block_list("committed")[0]
    assert [b.size for b in committed] == [2, 1000, 1000, 500, 10, 999]


def test_compose_falls_back_to_download_where_the_service_cannot_copy(azurite_legacy) -> None:
    azurite_legacy.service().create_container("fallback")
    store = blob_store(azurite_legacy, fallback_block_bytes=1000)
    parts, data = _parts(store, "az://fallback", [2500, 10])
    result = store.compose("az://fallback/out", parts, header=b"H\n", overwrite=False)
    assert result.method == "download"
    assert store.read_bytes("az://fallback/out") == b"H\n" + data
    with pytest.raises(FileExistsError):  # the fallback commit is just as conditional
        store.compose("az://fallback/out", parts, overwrite=False)


def test_compose_fails_whole_when_a_part_is_missing(azurite, container) -> None:
    store = blob_store(azurite)
    parts, _ = _parts(store, f"az://{container}", [100])
    with pytest.raises(NotFoundError, match=f"az://{container}/gone"):
        store.compose(f"az://{container}/out", [*parts, f"az://{container}/gone"])
    assert not store.exists(f"az://{container}/out")


# -- blob only: reading --------------------------------------------------------------------------
_STREAM = """
import hashlib, resource, sys
from serverless_score.records import RangeReader, RecordFormat
from serverless_score.storage.blob import BlobStore
uri, block = sys.argv[1], int(sys.argv[2])
store = BlobStore()
with store.open_read(uri) as f:
    f.read(10)  # imports and the connection pool, before the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
digest = hashlib.sha256()
with store.open_read(uri) as f:
    size = f.seek(0, 2)
    reader = RangeReader(f, RecordFormat("lines"), start=0, end=size, file_size=size,
                         block_size=block)
    for batch in reader:
        digest.update(batch.data)
print(digest.hexdigest(), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def test_streaming_a_blob_holds_a_few_chunks_not_the_blob(azurite, container, blob_env) -> None:
    """Resident memory, measured in a fresh process: tracemalloc would count the buffers the
    HTTP stack reserves but never touches."""
    import subprocess
    import sys

    line = b"0123456789,abcdefghij,0.123456789\n"
    data = line * (64 * MiB // len(line))
    azurite.service().get_blob_client(container, "big.csv").upload_blob(data, max_concurrency=4)
    block = 2 * MiB
    out = subprocess.run([sys.executable, "-c", _STREAM, f"az://{container}/big.csv", str(block)],
                         capture_output=True, text=True, check=True, timeout=120)
    digest, grown = out.stdout.split()
    assert digest == hashlib.sha256(data).hexdigest()
    assert int(grown) < 12 * block, f"resident memory grew {int(grown) / MiB:.1f} MiB for a 64 MiB blob"


def test_a_blob_replaced_while_read_is_an_error_not_a_mix(azurite, container) -> None:
    store = blob_store(azurite)
    uri = f"az://{container}/in.csv"
    store.write_bytes(uri, b"a" * (3 * MiB))
    with store.open_read(uri) as f:
        assert f.read(10) == b"a" * 10
        store.write_bytes(uri, b"b" * (3 * MiB))
        f.seek(2 * MiB)
        with pytest.raises(ScoreError, match=f"{uri}.*changed"):
            f.read(10)


# -- blob only: errors name the URI and the fix --------------------------------------------------
def test_missing_blob_and_container(azurite, container) -> None:
    store = blob_store(azurite)
    with pytest.raises(NotFoundError, match=f"az://{container}/nope.csv: no such blob"):
        store.open_read(f"az://{container}/nope.csv")
    with pytest.raises(NotFoundError, match="the container does not exist") as info:
        store.read_bytes("az://no-such-container/x")
    assert "Create the container" in info.value.hint
    assert list(store.list(f"az://{container}/empty")) == []


def test_wrong_account_and_wrong_key(azurite, container) -> None:
    wrong_account = azurite.connection_string.replace("AccountName=devstoreaccount1",
                                                      "AccountName=otheraccount").replace(
        "/devstoreaccount1;", "/otheraccount;")
    store = BlobStore(StoreConfig.from_env({"AZURE_STORAGE_CONNECTION_STRING": wrong_account},
                                           retry_total=0))
    with pytest.raises(NotFoundError, match=re.escape("az://data/x.csv")) as info:
        store.size("az://data/x.csv")
    assert "storage account name" in info.value.hint
    key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    bad_key = azurite.connection_string.replace(key, "A" * len(key))
    store = BlobStore(StoreConfig.from_env({"AZURE_STORAGE_CONNECTION_STRING": bad_key}, retry_total=0))
    with pytest.raises(AccessDeniedError, match=f"az://{container}/x.csv: the storage service rejected"):
        store.size(f"az://{container}/x.csv")


def test_expired_and_too_narrow_sas(azurite, container) -> None:
    store = blob_store(azurite)
    uri = f"az://{container}/in.csv"
    store.write_bytes(uri, b"data")
    expired = store.grant(uri, "r", timedelta(minutes=-10))  # back-dated: already expired
    read_only = store.grant(uri, "r", timedelta(minutes=10))
    assert expired is not None and read_only is not None
    url = f"{azurite.endpoint}/{container}/in.csv"
    for grant, action, fragment in [(expired, "read", "the SAS expired at"),
                                    (read_only, "write", "permission denied")]:
        user = BlobStore(StoreConfig(grants=((url, grant),), grants_only=True, retry_total=0))
        with pytest.raises(AccessDeniedError, match=fragment) as info:
            if action == "read":
                user.read_bytes(url)
            else:
                user.write_bytes(url, b"nope")
        assert "sig=" not in str(info.value) + info.value.hint
    assert store.read_bytes(uri) == b"data"


def test_throttling_is_retried_and_then_reported(azurite, container) -> None:
    store = blob_store(azurite)
    store.write_bytes(f"az://{container}/in.csv", b"payload")
    faults = Faults(count=2, match=lambda method, path: method == "GET" and "in.csv" in path)
    with throttling_proxy(azurite.port, faults) as port:
        proxied = azurite.connection_string.replace(f":{azurite.port}/", f":{port}/")
        config = StoreConfig.from_env({"AZURE_STORAGE_CONNECTION_STRING": proxied},
                                      retry_backoff=0.05, retry_total=3)
        assert BlobStore(config).read_bytes(f"az://{container}/in.csv") == b"payload"
        assert faults.injected == 2
        faults.count, faults.injected = 100, 0
        with pytest.raises(ScoreError, match=f"az://{container}/in.csv: the storage service is busy") as info:
            BlobStore(config).read_bytes(f"az://{container}/in.csv")
        assert faults.injected == 4  # the first try and 3 retries
        assert info.value.retryable and "max_parallel" in info.value.hint


def test_account_less_az_uri_says_how_to_name_the_account() -> None:
    store = BlobStore(StoreConfig.from_env({}))
    with pytest.raises(ScoreError, match="which storage account") as info:
        store.size("az://data/x.csv")
    assert "AZURE_STORAGE_ACCOUNT" in info.value.hint
    assert datetime.now(UTC)  # no network was needed to say so
