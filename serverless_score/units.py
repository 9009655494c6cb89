"""Parsing of the human-friendly sizes and durations used in job files ("64MB", "30m")."""

from __future__ import annotations

import math
import re
from decimal import Decimal

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 2**10,
    "kib": 2**10,
    "m": 2**20,
    "mib": 2**20,
    "g": 2**30,
    "gib": 2**30,
    "tib": 2**40,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int) -> int:
    """``"64MB"`` -> 64_000_000, ``"4MiB"`` -> 4_194_304, ``1024`` -> 1024 (bytes)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '64MB'; got {value!r}")
    if isinstance(value, float):
        raise ValueError(f"expected a whole number of bytes or a size like '1.5MB'; got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"expected a positive size; got {value}")
        return value
    match = _NUMBER_UNIT.match(str(value))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(
            f"expected a size like '64MB', '512KiB' or a number of bytes; got {value!r}"
        )
    # Decimal, not float: "1.005KB" is 1005 bytes, not 1004.
    size = int(Decimal(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"expected a positive size; got {value!r}")
    return size


def parse_duration(value: str | int | float) -> float:
    """``"30m"`` -> 1800.0, ``"2h"`` -> 7200.0, ``90`` -> 90.0 (seconds)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30m'; got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _NUMBER_UNIT.match(value)
        if not match or match.group(2).lower() not in _DURATION_UNITS:
            raise ValueError(
                f"expected a duration like '90s', '30m', '2h' or a number of seconds; got {value!r}"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration; got {value!r}")
    if seconds <= 0:
        raise ValueError(f"expected a positive duration; got {value!r}")
    return seconds


def format_size(n: int) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``plural(1, "task")`` -> "1 task", ``plural(3, "task")`` -> "3 tasks" (thousands
    separated): a message never says "1 tasks"."""
    word = noun if count == 1 else (plural_noun or f"{noun}s")
    return f"{count:,} {word}"


def plural_cores(cpu: float) -> str:
    """``1`` -> "1 core", ``0.5`` -> "0.5 cores", ``2`` -> "2 cores"."""
    return f"{cpu:g} {'core' if cpu == 1 else 'cores'}"
