"""Blob support without a server: URIs, SAS handling, secrets, block arithmetic, the ranged reader,
the [azure] table, and what travels to workers."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pytest

from serverless_score.errors import SpecError
from serverless_score.planning import make_plan
from serverless_score.secrets import Secret, redact
from serverless_score.spec import spec_from_dict
from serverless_score.storage.blob_io import BlockWriter, ranged_reader
from serverless_score.storage.config import StoreConfig
from serverless_score.storage.uris import (
    BlobUriError,
    glob_prefix,
    glob_to_regex,
    parse_blob_uri,
    split_sas,
)

SIG = "sig=AbCdEfSecretSignature%3D"
SAS = f"sv=2024-08-04&se=2030-01-01T00%3A00%3A00Z&sr=c&sp=rl&{SIG}"


# -- URIs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("uri, account, container, name, endpoint", [
    ("az://data/in/a.csv", None, "data", "in/a.csv", None),
    ("az://data", None, "data", "", None),
    ("https://acct01.blob.core.windows.net/data/x/y.csv", "acct01", "data", "x/y.csv",
     "https://acct01.blob.core.windows.net"),
    ("https://acct01.blob.core.chinacloudapi.cn/data/y.csv", "acct01", "data", "y.csv",
     "https://acct01.blob.core.chinacloudapi.cn"),
    ("http://127.0.0.1:10000/devstoreaccount1/data/y%20z.csv", "devstoreaccount1", "data",
     "y z.csv", "http://127.0.0.1:10000/devstoreaccount1"),
])
def test_blob_uri_forms(uri, account, container, name, endpoint) -> None:
    path = parse_blob_uri(uri)
    assert (path.account, path.container, path.name, path.endpoint) == (account, container, name, endpoint)


@pytest.mark.parametrize("uri, fragment", [
    ("az://Data/x", "not a container name"),
    ("az://ab/x", "not a container name"),
    ("https://example.com/data/x", "expected a blob endpoint"),
    ("http://acct.blob.core.windows.net/data/x", "needs https"),
    ("https://ACCT_1.blob.core.windows.net/data/x", "not a storage account name"),
    ("s3://bucket/x", "not a blob URI"),
])
def test_bad_blob_uris_say_what_is_wrong(uri, fragment) -> None:
    with pytest.raises(BlobUriError, match=fragment):
        parse_blob_uri(uri)


def test_split_sas_takes_the_token_off_urls_only() -> None:
    url = "https://acct01.blob.core.windows.net/data/x.csv"
    assert split_sas(f"{url}?{SAS}") == (url, SAS)
    assert split_sas(url) == (url, None)
    assert split_sas("az://data/what?.csv") == ("az://data/what?.csv", None)


@pytest.mark.parametrize("pattern, name, matches", [
    ("data/*.csv", "data/a.csv", True),
    ("data/*.csv", "data/sub/a.csv", False),
    ("data/**/*.csv", "data/sub/deeper/a.csv", True),
    ("data/**/*.csv", "data/a.csv", True),
    ("data/part-?.csv", "data/part-1.csv", True),
    ("data/part-?.csv", "data/part-10.csv", False),
    ("data/[ab].csv", "data/b.csv", True),
    ("data/[!ab].csv", "data/b.csv", False),
    ("data/a+b.csv", "data/a+b.csv", True),
])
def test_glob_matches_like_the_shell(pattern, name, matches) -> None:
    assert bool(glob_to_regex(pattern).fullmatch(name)) is matches


def test_glob_prefix_is_what_to_list() -> None:
    assert glob_prefix("data/2024/*.csv") == "data/2024/"
    assert glob_prefix("data/part-*/x.csv") == "data/"
    assert glob_prefix("*.csv") == ""


# -- secrets -----------------------------------------------------------------------------------
def test_secret_never_shows_its_value() -> None:
    secret = Secret("AccountKey=abc")
    assert repr(secret) == str(secret) == "Secret('***')"
    assert "abc" not in f"{secret} {[secret]} {({'k': secret})}"
    assert secret.reveal() == "AccountKey=abc"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_redact_removes_sas_parameters_and_keys() -> None:
    text = (f"GET https://a.blob.core.windows.net/c/x?{SAS} failed; "
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0a2V5==;")
    out = redact(text)
    assert "AbCdEfSecretSignature" not in out and "c2VjcmV0a2V5" not in out
    assert "https://a.blob.core.windows.net/c/x?" in out and "AccountName=a" in out


# -- blocks (the compose plan itself: tests/test_compose_plan.py) -----------------------------------
def test_a_blob_output_may_have_more_tasks_than_a_blob_has_blocks(tmp_path: Path) -> None:
    """The merge composes more parts than 50,000 (in intermediate blobs): nothing to refuse."""
    data = tmp_path / "in.jsonl"
    data.write_bytes(b"{}\n" * 60_000)
    spec = spec_from_dict({"name": "many", "input": str(data), "output": "az://out/x.jsonl",
                           "runtime": "command", "scorer": "cat", "chunks": 50_001},
                          base=tmp_path)
    plan = make_plan(spec, StoreConfig(account="devstoreaccount1"))
    assert len(plan.tasks) == 50_001



# -- ranged reader / block writer on bytes -----------------------------------------------------
def test_ranged_reader_reads_what_a_file_would_with_few_fetches() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    calls: list[tuple[int, int]] = []

    def fetch(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return data[offset: offset + length]

    reader = ranged_reader(fetch, len(data), "mem", read_ahead=64 * 1024)
    local = io.BytesIO(data)
    for offset, size in [(0, 10), (5, 1), (100_000, 300_000), (len(data) - 3, 10), (7, 0)]:
        reader.seek(offset)
        local.seek(offset)
        assert reader.read(size) == local.read(size)
    assert reader.seek(0, io.SEEK_END) == len(data)
    assert max(length for _, length in calls) <= 300_000 + 64 * 1024
    assert len(calls) <= 6


def test_block_writer_stages_full_blocks_and_the_rest() -> None:
    staged: dict[str, bytes] = {}
    writer = BlockWriter(staged.__setitem__, "n0nce", 4, "mem")
    for piece in (b"ab", b"cdefg", b"", b"hij"):
        writer.write(piece)
    ids = writer.finish()
    assert b"".join(staged[i] for i in ids) == b"abcdefghij"
    assert [len(staged[i]) for i in ids] == [4, 4, 2]
    assert len({len(i) for i in ids}) == 1  # the service wants ids of one length


# -- the [azure] table and SAS in URLs ---------------------------------------------------------
def _spec(**keys):
    base = {"name": "blobjob", "model": "az://models/m.joblib", "input": "az://data/in.csv",
            "output": "az://scores/out.csv"}
    return spec_from_dict({**base, **keys})


def test_azure_table_is_validated_and_unknown_keys_are_errors() -> None:
    spec = _spec(azure={"storage_account": "acct01", "storage_credential": "key",
                        "worker_access": "identity"})
    assert spec.azure.storage_account == "acct01"
    with pytest.raises(SpecError, match=r"unknown key 'azure.storage_acount'.*did you mean 'storage_account'"):
        _spec(azure={"storage_acount": "acct01"})
    with pytest.raises(SpecError, match=r"azure.storage_credential.*'password'"):
        _spec(azure={"storage_credential": "password"})
    with pytest.raises(SpecError, match=r"input: .*not a container name"):
        _spec(input="az://BAD/x.csv")


def test_a_sas_in_a_url_is_kept_out_of_the_spec_the_job_id_and_the_manifest(tmp_path: Path) -> None:
    url = "https://acct01.blob.core.windows.net/data/in.csv"
    spec = _spec(input=f"{url}?{SAS}", output=f"https://acct01.blob.core.windows.net/scores/o.csv?{SAS}")
    assert spec.input == url
    dumped = json.dumps(spec.model_dump(mode="json")) + repr(spec) + str(spec)
    assert "AbCdEfSecretSignature" not in dumped
    tokens = spec.sas_tokens
    assert set(tokens) == {"https://acct01.blob.core.windows.net/data/",
                           "https://acct01.blob.core.windows.net/scores/"}
    assert tokens["https://acct01.blob.core.windows.net/data/"].reveal() == SAS
    config = StoreConfig.from_spec(spec, env={})
    assert config.sas_for("https://acct01.blob.core.windows.net/scores/o.csv.work/x") is not None
    assert config.sas_for("https://acct01.blob.core.windows.net/other/x") is None


def test_a_malformed_sas_url_is_reported_without_its_token() -> None:
    with pytest.raises(SpecError) as info:
        _spec(input=f"https://example.com/data/in.csv?{SAS}")
    assert "AbCdEfSecretSignature" not in str(info.value)


# -- what workers get --------------------------------------------------------------------------
def test_workers_with_grants_use_nothing_else() -> None:
    env = {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=S3CR3T",
           "AZURE_STORAGE_KEY": "S3CR3T"}
    controller = StoreConfig.from_env(env, account="acct01")
    public = controller.public()
    assert "S3CR3T" not in json.dumps(public)
    secrets = controller.worker_secrets({"az://c/p": Secret("https://x/c/p?sig=1")})
    worker = StoreConfig.for_worker(public, secrets, env)
    assert worker.grants_only and worker.connection_string is None and worker.account_key is None
    assert worker.grant_for("az://c/p") == Secret("https://x/c/p?sig=1")
    assert worker.grant_for("az://c/other") is None
    identity = StoreConfig.for_worker(public, None, env)
    assert not identity.grants_only and identity.connection_string is not None


def test_store_config_is_hashable_so_stores_are_reused() -> None:
    a = StoreConfig.from_env({"AZURE_STORAGE_KEY": "S3CR3T"}, account="acct01")
    b = StoreConfig.from_env({"AZURE_STORAGE_KEY": "S3CR3T"}, account="acct01")
    assert a == b and hash(a) == hash(b)
    assert a != StoreConfig.from_env({"AZURE_STORAGE_KEY": "other"}, account="acct01")
    assert "S3CR3T" not in repr(a)


def test_worker_access_with_azure_ad_is_identity_unless_sas_is_asked_for() -> None:
    from serverless_score.controller.access import WorkerAccess

    config = StoreConfig(account="acct01", credential="default")  # DefaultAzureCredential: no I/O yet
    assert WorkerAccess.decide(_spec(), config).mode == "identity"
    assert WorkerAccess.decide(_spec(azure={"worker_access": "sas"}), config).mode == "sas"
    keyed = StoreConfig(account="acct01", account_key=Secret("a2V5"))
    assert WorkerAccess.decide(_spec(), keyed).mode == "sas"
    local = spec_from_dict({"name": "local", "runtime": "command", "scorer": "cat",
                            "input": "/tmp/in.jsonl", "output": "/tmp/out.txt"})
    assert WorkerAccess.decide(local, keyed).mode == "none"
