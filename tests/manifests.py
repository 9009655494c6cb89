"""Reading a job's manifest from tests as a reader of the output would: the summary beside the
output, and its task lines through ``controller.manifest.read_tasks`` (which checks they are the
summary's own)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from serverless_score.controller.manifest import read_tasks
from serverless_score.layout import JobLayout
from serverless_score.storage import get_store


def manifest_tasks(output: str | Path) -> list[dict[str, Any]]:
    """The task rows of the manifest of ``output`` (a local path or a blob URI), in task order."""
    layout = JobLayout(str(output))
    store = get_store(str(output))
    rows = read_tasks(store, layout, json.loads(store.read_bytes(layout.manifest)))
    assert rows is not None, f"{layout.manifest_tasks} is missing or not the summary's"
    return rows
