"""How stores find their account and credentials: a ``StoreConfig`` built once from the job's
``[azure]`` table and the environment, handed to ``get_store``, and passed to workers.

A worker never reads the job file. It gets the non-secret part of the config in its work order
(``public()``) and the secrets it may use in a separate, secure environment variable
(``worker_secrets()``): per-task SAS URLs when the controller can sign them (least privilege),
otherwise the SAS tokens of the URLs the job named. Account keys and connection strings never
leave the controller when workers get SAS URLs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..secrets import Secret

if TYPE_CHECKING:
    from ..spec import JobSpec

CredentialKind = Literal["auto", "default", "connection_string", "key", "sas"]
WorkerAccess = Literal["auto", "sas", "identity"]

ENV_ACCOUNT = "AZURE_STORAGE_ACCOUNT"
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_KEY = "AZURE_STORAGE_KEY"
ENV_SAS = "AZURE_STORAGE_SAS_TOKEN"
# What a worker holding per-task SAS URLs must not inherit from the machine it runs on.
SECRET_ENV = (ENV_CONNECTION_STRING, ENV_KEY, ENV_SAS)


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name, "").strip()
    return Secret(value) if value else None


@dataclass(frozen=True)
class StoreConfig:
    """Everything a store needs to reach blobs. Hashable, so stores can be cached per config."""

    account: str | None = None
    credential: CredentialKind = "auto"
    endpoint: str | None = None  # blob endpoint for az:// URIs; default https://ACCOUNT.blob.core.windows.net
    connection_string: Secret | None = None
    account_key: Secret | None = None
    sas_token: Secret | None = None  # AZURE_STORAGE_SAS_TOKEN: used for any blob
    # SAS tokens taken off URLs the job named, by container URI prefix ("https://a.blob.../c/").
    sas: tuple[tuple[str, Secret], ...] = ()
    # Per-task SAS URLs, by the exact URI the task uses; with grants_only nothing else is tried.
    grants: tuple[tuple[str, Secret], ...] = ()
    grants_only: bool = False
    retry_total: int = 5
    retry_backoff: float = 1.0  # seconds before the first retry; then x2 per retry

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **settings: Any) -> StoreConfig:
        env = os.environ if env is None else env
        settings.setdefault("account", env.get(ENV_ACCOUNT) or None)
        return cls(connection_string=_secret(env, ENV_CONNECTION_STRING),
                   account_key=_secret(env, ENV_KEY), sas_token=_secret(env, ENV_SAS), **settings)

    @classmethod
    def from_spec(cls, spec: JobSpec, env: Mapping[str, str] | None = None) -> StoreConfig:
        env = os.environ if env is None else env
        azure = spec.azure
        return cls.from_env(
            env, account=azure.storage_account or env.get(ENV_ACCOUNT) or None,
            credential=azure.storage_credential, endpoint=azure.storage_endpoint,
            sas=tuple(sorted(spec.sas_tokens.items())),
        )

    def sas_for(self, uri: str) -> Secret | None:
        """The SAS token a URI the job named came with (longest matching container prefix)."""
        best = max((p for p, _ in self.sas if uri.startswith(p)), key=len, default=None)
        return dict(self.sas)[best] if best is not None else None

    def grant_for(self, uri: str) -> Secret | None:
        return dict(self.grants).get(uri)

    # -- what travels to workers ----------------------------------------------------------------
    def public(self) -> dict[str, Any]:
        """The non-secret settings, for the work order (may be logged and stored)."""
        return {"account": self.account, "credential": self.credential,
                "endpoint": self.endpoint, "retry_total": self.retry_total,
                "retry_backoff": self.retry_backoff}

    def worker_secrets(self, grants: Mapping[str, Secret] | None) -> str:
        """JSON for the worker's secure environment: per-task SAS URLs (``grants``, exact URIs),
        or, without them, the SAS tokens of the job's own URLs."""
        if grants is not None:
            return json.dumps({"grants": {u: s.reveal() for u, s in sorted(grants.items())}})
        return json.dumps({"sas": {p: s.reveal() for p, s in self.sas}})

    @classmethod
    def for_worker(cls, public: Mapping[str, Any], secrets: str | None,
                   env: Mapping[str, str] | None = None) -> StoreConfig:
        """The worker side of ``public()`` + ``worker_secrets()``. With grants, the worker uses
        nothing else (not even credentials lying around in its environment)."""
        data = json.loads(secrets) if secrets else {}
        grants = tuple(sorted((u, Secret(v)) for u, v in data.get("grants", {}).items()))
        sas = tuple(sorted((p, Secret(v)) for p, v in data.get("sas", {}).items()))
        base = cls.from_env(env, **{k: v for k, v in public.items() if k in _PUBLIC})
        if "grants" in data:
            return replace(base, connection_string=None, account_key=None, sas_token=None,
                           grants=grants, grants_only=True)
        return replace(base, sas=sas)


_PUBLIC = ("account", "credential", "endpoint", "retry_total", "retry_backoff")


def cache_root() -> Path:
    """Where downloads (models) are cached: ``SERVERLESS_SCORE_CACHE``, else ~/.cache/serverless-score."""
    return Path(os.environ.get("SERVERLESS_SCORE_CACHE") or Path.home() / ".cache" / "serverless-score")
