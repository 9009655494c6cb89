"""The scoring images' sizes: on disk, and compressed as a registry stores them (what ACI pulls).

Builds (or finds up to date) the built-in Python image and the R image with randomForest FROM
local/bookworm, as the tests do (tests/dockerhelp.py; scripts/ensure-docker.sh starts an engine
when none answers), then prints for each image, and for any ``--tag`` given:

* **on disk**: the engine's image size (``docker image inspect -f '{{.Size}}'``), base included;
* **compressed**: the sum over the image's layers of each layer's tar compressed with gzip -6,
  which is how ``docker push`` uploads a layer and so what a pull downloads; the base image's
  layers (shared, but pulled too on a fresh ACI host) are counted, and shown alone in a row.

Usage: ``python bench/image_sizes.py [--tag IMAGE ...] [--no-build]``. Sizes in MB (10^6 bytes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the engine and build helpers live with the tests
TARGETS_MB = {"python": 550, "r": 650}  # issue 14: on disk


class _Reader:
    """A file object over the engine's ``docker save`` stream (an iterator of chunks)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def compressed_size(client: Any, tag: str) -> int:
    """Sum of the gzip -6 sizes of the image's layer tars, read from ``docker save`` (every
    member is compressed as it streams by; manifest.json, wherever it comes, names the layers)."""
    sizes: dict[str, int] = {}
    layers: list[str] = []
    image = client.images.get(tag)
    with tarfile.open(fileobj=_Reader(image.save(named=False)), mode="r|") as archive:
        for member in archive:
            data = archive.extractfile(member) if member.isfile() else None
            if data is None:
                continue
            if member.name == "manifest.json":
                layers = json.loads(data.read())[0]["Layers"]
                continue
            gzip = zlib.compressobj(6, zlib.DEFLATED, 31)
            size = 0
            while block := data.read(1 << 20):
                size += len(gzip.compress(block))
            sizes[member.name] = size + len(gzip.flush())
    return sum(sizes[layer] for layer in layers)


def measure(client: Any, tag: str) -> dict[str, Any]:
    image = client.images.get(tag)
    return {"image": tag, "on_disk_mb": image.attrs["Size"] / 1e6,
            "compressed_mb": compressed_size(client, tag) / 1e6,
            "layers": len(image.attrs["RootFS"]["Layers"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", action="append", default=[], help="also measure this image")
    parser.add_argument("--no-build", action="store_true",
                        help="measure the built-in tags as the engine has them")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    from dockerhelp import BASE, build_image, ensure_engine

    from serverless_score.images import default_tag

    engine = ensure_engine()
    runtimes = {"python": (), "r": ("randomForest",)}
    tags: list[tuple[str, str | None]] = [(BASE, None)]
    for runtime, packages in runtimes.items():
        tag = default_tag(runtime)
        if not args.no_build:
            print(f"building {tag} FROM {BASE} (or finding it up to date)", file=sys.stderr)
            build_image(engine, runtime, r_packages=packages)
        tags.append((tag, runtime))
    tags += [(tag, None) for tag in args.tag]

    rows = []
    print("| image | on disk (MB) | compressed (MB) | layers | target on disk |")
    print("|---|---:|---:|---:|---|")
    for tag, runtime in tags:
        row = measure(engine.client, tag)
        target = TARGETS_MB.get(runtime or "")
        verdict = "" if target is None else (
            f"<= {target}: {'met' if row['on_disk_mb'] <= target else 'NOT met'}")
        rows.append({**row, "target_mb": target})
        print(f"| {tag} | {row['on_disk_mb']:.1f} | {row['compressed_mb']:.1f} | "
              f"{row['layers']} | {verdict} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
