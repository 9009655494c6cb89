"""Waiting in tests: poll a condition until a deadline, never a fixed sleep standing in for proof.
(A module of its own, not conftest: tests/r has a conftest too, and ``from conftest import``
would find whichever was imported first.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; return it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
