"""The I/O edge of planning: turn the job's ``input`` into a sorted list of files with sizes
(and Parquet row-group sizes), so the planner itself can stay pure."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from ..errors import InputError
from .tasks import InputFile

_GLOB_CHARS = set("*?[")


def _is_glob(value: str) -> bool:
    return any(c in value for c in _GLOB_CHARS)


def list_input_paths(input_uri: str) -> list[str]:
    """A file, every regular non-hidden file of a directory, or a glob; always in sorted order."""
    path = input_uri.removeprefix("file://")
    if _is_glob(path):
        found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not found:
            raise InputError(f"input: the glob {input_uri!r} matches no file",
                             hint="Check the pattern and the directory it starts from.")
        return found
    if os.path.isdir(path):
        found = sorted(
            str(p) for p in Path(path).rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not found:
            raise InputError(f"input: the directory {input_uri!r} holds no file")
        return found
    if not os.path.exists(path):
        raise InputError(f"input: {input_uri!r} does not exist",
                         hint="Give a file, a directory or a glob; relative paths are relative to the job file.")
    return [path]


def describe_inputs(input_uri: str, fmt: str) -> list[InputFile]:
    """List the input and read what planning needs: sizes, and Parquet footers."""
    files: list[InputFile] = []
    for path in list_input_paths(input_uri):
        try:
            size = os.path.getsize(path)
        except OSError as err:
            raise InputError(f"input: cannot read {path!r}: {err.strerror}") from None
        if fmt == "parquet":
            files.append(_parquet_file(path, size))
        else:
            files.append(InputFile(path=path, size=size))
    if sum(f.size for f in files) == 0:
        raise InputError(f"input: {input_uri!r} is empty (0 bytes)", hint="Nothing to score.")
    return files


def _parquet_file(path: str, size: int) -> InputFile:
    import pyarrow.lib
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except (pyarrow.lib.ArrowInvalid, OSError) as err:
        raise InputError(f"input: {path!r} is not a readable Parquet file: {err}") from None
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    return InputFile(
        path=path,
        size=size,
        row_group_bytes=tuple(max(1, g.total_byte_size) for g in groups),
        row_group_rows=tuple(g.num_rows for g in groups),
    )


def fingerprint(files: list[InputFile]) -> list[tuple[str, int, int]]:
    """What identifies this version of the input: path, size and modification time."""
    out = []
    for f in files:
        try:
            mtime = os.stat(f.path).st_mtime_ns
        except OSError:
            mtime = 0
        out.append((f.path, f.size, mtime))
    return out
