"""Why an existing output is not this job's: what changed since the job that wrote it (its
manifest's spec, inputs, model and tasks against this plan), in words a person can act on.
Pure but for ``model_stamp``, one ``info`` call on the model."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InputError
from ..planning import Plan
from ..storage import StoreConfig, get_store

# Keys that do not change a job's output (nor its id, planning/_job_id): not worth naming.
_NOT_DECISIVE = {"max_parallel", "retries", "timeout", "overwrite", "backend", "resources",
                 "mlflow"}
_CHUNKING = ("chunks", "chunk_size")


def model_stamp(uri: str | None, config: StoreConfig | None) -> dict[str, Any] | None:
    """The model's uri, size and version as the manifest records them (no checksum: cheap)."""
    if not uri:
        return None
    try:
        info = get_store(uri, config).info(uri)
    except OSError:
        return None
    return {"uri": uri, "size": info.size, "version": info.version}


def _show(value: Any) -> str:
    return "unset" if value is None else repr(value)


def describe_changes(manifest: dict[str, Any], plan: Plan, model_now: dict[str, Any] | None) -> list[str]:
    """What differs between the job that wrote ``manifest`` and this one, one phrase each:
    the model, the input (files added, removed or changed), the chunking, any other key."""
    old_spec: dict[str, Any] = manifest.get("spec") or {}
    new_spec = plan.spec_as_written()
    changes: list[str] = []

    old_model = manifest.get("model") or {}
    old_source = old_model.get("source") if isinstance(old_model.get("source"), dict) else None
    if old_spec.get("model") != new_spec.get("model"):
        changes.append(f"the model changed ({_show(old_spec.get('model'))} -> {_show(new_spec.get('model'))})")
    elif plan.source is not None:
        if old_source != json.loads(json.dumps(plan.source.to_dict())):  # as the manifest has it
            was = old_source.get("version") if old_source else "unknown"
            changes.append(f"{plan.source.uri} now resolves to version {plan.source.version} "
                           f"(the output was scored with version {was})")
    elif model_now and old_model and (old_model.get("size"), old_model.get("version")) != (
            model_now.get("size"), model_now.get("version")):
        changes.append(f"the model file {new_spec.get('model')!r} changed since (size or "
                       "modification time)")

    if old_spec.get("input") != new_spec.get("input"):
        changes.append(f"the input changed ({_show(old_spec.get('input'))} -> {_show(new_spec.get('input'))})")
    else:
        changes.extend(_input_changes(manifest.get("inputs") or [], plan))

    chunking = [f"{k} {_show(old_spec.get(k))} -> {_show(new_spec.get(k))}" for k in _CHUNKING
                if old_spec.get(k) != new_spec.get(k)]
    old_count, new_count = _task_count(manifest), len(plan.tasks)
    if chunking:
        changes.append(f"the chunking changed ({', '.join(chunking)}: {old_count} -> "
                       f"{new_count} tasks)")
    elif old_count != new_count and not any(c.startswith("the input") for c in changes):
        # Same spec, same input: the ranges follow from the count (max_parallel rounds it).
        changes.append(f"the chunking changed ({old_count} -> {new_count} tasks)")

    skip = _NOT_DECISIVE | {"model", "input", *_CHUNKING}
    for key in sorted(set(old_spec) | set(new_spec)):
        if key not in skip and old_spec.get(key) != new_spec.get(key):
            changes.append(f"{key} changed ({_show(old_spec.get(key))} -> {_show(new_spec.get(key))})")
    return changes


def _task_count(manifest: dict[str, Any]) -> int | None:
    """How many tasks the job that wrote ``manifest`` had (a manifest from before the task lines
    lists them inline)."""
    totals = manifest.get("totals") or {}
    if isinstance(totals.get("tasks"), int):
        return int(totals["tasks"])
    inline = manifest.get("tasks")
    return len(inline) if isinstance(inline, list) else None


def _input_changes(old_inputs: list[dict[str, Any]], plan: Plan) -> list[str]:
    old = {str(f.get("path")): (f.get("size"), f.get("version")) for f in old_inputs}
    new = {f.path: (f.size, f.version) for f in plan.files}
    added = sorted(p for p in new if p not in old)
    removed = sorted(p for p in old if p not in new)
    changed = sorted(p for p in new if p in old and old[p] != new[p])
    phrases = []
    for what, paths in (("new", added), ("gone", removed), ("changed since", changed)):
        if paths:
            shown = ", ".join(repr(p) for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            phrases.append(f"{what}: {shown}")
    return [f"the input changed ({'; '.join(phrases)})"] if phrases else []


def refusal(output: str, manifest: dict[str, Any], plan: Plan,
            model_now: dict[str, Any] | None) -> InputError:
    """The error for an existing output this job may not replace (exit code 2)."""
    hint = ("Set overwrite = true in the job (or --set overwrite=true) to replace the old output, "
            "or choose another output.")
    if not manifest:
        return InputError(f"output: {output!r} already exists and has no manifest beside it: "
                          "it was not written by serverless-score, so it is not replaced",
                          hint=hint, retryable=False)
    old_id = manifest.get("job_id")
    if manifest.get("name") != plan.spec.name:
        return InputError(f"output: {output!r} already exists, written by another job "
                          f"({manifest.get('name')!r}, job id {old_id}), so it is not replaced",
                          hint=hint, retryable=False)
    changes = describe_changes(manifest, plan, model_now)
    what = "; ".join(changes) if changes else (
        "something the job id covers changed (a scorer script, a [azure] setting)")
    return InputError(
        f"output: {output!r} already exists, written by an earlier version of this job "
        f"(job id {old_id}, now {plan.job_id}): {what}. It is not replaced: overwrite = true "
        "replaces the old output", hint=hint, retryable=False)
