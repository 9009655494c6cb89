"""Helpers of the R tests (plain functions and types; the fixtures are in conftest.py)."""

from __future__ import annotations

import csv
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def rscript() -> str:
    path = shutil.which("Rscript")
    assert path, "R is not installed: run `make setup` (it installs r-base-core and the R packages)"
    return path


def run_r(code: str, cwd: Path, timeout: float = 120) -> str:
    """Run R code in a fresh Rscript; fail the test with R's messages if it fails."""
    proc = subprocess.run([rscript(), "-e", code], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"R failed:\n{proc.stderr}"
    return proc.stdout


def read_rows(path: Path) -> list[dict[str, str]]:
    """Every field as the exact text written (floats are parsed by the caller with float(),
    which rounds correctly, unlike R's and pandas' fast parsers)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class RModels:
    dir: Path

    def model(self, name: str) -> Path:
        return self.dir / f"{name}.rds"

    @property
    def data(self) -> Path:
        return self.dir / "score.csv"

    @property
    def unseen(self) -> Path:
        return self.dir / "unseen.csv"

    @property
    def matrix_data(self) -> Path:
        return self.dir / "score_matrix.csv"

    def reference(self) -> list[dict[str, str]]:
        return read_rows(self.dir / "reference.csv")
