"""Ctrl-C and SIGTERM while a job runs.

The first SIGINT or SIGTERM raises ``KeyboardInterrupt`` in the main thread, so the job's one
cleanup path runs for both. Signals that arrive while cleanup is in progress (``held()``: deleting
groups, which cost money while they live) are *held*: a second Ctrl-C or a SIGTERM from a
supervisor cannot cut a delete short and orphan a billing group. A signal held during a block that
ends normally is raised when the block ends; one held while an interrupt is already being handled
has nothing left to do.

Outside the main thread (the job run from a worker thread of a caller) signals cannot be
handled; both helpers then do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_HANDLED = (signal.SIGINT, signal.SIGTERM)


class _State:
    def __init__(self) -> None:
        self.installed = 0  # nesting depth of interrupts()
        self.holding = 0  # nesting depth of held()
        self.pending: int | None = None  # a signal that arrived while holding


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.holding:
        _state.pending = signum
        return
    raise KeyboardInterrupt(f"signal {signum}")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise KeyboardInterrupt (outside ``held()``)."""
    if not _main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in _HANDLED}
    _state.installed += 1
    for sig in _HANDLED:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        _state.installed -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM until the block ends (cleanup that must not be cut short).

    Installs the job's handler if ``interrupts()`` has not (``Job.__exit__`` may clean up after
    the run's handlers are gone), so a second Ctrl-C is held there too."""
    if not _main_thread():
        yield
        return
    previous = None
    if not _state.installed:
        previous = {sig: signal.getsignal(sig) for sig in _HANDLED}
        for sig in _HANDLED:
            signal.signal(sig, _handler)
    _state.holding += 1
    ended_normally = False
    try:
        yield
        ended_normally = True
    finally:
        _state.holding -= 1
        pending = _state.pending if not _state.holding else None
        if not _state.holding:
            _state.pending = None
        if previous is not None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if pending is not None and ended_normally:
        raise KeyboardInterrupt(f"signal {pending} (held until cleanup ended)")
