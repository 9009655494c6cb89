"""Does the job fit the region's ACI quota? (pure: the usages of ``location.list_usage`` in, the
shortfalls out, in words).

A job at full width runs ``groups`` container groups of ``cpu`` cores each; ACI counts them
against ``ContainerGroups`` and ``StandardCores`` per subscription and region. Checking before
the first create turns "ContainerGroupQuotaReached after 40 groups" into one message up front.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ...units import plural, plural_cores


def shortfalls(usages: Iterable[Any], *, groups: int, cpu: float) -> list[str]:
    """What is short, e.g. ``["StandardCores: 8 needed (4 groups x 2 cores), 5 of 100 free"]``."""
    needed = {"ContainerGroups": (groups, plural(groups, "group")),
              "StandardCores": (math.ceil(groups * cpu),
                                f"{plural(groups, 'group')} x {plural_cores(cpu)}")}
    short = []
    for usage in usages:
        name = getattr(getattr(usage, "name", None), "value", None)
        if name not in needed or usage.limit is None:
            continue
        want, why = needed[name]
        free = max(0, int(usage.limit) - int(usage.current_value or 0))
        if want > free:
            short.append(f"{name}: {want} needed ({why}), {free} of {usage.limit} free")
    return short


def fitting_parallel(usages: Iterable[Any], *, cpu: float) -> int:
    """How many groups of ``cpu`` cores fit in what is free now (for the hint)."""
    fits: list[int] = []
    for usage in usages:
        name = getattr(getattr(usage, "name", None), "value", None)
        if usage.limit is None or name not in ("ContainerGroups", "StandardCores"):
            continue
        free = max(0, int(usage.limit) - int(usage.current_value or 0))
        fits.append(free if name == "ContainerGroups" else int(free // max(cpu, 1e-9)))
    return min(fits) if fits else 0
