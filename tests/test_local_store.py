"""The local store's merge: header + parts in order, byte for byte, with the sha256 of the whole,
whether the kernel copies the parts or this process writes them."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from serverless_score.storage.local import LocalStore


def _parts(tmp_path: Path) -> list[Path]:
    sizes = [5_000_000, 0, 1, 3 * 1024 * 1024 + 7, 65_536]  # an empty part, odd sizes
    parts = []
    for i, size in enumerate(sizes):
        part = tmp_path / f"part-{i}"
        part.write_bytes(os.urandom(size))
        parts.append(part)
    return parts


def _check(tmp_path: Path, parts: list[Path]) -> None:
    out = tmp_path / "out" / "scores.csv"
    result = LocalStore().compose(str(out), [str(p) for p in parts], header=b"id,score\n")
    expected = b"id,score\n" + b"".join(p.read_bytes() for p in parts)
    assert out.read_bytes() == expected
    assert result.size == len(expected)
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert not [p for p in out.parent.iterdir() if p.name != "scores.csv"]  # no temp file left


def test_compose_copies_parts_in_order_and_hashes_the_whole(tmp_path: Path) -> None:
    _check(tmp_path, _parts(tmp_path))


def test_compose_writes_the_parts_itself_where_the_kernel_cannot_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def cannot(*args: object) -> int:
        calls.append(args)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", cannot)
    _check(tmp_path, _parts(tmp_path))
    assert calls  # the fallback was taken, not the copy


def test_compose_over_a_partial_kernel_copy_leaves_no_trace_of_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.copy_file_range

    def fails_midway(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        if offset_src > 0:
            raise OSError(errno.EIO, "gave up")
        return real(src, dst, min(count, 4096), offset_src, offset_dst)

    monkeypatch.setattr(os, "copy_file_range", fails_midway)
    _check(tmp_path, _parts(tmp_path))


def test_list_finds_what_rglob_finds(tmp_path: Path) -> None:
    """Every file under the prefix, sorted: nested folders, hidden names, a symlink to a file;
    a symlinked folder is not entered, and a broken link is no file."""
    root = tmp_path / "work"
    for name in ("tasks/t00000/attempt-1/part", "tasks/t00000/attempt-1/.part.x.tmp",
                 "tasks/t00001/attempt-2/status.json", "job.json", "groups/g.log"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    (root / "empty").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "f").write_text("x")
    (root / "linked-folder").symlink_to(tmp_path / "elsewhere")
    (root / "linked-file").symlink_to(root / "job.json")
    (root / "broken").symlink_to(tmp_path / "nothing")
    listed = list(LocalStore().list(str(root)))
    assert listed == sorted(str(p) for p in root.rglob("*") if p.is_file())
    assert str(root / "linked-file") in listed and len(listed) == 6
    assert list(LocalStore().list(f"file://{root}/")) == listed
    assert list(LocalStore().list(str(tmp_path / "none"))) == []


def test_compose_of_many_tiny_parts_around_a_big_one(tmp_path: Path) -> None:
    """Tiny parts are read and written by this process, a big one copied by the kernel:
    interleaved, every byte still lands in its place (2,001 parts)."""
    parts = []
    for i in range(2001):
        part = tmp_path / f"tiny-{i:04d}"
        part.write_bytes(os.urandom(2 * 1024 * 1024) if i == 1000 else b"%d,0.5\n" % i)
        parts.append(part)
    _check(tmp_path, parts)
