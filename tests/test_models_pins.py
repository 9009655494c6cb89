"""Models pinned with the real Python ``pins`` (and ``vetiver``) on a folder board and on an
Azurite board: ``pins://BOARD/NAME`` scores the latest version, ``@VERSION`` an older one, the
manifest records the pin's version and hash, a new version is another job; a vetiver model's
prototype and required packages are checked before anything is created; a board without the
pin is a clear error; on ``aci`` a folder board's model is copied into the job's blob folder."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from modelrows import FEATURES, frame, training_set

pytestmark = [pytest.mark.slow]
pins = pytest.importorskip("pins")  # the dev extra installs it
IMAGE = "myreg.azurecr.io/serverless-score-python:test"  # the ACI emulator runs the runner for it


def _models() -> tuple[Any, Any]:
    from sklearn.linear_model import LogisticRegression

    features, label = training_set()
    return (LogisticRegression(max_iter=500).fit(features, label),
            LogisticRegression(max_iter=500, C=0.01).fit(features, label))


@dataclass(frozen=True)
class Board:
    path: Path
    versions: list[str]  # of pin "churn", oldest first
    models: tuple[Any, Any]
    rows: Any
    input: Path


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Board:
    import vetiver

    root = tmp_path_factory.mktemp("pins")
    folder = pins.board_folder(str(root / "board"), allow_pickle_read=True)
    old, new = _models()
    folder.pin_write(old, "churn", type="joblib")
    time.sleep(1.1)  # pins' versions are named by the second they were written in
    folder.pin_write(new, "churn", type="joblib")
    versions = list(folder.pin_versions("churn")["version"])
    vetiver.vetiver_pin_write(folder, vetiver.VetiverModel(new, "vchurn",
                                                           prototype_data=frame(3, 2)[FEATURES]))
    rows = frame(150, seed=7)
    rows.to_csv(root / "input.csv", index=False)
    return Board(root / "board", versions, (old, new), rows, root / "input.csv")


def _scores(path: Path) -> Any:
    import pandas as pd

    return pd.read_csv(path).sort_values("id").reset_index(drop=True)


def _ok(result: Any) -> dict[str, Any]:
    assert result.code == 0, result
    assert result.json is not None, result
    return result.json


def _job(job_dir: Path, make_job: Any, board: Board, model: str, **keys: Any) -> Path:
    keys = {"name": "pinscore", "model": model, "input": board.input,
            "output": job_dir / "out" / "scores.csv", "id_columns": ["id"], "chunks": 1, **keys}
    return make_job(job_dir, **keys)


def test_the_latest_version_of_a_folder_pin_and_an_older_one(job_dir, make_job, board, cli) -> None:
    import numpy as np

    assert len(board.versions) == 2
    job = _job(job_dir, make_job, board, f"pins://{board.path}/churn")
    env = {"SERVERLESS_SCORE_CACHE": str(job_dir / "cache")}
    out = _ok(cli("run", job, "--json", "-q", env=env))
    expected = board.models[1].predict_proba(board.rows[FEATURES])
    scores = _scores(job_dir / "out" / "scores.csv")
    assert np.allclose(scores[["proba_0", "proba_1"]].to_numpy(), expected, rtol=0, atol=1e-12)
    meta = pins.board_folder(str(board.path)).pin_meta("churn", board.versions[-1])
    source = out["model"]["source"]
    assert (source["kind"], source["version"], source["pin_hash"]) == (
        "pins", board.versions[-1], meta.pin_hash)
    file = board.path / "churn" / board.versions[-1] / "churn.joblib"
    assert out["model"]["uri"] == str(file)
    assert out["model"]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    manifest = json.loads((job_dir / "out" / "scores.csv.manifest.json").read_text())
    assert manifest["spec"]["model"] == f"pins://{board.path}/churn"
    assert manifest["model"]["source"]["version"] == board.versions[-1]

    # The older version, by name: other scores, another job id, recorded as such.
    older = _ok(cli("run", job, "--json", "-q", "--set", "overwrite=true", "--set",
                    f"model=pins://{board.path}/churn@{board.versions[0]}", env=env))
    assert older["job_id"] != out["job_id"]
    assert older["model"]["source"]["version"] == board.versions[0]
    scores = _scores(job_dir / "out" / "scores.csv")
    assert np.allclose(scores[["proba_0", "proba_1"]].to_numpy(),
                       board.models[0].predict_proba(board.rows[FEATURES]), rtol=0, atol=1e-12)


def test_a_new_pin_version_is_another_job(job_dir, make_job, board, cli, tmp_path) -> None:
    import shutil

    own = tmp_path / "board"  # a board of its own: a new version here changes no other test
    shutil.copytree(board.path, own)
    job = _job(job_dir, make_job, board, "pins://board/churn")
    (job_dir / "board").symlink_to(own)  # a folder board relative to the job file
    first = _ok(cli("run", job, "--json", "-q"))
    assert first["model"]["source"]["board"] == str(own.resolve())  # resolved from the job file
    assert _ok(cli("run", job, "--json", "-q"))["status"] == "up-to-date"
    pins.board_folder(str(own), allow_pickle_read=True).pin_write(
        board.models[0], "churn", type="joblib", title="retrained")
    newest = pins.board_folder(str(own)).pin_versions("churn")["version"].iloc[-1]
    if newest == first["model"]["source"]["version"]:  # same second and same bytes as before
        pytest.skip("pins made no new version")
    again = cli("run", job, "--json", "-q")
    assert again.code == 2, again
    assert f"now resolves to version {newest}" in again.flat_stderr, again


@pytest.mark.parametrize(("model", "message"), [
    ("pins://{board}/nosuch", "the board {board!r} has no pin named 'nosuch'"),
    ("pins://{board}/churn@20000101T000000Z-00000", "pin 'churn' on {board!r} has no version "
                                                    "'20000101T000000Z-00000'"),
])
def test_a_board_without_the_pin_or_version_is_a_plan_error(job_dir, make_job, board, model,
                                                          message, cli) -> None:
    job = _job(job_dir, make_job, board, model.format(board=board.path))
    result = cli("run", job, "--json", "-q")
    assert result.code == 2, result
    assert message.format(board=str(board.path)) in result.flat_stderr, result
    assert not (job_dir / "out").exists()


def test_a_vetiver_pin_is_checked_against_the_input_and_the_packages(job_dir, make_job, board,
                                                                    cli) -> None:
    import numpy as np

    job = _job(job_dir, make_job, board, f"pins://{board.path}/vchurn")
    out = _ok(cli("run", job, "--json", "-q"))
    assert out["model"]["source"]["vetiver"] is True
    scores = _scores(job_dir / "out" / "scores.csv")
    assert np.allclose(scores[["proba_0", "proba_1"]].to_numpy(),
                       board.models[1].predict_proba(board.rows[FEATURES]), rtol=0, atol=1e-12)

    # An input without one of the prototype's columns: refused at plan, nothing created.
    narrow = job_dir / "narrow.csv"
    board.rows.drop(columns=["x2"]).to_csv(narrow, index=False)
    refused = cli("run", job, "--json", "-q", "--set", f"input={narrow}",
                  "--set", f"output={job_dir / 'narrow' / 'scores.csv'}")
    assert refused.code == 2, refused
    assert "lacks the column(s) 'x2' that the vetiver model" in refused.flat_stderr, refused
    assert not (job_dir / "narrow").exists()


def test_a_vetiver_pin_needing_a_package_that_is_not_there(job_dir, make_job, board, cli,
                                                           tmp_path) -> None:
    import shutil

    import yaml

    own = tmp_path / "board"
    shutil.copytree(board.path, own)
    version = next((own / "vchurn").iterdir())
    meta = yaml.safe_load((version / "data.txt").read_text())
    meta["user"]["vetiver_meta"]["required_pkgs"] = ["scikit-learn", "no-such-package-xyz"]
    (version / "data.txt").write_text(yaml.safe_dump(meta))
    job = _job(job_dir, make_job, board, f"pins://{own}/vchurn")
    local = cli("run", job, "--json", "-q")
    assert local.code == 2, local
    assert ("needs the Python package(s) no-such-package-xyz, which this machine (backend = "
            "\"local\") does not have; nothing was created") in local.flat_stderr, local
    on_aci = cli("plan", job, "--set", "backend=aci")
    assert on_aci.code == 2, on_aci
    assert "no-such-package-xyz, which the built-in scoring image (backend = 'aci')" in on_aci.flat_stderr
    assert not (job_dir / "out").exists()


# -- an Azure Blob board (Azurite), and aci -------------------------------------------------
@pytest.fixture
def blob_board(board: Board, blob_env: dict[str, str], azurite: Any, container: str) -> Iterator[str]:
    """The same two models pinned by the real pins on an Azurite board (through adlfs, as
    ``board_azure`` does, with Azurite's connection string)."""
    pytest.importorskip("adlfs")
    remote = pins.board("abfs", path=f"{container}/boards", versioned=True, cache=None,
                        allow_pickle_read=True,
                        storage_options={"connection_string": azurite.connection_string})
    old, new = board.models
    remote.pin_write(old, "churn", type="joblib")
    time.sleep(1.1)
    remote.pin_write(new, "churn", type="joblib")
    yield f"az://{container}/boards"


def test_an_azure_blob_board(job_dir, make_job, board, blob_board, azurite, container, cli) -> None:
    import numpy as np

    job = _job(job_dir, make_job, board, f"pins://{blob_board}/churn")
    out = _ok(cli("run", job, "--json", "-q"))
    assert out["model"]["uri"].startswith(f"az://{container}/boards/churn/")
    assert out["model"]["source"]["board"] == blob_board
    scores = _scores(job_dir / "out" / "scores.csv")
    assert np.allclose(scores[["proba_0", "proba_1"]].to_numpy(),
                       board.models[1].predict_proba(board.rows[FEATURES]), rtol=0, atol=1e-12)


@pytest.mark.aci
def test_on_aci_a_folder_pin_is_copied_to_the_jobs_blob_folder(job_dir, make_job, board, aci_env,
                                                               azurite, container, cli) -> None:
    import io

    import numpy as np
    import pandas as pd

    service = azurite.service()
    service.get_blob_client(container, "in/input.csv").upload_blob(board.input.read_bytes())
    job = _job(job_dir, make_job, board, f"pins://{board.path}/churn", backend="aci", image=IMAGE,
               input=f"az://{container}/in/input.csv", output=f"az://{container}/out/scores.csv")
    out = _ok(cli("run", job, "--json", "-q", timeout=240))
    file = board.path / "churn" / board.versions[-1] / "churn.joblib"
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    assert out["model"]["uri"] == (f"az://{container}/out/scores.csv.work/model/{sha[:16]}/"
                                   "churn.joblib")
    assert out["model"]["sha256"] == sha
    copied = service.get_blob_client(container, f"out/scores.csv.work/model/{sha[:16]}/churn.joblib")
    assert copied.download_blob().readall() == file.read_bytes()
    assert out["model"]["source"]["uri"] == f"pins://{board.path}/churn"
    data = service.get_blob_client(container, "out/scores.csv").download_blob().readall()
    scores = pd.read_csv(io.BytesIO(data)).sort_values("id").reset_index(drop=True)
    assert np.allclose(scores[["proba_0", "proba_1"]].to_numpy(),
                       board.models[1].predict_proba(board.rows[FEATURES]), rtol=0, atol=1e-12)
