"""The runner's allocator settings: set before numpy and pyarrow load, a user's own win."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import os, sys
from serverless_score.runner.__main__ import _keep_freed_memory
_keep_freed_memory()
import numpy, pyarrow
print(os.environ["ARROW_DEFAULT_MEMORY_POOL"], pyarrow.default_memory_pool().backend_name,
      os.environ["NUMPY_MADVISE_HUGEPAGE"])
"""


def _probe(env: dict[str, str]) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc / Linux settings")
def test_arrow_and_numpy_reuse_freed_memory_in_a_worker() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    # Arrow's pool is malloc (reused under the runner's mallopt), numpy asks for no huge pages
    assert _probe(env) == ["system", "system", "0"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc / Linux settings")
def test_a_users_allocator_settings_win() -> None:
    env = {"PATH": "/usr/bin:/bin", "ARROW_DEFAULT_MEMORY_POOL": "mimalloc",
           "NUMPY_MADVISE_HUGEPAGE": "1"}
    assert _probe(env) == ["mimalloc", "mimalloc", "1"]
