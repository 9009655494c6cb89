"""R is started before the runner has imported the rest of itself, and adopted by the first task
only if it was started for that very work; otherwise it is stopped, never left running."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from rhelpers import RModels, read_rows, rscript

from serverless_score.runner import r_launch


def _work(**changes: object) -> SimpleNamespace:
    settings = {"job_id": "j", "scorer": "predict", "id_columns": ["id"], "predict_args": {},
                "on_unknown_level": "error", **changes}
    return SimpleNamespace(**settings)


@pytest.fixture
def sleeping_r(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An "Rscript" that waits: these tests are about the process, not about scoring."""
    fake = tmp_path / "Rscript"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(r_launch.ENV_RSCRIPT, str(fake))
    return fake


def test_the_first_task_adopts_the_r_started_for_its_settings(sleeping_r: Path) -> None:
    r_launch.start_early(_work(), "/models/m.rds")
    taken = r_launch.take_early(_work(), "/models/m.rds")
    assert taken is not None
    _, proc, files = taken
    try:
        assert proc.poll() is None  # the very process started early, still loading
        assert r_launch.take_early(_work(), "/models/m.rds") is None  # adopted once only
    finally:
        proc.kill()
        proc.wait()
        if files is not None:
            files.close()


@pytest.mark.parametrize("changes", [{"predict_args": {"type": "prob"}}, {"id_columns": []},
                                     {"scorer": "score.R"}])
def test_an_r_started_for_other_settings_is_stopped(sleeping_r: Path,
                                                     changes: dict[str, object]) -> None:
    r_launch.start_early(_work(), "/models/m.rds")
    assert r_launch._early is not None
    proc = r_launch._early[2]
    assert r_launch.take_early(_work(**changes), "/models/m.rds") is None
    assert proc.poll() is not None  # killed and reaped, not left loading a model nobody uses


def test_an_r_started_for_another_model_is_stopped(sleeping_r: Path) -> None:
    r_launch.start_early(_work(), "/models/a.rds")
    assert r_launch._early is not None
    proc = r_launch._early[2]
    assert r_launch.take_early(_work(), "/models/b.rds") is None
    assert proc.poll() is not None


def test_an_r_no_task_took_is_stopped_by_discard(sleeping_r: Path) -> None:
    r_launch.start_early(_work(), "/models/m.rds")
    assert r_launch._early is not None
    proc, files = r_launch._early[2], r_launch._early[3]
    r_launch.discard_early()
    assert proc.poll() is not None
    assert r_launch._early is None
    if files is not None:
        assert all(fd == -1 or not _is_open(fd) for fd in files.fds)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_missing_rscript_leaves_the_error_to_the_first_task(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(r_launch.ENV_RSCRIPT, str(tmp_path / "no-such-Rscript"))
    r_launch.start_early(_work(), "/models/m.rds")  # no exception here
    assert r_launch._early is None


def test_a_worker_starts_one_r_for_all_its_tasks(r_models: RModels, r_job, job_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Every Rscript start is counted by a wrapper: the R the runner starts before its imports
    # must be the one that scores, not stopped and started again.
    starts = job_dir / "r-starts.txt"
    wrapper = job_dir / "Rscript"
    wrapper.write_text(f'#!/bin/sh\necho started >> "{starts}"\nexec "{rscript()}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(r_launch.ENV_RSCRIPT, str(wrapper))  # (the CLI's environment is ours)
    result = r_job(model=r_models.model("glm"), input=r_models.data, id_columns=["id"],
                   predict_args={"type": "response"}, chunks=3, max_parallel=1)
    assert result.code == 0, result
    assert len(read_rows(job_dir / "out/scores.csv")) == len(r_models.reference())
    assert starts.read_text().split() == ["started"]
