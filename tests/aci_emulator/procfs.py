"""Live processes picked by their environment, read from ``/proc`` (Linux): how the emulator finds
containers it left behind, and how the tests find a job's workers. Zombies do not count: they
have exited, only their parent has not reaped them yet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def live_pids_with_env(match: Callable[[list[bytes]], bool]) -> list[int]:
    """Pids of the live processes whose environment (``NAME=value`` entries) ``match`` accepts."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and match(environ.split(b"\0")):
            found.append(int(entry.name))
    return found
