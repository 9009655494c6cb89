"""Merging parts into one blob without the controller reading them.

Server-side: every block of the output is ``stage_block_from_url`` (the service copies a byte
range of a part), then one ``commit_block_list`` publishes the output atomically, conditionally
(``If-None-Match: *`` unless the job may overwrite). More parts than a blob has blocks:
``plan_compose`` (storage/blocks.py, which says why) first composes runs of small parts into
intermediate blobs under ``scratch`` (the job's work folder), in a folder of their own per merge,
deleted with any a crashed merge left once the output is committed. The output still appears in
one commit, and a merge cut short is simply run again.

Where the service answers that it does not implement Put Block From URL (501, e.g. Azurite before
3.37), the controller downloads the parts and stages them itself: the bytes pass through it
anyway, so each block is the next 16 MiB of the parts, from as many parts as it takes
(``plan_assembled``): no intermediates, one request per part and one per block, memory bounded by
the few blocks in flight. Same output either way.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobBlock, BlobClient

from ...errors import ScoreError
from ..base import ComposeResult
from ..blocks import (
    ComposePlan,
    Piece,
    TooBigError,
    block_id,
    block_size_for,
    plan_assembled,
    plan_compose,
)
from .errors import translate, translated

if TYPE_CHECKING:
    from .store import BlobStore

log = logging.getLogger(__name__)
_NOT_IMPLEMENTED = {"APINotImplemented", "NotImplemented", "FeatureNotSupported"}


def _unsupported(err: HttpResponseError) -> bool:
    raw = getattr(err, "error_code", None)
    code = str(getattr(raw, "value", raw) or "")
    return err.status_code == 501 or code in _NOT_IMPLEMENTED


@dataclass(frozen=True)
class Stage:
    """Stage ``piece`` as block ``index`` of the blob at ``target``."""

    target: str
    index: int
    piece: Piece


class _Merge:
    """One merge: the plan's URIs, and staging and committing through the SDK."""

    def __init__(self, store: BlobStore, uri: str, parts: Sequence[str], folder: str) -> None:
        self.store, self.uri, self.parts, self.folder = store, uri, parts, folder
        self.nonce = folder.rsplit("/", 1)[-1]
        self._clients: dict[str, BlobClient] = {}

    def blob(self, uri: str) -> BlobClient:
        if uri not in self._clients:  # (only the output and the intermediates are staged into)
            self._clients[uri] = self.store.clients.blob(uri)
        return self._clients[uri]

    def source(self, index: int) -> str:
        count = len(self.parts)
        return self.parts[index] if index < count else self.intermediate(index - count)

    def intermediate(self, k: int) -> str:
        return f"{self.folder}/i{k:06d}"

    def server(self, job: Stage) -> None:
        piece = job.piece
        source, extra = self.store.clients.copy_source(self.source(piece.source))
        self.blob(job.target).stage_block_from_url(
            block_id(self.nonce, job.index), source, source_offset=piece.offset,
            source_length=piece.length, **extra)

    def fetch(self, piece: Piece) -> bytes:
        source = self.source(piece.source)
        with translated(source, "downloading it for the merge"):
            return bytes(self.store.clients.blob(source).download_blob(
                offset=piece.offset, length=piece.length).readall())

    def assemble(self, index: int, pieces: Sequence[Piece], fetchers: ThreadPoolExecutor) -> None:
        """Download ``pieces`` (in parallel, in order) and stage them as block ``index`` of the
        output: a block of 10,000 tiny parts takes 10,000 requests, not 10,000 in a row."""
        data = b"".join(fetchers.map(self.fetch, pieces))
        with translated(self.uri, "staging a block"):
            self.blob(self.uri).stage_block(block_id(self.nonce, index), data)

    def stage_all(self, jobs: Iterable[Stage], workers: int) -> None:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(lambda job: self.translated(self.server, job), jobs):
                pass

    def translated(self, stage: Callable[[Stage], None], job: Stage, *,
                   passthrough: Callable[[HttpResponseError], bool] | None = None) -> None:
        """Run ``stage(job)``, translating SDK errors, except those ``passthrough`` keeps raw."""
        try:
            stage(job)
        except AzureError as err:
            if isinstance(err, HttpResponseError) and passthrough is not None and passthrough(err):
                raise
            source = self.source(job.piece.source)
            raise translate(err, source, f"copying it into block {job.index} of {job.target}") from None

    def commit(self, target: str, count: int, **kwargs: Any) -> dict[str, Any]:
        ids = [BlobBlock(block_id(self.nonce, i)) for i in range(count)]
        with translated(target, "publishing it (commit_block_list)"):
            return dict(self.blob(target).commit_block_list(ids, **kwargs))


def compose(store: BlobStore, uri: str, parts: Sequence[str], *, header: bytes, overwrite: bool,
            sizes: Sequence[int] | None = None, scratch: str | None = None) -> ComposeResult:
    """``sizes`` (when the caller knows them; else one request per part asks) and ``scratch``
    (where intermediates go; default beside the output) as in ``Store.compose``."""
    workers = max(1, store.compose_workers)
    if sizes is None:
        with ThreadPoolExecutor(workers) as pool:
            sizes = list(pool.map(store.size, parts))
    elif len(sizes) != len(parts):
        raise ValueError(f"{len(parts)} parts but {len(sizes)} sizes")
    scratch = scratch or f"{uri}.compose"
    merge = _Merge(store, uri, parts, f"{scratch}/{uuid.uuid4().hex[:12]}")
    first = 1 if header else 0

    def plan() -> ComposePlan:
        block = block_size_for(sum(sizes), store.server_block_bytes, store.max_blocks)
        with _too_big(uri):
            return plan_compose(sizes, header=bool(header), block_bytes=block,
                                max_blocks=store.max_blocks)

    try:
        method, chosen = ("server", plan()) if store.server_side_compose else ("download", None)
        probe = next((jobs[0] for jobs, _ in waves(merge, chosen, first) if jobs), None) if chosen else None
        if probe is not None:
            try:  # the first block tells whether the service copies server-side (staged again
                # with the rest below: the same block id and bytes, one request more)
                merge.translated(merge.server, probe, passthrough=_unsupported)
            except HttpResponseError as err:  # only what _unsupported let through
                log.info("%s: server-side copy not available (HTTP %s); merging through this "
                         "machine", uri, err.status_code)
                method = "download"
        if header:
            with translated(uri, "staging the header block"):
                merge.blob(uri).stage_block(block_id(merge.nonce, 0), header)
        if method == "server" and chosen is not None:
            for jobs, commits in waves(merge, chosen, first):
                merge.stage_all(jobs, workers)
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(lambda c: merge.commit(*c), commits))
            blocks, intermediates = first + len(chosen.output.blocks), len(chosen.intermediates)
        else:
            blocks, intermediates = first + _download(merge, sizes, first, workers), 0
        conditions: dict[str, Any] = {} if overwrite else {"match_condition": MatchConditions.IfMissing}
        committed = merge.commit(uri, blocks, **conditions)
    except Exception:
        with contextlib.suppress(Exception):  # best effort: the next merge deletes them too
            _forget(store, merge.folder, workers)
        raise
    try:  # this merge's intermediates and any a crashed merge left; the output is published
        # already, so a failure here is only logged (the next merge tries again)
        _forget(store, scratch, workers)
    except Exception as err:
        log.warning("%s: could not delete the merge's intermediate blobs under %s: %s",
                    uri, scratch, err)
    return ComposeResult(size=len(header) + sum(sizes), sha256=None,
                         version=str(committed.get("etag", "")).strip('"'), method=method,
                         blocks=blocks, intermediates=intermediates)


def waves(merge: _Merge, plan: ComposePlan, first: int) -> list[tuple[list[Stage], list[tuple[str, int]]]]:
    """Each level of intermediates, then the output: a wave's blocks are staged in parallel,
    across all its blobs, then each of its blobs is committed (the output by the caller)."""
    out = []
    for level in plan.levels():
        jobs = [Stage(merge.intermediate(k), i, piece) for k in level
                for i, piece in enumerate(plan.intermediates[k].blocks)]
        out.append((jobs, [(merge.intermediate(k), len(plan.intermediates[k].blocks))
                           for k in level]))
    out.append(([Stage(merge.uri, first + i, piece) for i, piece in enumerate(plan.output.blocks)],
                []))
    return out


def _download(merge: _Merge, sizes: Sequence[int], first: int, workers: int) -> int:
    """Stage the output's blocks from downloads (``plan_assembled``); how many blocks."""
    store = merge.store
    block = block_size_for(sum(sizes), store.fallback_block_bytes, store.max_blocks)
    with _too_big(merge.uri):
        assembled = plan_assembled(sizes, header=first > 0, block_bytes=block,
                                   max_blocks=store.max_blocks)
    # Each block in flight is held in memory: few blocks at a time, their pieces fetched by the
    # usual number of workers.
    with ThreadPoolExecutor(workers) as fetchers, ThreadPoolExecutor(min(workers, 4)) as pool:
        list(pool.map(lambda i: merge.assemble(first + i, assembled[i], fetchers),
                      range(len(assembled))))
    return len(assembled)


@contextlib.contextmanager
def _too_big(uri: str) -> Iterator[None]:
    try:
        yield
    except TooBigError as err:
        raise ScoreError(f"{uri}: {err}", hint="Write the output in several jobs.",
                         retryable=False) from None


def _forget(store: BlobStore, folder: str, workers: int) -> None:
    """Delete every blob under ``folder`` (a listing, then the deletes in parallel)."""
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(store.delete, list(store.list(folder))))
