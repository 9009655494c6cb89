"""Durations as the workflow language writes them: ISO 8601 (``PT1H``, ``PT30S``, ``P1D``) for
limits and retry intervals, ``{count, unit}`` for ``Wait``."""

from __future__ import annotations

import re
from typing import Any

from .expressions import ExpressionError

_ISO = re.compile(r"^P(?!$)(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def duration_seconds(text: Any) -> float:
    """``PT1H30M`` -> 5400. Years and months are refused: their length depends on the date."""
    match = _ISO.match(str(text))
    if not match:
        raise ExpressionError(f"not an ISO 8601 duration this interpreter supports: {text!r}")
    weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 + seconds


def interval_seconds(interval: Any) -> float:
    if not isinstance(interval, dict) or "count" not in interval or "unit" not in interval:
        raise ExpressionError(f"Wait interval must be {{count, unit}}; got {interval!r}")
    unit = str(interval["unit"]).lower()
    if unit not in UNIT_SECONDS:
        raise ExpressionError(f"Wait unit {interval['unit']!r} is not supported here")
    return float(interval["count"]) * UNIT_SECONDS[unit]
