"""Record formats and exactly-once reading of byte ranges (pure: any seekable binary file)."""

from .scan import (
    DEFAULT_BLOCK,
    Batch,
    RangeReader,
    RecordFormat,
    ScanResult,
    read_header,
    scan_range,
)

__all__ = [
    "DEFAULT_BLOCK",
    "Batch",
    "RangeReader",
    "RecordFormat",
    "ScanResult",
    "read_header",
    "scan_range",
]
