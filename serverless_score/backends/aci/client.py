"""The one place that talks to ARM: a thin wrapper over ``ContainerInstanceManagementClient``,
one method per call, with the SDK's hidden waits taken out and its errors translated.

* Credential: ``DefaultAzureCredential`` (managed identity, workload identity, environment
  service principal, ``az login``; never the interactive browser), unless one is passed in;
  a failure to find any is remembered (``storage.azure_auth.FailFastCredential``).
* Endpoint: ``SERVERLESS_SCORE_ARM_ENDPOINT`` (see ``settings.arm_endpoint``); plain http is
  allowed to loopback only, for the local emulator, by telling the bearer-token policy so.
* Retries: the SDK's own retry policy keeps connection/read retries but does **no** status
  retries: on 429 it would sleep ``Retry-After`` uncapped inside the call. Status errors come
  back here; ``Throttled`` carries the Retry-After for the caller's capped, jittered wait.
* Create sends exactly one PUT (``polling=False``): no background poller thread GETting the
  group every 30 s. The backend's own poll schedule decides when to look.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ...errors import ScoreError
from ...secrets import redact
from .groups import CONTAINER
from .settings import AciSettings
from .throttle import backoff, parse_retry_after

log = logging.getLogger(__name__)
T = TypeVar("T")
_TRANSIENT = {408, 429, 500, 502, 503, 504}


class Throttled(Exception):
    """429 (or a transient 5xx): try again after ``retry_after`` seconds (None: back off)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaReached(Exception):
    """ContainerGroupQuotaReached: the region's groups or cores are used up for now."""


class Refused(Exception):
    """ARM refused this one request (a create with an image it cannot pull, an invalid body, a
    conflict): for a create the group fails and the job may still go on (other groups, retries);
    for a read the backend keeps watching."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def error_code(err: Any) -> str:
    inner = getattr(err, "error", None)
    return str(getattr(inner, "code", None) or "")


def error_message(err: Any) -> str:
    inner = getattr(err, "error", None)
    text = getattr(inner, "message", None) or getattr(err, "message", None) or str(err)
    return redact(str(text).strip().splitlines()[0] if str(text).strip() else "")


def _retry_after(err: Any) -> float | None:
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or {}
    return parse_retry_after(headers.get("Retry-After"))


class AciClient:
    def __init__(self, settings: AciSettings, credential: Any = None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from azure.core.pipeline.policies import SansIOHTTPPolicy
        from azure.mgmt.containerinstance import ContainerInstanceManagementClient

        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        if credential is None:
            # DefaultAzureCredential without the browser, remembering a failure to find any
            # credential: the backend's polls and cleanup then fail at once, not each after
            # another pass through the chain (and another WARNING).
            from ...storage.azure_auth import chain_credential

            credential = chain_credential()

        class _AllowLoopbackHttp(SansIOHTTPPolicy):
            def on_request(self, request: Any) -> None:
                request.context["enforce_https"] = False

        extra = {}
        if settings.arm_endpoint.startswith("http://"):  # settings allowed loopback only
            extra["per_call_policies"] = [_AllowLoopbackHttp()]
        self._sdk = ContainerInstanceManagementClient(
            credential, settings.subscription_id, base_url=settings.arm_endpoint,
            credential_scopes=[_scope(settings.arm_endpoint)],
            retry_status=0, retry_total=3, retry_backoff_factor=0.5, retry_backoff_max=8,
            connection_timeout=20, read_timeout=60, **extra)
        self.calls: dict[str, int] = {}  # ARM calls by kind, for the bench and the tests

    # -- one method per call ------------------------------------------------------------------
    def create(self, name: str, group: Any) -> str:
        """One PUT; returns the answer's ``Azure-AsyncOperation`` URL ("" without one), where
        Azure puts the reason when provisioning fails later. Raises Throttled, QuotaReached,
        Refused or ScoreError."""
        self._count("create")
        try:
            # With polling off, ``result()`` hands the initial answer to ``cls``: no extra call.
            poller: Any = self._sdk.container_groups.begin_create_or_update(
                self.settings.resource_group, name, group, polling=False,
                cls=lambda response, _model, _headers: response.http_response.headers)
            headers = poller.result()
        except Exception as err:
            raise self._classify(err, f"create container group {name!r}") from err
        return str(headers.get("Azure-AsyncOperation") or "")

    def operation(self, url: str) -> tuple[str, str, str]:
        """(status, error code, error message) of an async operation document (code and message
        "" without an ``error``). Through the SDK's own pipeline (token, retries, the loopback policy), and only to
        the ARM endpoint itself: a URL elsewhere would be handed our bearer token. Raises
        Throttled, Refused or ScoreError."""
        from azure.core.exceptions import HttpResponseError
        from azure.core.rest import HttpRequest

        if not _same_origin(url, self.settings.arm_endpoint):
            raise Refused("ForeignOperationUrl",
                          f"the operation URL is not on {self.settings.arm_endpoint}: {url!r}")
        self._count("operation")
        try:
            response = self._sdk._send_request(HttpRequest("GET", url))
            response.raise_for_status()
            body = response.json()
        except HttpResponseError as err:
            raise self._classify(err, "read the create operation") from err
        except ValueError as err:  # not JSON
            raise Refused("InvalidOperation", f"the operation document is not JSON: {err}") from err
        except Exception as err:
            raise self._classify(err, "read the create operation") from err
        if not isinstance(body, dict):
            raise Refused("InvalidOperation", "the operation document is not a JSON object")
        status = str(body.get("status") or "")
        error = body.get("error")
        if not isinstance(error, dict):
            return status, "", ""
        return (status, str(error.get("code") or ""),
                redact(" ".join(str(error.get("message") or "").split())))

    def get(self, name: str) -> Any | None:
        """The group with its instance view, or None when it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        self._count("get")
        try:
            return self._sdk.container_groups.get(self.settings.resource_group, name)
        except ResourceNotFoundError:
            return None
        except Exception as err:
            raise self._classify(err, f"read container group {name!r}") from err

    def list(self) -> builtins.list[Any]:
        """Every group of the resource group (no instance views: ARM leaves them out)."""
        self._count("list")
        try:
            return list(self._sdk.container_groups.list_by_resource_group(
                self.settings.resource_group))
        except Exception as err:
            raise self._classify(err, "list container groups") from err

    def logs(self, name: str) -> str:
        from azure.core.exceptions import ResourceNotFoundError

        self._count("logs")
        try:
            result = self._sdk.containers.list_logs(self.settings.resource_group, name, CONTAINER)
        except ResourceNotFoundError:
            return ""
        except Exception as err:
            raise self._classify(err, f"read the logs of {name!r}") from err
        return str(result.content or "")

    def delete(self, name: str, timeout: float) -> None:
        """DELETE and wait until it is gone (polled every second); gone already is fine."""
        from azure.core.exceptions import ResourceNotFoundError

        self._count("delete")
        try:
            poller = self._sdk.container_groups.begin_delete(
                self.settings.resource_group, name, polling_interval=1.0)
            poller.result(timeout=timeout)
        except ResourceNotFoundError:
            return
        except Exception as err:
            raise self._classify(err, f"delete container group {name!r}") from err
        if not poller.done():
            raise Throttled(f"container group {name!r} was still being deleted after "
                            f"{timeout:g}s", None)

    def usage(self) -> builtins.list[Any]:
        self._count("usage")
        try:
            return list(self._sdk.location.list_usage(self.settings.location))
        except Exception as err:
            raise self._classify(err, f"read the ACI quota of {self.settings.location}") from err

    # -- blocking retries, for calls that must eventually succeed -----------------------------
    def retrying(self, what: str, call: Callable[[], T], *, deadline: float) -> T:
        """``call()`` until it succeeds, waiting out throttling (capped, jittered), until
        ``deadline`` (a ``clock()`` time); then the last error as a ScoreError."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except Throttled as err:
                wait = backoff(attempt, err.retry_after)
                if self.clock() + wait > deadline:
                    raise ScoreError(f"Azure kept refusing to {what}: {err}",
                                     hint="ARM is throttling this subscription; try again in "
                                          "a few minutes.") from err
                log.info("%s: throttled, retrying in %.1fs", what, wait)
                self.sleep(wait)

    # -- internals ----------------------------------------------------------------------------
    def _count(self, kind: str) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1

    def _classify(self, err: Exception, what: str) -> Exception:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        where = (f"resource group {self.settings.resource_group!r} of subscription "
                 f"{self.settings.subscription_id}")
        if isinstance(err, ClientAuthenticationError) and not isinstance(err, HttpResponseError):
            return ScoreError(
                f"cannot get an Azure token to {what}: {error_message(err)}", retryable=False,
                hint="Sign in (az login), or run with a managed identity, or set AZURE_CLIENT_ID "
                     "/ AZURE_TENANT_ID / AZURE_CLIENT_SECRET.")
        if isinstance(err, ServiceRequestError | ServiceResponseError):
            return Throttled(f"no answer from {self.settings.arm_endpoint}: {error_message(err)}",
                             None)
        if not isinstance(err, HttpResponseError):
            return err
        status = err.status_code or 0
        code = error_code(err)
        message = error_message(err)
        if code == "ContainerGroupQuotaReached":
            return QuotaReached(message)
        if status in _TRANSIENT:
            return Throttled(f"{status} {code or ''} {message}".strip(), _retry_after(err))
        if status in (401, 403):
            return ScoreError(
                f"not allowed to {what} in {where}: {code or status}: {message}", retryable=False,
                hint="The identity running the controller needs 'Contributor' (or "
                     "Microsoft.ContainerInstance/containerGroups/*) on the resource group, and "
                     "'Managed Identity Operator' on [azure] identity to hand it to the group.")
        if code in ("ResourceGroupNotFound", "SubscriptionNotFound", "InvalidSubscriptionId",
                    "LocationNotAvailableForResourceType", "NoRegisteredProviderFound"):
            return ScoreError(f"cannot {what}: {code}: {message}", retryable=False,
                              hint=f"Check [azure] subscription_id, resource_group and location ({where}).")
        if status == 404:
            return ScoreError(f"cannot {what}: not found ({code}): {message}", retryable=False)
        return Refused(code or str(status), message)


def _same_origin(url: str, endpoint: str) -> bool:
    from urllib.parse import urlsplit

    a, b = urlsplit(url), urlsplit(endpoint)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port) and bool(a.hostname)


def _scope(endpoint: str) -> str:
    """The token scope of an ARM endpoint: a sovereign cloud's own (its endpoint), the public
    cloud's for the public endpoint and for a local emulator (which stands in for it)."""
    from urllib.parse import urlsplit

    if urlsplit(endpoint).hostname in ("127.0.0.1", "localhost", "::1"):
        return "https://management.azure.com/.default"
    return endpoint.rstrip("/") + "/.default"
