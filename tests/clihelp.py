"""Running the ``serverless-score`` CLI from tests, as a user does (a subprocess of this venv's
console script). A module of its own so test files can import it: ``from conftest import`` finds
tests/r's conftest when the whole suite runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLI = Path(sys.executable).parent / "serverless-score"


# -- running the CLI -------------------------------------------------------------------------
@dataclass(repr=False)
class CliResult:
    code: int
    stdout: str
    stderr: str
    json: dict[str, Any] | None

    @property
    def flat_stderr(self) -> str:
        """stderr with whitespace collapsed (the console may wrap long messages)."""
        return " ".join(self.stderr.split())

    def __repr__(self) -> str:  # shown in full by pytest when an assertion about it fails
        return f"exit {self.code}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["COLUMNS"] = "300"  # keep rich from wrapping messages mid-word
    env.pop("SERVERLESS_SCORE_WORK", None)
    env.pop("SERVERLESS_SCORE_GROUP", None)
    env.update(extra or {})
    return env


def parse_json(stdout: str) -> dict[str, Any] | None:
    """The last stdout line that is a JSON object (``--json`` prints exactly one)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> CliResult:
    """Run ``serverless-score ARGS...`` and wait for it."""
    proc = subprocess.run(
        [str(CLI), *map(str, args)], cwd=cwd, env=cli_env(env), capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr, parse_json(proc.stdout))


def start_cli(*args: str | Path, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``serverless-score ARGS...`` without waiting (for signal tests)."""
    return subprocess.Popen(
        [str(CLI), *map(str, args)], cwd=cwd, env=cli_env(env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
