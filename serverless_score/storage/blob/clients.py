"""URI -> SDK client, with the right account, endpoint and credential; and SAS signing.

Which credential a blob gets (``[azure] storage_credential``, default ``auto``, first that applies):

1. a per-task SAS URL (``grants``): a worker that has them uses nothing else;
2. the SAS token of the URL the job named for that container;
3. ``AZURE_STORAGE_CONNECTION_STRING``, when it is for the URI's account;
4. ``AZURE_STORAGE_SAS_TOKEN``; 5. ``AZURE_STORAGE_KEY``;
6. ``DefaultAzureCredential`` (managed identity, Azure CLI, environment).

Naming a kind (``default``, ``connection_string``, ``key``, ``sas``) allows only that one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.storage.blob import (
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ExponentialRetry,
    generate_blob_sas,
)

from ...errors import InputError
from ...secrets import Secret
from ..azure_auth import default_credential
from ..config import ENV_CONNECTION_STRING, ENV_KEY, ENV_SAS, StoreConfig
from ..uris import BlobPath, BlobUriError, parse_blob_uri
from .errors import translated

CLOCK_SKEW = timedelta(minutes=5)  # SAS start times back-dated: clocks of client and service differ


class _Retry(ExponentialRetry):
    """Exponential backoff from ``backoff`` seconds, x2 per retry, +-20% jitter. The SDK's default
    starts at 15 s, which would stall a test or a small job for minutes on one throttled call."""

    def __init__(self, backoff: float, total: int) -> None:
        super().__init__(initial_backoff=1, increment_base=2, retry_total=total,
                         random_jitter_range=0)
        self._backoff = backoff

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        import random

        return float(self._backoff * (2 ** settings["count"]) * random.uniform(0.8, 1.2))

    def increment(self, settings: dict[str, Any], request: Any, response: Any = None,
                  error: AzureError | None = None) -> bool:
        # No token (DefaultAzureCredential found nothing, a managed identity refused): the storage
        # SDK's policy retries any AzureError, so every call slept ~60 s through its backoff and
        # ran the whole credential chain (and its WARNING) 6 times before failing the same way.
        # azure-core's own RetryPolicy never retries this error; credentials retry their own
        # transient failures (the managed-identity client waits out a starting endpoint).
        if isinstance(error, ClientAuthenticationError):
            return False
        return bool(super().increment(settings, request, response, error))


@dataclass
class Account:
    """A service client and what it can sign with."""

    service: BlobServiceClient
    account_key: str | None = None  # shared key: signs SAS
    token: Any = None  # a TokenCredential: signs user-delegation SAS, authorizes copies
    sas: bool = False  # the client carries a SAS in its URLs


class Clients:
    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._accounts: dict[tuple[str, ...], Account] = {}
        self._delegation: dict[str, tuple[Any, datetime]] = {}
        self._lock = threading.Lock()
        self._kwargs: dict[str, Any] = {
            "retry_policy": _Retry(config.retry_backoff, config.retry_total)}

    # -- parsing --------------------------------------------------------------------------------
    @staticmethod
    def path(uri: str) -> BlobPath:
        try:
            return parse_blob_uri(uri)
        except BlobUriError as err:
            raise InputError(str(err), retryable=False) from None

    # -- clients --------------------------------------------------------------------------------
    def blob(self, uri: str) -> BlobClient:
        grant = self.config.grant_for(uri)
        if grant is not None:
            return BlobClient.from_blob_url(grant.reveal(), **self._kwargs)
        if self.config.grants_only:
            raise InputError(f"{uri}: this task was given no access to it",
                             hint="A worker may only touch its model, its input and its own part.",
                             retryable=False)
        path = self.path(uri)
        return self.account(path).service.get_blob_client(path.container, path.name)

    def container(self, uri: str) -> tuple[ContainerClient, BlobPath]:
        path = self.path(uri)
        if self.config.grants_only:
            raise InputError(f"{uri}: a worker cannot list blobs", retryable=False)
        return self.account(path).service.get_container_client(path.container), path

    def account(self, path: BlobPath) -> Account:
        cfg = self.config
        kind = cfg.credential
        sas = cfg.sas_for(path.container_uri)
        key = (path.endpoint or "", path.account or "", path.container_uri if sas else "")
        with self._lock:
            if key not in self._accounts:
                self._accounts[key] = self._make_account(path, kind, sas)
            return self._accounts[key]

    def _make_account(self, path: BlobPath, kind: str, sas: Secret | None) -> Account:
        cfg = self.config
        if sas is not None:  # the token of the URL the job named wins for its container
            endpoint = self._endpoint(path)
            return Account(BlobServiceClient(endpoint, credential=sas.reveal(), **self._kwargs), sas=True)
        if cfg.connection_string is not None and kind in ("auto", "connection_string"):
            service = BlobServiceClient.from_connection_string(cfg.connection_string.reveal(),
                                                               **self._kwargs)
            wanted = path.account or cfg.account
            if wanted in (None, service.account_name):
                return Account(service, account_key=getattr(service.credential, "account_key", None),
                               sas=service.credential is None)
            if kind == "connection_string":
                raise InputError(
                    f"{path.uri}: the connection string is for account {service.account_name!r}, "
                    f"not {wanted!r}", hint="Fix [azure] storage_account or the URI.", retryable=False)
        endpoint = self._endpoint(path)
        account = path.account or cfg.account
        assert account is not None  # _endpoint checked
        if cfg.sas_token is not None and kind in ("auto", "sas"):
            return Account(BlobServiceClient(endpoint, credential=cfg.sas_token.reveal(), **self._kwargs),
                           sas=True)
        if cfg.account_key is not None and kind in ("auto", "key"):
            credential = AzureNamedKeyCredential(account, cfg.account_key.reveal())
            return Account(BlobServiceClient(endpoint, credential=credential, **self._kwargs),
                           account_key=cfg.account_key.reveal())
        if kind in ("auto", "default"):
            if not endpoint.startswith("https://"):  # the SDK would raise a bare ValueError
                raise InputError(
                    f"{path.uri}: no key or SAS for this plain-http endpoint, and Azure AD tokens "
                    "are only sent over https", retryable=False,
                    hint="For an emulator (Azurite) set AZURE_STORAGE_CONNECTION_STRING, "
                         "AZURE_STORAGE_KEY or a SAS URL.")
            token = default_credential()
            return Account(BlobServiceClient(endpoint, credential=token, **self._kwargs), token=token)
        variable = {"connection_string": ENV_CONNECTION_STRING, "key": ENV_KEY, "sas": ENV_SAS}[kind]
        raise InputError(f"{path.uri}: [azure] storage_credential = {kind!r} but {variable} is not set",
                         hint=f"Set {variable}, or use storage_credential = \"auto\".", retryable=False)

    def _endpoint(self, path: BlobPath) -> str:
        if path.endpoint:
            return path.endpoint
        account = path.account or self.config.account
        if not account:
            raise InputError(
                f"{path.uri}: which storage account? az:// URIs need one",
                hint="Set [azure] storage_account in the job, or AZURE_STORAGE_ACCOUNT, or "
                     "AZURE_STORAGE_CONNECTION_STRING; or give https://ACCOUNT.blob.core.windows.net/... URLs.",
                retryable=False)
        return self.config.endpoint or f"https://{account}.blob.core.windows.net"

    # -- SAS ------------------------------------------------------------------------------------
    def signer(self, uri: str) -> str | None:
        """How SAS URLs for ``uri`` can be signed: ``"key"`` (account key), ``"delegation"``
        (a user delegation key, with Azure AD), or None (a SAS cannot make a narrower one)."""
        if self.config.grants_only:
            return None
        account = self.account(self.path(uri))
        if account.account_key is not None:
            return "key"
        return "delegation" if account.token is not None else None

    def sas_url(self, uri: str, permission: str, lifetime: timedelta) -> Secret | None:
        """A URL of ``uri`` with a SAS allowing only ``permission`` (letters of ``rcwd``) for
        ``lifetime``: signed with the account key, or a user delegation key with Azure AD; None
        when this credential cannot sign (a SAS cannot make a narrower SAS)."""
        path = self.path(uri)
        account = self.account(path)
        now = datetime.now(UTC)
        expiry = now + lifetime
        signing: dict[str, Any] = {}
        if account.account_key is not None:
            signing["account_key"] = account.account_key
        elif account.token is not None:
            signing["user_delegation_key"] = self._delegation_key(account, uri, expiry)
        else:
            return None
        client = account.service.get_blob_client(path.container, path.name)
        token = generate_blob_sas(
            str(account.service.account_name), path.container, path.name,
            permission=BlobSasPermissions.from_string(permission), expiry=expiry,
            start=now - CLOCK_SKEW, **signing)
        return Secret(f"{client.url}?{token}")

    def _delegation_key(self, account: Account, uri: str, expiry: datetime) -> Any:
        name = str(account.service.account_name)
        with self._lock:
            cached = self._delegation.get(name)
            if cached is not None and cached[1] >= expiry:
                return cached[0]
        start = datetime.now(UTC) - CLOCK_SKEW
        until = max(expiry, start + timedelta(hours=1))
        with translated(uri, "getting a user delegation key to sign SAS URLs"):
            key = account.service.get_user_delegation_key(start, until)
        with self._lock:
            self._delegation[name] = (key, until)
        return key

    def copy_source(self, uri: str) -> tuple[str, dict[str, Any]]:
        """How the service may read ``uri`` for a server-side copy: a URL (with a short read SAS
        when we can sign) and the extra keyword arguments of ``stage_block_from_url``."""
        grant = self.config.grant_for(uri)
        if grant is not None:
            return grant.reveal(), {}
        path = self.path(uri)
        account = self.account(path)
        if account.account_key is not None:
            signed = self.sas_url(uri, "r", timedelta(hours=2))
            assert signed is not None
            return signed.reveal(), {}
        # (a client only for its URL, made only where needed: a merge asks once a part, and an
        # SDK client costs ~0.5 ms of CPU to make)
        client = account.service.get_blob_client(path.container, path.name)
        if account.token is not None:
            token = account.token.get_token("https://storage.azure.com/.default").token
            return client.url, {"source_authorization": f"Bearer {token}"}
        return client.url, {}  # the client's URL already carries its SAS
