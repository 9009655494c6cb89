"""Merging parts into one blob without the controller reading them.

Server-side: every block of the output is ``stage_block_from_url`` (the service copies a byte
range of a part), then one ``commit_block_list`` publishes the output atomically, conditionally
(``If-None-Match: *`` unless the job may overwrite). Where the service answers that it does not
implement Put Block From URL (501, e.g. Azurite before 3.37), the same blocks are downloaded and
staged instead: same result, bytes through the controller, memory bounded by the blocks in flight.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobBlock

from ...errors import ScoreError
from ..base import ComposeResult
from ..blocks import MAX_BLOCKS, BlockSource, block_id, block_size_for, plan_blocks
from .errors import translate, translated

if TYPE_CHECKING:
    from .store import BlobStore

log = logging.getLogger(__name__)
_NOT_IMPLEMENTED = {"APINotImplemented", "NotImplemented", "FeatureNotSupported"}


def _unsupported(err: HttpResponseError) -> bool:
    raw = getattr(err, "error_code", None)
    code = str(getattr(raw, "value", raw) or "")
    return err.status_code == 501 or code in _NOT_IMPLEMENTED


def check_block_count(uri: str, count: int) -> None:
    if count > MAX_BLOCKS:
        raise ScoreError(
            f"{uri}: the output would need {count} blocks; a blob holds at most {MAX_BLOCKS}",
            hint="Use fewer, bigger tasks (chunks / chunk_size).", retryable=False)


def compose(store: BlobStore, uri: str, parts: Sequence[str], *, header: bytes,
            overwrite: bool) -> ComposeResult:
    clients = store.clients
    target = clients.blob(uri)
    workers = max(1, store.compose_workers)
    with ThreadPoolExecutor(workers) as pool:
        sizes = list(pool.map(store.size, parts))
    nonce = uuid.uuid4().hex[:12]
    first = 1 if header else 0
    if header:
        with translated(uri, "staging the header block"):
            target.stage_block(block_id(nonce, 0), header)

    def plan(preferred: int) -> list[BlockSource]:
        blocks = plan_blocks(sizes, block_size_for(sizes, preferred, first), first_index=first)
        check_block_count(uri, first + len(blocks))
        return blocks

    def server(block: BlockSource) -> None:
        source, extra = clients.copy_source(parts[block.part])
        target.stage_block_from_url(block_id(nonce, block.index), source,
                                    source_offset=block.offset, source_length=block.length, **extra)

    def download(block: BlockSource) -> None:
        part = clients.blob(parts[block.part])
        with translated(parts[block.part], "downloading it for the merge"):
            data = part.download_blob(offset=block.offset, length=block.length).readall()
        with translated(uri, "staging a block"):
            target.stage_block(block_id(nonce, block.index), data)

    blocks = plan(store.server_block_bytes)
    method = "server" if store.server_side_compose and blocks else "download"
    if method == "server":
        try:
            with_translation(uri, server, blocks[0], passthrough=_unsupported)
        except HttpResponseError as err:  # only what _unsupported let through
            log.info("%s: server-side copy not available (HTTP %s); merging through this machine",
                     uri, err.status_code)
            method = "download"
    if method == "download":
        blocks = plan(store.fallback_block_bytes)
        todo, stage = blocks, download
        # Each block in flight is held in memory: keep few in flight.
        workers = min(workers, 4)
    else:
        todo, stage = blocks[1:], server
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda b: with_translation(uri, stage, b), todo):
            pass
    ids = [block_id(nonce, 0)] * first + [block_id(nonce, b.index) for b in blocks]
    with translated(uri, "publishing it (commit_block_list)"):
        kwargs: dict[str, Any] = {} if overwrite else {"match_condition": MatchConditions.IfMissing}
        committed = target.commit_block_list([BlobBlock(i) for i in ids], **kwargs)
    return ComposeResult(size=len(header) + sum(sizes), sha256=None,
                         version=str(committed.get("etag", "")).strip('"'), method=method,
                         blocks=len(ids))


def with_translation(uri: str, stage: Callable[[BlockSource], None], block: BlockSource, *,
                     passthrough: Callable[[HttpResponseError], bool] | None = None) -> None:
    """Run ``stage(block)``, translating SDK errors, except those ``passthrough`` keeps raw."""
    try:
        stage(block)
    except AzureError as err:
        if isinstance(err, HttpResponseError) and passthrough is not None and passthrough(err):
            raise
        raise translate(err, uri, f"copying block {block.index} (part {block.part})") from None
