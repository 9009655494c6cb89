"""The ``Http`` action: a real HTTP request with the service's behaviour around it — managed-identity
tokens, the default retry policy (408, 429, 5xx and connection errors; ``Retry-After`` honoured),
and the asynchronous pattern (202 + ``Location``: poll until the answer is no longer 202)."""

from __future__ import annotations

import json
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from .expressions import ExpressionError
from .timing import duration_seconds

RETRY_STATUS = {408, 429} | set(range(500, 600))
HTTP_INPUTS = {"method", "uri", "headers", "queries", "body", "authentication", "retryPolicy"}


@dataclass
class ManagedIdentity:
    """Where the workflow's managed identity gets tokens: the App Service flow (IDENTITY_ENDPOINT +
    IDENTITY_HEADER), which the local ACI emulator serves. Tokens are cached per audience."""

    endpoint: str
    header: str
    _cache: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict, repr=False)

    def token(self, audience: str, identity: str | None) -> str:
        key = (audience, identity or "")
        cached = self._cache.get(key)
        if cached and cached[1] > time.time() + 60:
            return cached[0]
        params = {"api-version": "2019-08-01", "resource": audience}
        if identity:
            params["mi_res_id"] = identity  # a user-assigned identity, by resource id
        reply = requests.get(self.endpoint, params=params, timeout=10,
                             headers={"X-IDENTITY-HEADER": self.header, "Metadata": "true"})
        reply.raise_for_status()
        answer = reply.json()
        self._cache[key] = (answer["access_token"], float(answer.get("expires_on", 0)))
        return str(answer["access_token"])


class HttpFailed(Exception):
    """The action failed: ``outputs`` is what the service would record (may be empty)."""

    def __init__(self, message: str, outputs: dict[str, Any]) -> None:
        super().__init__(message)
        self.outputs = outputs


def _body(reply: requests.Response) -> Any:
    if not reply.content:
        return None
    if "json" in reply.headers.get("Content-Type", "").lower():
        try:
            return reply.json()
        except ValueError:
            pass
    return reply.text


def _outputs(reply: requests.Response) -> dict[str, Any]:
    return {"statusCode": reply.status_code, "headers": dict(reply.headers), "body": _body(reply)}


@dataclass(frozen=True)
class RetryPolicy:
    count: int
    interval: float
    exponential: bool

    @classmethod
    def parse(cls, raw: Any) -> RetryPolicy:
        # The default policy: exponential interval, 4 retries, 7.5 s base (logic-apps-exception-handling.md)
        if raw is None:
            return cls(4, 7.5, True)
        kind = str(raw.get("type", "")).lower()
        if kind == "none":
            return cls(0, 0.0, False)
        if kind in ("fixed", "exponential"):
            return cls(int(raw.get("count", 4)), duration_seconds(raw.get("interval", "PT7S")),
                       kind == "exponential")
        raise ExpressionError(f"retryPolicy type {raw.get('type')!r} is not supported here")

    def wait(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return float(retry_after)
        if self.exponential:
            return min(45.0, max(5.0, self.interval * (2 ** attempt) * random.uniform(0.8, 1.2)))
        return self.interval


def send(inputs: dict[str, Any], *, msi: ManagedIdentity | None, async_pattern: bool,
         sleep: Callable[[float], None] = time.sleep,
         retry_scale: float = 1.0) -> dict[str, Any]:
    """Run one Http action; returns its outputs or raises HttpFailed."""
    unknown = set(inputs) - HTTP_INPUTS
    if unknown:
        raise ExpressionError(f"Http inputs not supported here: {', '.join(sorted(unknown))}")
    method = str(inputs["method"]).upper()
    uri = str(inputs["uri"])
    if inputs.get("queries"):
        sep = "&" if "?" in uri else "?"
        uri += sep + urllib.parse.urlencode({k: str(v) for k, v in inputs["queries"].items()})
    headers = {str(k): str(v) for k, v in (inputs.get("headers") or {}).items()}
    auth = inputs.get("authentication")
    if auth is not None:
        if str(auth.get("type", "")).lower() != "managedserviceidentity":
            raise ExpressionError(f"authentication type {auth.get('type')!r} is not supported here")
        if msi is None:
            raise HttpFailed("the workflow has no managed identity endpoint", {})
        audience = str(auth.get("audience") or "https://management.azure.com/")
        headers["Authorization"] = "Bearer " + msi.token(audience, auth.get("identity"))
    body = inputs.get("body")
    data: bytes | None = None
    if body is not None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            data = str(body).encode()
    policy = RetryPolicy.parse(inputs.get("retryPolicy"))

    def once(verb: str, url: str, payload: bytes | None) -> requests.Response:
        attempt = 0
        while True:
            try:
                reply = requests.request(verb, url, data=payload, headers=headers, timeout=100)
            except requests.RequestException as err:
                if attempt >= policy.count:
                    raise HttpFailed(f"{verb} {url}: {type(err).__name__}: {err}", {}) from err
                retry_after = None
            else:
                if reply.status_code not in RETRY_STATUS or attempt >= policy.count:
                    return reply
                retry_after = reply.headers.get("Retry-After")
            sleep(policy.wait(attempt, retry_after) * retry_scale)
            attempt += 1

    reply = once(method, uri, data)
    # Asynchronous pattern: 202 with a Location header is polled until it is no longer 202.
    while async_pattern and reply.status_code == 202 and reply.headers.get("Location"):
        retry_after = reply.headers.get("Retry-After", "")
        sleep((float(retry_after) if retry_after.isdigit() else 1.0) * retry_scale)
        reply = once("GET", reply.headers["Location"], None)
    outputs = _outputs(reply)
    if reply.status_code >= 400:
        raise HttpFailed(f"{method} {uri}: HTTP {reply.status_code}", outputs)
    return outputs
