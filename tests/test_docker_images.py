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


# -- size: the pull is most of a container group's start-up on ACI ------------------------------
# On disk, FROM local/bookworm (116.7 MB of it the base); bench/image_sizes.py prints these and
# the compressed sizes (bench/RESULTS.md, "Image sizes"). Before the slimming: 713.7 and 855.9 MB.
MAX_ON_DISK = {"python_image": 550_000_000, "r_image": 650_000_000}


@pytest.mark.parametrize("which", ["python_image", "r_image"])
def test_the_images_stay_under_their_size_targets(which: str, request: pytest.FixtureRequest,
                                                  docker_engine: Any) -> None:
    built = request.getfixturevalue(which)
    size = docker_engine.client.images.get(built.tag).attrs["Size"]
    assert size <= MAX_ON_DISK[which], (
        f"{built.tag} is {size / 1e6:.1f} MB on disk, over {MAX_ON_DISK[which] / 1e6:.0f} MB: "
        "see images/README.md for what the images leave out")


# What the slimming (images/common/apt.sh, slim-venv.sh) left out stays out, and what a run loads
# still works: pandas and pyarrow write every output format, scikit-learn fits and predicts.
_LEFT_OUT = r"""
set -e
ls /var/cache/apt/*.bin 2>/dev/null && echo apt-caches-left
ls /usr/share/man/man1/python3*.1.gz 2>/dev/null && echo manual-pages-left
find /usr/share/doc/python3*-minimal -type f ! -name copyright | grep . && echo docs-left
python -c 'import pyarrow.flight' 2>/dev/null && echo flight-left
ls /opt/venv/lib/python3*/site-packages/pyarrow/*.pyx 2>/dev/null && echo cython-left
echo checked
"""
# Ends as the runner does (os._exit after flushing): Arrow's thread pool can abort the
# interpreter's own teardown now and then ("terminate called without an active exception",
# exit 139; apache/arrow#34314), which says nothing about the image.
_PYTHON_WORKS = r"""
import io, json, os, sys
import numpy as np, pandas as pd, pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
frame = pd.DataFrame({"id": ["a", "b", "c"], "p": [0.25, 0.5, 1 / 3]})
sink = io.BytesIO()
pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
back = pq.read_table(io.BytesIO(sink.getvalue())).to_pandas()
out = io.BytesIO()
pacsv.write_csv(pa.Table.from_pandas(back), out)
print(json.dumps({"parquet": back.equals(frame), "csv": out.getvalue().decode().splitlines()[1]}))
sys.stdout.flush()
os._exit(0)
"""
_SKLEARN_WORKS = r"""
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(1)
x = rng.normal(size=(400, 4)); y = (x[:, 0] + x[:, 1] > 0).astype(int)
print(RandomForestClassifier(20, random_state=0).fit(x, y).score(x, y) > 0.9,
      LogisticRegression().fit(x, y).score(x, y) > 0.9)
"""


@pytest.mark.parametrize("which", ["python_image", "r_image"])
def test_the_slimmed_images_leave_out_what_no_run_loads_and_keep_what_it_does(
        which: str, request: pytest.FixtureRequest, docker_engine: Any) -> None:
    tag = request.getfixturevalue(which).tag
    code, out = _sh(docker_engine, tag, _LEFT_OUT)
    assert (code, out.strip()) == (0, "checked"), out
    code, out = _run(docker_engine, tag, ["-c", _PYTHON_WORKS], entrypoint=["python"])
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1]) == {"parquet": True, "csv": '"a",0.25'}


def test_the_python_image_fits_and_predicts_with_scikit_learn(python_image: Any,
                                                              docker_engine: Any) -> None:
    code, out = _run(docker_engine, python_image.tag, ["-c", _SKLEARN_WORKS], entrypoint=["python"])
    assert (code, out.split()) == (0, ["True", "True"]), out


def test_the_r_image_carries_neither_scikit_learn_nor_r_docs(r_image: Any, docker_engine: Any) -> None:
    """What only the Python scorer uses is not in the R image, nor R's manuals and help pages;
    R still loads its packages and data.table writes."""
    code, out = _sh(docker_engine, r_image.tag,
                    "python -c 'import sklearn' 2>&1 | tail -1; python -c 'import scipy' 2>&1 | tail -1; "
                    "find /usr/lib/R/library/stats/help /usr/lib/R/library/translations "
                    "/usr/share/R/doc/manual /usr/share/man/man1/R.1.gz -type f 2>/dev/null | wc -l")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert "No module named 'sklearn'" in lines[0] and "No module named 'scipy'" in lines[1], out
    assert lines[2] == "0", out
    code, out = _sh(docker_engine, r_image.tag,
                    "Rscript -e 'suppressMessages({library(randomForest); library(data.table); "
                    "library(jsonlite)}); fwrite(data.table(a = 1:2)); "
                    "cat(toJSON(list(ok = TRUE), auto_unbox = TRUE), \"\\n\")'")
    assert (code, out.split()) == (0, ["a", "1", "2", '{"ok":true}']), out
