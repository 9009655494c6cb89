"""Tiny jobs for controller tests: keyed CSV rows and a shell scorer (``runtime = "command"``)
that prints one ``<key>,scored`` line per record, so a test can say exactly what the output is."""

from __future__ import annotations

from pathlib import Path

SCORE = "tail -n +2 | sed 's/,.*/,scored/'"


def write_rows(path: Path, rows: int) -> list[str]:
    """``rows`` records keyed k000, k001, ... under a ``k,v`` header; returns the keys."""
    keys = [f"k{i:03d}" for i in range(rows)]
    path.write_text("k,v\n" + "".join(f"{k},{i}\n" for i, k in enumerate(keys)))
    return keys


def scored(keys: list[str]) -> list[str]:
    """The output lines SCORE gives for records with these keys."""
    return [f"{k},scored" for k in keys]
