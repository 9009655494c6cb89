"""ACI's view of a container group -> GroupState. Pure: it reads the SDK model of a GET answer
(the only answer with an instance view; list answers have none) and, for a group whose
provisioning failed with no event saying why, what the create's async operation document said
(``CreateOutcome``, read once by the backend), and nothing else.

The trap this avoids: ``provisioning_state == "Succeeded"`` means the group was *created*, not
that it finished. A group is finished when its container is ``Terminated`` (the exit code says
how) or the group's own state is ``Succeeded``/``Failed``/``Stopped``. It has failed, with a
``detail`` the user can act on, when provisioning failed (the events' or the operation's reason),
the image could not be pulled, the container restarted although the policy is ``Never`` (a crash
loop: out of memory, a killed process), or the group is ``Unhealthy``.

The second trap: Warning events stay in the instance view after what they warned about has
passed. ACI retries a failed pull by itself (events ``Failed``, ``BackOff``, then ``Pulled``,
``Started``), so a container's events are read only while it is still ``Waiting`` for its first
start. An image that is not there or not allowed (unauthorized, not found, manifest unknown) fails
the task for good; any other pull failure is Azure's to retry, and once Azure gives up (or it has
lasted ``PULL_GIVE_UP`` seconds) the task is retried in a new group.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ...units import plural
from ..base import GroupState, Phase

_PULL_EVENT_NAMES = {"failed", "backoff", "errimagepull", "imagepullbackoff", "inaccessibleimage"}
_PULL_STATUSES = ("errimagepull", "imagepullbackoff", "invalidimagename", "inaccessibleimage")
_BAD_IMAGE_STATUSES = ("invalidimagename", "inaccessibleimage")
# What a registry says when retrying cannot help: the image is not there, or not for us.
_INACCESSIBLE = ("unauthorized", "not found", "manifest unknown", "denied",
                 "authentication required", "invalid reference format")
PULL_GIVE_UP = 600.0  # seconds of failing pulls (Azure's own event times) before retrying anew
_EXIT_HINTS = {
    137: "killed (SIGKILL): usually out of memory; raise [resources] memory_gb",
    139: "crashed (segmentation fault)",
    143: "stopped (SIGTERM)",
}


@dataclass(frozen=True)
class CreateOutcome:
    """The ``error`` of a create's async operation document (``Azure-AsyncOperation``), or why
    it could not be read (``unreadable``)."""

    code: str = ""
    message: str = ""
    unreadable: str = ""


@dataclass(frozen=True)
class _Pull:
    image: str
    message: str
    permanent: bool
    failing_for: float  # seconds between the first and the last failed pull Azure reported


def group_state(name: str, group: Any, outcome: CreateOutcome | None = None) -> GroupState:
    """The state of one container group from ``container_groups.get``; a finished one carries
    when it was billed from and to (``started_at``/``finished_at``) when the instance view has
    the times. ``outcome``: the create operation's error, for a failed provisioning."""
    state = _phase(name, group, outcome)
    pulled = pull_seconds(group)
    if pulled is not None:
        state = replace(state, pull_seconds=pulled)
    if state.phase.finished and not state.evicted:  # an evicted group runs on, restarted
        span = billed_span(group)
        if span is not None:
            return replace(state, started_at=span[0], finished_at=span[1])
    elif (began := billing_start(group)) is not None:
        # Still running: billed from then until it stops or is deleted (a pulling group that
        # waits for work is deleted while it runs).
        return replace(state, started_at=began)
    return state


def billing_start(group: Any) -> float | None:
    """When ACI started billing the group: its first event (Pulling) or container start."""
    starts = []
    for c in group.containers or []:
        view = c.instance_view
        if view is None:
            continue
        starts += [e.first_timestamp for e in view.events or [] if e.first_timestamp]
        for st in (view.current_state, view.previous_state):
            if st is not None and st.start_time:
                starts.append(st.start_time)
    return min(starts).timestamp() if starts else None


def pull_seconds(group: Any) -> float | None:
    """How long the image pull took: the first ``Pulling`` event to the last ``Pulled``."""
    began, done = [], []
    for c in group.containers or []:
        view = c.instance_view
        for e in (view.events or []) if view is not None else []:
            name = (e.name or "").lower()
            if name == "pulling" and e.first_timestamp:
                began.append(e.first_timestamp)
            elif name == "pulled" and (e.last_timestamp or e.first_timestamp):
                done.append(e.last_timestamp or e.first_timestamp)
    if not began or not done:
        return None
    return max(0.0, (max(done) - min(began)).total_seconds())


def wants_outcome(group: Any) -> bool:
    """Provisioning failed and no event says why: the reason is only in the create's async
    operation document."""
    if (group.provisioning_state or "").lower() != "failed":
        return False
    return not _pull_failure(list(group.containers or [])) and not _last_warning(_events(group))


def billed_span(group: Any) -> tuple[float, float] | None:
    """ACI bills from the start of the image pull until the group stops: (the first event's
    time (Pulling) or the container's start, the latest container finish), epoch seconds."""
    begin = billing_start(group)
    finishes = [st.finish_time for c in group.containers or [] if c.instance_view is not None
                for st in (c.instance_view.current_state, c.instance_view.previous_state)
                if st is not None and st.finish_time]
    if begin is None or not finishes:
        return None
    return begin, max(begin, max(finishes).timestamp())


def _phase(name: str, group: Any, outcome: CreateOutcome | None) -> GroupState:
    provisioning = (group.provisioning_state or "").lower()
    view = group.instance_view
    state = ((view.state if view else None) or "").lower()
    containers = list(group.containers or [])
    events = _events(group)

    pull = _pull_failure(containers)
    if pull is not None and pull.permanent:
        return GroupState(name, Phase.FAILED, None, _pull_detail(pull), retryable=False)
    if provisioning == "failed":
        return _provisioning_failed(name, containers, events, pull, outcome)
    if "unhealthy" in (provisioning, state):
        return GroupState(name, Phase.FAILED, None,
                          "is Unhealthy (Azure reports the container group as not working)")
    spot = (getattr(group, "priority", None) or "").lower() == "spot"
    for c in containers:
        view_c = c.instance_view
        if view_c is not None and (view_c.restart_count or 0) > 0 and spot:
            # ACI's Spot contract: "If an eviction occurs, the container groups hosting the
            # customer workloads are automatically restarted" (Spot containers overview). Under
            # restart policy Never, a Spot group's restart is read as that eviction.
            return GroupState(
                name, Phase.FAILED, view_c.previous_state.exit_code if view_c.previous_state
                else None, "was evicted: Azure reclaimed its Spot capacity and restarted it "
                "(its tasks run again in a new group)", evicted=True)
        if view_c is not None and (view_c.restart_count or 0) > 0:
            prev = view_c.previous_state
            how = _describe_exit(prev.exit_code, prev.detail_status) if prev else "stopped"
            return GroupState(
                name, Phase.FAILED, prev.exit_code if prev else None,
                f"restarted {plural(view_c.restart_count, 'time')} under restart policy Never (it "
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
        if pull is not None:
            return GroupState(name, Phase.FAILED, None, _pull_given_up(pull))
        why = _last_warning(events)
        return GroupState(name, Phase.FAILED, None, "failed" + (f": {why}" if why else ""))
    if state == "stopped":
        return GroupState(name, Phase.FAILED, None, "was stopped (by someone other than this job)")
    if pull is not None:
        if pull.failing_for >= PULL_GIVE_UP:
            return GroupState(name, Phase.FAILED, None, _pull_given_up(pull))
        return GroupState(name, Phase.STARTING, None,
                          f"waiting for Azure to pull its image {pull.image!r} again after a "
                          f"failed pull ({pull.message})")
    running = any(c.instance_view and c.instance_view.current_state
                  and (c.instance_view.current_state.state or "").lower() == "running"
                  for c in containers)
    return GroupState(name, Phase.RUNNING if running else Phase.STARTING)


def _provisioning_failed(name: str, containers: list[Any], events: list[Any], pull: _Pull | None,
                         outcome: CreateOutcome | None) -> GroupState:
    if pull is not None:
        return GroupState(name, Phase.FAILED, None, _pull_given_up(pull))
    why = _last_warning(events)
    if why:
        return GroupState(name, Phase.FAILED, None, f"could not be provisioned by Azure: {why}")
    if outcome is not None and outcome.code.lower() == "inaccessibleimage":
        image = containers[0].image if containers else "?"
        return GroupState(name, Phase.FAILED, None,
                          _pull_detail(_Pull(image, f"{outcome.code}: {outcome.message}", True, 0)),
                          retryable=False)
    if outcome is not None and (outcome.code or outcome.message):
        reason = ": ".join(part for part in (outcome.code, outcome.message) if part)
        return GroupState(name, Phase.FAILED, None, f"could not be provisioned by Azure: {reason}")
    if outcome is not None and outcome.unreadable:
        unsaid = f"reading Azure's reason from the create operation failed: {outcome.unreadable}"
    else:  # a group this process did not create (status, a resumed job)
        unsaid = ("Azure's reason is in the create operation, known only to the process that "
                  "created the group")
    return GroupState(name, Phase.FAILED, None,
                      f"could not be provisioned by Azure (no event says why; {unsaid}); the "
                      "group's deployment in the resource group's Activity log says why")


def _events(group: Any) -> list[Any]:
    """The group's own events and those of containers that have not started yet: a container
    that runs or ran got past whatever its old Warning events were about."""
    view = group.instance_view
    events = _items(view.events if view else None)
    for c in group.containers or []:
        if _still_waiting(c):
            events += _items(c.instance_view.events)
    return events


def _items(items: Iterable[Any] | None) -> list[Any]:
    return list(items or [])


def _still_waiting(container: Any) -> bool:
    """Waiting for its first start (the image pull, scheduling): not Running or Terminated, and
    never ran (a restart's Waiting comes after a pull that worked)."""
    view = container.instance_view
    if view is None or (view.restart_count or 0) > 0 or view.previous_state is not None:
        return False
    current = view.current_state
    return current is None or (current.state or "waiting").lower() == "waiting"


def _pull_failure(containers: list[Any]) -> _Pull | None:
    """Why an image has not been pulled, from the containers still waiting for it, or None.
    Permanent when any message says the image is not there or not for us."""
    found: _Pull | None = None
    for c in containers:
        if not _still_waiting(c):
            continue
        failed = [e for e in _items(c.instance_view.events) if _is_pull_failure(e)]
        messages = [str(e.message or e.name or "").strip() for e in failed]
        current = c.instance_view.current_state
        status = str((current.detail_status if current else None) or "")
        if status.lower().startswith(_PULL_STATUSES) and status not in messages:
            messages.append(status)
        if not messages:
            continue
        permanent = (status.lower().startswith(_BAD_IMAGE_STATUSES)
                     or any((e.name or "").lower() == "inaccessibleimage" for e in failed)
                     or any(m in text.lower() for text in messages for m in _INACCESSIBLE))
        pull = _Pull(str(c.image or "?"), _best(messages), permanent, _failing_for(failed))
        if pull.permanent:
            return pull
        found = found or pull
    return found


def _is_pull_failure(event: Any) -> bool:
    event_name = (event.name or "").lower()
    return event_name == "inaccessibleimage" or (
        event_name in _PULL_EVENT_NAMES and "pull" in (event.message or "").lower()
        and (event.type or "").lower() == "warning")


def _best(messages: list[str]) -> str:
    """The most telling message: one naming what the registry said over a bare Back-off."""
    telling = [m for m in messages if not m.lower().startswith("back-off")]
    return (telling or messages)[0] or "no reason given"


def _failing_for(events: list[Any]) -> float:
    firsts = [e.first_timestamp for e in events if e.first_timestamp]
    lasts = [e.last_timestamp or e.first_timestamp for e in events if e.first_timestamp]
    if not firsts:
        return 0.0
    return max(0.0, (max(lasts) - min(firsts)).total_seconds())


def _pull_detail(pull: _Pull) -> str:
    return (f"could not pull its image {pull.image!r} ({pull.message}); check the image name "
            "and tag, that it exists in the registry, and that [azure] identity has the AcrPull "
            "role on the registry")


def _pull_given_up(pull: _Pull) -> str:
    how = (f"failed for {pull.failing_for / 60:.0f} minutes" if pull.failing_for >= PULL_GIVE_UP
           else "Azure retried and gave up")
    return (f"could not pull its image {pull.image!r}: {how} ({pull.message}); the registry "
            "may be unreachable or limiting pulls for now")


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
