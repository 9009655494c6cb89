"""Fixtures of the R tests: models trained once per session by a real R, and a way to run an R
job through the real CLI. R is installed by ``make setup``; these tests never skip."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rhelpers import FIXTURES, RModels, rscript


@pytest.fixture(scope="session")
def r_models(tmp_path_factory: pytest.TempPathFactory) -> RModels:
    """lm, glm, randomForest, ranger and glmnet models, the data they score and R's own
    predictions on it (see fixtures/train_models.R)."""
    out = tmp_path_factory.mktemp("r-models")
    proc = subprocess.run([rscript(), str(FIXTURES / "train_models.R"), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"training the R models failed:\n{proc.stderr}"
    return RModels(out)


@pytest.fixture
def r_job(job_dir: Path, cli: Callable[..., Any], make_job: Callable[..., Path]) -> Callable[..., Any]:
    """``r_job(model=..., input=..., **keys)``: write an R job into ``job_dir`` and run it with
    ``--json``; returns the CliResult. Output goes to ``job_dir/out/scores.csv``."""

    def run(**keys: Any) -> Any:
        # Two tasks in one worker by default: one R start per job keeps the suite quick, and
        # the worker's R process serves both tasks (tests that need two workers say so).
        keys = {"name": "rjob", "runtime": "r", "output": "out/scores.csv", "chunks": 2,
                "max_parallel": 1, **keys}
        job = make_job(job_dir, **keys)
        return cli("run", job, "--json", "--quiet", timeout=180)

    return run
