"""The ARM side of the emulator: routes, bearer-token check, api-version check, injected HTTP faults,
quotas, create- and delete-rate limits, rate-limit headers, error bodies; plus the App Service managed-identity
token endpoint that ``DefaultAzureCredential`` uses when IDENTITY_ENDPOINT/IDENTITY_HEADER are set.

``ArmApi.handle`` is plain request -> response; ``serve`` puts it behind a threading HTTP(S) server.
"""

from __future__ import annotations

import collections
import json
import math
import re
import secrets
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .chaos import Chaos
from .groups import ContainerRun, Group, Operation
from .runtime import Engine

PROVIDER = r"providers/Microsoft\.ContainerInstance"
CONTROL_PREFIX = "/_emulator/"
ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("group", re.compile(rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/{PROVIDER}"
                         r"/containerGroups/([^/]+)$", re.I)),
    ("action", re.compile(rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/{PROVIDER}"
                          r"/containerGroups/([^/]+)/(stop|start|restart)$", re.I)),
    ("logs", re.compile(rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/{PROVIDER}"
                        r"/containerGroups/([^/]+)/containers/([^/]+)/logs$", re.I)),
    ("list_rg", re.compile(rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/{PROVIDER}"
                           r"/containerGroups$", re.I)),
    ("list_sub", re.compile(rf"^/subscriptions/([^/]+)/{PROVIDER}/containerGroups$", re.I)),
    ("usages", re.compile(rf"^/subscriptions/([^/]+)/{PROVIDER}/locations/([^/]+)/usages$", re.I)),
    ("operation", re.compile(rf"^/subscriptions/([^/]+)/{PROVIDER}/locations/([^/]+)"
                             r"/operations/([^/]+)$", re.I)),
]
GROUP_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CONTAINER_NAME = GROUP_NAME
MAX_CONTAINERS = 60
USAGE_NAMES = {"ContainerGroups": "Container Groups", "StandardCores": "Standard Cores",
               "StandardSpotCores": "Standard Spot Cores"}


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able, or None for no body
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str, **headers: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}}, dict(headers))


@dataclass
class InjectedFault:
    """The next ``remaining`` requests matching method/kind/name answer with this error."""

    status: int
    code: str
    message: str
    remaining: int
    method: str | None = None
    kind: str | None = None
    retry_after: float | None = None

    def applies(self, method: str, kind: str) -> bool:
        return (self.remaining > 0 and (self.method is None or self.method == method)
                and (self.kind is None or self.kind == kind))


@dataclass
class Limits:
    """Regional quota (usage ``limit``s), extra usage counted on top of the live groups, and the
    create- and delete-rate windows ``(count, seconds)`` per subscription (ACI's by default)."""

    quota: dict[str, float] = field(default_factory=lambda: {
        "ContainerGroups": 100, "StandardCores": 100, "StandardSpotCores": 100})
    usage_offset: dict[str, float] = field(default_factory=dict)
    quota_status: int = 409
    create_windows: tuple[tuple[int, float], ...] = ((100, 300.0), (300, 3600.0))
    delete_windows: tuple[tuple[int, float], ...] = ((100, 300.0), (300, 3600.0))


def normalize_location(location: str) -> str:
    """ARM answers with the location's name, not its display name: 'West Europe' -> 'westeurope'."""
    return location.replace(" ", "").lower()


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class ArmApi:
    def __init__(self, engine: Engine, *, subscription_id: str, resource_groups: set[str],
                 location: str, base_url: Callable[[], str]) -> None:
        self.engine = engine
        self.subscription_id = subscription_id
        self.resource_groups = {rg.lower() for rg in resource_groups}
        self.location = location
        self.base_url = base_url
        self.limits = Limits()
        self.faults: list[InjectedFault] = []
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        # (method, kind, status) of every ARM answer, and (method, kind) per container group.
        self.answers: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.group_calls: dict[str, collections.Counter[tuple[str, str]]] = {}
        # (monotonic time, method, kind, path, status) of every ARM request, for benchmarks.
        self.log: list[tuple[float, str, str, str, int]] = []
        self.tokens: dict[str, float] = {}  # bearer token -> expiry (epoch seconds)
        self.token_resources: list[str] = []
        self.identity_header = secrets.token_urlsafe(16)
        self.operations: dict[str, Operation] = {}
        self.creates: list[float] = []  # monotonic times of accepted creations
        self.deletes: list[float] = []  # monotonic times of deletes let through the rate check
        self.delete_mode = "sync"  # "sync": 200 + body; "async": 202 + Azure-AsyncOperation
        self.async_retry_after: float | None = None  # real ACI sends none on its operations
        self.list_page_size: int | None = None
        self.mutex = threading.Lock()
        self.remaining = {"reads": 12000, "writes": 1200, "deletes": 15000}
        # (method, name, kwargs) -> JSON-able result; set by AciEmulator (remote fault control)
        self.control: Callable[[str, str, dict[str, Any]], Any] | None = None
        self.chaos = Chaos()  # lost and slow answers, and the journal of creations (chaos.py)

    # -- tokens ------------------------------------------------------------------------------
    def issue_token(self, ttl: float = 3600) -> tuple[str, int]:
        token = "emu-" + secrets.token_urlsafe(24)
        expires = int(time.time() + ttl)
        with self.mutex:
            self.tokens[token] = expires
        return token, expires

    def identity(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Response:
        """App Service managed identity (api-version 2019-08-01), as MSAL calls it."""
        with self.mutex:
            self.calls[("GET", "token")] += 1
        if urlsplit(path).path.rstrip("/").lower() != "/msi/token":
            return Response(404, {"statusCode": 404, "message": "not found"})
        if headers.get("x-identity-header") != self.identity_header:
            return Response(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing "
                                  "or wrong"})
        resource = query.get("resource", "")
        if not resource:
            return Response(400, {"statusCode": 400, "message": "resource is required"})
        token, expires = self.issue_token()
        with self.mutex:
            self.token_resources.append(resource)
        return Response(200, {"access_token": token, "expires_on": str(expires),
                              "resource": resource, "token_type": "Bearer",
                              "client_id": query.get("client_id", "emu-client-id")})

    def _authorized(self, headers: dict[str, str]) -> Response | None:
        auth = headers.get("authorization", "")
        challenge = {"WWW-Authenticate": 'Bearer authorization_uri="https://login.'
                     'microsoftonline.com/common", error="invalid_token", error_description='
                     '"The authentication failed because of missing \'Authorization\' header."'}
        if not auth:
            return error(401, "AuthenticationFailed",
                         "Authentication failed. The 'Authorization' header is missing.",
                         **challenge)
        scheme, _, token = auth.partition(" ")
        with self.mutex:
            expiry = self.tokens.get(token.strip())
        if scheme.lower() != "bearer" or expiry is None:
            return error(401, "InvalidAuthenticationToken",
                         "The access token is invalid.", **challenge)
        if expiry < time.time():
            return error(401, "ExpiredAuthenticationToken",
                         "The access token expiry UTC time is earlier than current UTC time.",
                         **challenge)
        return None

    # -- dispatch ----------------------------------------------------------------------------
    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Response:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path.rstrip("/")
        if path.startswith(CONTROL_PREFIX) and self.control is not None:
            return self._control(method, path[len(CONTROL_PREFIX):], headers, body)
        route = next(((kind, match) for kind, pattern in ROUTES
                      if (match := pattern.match(path))), None)
        if route is None:
            with self.mutex:
                self.calls[(method, "unknown")] += 1
            return error(404, "InvalidResourceType" if "/providers/" in path else "NotFound",
                         f"The resource type could not be found for path '{path}'.")
        kind, match = route
        group = match.group(3) if kind in ("group", "action", "logs") else None
        with self.mutex:
            self.calls[(method, kind)] += 1
            if group is not None:
                self.group_calls.setdefault(group, collections.Counter())[(method, kind)] += 1
        response = self._checked(method, kind, match.groups(), query, headers, body)
        self._add_common_headers(method, response)
        with self.mutex:
            self.log.append((time.monotonic(), method, kind, path, response.status))
            self.answers[(method, kind, response.status)] += 1
        return response

    def _control(self, method: str, name: str, headers: dict[str, str], body: bytes) -> Response:
        """The test's remote control (not ARM, not counted): ``POST /_emulator/<fault method>``
        with the method's keyword arguments as JSON; ``GET /_emulator/calls``. Same bearer
        tokens as ARM."""
        denied = self._authorized(headers)
        if denied is not None:
            return denied
        try:
            kwargs = json.loads(body) if body else {}
            if not isinstance(kwargs, dict):
                raise ValueError("expected a JSON object of keyword arguments")
            assert self.control is not None
            return Response(200, {"result": self.control(method, name, kwargs)})
        except (KeyError, TypeError, ValueError) as err:
            return error(400, "InvalidControlRequest", f"{method} /_emulator/{name}: {err}")

    def _checked(self, method: str, kind: str, args: tuple[str, ...], query: dict[str, str],
                 headers: dict[str, str], body: bytes) -> Response:
        denied = self._authorized(headers)
        if denied is not None:
            return denied
        if "api-version" not in query:
            return error(400, "MissingApiVersionParameter",
                         "The api-version query parameter (?api-version=) is required for all "
                         "requests.")
        with self.mutex:
            fault = next((f for f in self.faults if f.applies(method, kind)), None)
            if fault is not None:
                fault.remaining -= 1
        if fault is not None:
            extra = {} if fault.retry_after is None else {
                "Retry-After": _format_seconds(fault.retry_after)}
            return error(fault.status, fault.code, fault.message, **extra)
        if args[0].lower() != self.subscription_id.lower():
            return error(404, "SubscriptionNotFound",
                         f"The subscription '{args[0]}' could not be found.")
        if kind in ("group", "action", "logs", "list_rg") and \
                args[1].lower() not in self.resource_groups:
            return error(404, "ResourceGroupNotFound",
                         f"Resource group '{args[1]}' could not be found.")
        handler = getattr(self, f"_{kind}_{method.lower()}", None)
        if handler is None:
            return error(405, "MethodNotAllowed" if method != "OPTIONS" else "NotSupported",
                         f"The requested method '{method}' is not allowed here.")
        try:
            parsed = json.loads(body) if body else None
        except ValueError as err:
            return error(400, "InvalidRequestContent",
                         f"The request content was invalid and could not be deserialized: {err}")
        return handler(args, query, parsed)  # type: ignore[no-any-return]

    def _add_common_headers(self, method: str, response: Response) -> None:
        rid = str(uuid.uuid4())
        response.headers.setdefault("x-ms-request-id", rid)
        response.headers.setdefault("x-ms-correlation-request-id", rid)
        bucket = {"GET": "reads", "DELETE": "deletes"}.get(method, "writes")
        with self.mutex:
            self.remaining[bucket] = max(0, self.remaining[bucket] - 1)
            response.headers[f"x-ms-ratelimit-remaining-subscription-{bucket}"] = str(
                self.remaining[bucket])

    # -- helpers -----------------------------------------------------------------------------
    def _key(self, args: tuple[str, ...]) -> tuple[str, str, str]:
        return (args[0].lower(), args[1].lower(), args[2])

    def _group(self, args: tuple[str, ...]) -> Group | None:
        with self.engine.lock:
            return self.engine.groups.get(self._key(args))

    def _not_found(self, args: tuple[str, ...]) -> Response:
        return error(404, "ResourceNotFound",
                     f"The Resource 'Microsoft.ContainerInstance/containerGroups/{args[2]}' "
                     f"under resource group '{args[1]}' was not found. For more details please "
                     f"go to https://aka.ms/ARMResourceNotFoundFix")

    def _operation_url(self, op: Operation) -> str:
        return (f"{self.base_url()}/subscriptions/{op.subscription}/providers/"
                f"Microsoft.ContainerInstance/locations/{op.location}/operations/{op.id}"
                f"?api-version=2023-05-01")

    def usage(self, location: str) -> dict[str, float]:
        """Current usage per quota name in a location: live groups and their cores."""
        with self.engine.lock:
            groups = [g for g in self.engine.groups.values()
                      if g.location == normalize_location(location)]
            used = {"ContainerGroups": float(len(groups)),
                    "StandardCores": sum(g.cores for g in groups
                                         if g.active and g.body.get("properties", {})
                                         .get("priority") != "Spot"),
                    "StandardSpotCores": sum(g.cores for g in groups
                                             if g.active and g.body.get("properties", {})
                                             .get("priority") == "Spot")}
        for name, extra in self.limits.usage_offset.items():
            used[name] = used.get(name, 0.0) + extra
        return used

    # -- container groups --------------------------------------------------------------------
    def _validate(self, name: str, body: Any) -> Response | None:
        if not GROUP_NAME.match(name):
            return error(400, "InvalidContainerGroupName",
                         f"The container group name '{name}' is invalid. A container group name "
                         f"must contain no more than 63 characters and must match the regex "
                         f"'[a-z0-9]([-a-z0-9]*[a-z0-9])?' (e.g. 'my-name').")
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            return error(400, "InvalidRequestContent",
                         "The request content was invalid: 'properties' is required.")
        if not body.get("location"):
            return error(400, "LocationRequired", "The location property is required for this "
                         "definition.")
        containers = body["properties"].get("containers")
        if not isinstance(containers, list) or not containers:
            return error(400, "ContainerGroupContainersRequired" if not containers else
                         "InvalidRequestContent",
                         f"The container group '{name}' must have at least one container.")
        if len(containers) > MAX_CONTAINERS:
            return error(400, "ContainerGroupContainerCountLimitExceeded",
                         f"The container group '{name}' has {len(containers)} containers; the "
                         f"limit is {MAX_CONTAINERS}.")
        seen = set()
        for c in containers:
            cname = c.get("name") if isinstance(c, dict) else None
            props = c.get("properties") if isinstance(c, dict) else None
            if not isinstance(cname, str) or not CONTAINER_NAME.match(cname):
                return error(400, "InvalidContainerName",
                             f"The container name '{cname}' in container group '{name}' is "
                             f"invalid.")
            if cname in seen:
                return error(400, "DuplicateContainerNames",
                             f"The container group '{name}' has more than one container named "
                             f"'{cname}'.")
            seen.add(cname)
            if not isinstance(props, dict) or not props.get("image"):
                return error(400, "InvalidContainerImage" if isinstance(props, dict) else
                             "InvalidRequestContent",
                             f"The container '{cname}' must have an image.")
            requests = (props.get("resources") or {}).get("requests") or {}
            if not requests.get("cpu") or not requests.get("memoryInGB"):
                return error(400, "ResourceRequestsNotSpecified",
                             f"The resource requests of container '{cname}' in container group "
                             f"'{name}' are not specified: cpu and memoryInGB are required.")
            for var in props.get("environmentVariables") or []:
                if not isinstance(var, dict) or not var.get("name"):
                    return error(400, "InvalidEnvironmentVariable",
                                 f"An environment variable of container '{cname}' has no name.")
        # Spot: the codes and messages of Microsoft's "Error codes for Spot container creation
        # in Azure Container Instances".
        priority = body["properties"].get("priority")
        if priority is not None and priority not in ("Regular", "Spot"):
            return error(400, "PriorityNotSpecified",
                         f"The 'Priority' must be one of 'Regular,Spot' for container group "
                         f"'{name}'.")
        if priority == "Spot":
            if body["properties"].get("ipAddress"):
                return error(400, "SpotPriorityContainerGroupNotSupportedForInboundConnectivity",
                             "Spot Priority is not supported for container groups with inbound "
                             "connectivity.")
            sku = body["properties"].get("sku") or "Standard"
            if sku != "Standard":
                return error(400, "SpotPriorityContainerGroupNotSupportedInSku",
                             f"Spot Priority Container Group is not supported in '{sku}' Sku.")
        tags = body.get("tags") or {}
        if not isinstance(tags, dict) or len(tags) > 50:
            return error(400, "InvalidTagCount", "A resource can have at most 50 tags.")
        for key, value in tags.items():
            if len(key) > 512 or len(str(value)) > 256:
                return error(400, "InvalidTagNameOrValue",
                             f"The tag '{key[:40]}' has a name longer than 512 or a value longer "
                             f"than 256 characters.")
        return None

    def _quota_error(self, location: str, name: str, cores: float,
                     spot: bool = False) -> Response | None:
        used = self.usage(location)
        cores_quota = "StandardSpotCores" if spot else "StandardCores"  # Spot has its own pool
        for quota, requested in (("ContainerGroups", 1.0), (cores_quota, cores)):
            limit = self.limits.quota.get(quota)
            if limit is not None and used.get(quota, 0.0) + requested > limit:
                return error(self.limits.quota_status, "ContainerGroupQuotaReached",
                             f"Resource type 'Microsoft.ContainerInstance/containerGroups' "
                             f"container group quota '{quota}' exceeded in region '{location}'. "
                             f"Limit: '{_format_seconds(limit)}', Usage: "
                             f"'{_format_seconds(used.get(quota, 0.0))}' Requested: "
                             f"'{_format_seconds(requested)}'.")
        return None

    def _rate_error(self, operation: str, sent: list[float],
                    windows: tuple[tuple[int, float], ...]) -> Response | None:
        """429 + Retry-After (whole seconds, until the window has room) when ``sent`` already
        fills one of ``windows``; call with ``self.mutex`` held."""
        now = time.monotonic()
        for count, window in windows:
            recent = [t for t in sent if t > now - window]
            if len(recent) >= count:
                wait = max(1, math.ceil(recent[-count] + window - now))
                return error(429, "TooManyRequests",
                             f"Resource type 'Microsoft.ContainerInstance/containerGroups' "
                             f"request limit for {operation} operations of {count} per "
                             f"{_format_seconds(window)} seconds exceeded. Please try again "
                             f"after '{wait}' seconds.", **{"Retry-After": str(wait)})
        return None

    def _create_rate_error(self) -> Response | None:
        with self.mutex:
            return self._rate_error("create", self.creates, self.limits.create_windows)

    def _rate_headers(self) -> dict[str, str]:
        now = time.monotonic()
        headers = {}
        with self.mutex:
            for count, window in self.limits.create_windows:
                left = count - sum(1 for t in self.creates if t > now - window)
                suffix = "pt5m" if window == 300 else "pt1h" if window == 3600 else f"pt{window:g}s"
                headers[f"x-ms-ratelimit-remaining-subscription-resource-requests-{suffix}"] = \
                    str(max(0, left))
        return headers

    def _group_put(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        name = args[2]
        invalid = self._validate(name, body)
        if invalid is not None:
            return invalid
        props = body["properties"]
        for c in props["containers"]:
            if self.engine.inaccessible_at_create(c["properties"]["image"]):
                return error(400, "InaccessibleImage",
                             f"The image '{c['properties']['image']}' in container group "
                             f"'{name}' is not accessible. Please check the image and registry "
                             f"credential.")
        key = self._key(args)
        location = normalize_location(str(body["location"]))
        op = Operation(str(uuid.uuid4()), self.subscription_id, location)
        group = Group(subscription=self.subscription_id, resource_group=args[1], name=name,
                      body={**{k: v for k, v in body.items() if k not in ("id", "name", "type")},
                            "location": location},
                      containers=[ContainerRun(c["name"], dict(c["properties"]))
                                  for c in props["containers"]],
                      operation=op, created_ns=time.time_ns())
        # Check and insert in one step: two PUTs racing for one name must not both create (the
        # loser's processes would run on, unknown to everyone).
        with self.engine.lock:
            old = self.engine.groups.get(key)
            if old is None:
                refused = self._quota_error(
                    location, name, group.cores,
                    spot=props.get("priority") == "Spot") or \
                    self._create_rate_error()
                if refused is not None:
                    return refused
            self.engine.groups[key] = group
            view = group.to_json(instance_view=False)
            with self.mutex:
                self.operations[op.id] = op
                if old is None:
                    self.creates.append(time.monotonic())
        if old is not None:
            # Re-PUT of an existing group: the emulator replaces it (real ACI updates in place
            # and restarts the containers when their spec changed).
            self.engine.destroy(old)
        self.engine.start_group(group)
        headers = {"Azure-AsyncOperation": self._operation_url(op), **self._rate_headers()}
        return Response(200 if old is not None else 201, view, headers)

    def _group_get(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        group = self._group(args)
        if group is None:
            return self._not_found(args)
        with self.engine.lock:
            return Response(200, group.to_json(instance_view=True))

    def _group_patch(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        group = self._group(args)
        if group is None:
            return self._not_found(args)
        if not isinstance(body, dict) or not isinstance(body.get("tags", {}), dict):
            return error(400, "InvalidRequestContent", "Only 'tags' can be updated.")
        with self.engine.lock:
            if "tags" in body:
                group.body["tags"] = dict(body["tags"])
            return Response(200, group.to_json(instance_view=True))

    def _group_delete(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        # Every delete request counts against the window (one of a group already gone too).
        with self.mutex:
            refused = self._rate_error("delete", self.deletes, self.limits.delete_windows)
            if refused is not None:
                return refused
            self.deletes.append(time.monotonic())
        key = self._key(args)
        with self.engine.lock:
            group = self.engine.groups.get(key)
            if group is None:
                return Response(204)
            if self.delete_mode == "sync":
                self.engine.groups.pop(key)
        if self.delete_mode == "sync":
            self.engine.destroy(group)
            with self.engine.lock:
                return Response(200, group.to_json(instance_view=False))
        # Asynchronous: the group shows provisioningState Deleting until its processes are gone.
        op = Operation(str(uuid.uuid4()), self.subscription_id, group.location.lower())
        with self.engine.lock:
            group.provisioning = "Deleting"
            view = group.to_json(instance_view=False)
        with self.mutex:
            self.operations[op.id] = op

        def finish() -> None:
            self.engine.destroy(group)
            with self.engine.lock:
                if self.engine.groups.get(key) is group:
                    self.engine.groups.pop(key)
            op.finish("Succeeded")

        threading.Thread(target=finish, daemon=True).start()
        url = self._operation_url(op)
        return Response(202, view, {"Azure-AsyncOperation": url, "Location": url})

    def _action_post(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        group = self._group(args)
        if group is None:
            return self._not_found(args)
        if args[3].lower() == "stop":
            self.engine.stop(group)
            return Response(204)
        return error(400, "NotSupported",
                     f"The emulator does not implement '{args[3]}' for container groups.")

    def _list_rg_get(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        path = (f"/subscriptions/{args[0]}/resourceGroups/{args[1]}/providers/"
                f"Microsoft.ContainerInstance/containerGroups")
        return self._list(lambda g: g.resource_group.lower() == args[1].lower(), query, path)

    def _list_sub_get(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        path = f"/subscriptions/{args[0]}/providers/Microsoft.ContainerInstance/containerGroups"
        return self._list(lambda g: True, query, path)

    def _list(self, keep: Callable[[Group], bool], query: dict[str, str], path: str) -> Response:
        with self.engine.lock:
            # Real ARM list answers carry no instance view: states need a GET per group.
            items = [g.to_json(instance_view=False) for g in self.engine.groups.values()
                     if keep(g)]
        items.sort(key=lambda item: item["id"])
        start = int(query.get("$skipToken", "0") or 0)
        size = self.list_page_size or max(1, len(items))
        page: dict[str, Any] = {"value": items[start:start + size]}
        if start + size < len(items):
            rest = {k: v for k, v in query.items() if k != "$skipToken"}
            rest["$skipToken"] = str(start + size)
            page["nextLink"] = f"{self.base_url()}{path}?{urlencode(rest)}"
        return Response(200, page)

    def _logs_get(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        group = self._group(args)
        if group is None:
            return self._not_found(args)
        with self.engine.lock:
            container = next((c for c in group.containers if c.name == args[3]), None)
            if container is None:
                return error(404, "ContainerNotFound",
                             f"The container '{args[3]}' is not found in container group "
                             f"'{args[2]}'.")
            try:
                tail = int(query["tail"]) if query.get("tail") not in (None, "") else None
            except ValueError:
                return error(400, "InvalidParameter", f"tail must be an integer; got "
                             f"{query['tail']!r}")
            stamps = query.get("timestamps", "").lower() == "true"
            text = container.log_text(tail, stamps, self.engine.settings.truncate_stopped_logs)
        return Response(200, {"content": text})

    def _usages_get(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        location = args[1]
        used = self.usage(location)
        values = []
        for name, localized in USAGE_NAMES.items():
            limit = self.limits.quota.get(name)
            values.append({
                "id": (f"/subscriptions/{args[0]}/providers/Microsoft.ContainerInstance/"
                       f"locations/{location}/usages/{name}"),
                "unit": "Count", "currentValue": int(used.get(name, 0.0)),
                "limit": int(limit) if limit is not None else 0,
                "name": {"value": name, "localizedValue": localized}})
        return Response(200, {"value": values})

    def _operation_get(self, args: tuple[str, ...], query: dict[str, str], body: Any) -> Response:
        with self.mutex:
            op = self.operations.get(args[2])
        if op is None:
            return error(404, "OperationNotFound", f"The operation '{args[2]}' was not found.")
        with self.engine.lock:
            payload = op.to_json()
        headers = {}
        if self.async_retry_after is not None and op.end is None:
            headers["Retry-After"] = _format_seconds(self.async_retry_after)
        return Response(200, payload, headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        api = self.server.api
        if self.server.identity:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            response = api.identity(self.path, query, headers)
        else:
            answer = api.chaos.answer(self.command, self.path, body,
                                      lambda: api.handle(self.command, self.path, headers, body))
            if answer is None:  # applied, but the answer is lost: drop the connection
                self.close_connection = True
                return
            response = answer
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read ``calls`` instead


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that went away mid-request (a killed controller): not our error
        super().handle_error(request, client_address)

    def __init__(self, api: ArmApi, *, identity: bool, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api
        self.identity = identity
        if tls is not None:
            # The handshake happens in the handler thread, so one slow client cannot stall
            # accept().
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def serve(api: ArmApi, *, identity: bool, cert: tuple[Path, Path] | None) -> _Server:
    tls = None
    if cert is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(str(cert[0]), str(cert[1]))
    server = _Server(api, identity=identity, tls=tls)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                     name="aci-emu-http" if not identity else "aci-emu-identity").start()
    return server
