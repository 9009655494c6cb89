"""``serverless-score models ...``: models in storage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..errors import ScoreError
from ..model_push import push_model
from ..secrets import Secret
from ..storage import StoreConfig
from ..storage.uris import BlobUriError, parse_blob_uri, split_sas

app = typer.Typer(help="Models in storage: upload one, get the URI to put in a job file.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
err_console = Console(stderr=True)


def _config(uri: str, account: str | None, credential: str) -> tuple[str, StoreConfig]:
    base, token = split_sas(uri)
    sas: tuple[tuple[str, Secret], ...] = ()
    if token is not None:
        try:
            sas = ((parse_blob_uri(base).container_uri, Secret(token)),)
        except BlobUriError as err:
            raise ScoreError(str(err)) from None
    settings: dict[str, Any] = {"credential": credential, "sas": sas}
    if account:
        settings["account"] = account
    return base, StoreConfig.from_env(**settings)


@app.command()
def push(
    file: Annotated[Path, typer.Argument(help="The model file (joblib, pickle, rds...).")],
    uri: Annotated[str, typer.Argument(help="Where models live: az://CONTAINER/PREFIX, an https:// URL (with a SAS or not) or a folder.")],
    account: Annotated[str | None, typer.Option(help="Storage account for az:// (default: AZURE_STORAGE_ACCOUNT or the connection string's).")] = None,
    credential: Annotated[str, typer.Option(help="auto | default | connection_string | key | sas")] = "auto",
    exact: Annotated[bool, typer.Option("--exact", help="Store at URI itself, not under URI/<sha256 prefix>/<name>.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --exact: replace other content at URI (jobs running on it then fail on its checksum).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of the URI.")] = False,
) -> None:
    """Upload FILE under URI/<sha256 prefix>/<name> (never overwriting), or at URI with --exact,
    and print its URI."""
    from . import _fail

    try:
        if credential not in ("auto", "default", "connection_string", "key", "sas"):
            raise ScoreError(f"--credential: expected auto, default, connection_string, key or sas; got {credential!r}")
        base, config = _config(uri, account, credential)
        if overwrite and not exact:
            raise ScoreError("--overwrite: only with --exact (a content address never needs it)")
        pushed = push_model(file, base, config, exact=exact, overwrite=overwrite)
    except ScoreError as err:
        raise _fail(err, as_json=as_json, debug=False) from None
    what = "stored" if pushed.created else "already there (same sha256)"
    err_console.print(f"{what}: {pushed.size:,} bytes, sha256 {pushed.sha256}", highlight=False)
    err_console.print(f'put this in the job file:  model = "{pushed.uri}"', highlight=False)
    print(json.dumps(pushed.to_dict()) if as_json else pushed.uri)
