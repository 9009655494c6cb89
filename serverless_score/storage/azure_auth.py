"""Token credentials for Blob Storage (azure-identity), created once per process.

``DefaultAzureCredential`` tries, in order, environment service principals, workload identity,
managed identity, the Azure CLI, ... which is what a container on ACI (managed identity) and a
developer's shell (``az login``) both need. The interactive browser flow stays off: a batch job
must never wait for a person.

With no credential at all, each pass through that chain costs from milliseconds up to several
seconds (the managed-identity endpoint's probe and retries, ``az`` starting) and logs a long
WARNING. :class:`FailFastCredential` makes a process pay that once: every later request fails at
once with the first failure.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

from ..errors import InputError

# The resource id of the user-assigned managed identity a worker runs as (set on ACI groups).
ENV_WORKER_IDENTITY = "SERVERLESS_SCORE_WORKER_IDENTITY"


class FailFastCredential:
    """A ``TokenCredential`` (``get_token`` and ``get_token_info``) over another one that
    remembers a failure to get any token and raises it again at once for the same scopes.

    Why: a process asks for tokens from many clients and threads (blob clients per account, ARM
    polls, cleanup after a failure), and azure-identity keeps no memory of a chain that found
    nothing, so each request would pay the whole chain again and log its WARNING again.

    Only while no token was ever obtained: a credential that has worked once may fail for a
    passing reason (a network blip, the managed-identity endpoint busy), and that must stay
    retryable. Failures are kept per scopes (and tenant) because a credential may be denied one
    resource's token and granted another's. The first request holds a lock, so threads starting
    together wait for its outcome instead of each probing the chain.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._failures: dict[tuple[Any, ...], Any] = {}  # ClientAuthenticationError (SDK types)
        self._worked = False

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  **kwargs: Any) -> Any:
        return self._call(self.inner.get_token, (scopes, tenant_id), *scopes, claims=claims,
                          tenant_id=tenant_id, **kwargs)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        tenant = (options or {}).get("tenant_id")
        return self._call(self.inner.get_token_info, (scopes, tenant), *scopes, options=options)

    def _call(self, method: Any, key: tuple[Any, ...], *args: Any, **kwargs: Any) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        if self._worked:  # the common path: no lock once a token came back
            return method(*args, **kwargs)
        with self._lock:
            failed = self._failures.get(key)
            if failed is not None:
                # A new exception each time (threads may raise it at once), same type and text.
                raise type(failed)(message=str(failed)) from failed
            try:
                token = method(*args, **kwargs)
            except ClientAuthenticationError as err:  # CredentialUnavailableError is one too
                if not self._worked:
                    self._failures[key] = err
                raise
            self._worked = True
            self._failures.clear()
            return token

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> FailFastCredential:
        self.inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.inner.__exit__(*args)


def _identity() -> Any:
    try:
        import azure.identity
    except ImportError as err:
        raise InputError(
            "Azure Blob Storage needs the azure-identity package, which is not installed",
            hint="pip install 'serverless-score[blob]'", retryable=False,
        ) from err
    return azure.identity


def chain_credential() -> Any:
    """A new ``DefaultAzureCredential`` (never the browser) that fails fast."""
    return FailFastCredential(_identity().DefaultAzureCredential(exclude_interactive_browser_credential=True))


@cache
def default_credential() -> Any:
    identity = _identity()
    resource_id = os.environ.get(ENV_WORKER_IDENTITY)
    if not resource_id:
        return chain_credential()
    # Inside an ACI container group with a user-assigned identity (the backend sets this): ask
    # for that identity's token by its resource id, which the group knows, instead of relying on
    # the platform picking it when no client id is given. Not wrapped in FailFastCredential: a
    # worker is one task, and its identity endpoint may still be starting when it first asks
    # (the credential's own retry policy waits for that; a remembered failure must not end it).
    return identity.ManagedIdentityCredential(identity_config={"resource_id": resource_id})
