"""The scoring images, built FROM the debootstrapped local/bookworm by the real builder: they run
as a non-root user, their entrypoint is the runner (with its exit codes), they carry no pip or
compiler, their Python packages are the controller's versions, the R image has the R packages
asked for, an unchanged image is not rebuilt, and an R package Debian lacks is a clear error."""

from __future__ import annotations

import importlib.metadata
import json
import time
from typing import Any

import pytest

from serverless_score.errors import ScoreError
from serverless_score.images.context import LABEL_R_PACKAGES, LABEL_RUNTIME

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]
RUNNER = ["python", "-m", "serverless_score.runner"]


def _run(engine: Any, image: str, command: list[str] | None = None, *, entrypoint: list[str] | None = None,
         env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a container to its end; (exit code, output)."""
    container = engine.client.containers.run(image, command, entrypoint=entrypoint, environment=env,
                                             detach=True, network_mode="none")
    try:
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def _sh(engine: Any, image: str, script: str) -> tuple[int, str]:
    return _run(engine, image, ["-c", script], entrypoint=["/bin/sh"])


@pytest.mark.parametrize("which", ["python_image", "r_image"])
def test_images_run_the_runner_as_a_non_root_user(which: str, request: pytest.FixtureRequest,
                                                  docker_engine: Any) -> None:
    built = request.getfixturevalue(which)
    image = docker_engine.client.images.get(built.tag)
    assert image.attrs["Config"]["Entrypoint"] == RUNNER
    assert image.attrs["Config"]["User"] == "10001:10001"
    code, out = _sh(docker_engine, built.tag, "id -u; id -un")
    assert (code, out.split()) == (0, ["10001", "scorer"])
    code, out = _run(docker_engine, built.tag)  # the entrypoint itself, without a work order
    assert code == 1 and "no work order: set SERVERLESS_SCORE_WORK" in out
    code, out = _run(docker_engine, built.tag, env={"SERVERLESS_SCORE_WORK": '{"not": "an order"}'})
    assert code == 2 and "malformed work order" in out
    # Slim: the build stage's pip, and no compiler, stay out of the final image.
    code, out = _sh(docker_engine, built.tag,
                    "for t in pip pip3 gcc cc apt-get; do command -v $t || echo no-$t; done")
    assert "no-pip\nno-pip3\nno-gcc\nno-cc\n" in out, out


def test_the_python_image_has_the_controllers_package_versions(python_image: Any, docker_engine: Any) -> None:
    wanted = {name: importlib.metadata.version(name) for name in ("scikit-learn", "pandas", "pyarrow", "numpy")}
    code, out = _sh(docker_engine, python_image.tag,
                    "python -c 'import importlib.metadata as m; [print(n, m.version(n)) for n in "
                    "(\"scikit-learn\", \"pandas\", \"pyarrow\", \"numpy\")]'")
    assert code == 0, out
    assert dict(line.split() for line in out.strip().splitlines()) == wanted
    assert docker_engine.client.images.get(python_image.tag).labels[LABEL_RUNTIME] == "python"


def test_the_r_image_has_r_and_the_requested_packages(r_image: Any, docker_engine: Any) -> None:
    code, out = _sh(docker_engine, r_image.tag,
                    "Rscript -e 'for (p in c(\"randomForest\", \"jsonlite\", \"data.table\")) "
                    "cat(p, as.character(packageVersion(p)), \"\\n\")'")
    assert code == 0, out
    assert [line.split()[0] for line in out.strip().splitlines()] == ["randomForest", "jsonlite", "data.table"]
    labels = docker_engine.client.images.get(r_image.tag).labels
    assert labels[LABEL_RUNTIME] == "r" and labels[LABEL_R_PACKAGES] == "randomForest"
    code, out = _sh(docker_engine, r_image.tag, "Rscript -e 'library(glmnet)'")
    assert code != 0 and "glmnet" in out  # only what was asked for (and what the runtime needs)


def test_an_unchanged_image_is_not_built_again(python_image: Any, docker_engine: Any) -> None:
    from dockerhelp import build_image

    started = time.monotonic()
    again = build_image(docker_engine, "python")
    assert again.skipped and again.image_id == docker_engine.client.images.get(python_image.tag).id
    assert again.digest == python_image.digest
    assert time.monotonic() - started < 30


def test_an_r_package_debian_does_not_have_is_a_clear_error(r_image: Any, docker_engine: Any) -> None:
    from dockerhelp import build_image

    with pytest.raises(ScoreError) as err:
        build_image(docker_engine, "r", tag="serverless-score-test-r:missing",
                    r_packages=("randomForest", "noSuchPackageXyz"))
    assert "noSuchPackageXyz" in err.value.message
    assert "not packaged by this distribution" in err.value.message
    assert "rocker/r-ver" in err.value.hint


def test_the_images_can_also_run_a_whole_job_as_the_controller(python_image: Any, r_image: Any,
                                                               docker_engine: Any) -> None:
    """SERVERLESS_SCORE_ROLE=controller (a Logic App's container): the image runs `run` on the
    job in SERVERLESS_SCORE_JOB; it has the ACI SDK the controller fans out with on Azure."""
    job = {"name": "in-image", "runtime": "command", "scorer": "echo shard-$SHARD_INDEX",
           "shards": 2, "output": "/tmp/out/shards.txt", "backend": "local", "max_parallel": 2}
    for built in (python_image, r_image):
        code, out = _run(docker_engine, built.tag, env={
            "SERVERLESS_SCORE_ROLE": "controller", "SERVERLESS_SCORE_JOB": json.dumps(job)})
        assert code == 0, out
        result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        assert result["status"] == "succeeded" and result["rows_out"] == 2, result
        code, out = _sh(docker_engine, built.tag, "python -c 'import azure.mgmt.containerinstance'")
        assert code == 0, out
