"""Pure parts of the images and of the docker backend, no engine: container states row by row,
bind mounts of a job, what Python a base image runs, the wheel lock, build requests, image tags,
and the ACR token exchange against a real local HTTP server."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from serverless_score.backends.base import Phase
from serverless_score.backends.docker import container_phase, container_times, engine_time
from serverless_score.backends.docker_mounts import Bind, job_binds, merge_binds
from serverless_score.errors import ScoreError
from serverless_score.images.acr import ACR_USER, exchange_token
from serverless_score.images.build import _split_tag
from serverless_score.images.context import BuildRequest, context_digest, requirements, stage
from serverless_score.images.wheels import Target, lock_lines, parse_probe
from serverless_score.secrets import Secret

ROOT = Path(__file__).resolve().parents[1]


# -- container states ---------------------------------------------------------------------------
@pytest.mark.parametrize(("state", "phase", "code", "detail"), [
    ({"Status": "created"}, Phase.STARTING, None, ""),
    ({"Status": "running"}, Phase.RUNNING, None, ""),
    ({"Status": "restarting"}, Phase.RUNNING, None, ""),
    ({"Status": "exited", "ExitCode": 0}, Phase.SUCCEEDED, 0, ""),
    ({"Status": "exited", "ExitCode": 1}, Phase.FAILED, 1, "exited with code 1"),
    ({"Status": "exited", "ExitCode": 137, "OOMKilled": True}, Phase.FAILED, 137,
     "more memory than its limit (0.5 GB); raise [resources] memory_gb"),
    ({"Status": "exited", "ExitCode": 137}, Phase.FAILED, 137, "killed by signal 9"),
    ({"Status": "exited", "ExitCode": 143}, Phase.FAILED, 143, "killed by signal 15"),
    ({"Status": "exited", "ExitCode": 127, "Error": "exec: \"python\": not found"}, Phase.FAILED,
     127, "could not run: exec: \"python\": not found"),
    ({"Status": "dead", "ExitCode": 0}, Phase.FAILED, 0, "dead"),
])
def test_container_phase(state: dict[str, Any], phase: Phase, code: int | None, detail: str) -> None:
    got_phase, got_code, got_detail = container_phase(state, 0.5)
    assert (got_phase, got_code) == (phase, code)
    assert detail in got_detail if detail else got_detail == ""


def test_container_times_are_epoch_seconds_and_the_zero_time_is_none() -> None:
    started, finished = container_times({"StartedAt": "2026-11-29T10:00:00.123456789Z",
                                         "FinishedAt": "2026-11-29T10:00:05.5Z"})
    assert started is not None and finished is not None
    assert abs((finished - started) - 5.376543) < 1e-6
    assert container_times({"StartedAt": "0001-01-01T00:00:00Z"}) == (None, None)
    assert engine_time("2026-11-29T10:00:00.5Z") == pytest.approx(started + 0.376544, abs=1e-6)
    assert engine_time(None) is None and engine_time("yesterday") is None
    # an engine that gives its offset instead of Z (the same instant)
    assert engine_time("2026-11-29T12:00:00.123456789+02:00") == pytest.approx(started, abs=1e-6)


# -- bind mounts --------------------------------------------------------------------------------
def test_a_local_job_mounts_model_input_and_scorer_read_only_and_only_the_work_dir_writable() -> None:
    binds = job_binds(model="/jobs/a/model/m.rds", input="/data/in/*.csv",
                      output="/jobs/a/out/scores.csv", scorer="/jobs/a/score.R", runtime="r")
    assert binds == [Bind("/data/in", True), Bind("/jobs/a", True),
                     Bind("/jobs/a/out/scores.csv.work", False)]  # the model is under /jobs/a


def test_blob_uris_need_no_mount_and_a_command_scorer_is_not_a_path() -> None:
    assert job_binds(model="az://c/m.joblib", input="https://a.blob.core.windows.net/c/x.csv",
                     output="az://c/out.csv", scorer="predict", runtime="python") == []
    binds = job_binds(model=None, input="file:///d/x.csv", output="/o/s.txt",
                      scorer="python3 /opt/s.py", runtime="command")
    assert binds == [Bind("/d/x.csv", True), Bind("/o/s.txt.work", False)]


def test_merge_keeps_a_writable_mount_inside_a_read_only_one_and_drops_repeats() -> None:
    merged = merge_binds([Bind("/a", True), Bind("/a/b", True), Bind("/a/w", False),
                          Bind("/a/w/x", True), Bind("/a", True), Bind("/ab", True)])
    assert merged == [Bind("/a", True), Bind("/a/w", False), Bind("/ab", True)]


# -- what Python a base runs --------------------------------------------------------------------
def test_probe_of_a_base_without_python_uses_its_distributions_python() -> None:
    target = parse_probe("local/bookworm", "codename=bookworm\nid=debian\nglibc=2.36\nmachine=x86_64\n")
    assert target == Target("3.11", "2.36", "x86_64")
    assert target.abi == "cp311"
    assert target.platforms[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_28_x86_64" in target.platforms and "manylinux2014_x86_64" in target.platforms
    assert "manylinux_2_37_x86_64" not in target.platforms


def test_probe_prefers_the_python_in_the_image() -> None:
    out = "python=3.12\ncodename=bookworm\nid=debian\nglibc=2.36\nmachine=aarch64\n"
    assert parse_probe("python:3.12-slim", out) == Target("3.12", "2.36", "aarch64")


@pytest.mark.parametrize(("output", "message"), [
    ("codename=jammy\nid=ubuntu\nglibc=2.35\nmachine=x86_64\n", "Python 3.10; the runner needs Python 3.11"),
    ("codename=\nid=alpine\nglibc=\nmachine=x86_64\n", "cannot tell which Python"),
    ("python=3.12\ncodename=\nid=alpine\nglibc=\nmachine=x86_64\n", "not a glibc-based Linux"),
])
def test_probe_refuses_bases_the_runner_cannot_use(output: str, message: str) -> None:
    with pytest.raises(ScoreError) as err:
        parse_probe("some/base", output)
    assert message in err.value.message and "some/base" in err.value.message


def test_the_lock_pins_every_wheel_but_the_build_tools() -> None:
    names = ["numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", "azure_core-1.41.0-py3-none-any.whl",
             "setuptools-80.1.0-py3-none-any.whl", "wheel-0.45.1-py3-none-any.whl", "notes.txt"]
    assert lock_lines(Path(n) for n in names) == ["azure-core==1.41.0", "numpy==2.4.6"]


# -- build requests and contexts ----------------------------------------------------------------
def test_image_requirements_are_the_packages_and_its_extras_without_the_docker_sdk() -> None:
    python = requirements(ROOT, BuildRequest(runtime="python", tag="t", base="b").extras)
    r = requirements(ROOT, BuildRequest(runtime="r", tag="t", base="b").extras)
    names = {item.split(">")[0].split("=")[0] for item in python}
    assert {"pyarrow", "pandas", "azure-storage-blob", "azure-mgmt-containerinstance",
            "scikit-learn"} <= names
    assert "docker" not in names
    assert not any(item.startswith("scikit-learn") for item in r)
    assert any(item.startswith("azure-mgmt-containerinstance") for item in r)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"runtime": "julia"}, "--runtime: expected python or r"),
    ({"runtime": "python", "r_packages": ("glmnet",)}, "only for --runtime r"),
    ({"runtime": "r", "r_packages": ("rm -rf",)}, "not an R package name"),
    ({"runtime": "r", "r_install": "conda"}, "--r-install"),
    ({"runtime": "r", "renv_lock": Path("/nonexistent/renv.lock")}, "is not a file"),
])
def test_bad_build_requests_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ScoreError) as err:
        BuildRequest(**{"tag": "t:1", "base": "b", **kwargs})
    assert message in err.value.message


def test_the_context_digest_follows_what_decides_the_image(tmp_path: Path) -> None:
    def digest(request: BuildRequest, name: str, **kw: Any) -> str:
        ctx = tmp_path / name
        ctx.mkdir()
        stage(request, ROOT, ctx)
        assert (ctx / "src" / "serverless_score" / "runner" / "__main__.py").is_file()
        assert not list(ctx.rglob("__pycache__"))
        return context_digest(ctx, request, **{"base_id": "sha256:1", "pins": ["a==1"], **kw})

    plain = BuildRequest(runtime="r", tag="t:1", base="b", r_packages=("glmnet",))
    first = digest(plain, "a")
    assert digest(plain, "b") == first  # same inputs, same digest
    assert digest(BuildRequest(runtime="r", tag="t:2", base="b", r_packages=("glmnet",)), "c") == first
    assert digest(BuildRequest(runtime="r", tag="t:1", base="b", r_packages=("ranger",)), "d") != first
    assert digest(plain, "e", base_id="sha256:2") != first
    assert digest(plain, "f", pins=["a==2"]) != first


@pytest.mark.parametrize(("tag", "expected"), [
    ("myacr.azurecr.io/serverless-score-r:0.1.0", ("myacr.azurecr.io/serverless-score-r", "myacr.azurecr.io", "0.1.0")),
    ("localhost:5000/team/img", ("localhost:5000/team/img", "localhost:5000", "latest")),
])
def test_push_targets_name_their_registry(tag: str, expected: tuple[str, str, str]) -> None:
    assert _split_tag(tag) == expected


def test_a_push_target_without_a_registry_is_refused() -> None:
    with pytest.raises(ScoreError) as err:
        _split_tag("serverless-score-r:0.1.0")
    assert "myregistry.azurecr.io/serverless-score-r:0.1.0" in err.value.message


# -- ACR login: the token exchange --------------------------------------------------------------
@pytest.fixture
def exchange_server() -> Iterator[tuple[str, list[dict[str, str]], list[int]]]:
    """A local HTTP server answering POST /oauth2/exchange like ACR; records the forms it got."""
    forms: list[dict[str, str]] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            forms.append(dict(urllib.parse.parse_qsl(body)))
            ok = self.path == "/oauth2/exchange" and status[0] == 200
            payload = json.dumps({"refresh_token": "acr-refresh"} if ok else {"errors": []}).encode()
            self.send_response(status[0] if self.path == "/oauth2/exchange" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}", forms, status
    server.shutdown()


def test_the_aad_token_is_exchanged_for_a_registry_token(exchange_server: Any) -> None:
    registry, forms, _ = exchange_server
    token = exchange_token(registry, Secret("aad-token"), scheme="http")
    assert token.reveal() == "acr-refresh" and "acr-refresh" not in repr(token)
    assert forms == [{"grant_type": "access_token", "service": registry, "access_token": "aad-token"}]
    assert ACR_USER == "00000000-0000-0000-0000-000000000000"


def test_a_refused_exchange_names_the_role_and_never_the_token(exchange_server: Any) -> None:
    registry, _, status = exchange_server
    status[0] = 401
    with pytest.raises(ScoreError) as err:
        exchange_token(registry, Secret("aad-secret-token"), scheme="http")
    assert "HTTP 401" in err.value.message and "AcrPush" in err.value.hint
    assert "aad-secret-token" not in err.value.message + err.value.hint
