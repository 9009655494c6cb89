"""No Azure credential at all: a blob job, ``plan`` and ``models push`` end within seconds with one
error that names the blob and says how to sign in, without azure-identity's WARNING blocks, and
leave nothing behind. Azurite serves https here (the SDK sends tokens over https only); the
managed-identity endpoint is a closed local port, so no test waits on 169.254.169.254."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from azurite import free_port

from serverless_score.storage.azure_auth import FailFastCredential

pytestmark = [pytest.mark.azurite]

# Everything DefaultAzureCredential (or our own configuration) could find a credential in.
CREDENTIAL_VARS = (
    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_ACCOUNT", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME",
    "AZURE_PASSWORD", "AZURE_TOKEN_CREDENTIALS", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET",
    "SERVERLESS_SCORE_WORKER_IDENTITY",
)
STORAGE_SCOPE = "https://storage.azure.com/.default"
NO_CREDENTIAL = "no Azure credential could be obtained"
# What azure-identity's WARNING block says (the CLI prints it with --debug only).
IDENTITY_WARNING = "DefaultAzureCredential failed to retrieve a token"
OLD_TIME = 55  # seconds the same failure took before (blob retries x the credential chain)
BOUND = 20  # generous: a behaviour check, not a benchmark


@pytest.fixture
def no_credential(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """This process and the CLI it starts have no Azure credential: no variables, an empty home
    (no ``az login``, no token caches) and a managed-identity endpoint that refuses connections."""
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "AZURE_CONFIG_DIR": str(home / ".azure"),
           # IMDS at a closed port: the same ManagedIdentityCredential path as a laptop, failing
           # at once instead of after a real network's timeouts.
           "AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://127.0.0.1:{free_port()}",
           "SERVERLESS_SCORE_CACHE": str(tmp_path / "cache")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def tls_blobs(azurite_tls: Any, no_credential: dict[str, str], monkeypatch: pytest.MonkeyPatch,
              request: pytest.FixtureRequest) -> Any:
    """A fresh container in the https Azurite, with two jsonl inputs, and its base URL."""
    import uuid

    for name, value in azurite_tls.tls_env().items():
        monkeypatch.setenv(name, value)
    name = f"nocred-{uuid.uuid4().hex[:12]}"
    container = azurite_tls.service().get_container_client(name)
    container.create_container()
    for index in range(2):
        container.upload_blob(f"data/part-{index}.jsonl", b'{"id": 1}\n{"id": 2}\n')

    class Blobs:
        base = f"{azurite_tls.endpoint}/{name}"

        @staticmethod
        def names() -> list[str]:
            return sorted(b.name for b in container.list_blobs())

    return Blobs()


INPUTS = ["data/part-0.jsonl", "data/part-1.jsonl"]


def _assert_one_clear_error(result: Any, uri: str, elapsed: float) -> None:
    assert result.code == 2, result  # an AccessDeniedError, exit code of input errors
    text = result.flat_stderr
    assert uri in text and NO_CREDENTIAL in text, result
    assert "az login" in text and "AZURE_STORAGE_CONNECTION_STRING" in text, result
    assert text.count("error:") == 1, result
    for noise in ("WARNING", IDENTITY_WARNING, "Attempted credentials", "Traceback"):
        assert noise not in result.stderr, result
    assert elapsed < BOUND < OLD_TIME, f"took {elapsed:.1f}s\n{result!r}"


def _timed(cli: Any, *args: Any) -> tuple[Any, float]:
    start = time.monotonic()
    result = cli(*args)
    return result, time.monotonic() - start


def test_a_blob_job_without_credential_fails_fast_and_writes_nothing(
        tls_blobs, job_dir, make_job, cli) -> None:
    job = make_job(job_dir, name="nocred", runtime="command", scorer="cat", format="jsonl",
                   input=f"{tls_blobs.base}/data/*.jsonl", output=f"{tls_blobs.base}/out/o.txt")
    result, elapsed = _timed(cli, "run", job, "-q")
    _assert_one_clear_error(result, f"{tls_blobs.base}/data/", elapsed)
    assert "listing blobs" in result.flat_stderr
    assert tls_blobs.names() == INPUTS
    assert sorted(p.name for p in job_dir.iterdir()) == ["job.toml"]


def test_a_local_job_writing_to_a_blob_without_credential_fails_before_any_task(
        tls_blobs, job_dir, make_job, cli) -> None:
    (job_dir / "data").mkdir()
    (job_dir / "data" / "a.jsonl").write_text('{"id": 1}\n')
    output = f"{tls_blobs.base}/out/o.txt"
    job = make_job(job_dir, name="nocred-out", runtime="command", scorer="cat", format="jsonl",
                   input="data/*.jsonl", output=output)
    result, elapsed = _timed(cli, "run", job, "--json", "-q")
    _assert_one_clear_error(result, output, elapsed)
    assert result.json is not None and result.json["status"] == "failed"
    assert result.json["error"]["type"] == "AccessDeniedError"
    assert tls_blobs.names() == INPUTS
    assert sorted(p.name for p in job_dir.iterdir()) == ["data", "job.toml"]


def test_plan_and_models_push_without_credential_fail_fast(
        tls_blobs, job_dir, make_job, cli) -> None:
    job = make_job(job_dir, name="nocred", runtime="command", scorer="cat", format="jsonl",
                   input=f"{tls_blobs.base}/data/*.jsonl", output=f"{tls_blobs.base}/out/o.txt")
    planned, elapsed = _timed(cli, "plan", job)
    _assert_one_clear_error(planned, f"{tls_blobs.base}/data/", elapsed)
    model = job_dir / "model.bin"
    model.write_bytes(b"weights")
    pushed, elapsed = _timed(cli, "models", "push", model, f"{tls_blobs.base}/models")
    _assert_one_clear_error(pushed, f"{tls_blobs.base}/models/", elapsed)
    assert pushed.stdout.strip() == ""  # no URI printed: nothing was pushed
    assert tls_blobs.names() == INPUTS


def test_debug_shows_what_azure_identity_tried(tls_blobs, job_dir, make_job, cli) -> None:
    job = make_job(job_dir, name="nocred", runtime="command", scorer="cat", format="jsonl",
                   input=f"{tls_blobs.base}/data/*.jsonl", output=f"{tls_blobs.base}/out/o.txt")
    result = cli("plan", job, "--debug")
    assert result.code == 2 and NO_CREDENTIAL in result.flat_stderr, result
    # once: the blob client does not retry it, and the process remembers the failure
    assert result.stderr.count(IDENTITY_WARNING) == 1, result
    assert "ManagedIdentityCredential" in result.stderr


def test_a_plain_http_emulator_without_key_is_an_error_not_a_traceback(
        azurite, no_credential, job_dir, make_job, cli) -> None:
    base = f"{azurite.endpoint}/never-created"
    job = make_job(job_dir, name="http", runtime="command", scorer="cat", format="jsonl",
                   input=f"{base}/data/*.jsonl", output=f"{base}/out/o.txt")
    result = cli("run", job, "-q")
    assert result.code == 2, result
    assert f"{base}/data/" in result.flat_stderr and "only sent over https" in result.flat_stderr
    assert "AZURE_STORAGE_CONNECTION_STRING" in result.flat_stderr
    assert "Traceback" not in result.stderr and "ValueError" not in result.stderr


# -- the wrapper, over a real DefaultAzureCredential -------------------------------------------
def test_fail_fast_credential_pays_the_chain_once(no_credential, caplog) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    credential = FailFastCredential(DefaultAzureCredential(exclude_interactive_browser_credential=True))
    caplog.set_level(logging.WARNING, logger="azure.identity")
    start = time.monotonic()
    with pytest.raises(ClientAuthenticationError) as first:
        credential.get_token_info(STORAGE_SCOPE)
    first_took = time.monotonic() - start
    assert "ManagedIdentityCredential" in str(first.value)  # it did try the (closed) endpoint

    start = time.monotonic()
    with pytest.raises(ClientAuthenticationError) as second:
        credential.get_token(STORAGE_SCOPE)
    assert time.monotonic() - start < 0.05 < first_took
    assert str(second.value) == str(first.value) and second.value.__cause__ is first.value

    # one pass through the chain for both: one WARNING, where each request used to log its own
    assert sum(IDENTITY_WARNING in r.getMessage() for r in caplog.records) == 1


def test_threads_starting_together_wait_for_one_pass(no_credential, caplog) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    credential = FailFastCredential(DefaultAzureCredential(exclude_interactive_browser_credential=True))
    caplog.set_level(logging.WARNING, logger="azure.identity")
    failures: list[BaseException] = []

    def ask() -> None:
        try:
            credential.get_token(STORAGE_SCOPE)
        except ClientAuthenticationError as err:
            failures.append(err)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(failures) == 3
    # the first holds the lock through its pass; the others get its failure, not a pass each
    assert sum(IDENTITY_WARNING in r.getMessage() for r in caplog.records) == 1


class _Flaky:
    """A stand-in inner credential (the wrapper is what is tested): answers from a script."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_failures_after_a_token_are_not_remembered() -> None:
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError

    token = AccessToken("t", int(time.time()) + 3600)
    inner = _Flaky(token, ClientAuthenticationError("blip"), token)
    credential = FailFastCredential(inner)
    assert credential.get_token(STORAGE_SCOPE) is token
    with pytest.raises(ClientAuthenticationError):
        credential.get_token(STORAGE_SCOPE)
    assert credential.get_token(STORAGE_SCOPE) is token and inner.calls == 3


def test_a_failure_is_remembered_per_scope() -> None:
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError

    token = AccessToken("t", int(time.time()) + 3600)
    inner = _Flaky(ClientAuthenticationError("no storage consent"), token)
    credential = FailFastCredential(inner)
    for _ in range(2):
        with pytest.raises(ClientAuthenticationError, match="no storage consent"):
            credential.get_token(STORAGE_SCOPE)
    assert inner.calls == 1
    assert credential.get_token("https://management.azure.com/.default") is token
