"""The R package (rstudio/serveRless): ``R CMD build`` then ``R CMD check --no-manual`` with
what ``make setup`` installs, and the check's run of the testthat suite, whose tests launch real
jobs through this checkout's CLI (local backend). One check run does both: the suite is what
takes most of its time (~20 s on 2 cores)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rhelpers import rscript

pytestmark = pytest.mark.slow
PACKAGE = Path(__file__).resolve().parents[2] / "rstudio" / "serveRless"
CLI = Path(sys.executable).parent / "serverless-score"


def r_cmd(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(rscript()).with_name("R")), "CMD", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_r_cmd_check_passes_and_the_testthat_suite_runs_every_test(tmp_path: Path) -> None:
    env = {**os.environ, "SERVERLESS_SCORE_CLI": str(CLI)}
    env.pop("SERVERLESS_SCORE_WORK", None)
    env.pop("_R_CHECK_FORCE_SUGGESTS_", None)  # every suggested package must be installed
    build = r_cmd("build", str(PACKAGE), cwd=tmp_path, env=env)
    assert build.returncode == 0, build.stdout + build.stderr
    tarballs = list(tmp_path.glob("serveRless_*.tar.gz"))
    assert len(tarballs) == 1, build.stdout

    check = r_cmd("check", "--no-manual", tarballs[0].name, cwd=tmp_path, env=env)
    log = check.stdout + check.stderr
    suite = tmp_path / "serveRless.Rcheck" / "tests" / "testthat.Rout"
    suite_log = suite.read_text() if suite.exists() else ""
    assert check.returncode == 0, log + suite_log
    problems = [line for line in log.splitlines() if re.search(r"\.\.\. (ERROR|WARNING)$", line)]
    assert not problems, log
    status = re.search(r"^Status: (.*)$", log, re.MULTILINE)
    assert status is not None and "ERROR" not in status.group(1) and "WARNING" not in status.group(1), log
    assert "checking tests ..." in log and re.search(r"Running .testthat\.R.", log), log  # not skipped

    found = re.search(r"\[ FAIL (\d+) \| WARN (\d+) \| SKIP (\d+) \| PASS (\d+) \]", suite_log)
    assert found, suite_log
    failed, warned, skipped, passed = map(int, found.groups())
    assert (failed, warned, skipped) == (0, 0, 0), suite_log  # none skipped: the CLI was found
    assert passed >= 100, suite_log  # every expectation ran, none was silently dropped
