"""Azure SDK errors -> the tool's errors, naming the URI and what to do. The SDK's own message is
never passed on: a 403 from the service can echo the string it signed, SAS signature included."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from ...errors import AccessDeniedError, AlreadyExistsError, InputError, NotFoundError, ScoreError
from ...secrets import redact

ROLE_HINT = ("With Azure AD / managed identity, assign 'Storage Blob Data Reader' on what is read "
             "and 'Storage Blob Data Contributor' on the output's container or prefix.")


def _code(err: HttpResponseError) -> str:
    code = getattr(err, "error_code", None) or ""  # set by the storage SDK's error handler
    return str(getattr(code, "value", code))


def _sas_expiry(err: HttpResponseError) -> datetime | None:
    """When the SAS of the failed request expired, if it had one that did."""
    request = getattr(err.response, "request", None)
    url = getattr(request, "url", "") or ""
    values = parse_qs(urlsplit(url).query).get("se")
    if not values:
        return None
    try:
        expiry = datetime.fromisoformat(values[0].replace("Z", "+00:00"))
    except ValueError:
        return None
    return expiry if expiry <= datetime.now(UTC) else None


def translate(err: AzureError, uri: str, action: str) -> ScoreError:
    """The error to raise (``from None``) for ``err`` met while ``action`` on ``uri``."""
    if isinstance(err, ResourceNotFoundError):
        code = _code(err)
        if code == "ContainerNotFound":
            return NotFoundError(f"{uri}: the container does not exist",
                                 hint="Create the container or fix the URI.")
        if code == "BlobNotFound":
            return NotFoundError(f"{uri}: no such blob", hint="Check the path and the container.")
        return NotFoundError(f"{uri}: not found ({code or 'ResourceNotFound'}) while {action}",
                             hint="Check the storage account name: is it the right account?")
    if isinstance(err, ResourceExistsError):
        return AlreadyExistsError(f"{uri}: already exists", hint="It was not overwritten.")
    if isinstance(err, HttpResponseError) and err.status_code in (401, 403):
        return _denied(err, uri, action)
    if isinstance(err, ClientAuthenticationError):  # no token at all (DefaultAzureCredential)
        return AccessDeniedError(
            f"{uri}: no Azure credential could be obtained while {action}",
            hint="Sign in (az login), run with a managed identity, or set "
                 "AZURE_STORAGE_CONNECTION_STRING / a SAS URL; [azure] storage_credential picks one.")
    if isinstance(err, HttpResponseError) and err.status_code == 412:
        return ScoreError(f"{uri}: it changed while {action} (etag no longer matches)",
                          hint="Inputs and models must not change while a job runs; run it again.")
    if isinstance(err, HttpResponseError) and err.status_code in (500, 503):
        return ScoreError(
            f"{uri}: the storage service is busy ({_code(err) or err.status_code}) while {action}, "
            "and stayed so through every retry",
            hint="The account is being throttled: lower max_parallel, or run again later.")
    if isinstance(err, HttpResponseError):
        return ScoreError(f"{uri}: the storage service refused {action} "
                          f"(HTTP {err.status_code} {_code(err)})".rstrip())
    if isinstance(err, ServiceRequestError):
        return InputError(
            f"{uri}: cannot reach the blob endpoint while {action}",
            hint="Check the storage account name (a wrong one does not resolve) and the network.")
    return ScoreError(f"{uri}: {action} failed: {type(err).__name__}: {redact(str(err))[:300]}")


def _denied(err: HttpResponseError, uri: str, action: str) -> AccessDeniedError:
    code = _code(err) or str(err.status_code)
    expired = _sas_expiry(err)
    if expired is not None:
        return AccessDeniedError(f"{uri}: the SAS expired at {expired.isoformat()} ({action})",
                                 hint="Make a new SAS that lasts the whole job.")
    if code == "AuthorizationPermissionMismatch":
        return AccessDeniedError(f"{uri}: permission denied while {action} ({code})",
                                 hint="The SAS or identity lacks this permission. " + ROLE_HINT)
    return AccessDeniedError(
        f"{uri}: the storage service rejected the credentials while {action} ({code})",
        hint="The key or SAS does not belong to this account, is for another container or blob, "
             "or has expired. " + ROLE_HINT)


@contextlib.contextmanager
def translated(uri: str, action: str) -> Iterator[None]:
    try:
        yield
    except AzureError as err:
        raise translate(err, uri, action) from None
