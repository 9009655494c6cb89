"""The R package (rstudio/serveRless): installed into a temporary library by ``R CMD INSTALL``,
then its testthat suite runs on real R and launches real jobs through this checkout's CLI."""

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

RUN_SUITE = """
.libPaths(c({lib!r}, .libPaths()))
results <- as.data.frame(testthat::test_dir({tests!r}, package = "serveRless",
  load_package = "installed", reporter = "summary", stop_on_failure = FALSE))
cat(sprintf("\\nRESULT passed=%d failed=%d skipped=%d errors=%d\\n", sum(results$passed),
  sum(results$failed), sum(results$skipped), sum(results$error)))
"""


def test_the_r_package_installs_and_its_testthat_suite_passes(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    install = subprocess.run(
        [str(Path(rscript()).with_name("R")), "CMD", "INSTALL", f"--library={library}", str(PACKAGE)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    code = RUN_SUITE.format(lib=str(library), tests=str(PACKAGE / "tests" / "testthat"))
    env = {**os.environ, "SERVERLESS_SCORE_CLI": str(CLI)}
    env.pop("SERVERLESS_SCORE_WORK", None)
    suite = subprocess.run([rscript(), "-e", code], capture_output=True, text=True, timeout=600,
                           env=env, cwd=tmp_path)
    output = suite.stdout + suite.stderr
    found = re.search(r"RESULT passed=(\d+) failed=(\d+) skipped=(\d+) errors=(\d+)", output)
    assert suite.returncode == 0 and found, output
    passed, failed, skipped, errors = map(int, found.groups())
    assert (failed, skipped, errors) == (0, 0, 0), output
    assert passed >= 30, output  # every expectation ran, none was silently dropped
