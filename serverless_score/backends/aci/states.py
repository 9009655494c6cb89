"""ACI's view of a container group -> GroupState. Pure: it reads the SDK model of a GET answer
(the only answer with an instance view; list answers have none) and nothing else.

The trap this avoids: ``provisioning_state == "Succeeded"`` means the group was *created*, not
that it finished. A group is finished when its container is ``Terminated`` (the exit code says
how) or the group's own state is ``Succeeded``/``Failed``/``Stopped``. It has failed, with a
``detail`` the user can act on, when provisioning failed, the image could not be pulled
(events), the container restarted although the policy is ``Never`` (a crash loop: out of memory,
a killed process), or the group is ``Unhealthy``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..base import GroupState, Phase

_PULL_EVENT_NAMES = {"failed", "backoff", "errimagepull", "imagepullbackoff", "inaccessibleimage"}
_PULL_STATUSES = ("errimagepull", "imagepullbackoff", "invalidimagename", "inaccessibleimage")
_EXIT_HINTS = {
    137: "killed (SIGKILL): usually out of memory; raise [resources] memory_gb",
    139: "crashed (segmentation fault)",
    143: "stopped (SIGTERM)",
}


def group_state(name: str, group: Any) -> GroupState:
    """The state of one container group from ``container_groups.get``; a finished one carries
    when it was billed from and to (``started_at``/``finished_at``) when the instance view has
    the times."""
    state = _phase(name, group)
    if state.phase.finished:
        span = billed_span(group)
        if span is not None:
            return replace(state, started_at=span[0], finished_at=span[1])
    return state


def billed_span(group: Any) -> tuple[float, float] | None:
    """ACI bills from the start of the image pull until the group stops: (the first event's
    time (Pulling) or the container's start, the latest container finish), epoch seconds."""
    starts, finishes = [], []
    for c in group.containers or []:
        view = c.instance_view
        if view is None:
            continue
        starts += [e.first_timestamp for e in view.events or [] if e.first_timestamp]
        for st in (view.current_state, view.previous_state):
            if st is not None and st.start_time:
                starts.append(st.start_time)
            if st is not None and st.finish_time:
                finishes.append(st.finish_time)
    if not starts or not finishes:
        return None
    begin, end = min(starts).timestamp(), max(finishes).timestamp()
    return begin, max(begin, end)


def _phase(name: str, group: Any) -> GroupState:
    provisioning = (group.provisioning_state or "").lower()
    view = group.instance_view
    state = ((view.state if view else None) or "").lower()
    containers = list(group.containers or [])
    events = list(_events(view.events if view else None))
    for c in containers:
        events += _events(c.instance_view.events if c.instance_view else None)

    pull = _pull_failure(containers, events)
    if pull:
        return GroupState(name, Phase.FAILED, None, pull, retryable=False)
    if provisioning == "failed":
        why = _last_warning(events)
        return GroupState(name, Phase.FAILED, None,
                          "could not be provisioned by Azure" + (f": {why}" if why else ""))
    if "unhealthy" in (provisioning, state):
        return GroupState(name, Phase.FAILED, None,
                          "is Unhealthy (Azure reports the container group as not working)")
    for c in containers:
        view_c = c.instance_view
        if view_c is not None and (view_c.restart_count or 0) > 0:
            prev = view_c.previous_state
            how = _describe_exit(prev.exit_code, prev.detail_status) if prev else "stopped"
            return GroupState(
                name, Phase.FAILED, prev.exit_code if prev else None,
                f"restarted {view_c.restart_count} time(s) under restart policy Never (it "
                f"{how}); Azure restarts a container that crashes or runs out of memory")
    terminated = [c.instance_view.current_state for c in containers
                  if c.instance_view and c.instance_view.current_state
                  and (c.instance_view.current_state.state or "").lower() == "terminated"]
    if containers and len(terminated) == len(containers):
        bad = [s for s in terminated if s.exit_code not in (0, None)]
        if not bad and all(s.exit_code == 0 for s in terminated):
            return GroupState(name, Phase.SUCCEEDED, 0)
        worst = bad[0] if bad else terminated[0]
        return GroupState(name, Phase.FAILED, worst.exit_code,
                          _describe_exit(worst.exit_code, worst.detail_status))
    if state == "succeeded":
        return GroupState(name, Phase.SUCCEEDED, 0)
    if state == "failed":
        why = _last_warning(events)
        return GroupState(name, Phase.FAILED, None, "failed" + (f": {why}" if why else ""))
    if state == "stopped":
        return GroupState(name, Phase.FAILED, None, "was stopped (by someone other than this job)")
    running = any(c.instance_view and c.instance_view.current_state
                  and (c.instance_view.current_state.state or "").lower() == "running"
                  for c in containers)
    return GroupState(name, Phase.RUNNING if running else Phase.STARTING)


def _events(items: Iterable[Any] | None) -> list[Any]:
    return list(items or [])


def _pull_failure(containers: list[Any], events: list[Any]) -> str:
    """The reason an image could not be pulled, or ""."""
    for event in events:
        event_name = (event.name or "").lower()
        message = event.message or ""
        if event_name == "inaccessibleimage" or (
                event_name in _PULL_EVENT_NAMES and "pull" in message.lower()
                and (event.type or "").lower() == "warning"):
            return _pull_detail(containers, message)
    for c in containers:
        current = c.instance_view.current_state if c.instance_view else None
        status = ((current.detail_status if current else None) or "").lower()
        if current is not None and status.startswith(_PULL_STATUSES):
            return _pull_detail(containers, current.detail_status or "")
    return ""


def _pull_detail(containers: list[Any], message: str) -> str:
    image = containers[0].image if containers else "?"
    return (f"could not pull its image {image!r} ({message.strip() or 'no reason given'}); "
            "check the image name and tag, that it exists in the registry, and that the job's "
            "identity has the AcrPull role on it")


def _last_warning(events: list[Any]) -> str:
    warnings = [e for e in events if (e.type or "").lower() == "warning" and e.message]
    return str(warnings[-1].message) if warnings else ""


def _describe_exit(code: int | None, detail: str | None) -> str:
    if code is None:
        return f"ended without an exit code ({detail or 'no detail'})"
    extra = _EXIT_HINTS.get(code)
    text = f"exited with code {code}"
    if extra:
        text += f", {extra}"
    if detail and detail.lower() not in ("completed", "error"):
        text += f" ({detail})"
    return text
