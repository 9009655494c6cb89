"""Shared fixtures of the end-to-end tests: a job directory, a tiny trained model, a job-file
writer and a way to run the ``serverless-score`` console script as a subprocess.

Heavy imports (scikit-learn, pandas) happen inside fixtures, so collecting the fast unit tests
does not pay for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, run_cli, start_cli
from polling import wait_for

# A suite started in the background by a non-interactive shell (`make test &`, some CI runners)
# inherits SIGINT ignored, and so would every CLI it starts: the Ctrl-C tests would then test the
# launcher. The CLIs start as from a terminal: SIGINT delivered (a handler here is reset to the
# default in a child at exec; an ignored signal is not).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
FEATURES = ["a", "b", "c"]
GROUP_ENV = b"SERVERLESS_SCORE_GROUP="


@pytest.fixture(autouse=True)
def _no_price_api_and_own_history(tmp_path_factory: pytest.TempPathFactory,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """No test asks the internet for prices (tests that want the Retail Prices API point
    SERVERLESS_SCORE_RETAIL_PRICES_URL at a local server), and none reads or writes the user's
    price cache or run history: both live in a folder of the test's own."""
    home = tmp_path_factory.mktemp("user-cache")
    monkeypatch.setenv("SERVERLESS_SCORE_RETAIL_PRICES_URL", "off")
    monkeypatch.setenv("SERVERLESS_SCORE_PRICE_CACHE", str(home / "prices"))
    monkeypatch.setenv("SERVERLESS_SCORE_HISTORY", str(home / "history"))


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_cli


# -- job files -------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_job(directory: Path, filename: str = "job.toml", **keys: Any) -> Path:
    """Write a job file; ``resources={...}`` becomes a [resources] table. Defaults keep jobs small
    and quick: ``max_parallel = 2``, ``retries = 0``, ``timeout = "60s"``."""
    keys = {"max_parallel": 2, "retries": 0, "timeout": "60s", **keys}
    tables = {k: keys.pop(k) for k in list(keys) if isinstance(keys[k], dict)}
    lines = [f"{key} = {_toml_value(value)}" for key, value in keys.items() if value is not None]
    for table, values in tables.items():
        lines.append(f"\n[{table}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    path = directory / filename
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    """An empty directory for a job's file, data and output."""
    path = tmp_path / "job"
    path.mkdir()
    return path


@pytest.fixture
def make_job() -> Callable[..., Path]:
    return write_job


# -- a tiny trained model --------------------------------------------------------------------
def feature_frame(rows: int, seed: int) -> Any:
    """Deterministic rows: an ``id`` column and the model's features."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"r{seed}-{i:04d}" for i in range(rows)],
        "a": rng.normal(0, 1, rows).round(3),
        "b": rng.integers(0, 10, rows),
        "c": rng.uniform(-2, 2, rows).round(2),
    })


@dataclass(frozen=True)
class TrainedModel:
    path: Path
    model: Any

    def proba(self, frame: Any) -> Any:
        return self.model.predict_proba(frame[FEATURES])


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """LogisticRegression on a few hundred deterministic rows, saved with joblib."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    train = feature_frame(400, seed=1)
    label = ((train.a + 0.2 * train.b - 0.5 * train.c) > 0.9).astype(int)
    model = LogisticRegression(max_iter=500).fit(train[FEATURES], label)
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    joblib.dump(model, path)
    return TrainedModel(path, joblib.load(path))


# -- processes of a job ----------------------------------------------------------------------
def job_processes(job_id: str) -> list[int]:
    """Pids of live processes (workers and their children) started for ``job_id``: every group
    name is ``<job_id>-<task>-<attempt>`` and is in the SERVERLESS_SCORE_GROUP variable."""
    from aci_emulator.procfs import live_pids_with_env

    prefix = GROUP_ENV + job_id.encode() + b"-"
    return live_pids_with_env(lambda environ: any(v.startswith(prefix) for v in environ))


def process_names(pids: list[int]) -> list[str]:
    """The command names (``/proc/PID/comm``) of the pids still alive."""
    names = []
    for pid in pids:
        with contextlib.suppress(OSError):
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
    return names


@pytest.fixture
def procs() -> Iterator[Any]:
    """Process helpers for signal and crash tests. Controllers started through ``procs.start`` and
    every process of a job registered with ``procs.watch(job_id)`` are SIGKILLed when the test
    ends, so a failing test leaves no sleeping workers behind."""
    started: list[subprocess.Popen[str]] = []
    job_ids: list[str] = []

    class _Procs:
        of_job = staticmethod(job_processes)
        wait_for = staticmethod(wait_for)

        @staticmethod
        def names_of_job(job_id: str) -> list[str]:
            return process_names(job_processes(job_id))

        @staticmethod
        def start(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen[str]:
            proc = start_cli(*args, cwd=cwd)
            started.append(proc)
            return proc

        @staticmethod
        def watch(job_id: str) -> None:
            job_ids.append(job_id)

    yield _Procs()
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    for job_id in job_ids:
        for pid in job_processes(job_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def make_frame() -> Callable[[int, int], Any]:
    """``make_frame(rows, seed)``: deterministic rows with an ``id`` and the model's features."""
    return feature_frame


# -- Azure Blob Storage: Azurite ---------------------------------------------------------------
@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Azurite 3.37 (implements Put Block From URL) on a free port with a fresh data directory;
    installed first if missing (scripts/ensure-azurite.sh), stopped after the session."""
    from azurite import running

    with running("3.37", tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite_legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Azurite 3.35: answers 501 to Put Block From URL, so the merge must fall back."""
    from azurite import running

    with running("3.35", tmp_path_factory.mktemp("azurite-legacy")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Azurite 3.37 over https (a throw-away CA; ``tls_env()`` trusts it), where the SDK sends
    Azure AD tokens: the blob tests of DefaultAzureCredential need it."""
    from azurite import running

    with running("3.37", tmp_path_factory.mktemp("azurite-tls"), tls=True) as server:
        yield server


@pytest.fixture
def blob_env(azurite: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """This process and the CLI subprocesses it starts reach Azurite through the connection
    string, with no other Azure credential around, and a fresh download cache."""
    for name in ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    env = {**azurite.env(), "SERVERLESS_SCORE_CACHE": str(tmp_path / "cache")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def container(azurite: Any, request: pytest.FixtureRequest) -> str:
    """A new, empty container for one test; its name says which test made it."""
    import re
    import uuid

    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:8]}"
    azurite.service().create_container(name)
    return name


# -- Azure Container Instances: the local ARM emulator (tests/aci_emulator) -------------------
@pytest.fixture
def aci_emulator(tmp_path: Path) -> Iterator[Any]:
    """A fresh local ACI/ARM endpoint over HTTPS (its own CA) with an App Service style
    managed-identity endpoint; every group's processes are killed when the test ends.
    ``aci_emulator.client()`` is a configured SDK client, ``aci_emulator.env()`` the variables a
    subprocess needs (see tests/aci_emulator/README.md)."""
    from aci_emulator import AciEmulator

    with AciEmulator(work_dir=tmp_path / "aci-emulator") as emu:
        yield emu
    leaked = emu.leftovers()  # stop() deleted every group: nothing of it may still run
    assert not leaked, f"the ACI emulator left processes behind: {leaked}"


# -- Docker: an engine and the scoring images --------------------------------------------------
@pytest.fixture
def aci_env(aci_emulator: Any, blob_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The CLI reaches Azurite (connection string) and the emulator (ARM endpoint, managed
    identity endpoint, CA bundle, subscription / resource group / location)."""
    for name in aci_emulator.CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    env = {**blob_env, **aci_emulator.env()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A Docker engine (scripts/ensure-docker.sh starts one when none answers) with the base
    image local/bookworm; DOCKER_HOST points at it for the session and its subprocesses."""
    from dockerhelp import ensure_engine

    before = os.environ.get("DOCKER_HOST")
    # the engine the image builds started (one ensure-docker.sh at a time), else a new start
    engine = _IMAGE_BUILDS["engine"].result() if _IMAGE_BUILDS else ensure_engine()
    os.environ["DOCKER_HOST"] = engine.host
    yield engine
    engine.client.close()
    if before is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = before


# The scoring images' builds, started as soon as the session knows a test will need them (a
# fresh machine spends minutes building them): they run while the tests before the first
# docker test do, instead of holding that test's setup.
_IMAGE_BUILDS: dict[str, Any] = {}


def _start_image_builds() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from dockerhelp import build_image, engine_copy, ensure_engine

    pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="image-build")
    engine = _IMAGE_BUILDS["engine"] = pool.submit(ensure_engine)

    def build(runtime: str, **kwargs: Any) -> Any:
        # One client per thread: a DockerClient's HTTP session is not meant to be shared.
        return build_image(engine_copy(engine.result()), runtime, **kwargs)

    _IMAGE_BUILDS["python"] = pool.submit(build, "python")
    _IMAGE_BUILDS["r"] = pool.submit(build, "r", r_packages=("randomForest",))
    pool.shutdown(wait=False)


def pytest_collection_finish(session: pytest.Session) -> None:
    if any("scoring_images" in getattr(item, "fixturenames", ()) for item in session.items):
        _start_image_builds()


@pytest.fixture(scope="session")
def scoring_images(docker_engine: Any) -> dict[str, Any]:
    """The Python image and the R image with randomForest (the forest example), FROM
    local/bookworm under their built-in tags, built side by side from the start of the session
    (each build waits on apt and pip as much as on the CPU); reused when built from the same
    inputs."""
    if not _IMAGE_BUILDS:  # e.g. a test that asks for the fixture at run time
        _start_image_builds()
    return {"python": _IMAGE_BUILDS["python"].result(), "r": _IMAGE_BUILDS["r"].result()}


@pytest.fixture(scope="session")
def python_image(scoring_images: dict[str, Any]) -> Any:
    """The Python scoring image (the builder's ``Built``)."""
    return scoring_images["python"]


@pytest.fixture(scope="session")
def r_image(scoring_images: dict[str, Any]) -> Any:
    """The R scoring image with randomForest (the builder's ``Built``)."""
    return scoring_images["r"]
