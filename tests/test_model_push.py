"""``models push``: content-addressed, never overwriting, same URI for the same bytes (on a local
folder here; on Azurite in test_blob_e2e.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from serverless_score.errors import ScoreError
from serverless_score.model_push import push_model


def test_push_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    model = tmp_path / "churn.joblib"
    model.write_bytes(b"weights v1")
    first = push_model(model, str(tmp_path / "registry"))
    sha = hashlib.sha256(b"weights v1").hexdigest()
    assert first.created and first.sha256 == sha
    assert first.uri == str(tmp_path / "registry" / sha[:16] / "churn.joblib")
    assert Path(first.uri).read_bytes() == b"weights v1"
    again = push_model(model, str(tmp_path / "registry"))
    assert again.uri == first.uri and not again.created
    model.write_bytes(b"weights v2")
    second = push_model(model, str(tmp_path / "registry"))
    assert second.uri != first.uri and Path(first.uri).read_bytes() == b"weights v1"


def test_push_never_replaces_other_bytes_at_its_address(tmp_path: Path) -> None:
    model = tmp_path / "m.pkl"
    model.write_bytes(b"real")
    target = Path(push_model(model, str(tmp_path / "reg")).uri)
    target.chmod(0o644)
    target.write_bytes(b"hand-edited")
    with pytest.raises(ScoreError, match="already exists with other content"):
        push_model(model, str(tmp_path / "reg"))
    assert target.read_bytes() == b"hand-edited"


def test_push_cli_prints_only_the_uri_on_stdout(tmp_path: Path, cli) -> None:
    model = tmp_path / "m.joblib"
    model.write_bytes(b"abc")
    result = cli("models", "push", model, tmp_path / "reg")
    assert result.code == 0, result
    assert result.stdout.strip() == str(tmp_path / "reg" / hashlib.sha256(b"abc").hexdigest()[:16] / "m.joblib")
    missing = cli("models", "push", tmp_path / "nope.joblib", tmp_path / "reg")
    assert missing.code == 2 and "is not a file" in missing.stderr


def test_exact_stores_at_the_uri_and_replaces_only_when_asked(tmp_path: Path) -> None:
    first, second = tmp_path / "a.rds", tmp_path / "b.rds"
    first.write_bytes(b"model one")
    second.write_bytes(b"model two")
    target = tmp_path / "models" / "churn.rds"
    pushed = push_model(first, str(target), exact=True)
    assert pushed.uri == str(target) and pushed.created and target.read_bytes() == b"model one"
    assert not push_model(first, str(target), exact=True).created  # same bytes: a no-op
    with pytest.raises(ScoreError, match="already exists with other content") as err:
        push_model(second, str(target), exact=True)
    assert "--overwrite" in (err.value.hint or "")
    assert target.read_bytes() == b"model one"
    replaced = push_model(second, str(target), exact=True, overwrite=True)
    assert replaced.created and target.read_bytes() == b"model two"
    assert replaced.sha256 != pushed.sha256
