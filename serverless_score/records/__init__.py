"""Record formats and exactly-once reading of byte ranges (pure: any seekable binary file).

``read_header`` needs no numpy; the rest (``scan``) is imported when first used, so a command that
only reads a CSV header (``plan``, ``status``) does not pay numpy's import (0.07 s)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .header import read_header

if TYPE_CHECKING:
    from .scan import DEFAULT_BLOCK, Batch, RangeReader, RecordFormat, ScanResult, scan_range

_FROM_SCAN = frozenset({"DEFAULT_BLOCK", "Batch", "RangeReader", "RecordFormat", "ScanResult",
                        "scan_range"})


def __getattr__(name: str) -> Any:
    if name in _FROM_SCAN:
        from . import scan

        return getattr(scan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_BLOCK",
    "Batch",
    "RangeReader",
    "RecordFormat",
    "ScanResult",
    "read_header",
    "scan_range",
]
