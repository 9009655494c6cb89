"""The emulator's data: container groups and their containers as ARM shows them, and how they render
to JSON (GET shows the instance view, list does not, secure values never leave). No threads and no
processes here: ``runtime.py`` drives these records, ``server.py`` serves them."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .launchers import Handle

RESOURCE_TYPE = "Microsoft.ContainerInstance/containerGroups"
# Real ACI keeps up to 4 MB of log while a container runs, and only the last 16 KB / 1,000 lines
# once it has stopped (reference/azure.md, "ACI limits").
RUNNING_LOG_BYTES = 4 * 1024 * 1024
STOPPED_LOG_BYTES = 16 * 1024
STOPPED_LOG_LINES = 1000


def _bounded_tail(lines: list[tuple[int, str]], limit: int) -> list[tuple[int, str]]:
    """The last ``limit`` bytes of ``lines``: whole lines, and the end of the one before them
    when it does not fit whole (a tail of bytes may start mid-line, as a tail of the log file)."""
    kept: list[tuple[int, str]] = []
    size = 0
    for ns, line in reversed(lines):
        data = line.encode()
        if size + len(data) > limit:
            rest = data[len(data) - (limit - size):] if limit > size else b""
            if rest:
                kept.append((ns, rest.decode("utf-8", "ignore")))
            break
        kept.append((ns, line))
        size += len(data)
    return kept[::-1]


def utc_now() -> str:
    """ARM's timestamp shape: ISO 8601 in UTC with a Z."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def log_timestamp(ns: int) -> str:
    """The RFC 3339 timestamp with nanoseconds that ``timestamps=true`` puts before each line."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest:09d}Z"


@dataclass
class Event:
    name: str
    message: str
    type: str = "Normal"
    count: int = 1
    first: str = field(default_factory=utc_now)
    last: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "firstTimestamp": self.first,
                "lastTimestamp": self.last or self.first, "name": self.name,
                "message": self.message, "type": self.type}


def add_event(events: list[Event], name: str, message: str, type_: str = "Normal") -> None:
    """Repeated events are folded into one with a count, as the platform reports them."""
    for event in events:
        if event.name == name and event.message == message:
            event.count += 1
            event.last = utc_now()
            return
    events.append(Event(name, message, type_))


@dataclass
class ContainerRun:
    """One container of a group: its spec as PUT, its instance view and its process."""

    name: str
    spec: dict[str, Any]  # the container's "properties" as PUT (secure values included)
    current: dict[str, Any] = field(default_factory=lambda: {"state": "Waiting",
                                                             "detailStatus": ""})
    previous: dict[str, Any] | None = None
    restart_count: int = 0
    events: list[Event] = field(default_factory=list)
    handle: Handle | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    log: list[tuple[int, str]] = field(default_factory=list)  # (time in ns, line with its \n)
    log_bytes: int = 0
    restarts_left: int = 0  # injected restarts still to happen, whatever the restart policy
    restart_pending: bool = False

    @property
    def image(self) -> str:
        return str(self.spec.get("image", ""))

    @property
    def terminated(self) -> bool:
        return self.current.get("state") == "Terminated" and not self.restart_pending

    def append_log(self, line: str, ns: int) -> None:
        self.log.append((ns, line))
        self.log_bytes += len(line.encode())
        while self.log_bytes > RUNNING_LOG_BYTES and len(self.log) > 1:
            _, dropped = self.log.pop(0)
            self.log_bytes -= len(dropped.encode())

    def log_text(self, tail: int | None, timestamps: bool, truncate_stopped: bool) -> str:
        lines = self.log
        if truncate_stopped and self.terminated:
            lines = _bounded_tail(lines[-STOPPED_LOG_LINES:], STOPPED_LOG_BYTES)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        if timestamps:
            return "".join(f"{log_timestamp(ns)} {line}" for ns, line in lines)
        return "".join(line for _, line in lines)

    def to_json(self, instance_view: bool) -> dict[str, Any]:
        props = copy.deepcopy(self.spec)
        # Secure values are write-only: ARM returns the variable's name and nothing else.
        props["environmentVariables"] = [
            {k: v for k, v in var.items() if k != "secureValue"}
            for var in props.get("environmentVariables") or []
        ]
        props.setdefault("ports", [])
        props.setdefault("command", [])
        if instance_view:
            view: dict[str, Any] = {"restartCount": self.restart_count,
                                    "currentState": dict(self.current),
                                    "events": [e.to_json() for e in self.events]}
            if self.previous is not None:
                view["previousState"] = dict(self.previous)
            props["instanceView"] = view
        else:
            props.pop("instanceView", None)
        return {"name": self.name, "properties": props}


@dataclass
class Operation:
    """An ``Azure-AsyncOperation`` resource: Pending -> Creating -> Succeeded | Failed."""

    id: str
    subscription: str
    location: str
    status: str = "Pending"
    start: str = field(default_factory=utc_now)
    end: str | None = None
    error: dict[str, str] | None = None

    def finish(self, status: str, error: dict[str, str] | None = None) -> None:
        self.status, self.error, self.end = status, error, utc_now()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": (f"/subscriptions/{self.subscription}/providers/Microsoft.ContainerInstance/"
                   f"locations/{self.location}/operations/{self.id}"),
            "name": self.id, "status": self.status, "startTime": self.start}
        if self.end:
            body["endTime"] = self.end
        if self.error:
            body["error"] = self.error
        return body


@dataclass
class Group:
    subscription: str
    resource_group: str
    name: str
    body: dict[str, Any]  # the PUT body, secure values included (never rendered)
    containers: list[ContainerRun]
    operation: Operation
    provisioning: str = "Pending"
    state: str = "Pending"
    events: list[Event] = field(default_factory=list)
    deleted: threading.Event = field(default_factory=threading.Event)
    stopped: bool = False
    created_ns: int = 0
    launching: int = 0  # containers being started right now

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/providers/{RESOURCE_TYPE}/{self.name}")

    @property
    def location(self) -> str:
        return str(self.body.get("location", ""))

    @property
    def restart_policy(self) -> str:
        return str(self.body.get("properties", {}).get("restartPolicy") or "Always")

    @property
    def cores(self) -> float:
        total = 0.0
        for c in self.containers:
            requests = (c.spec.get("resources") or {}).get("requests") or {}
            total += float(requests.get("cpu") or 0)
        return total

    @property
    def active(self) -> bool:
        """Holds cores: not yet finished, stopped or failed."""
        return self.state not in ("Succeeded", "Failed", "Stopped")

    def to_json(self, instance_view: bool) -> dict[str, Any]:
        body = copy.deepcopy(self.body)
        props = body.get("properties") or {}
        # Right after the PUT, before the platform has scheduled anything, ARM shows no instance
        # view at all (the SDK gives ``instance_view is None``): watchers must cope with that.
        instance_view = instance_view and self.provisioning != "Pending"
        props["containers"] = [c.to_json(instance_view) for c in self.containers]
        props["provisioningState"] = self.provisioning
        props.setdefault("osType", "Linux")
        props.setdefault("sku", "Standard")
        props.setdefault("restartPolicy", "Always")
        props.setdefault("initContainers", [])
        # Registry passwords are write-only too.
        props["imageRegistryCredentials"] = [
            {k: v for k, v in cred.items() if k != "password"}
            for cred in props.get("imageRegistryCredentials") or []
        ]
        for volume in props.get("volumes") or []:
            if "secret" in volume:
                volume["secret"] = {}
            if isinstance(volume.get("azureFile"), dict):
                volume["azureFile"].pop("storageAccountKey", None)
        if instance_view:
            props["instanceView"] = {"events": [e.to_json() for e in self.events],
                                     "state": self.state}
        else:
            props.pop("instanceView", None)
        body["properties"] = props
        body.update({"id": self.id, "name": self.name, "type": RESOURCE_TYPE,
                     "location": self.location})
        body.setdefault("tags", {})
        identity = body.get("identity")
        if isinstance(identity, dict):
            for details in (identity.get("userAssignedIdentities") or {}).values():
                if isinstance(details, dict):
                    details.setdefault("principalId", "11111111-2222-3333-4444-555555555555")
                    details.setdefault("clientId", "66666666-7777-8888-9999-000000000000")
        return body
