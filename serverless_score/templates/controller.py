"""The controller role: what the container a Logic App starts runs. ``python -m
serverless_score.runner`` (every image's entrypoint) comes here when ``SERVERLESS_SCORE_ROLE`` is
``controller``; it builds the job from the environment (``contract.py``), runs it like
``serverless-score run --json`` (fanning out on ACI under the group's managed identity) and ends
its output with the one JSON line the workflow reads back from the container's logs."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from ..errors import SpecError
from ..spec import set_key
from . import contract as c

_PATHS = ("model", "input", "output")


def _job_from_env(env: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    uri = env.get(c.JOB_URI, "")
    if uri:
        from ..storage import StoreConfig, get_store

        text = get_store(uri, StoreConfig.from_env(env)).read_bytes(uri).decode("utf-8")
        try:
            return tomllib.loads(text), uri
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"job file {uri}: not valid TOML: {err}") from None
    try:
        raw = json.loads(env.get(c.JOB) or "")
    except ValueError:
        raise SpecError(f"{c.JOB}: not a JSON object (and {c.JOB_URI} is empty)") from None
    if not isinstance(raw, dict) or not raw:
        raise SpecError(f"{c.JOB}: expected the job as a JSON object; got {raw!r:.80}")
    return raw, "job"


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    set_key(raw, dotted.split("."), value, context=f"set {dotted!r}")


def job_from_env(env: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """The job dict after the request's overrides and {date}."""
    env = os.environ if env is None else env
    raw, source = _job_from_env(env)
    try:
        request = json.loads(env.get(c.REQUEST) or "{}")
    except ValueError:
        raise SpecError(f"{c.REQUEST}: the request body is not JSON") from None
    if not isinstance(request, dict):
        raise SpecError(f"{c.REQUEST}: expected a JSON object (input, output, model, date, set); "
                        f"got {request!r:.80}")
    overrides = request.get("set") or {}
    if not isinstance(overrides, dict):
        raise SpecError(f"set: expected an object of job keys, e.g. {{\"chunks\": 8}}; got "
                        f"{overrides!r:.80}")
    for key, value in overrides.items():
        _set(raw, key, value)
    for key in ("input", "output", "model"):
        if request.get(key):
            raw[key] = request[key]
    date = request.get("date") or env.get(c.DATE, "")
    for key in _PATHS:
        if isinstance(raw.get(key), str) and "{date}" in raw[key]:
            if not date:
                raise SpecError(f"{key} has {{date}} but no date was given ({c.DATE})")
            raw[key] = raw[key].replace("{date}", date)
    # Subscription, resource group, region and identity come from the environment the workflow
    # set (SERVERLESS_SCORE_AZURE_*) unless the job names its own: the ACI backend's fallbacks.
    raw.setdefault("backend", "aci")
    return raw, source


def main() -> int:
    from ..cli import _fail, _report
    from ..controller import plan_job, run_job
    from ..errors import ScoreError
    from ..spec import spec_from_dict

    # Workers started from here (the local backend passes its environment on) are runners, not
    # controllers: without this each would start the whole job again.
    os.environ.pop(c.ROLE, None)
    job_id = None
    try:
        raw, source = job_from_env()
        spec = spec_from_dict(raw, source=source)
        job_id = plan_job(spec).job_id
        result = run_job(spec)
    except ScoreError as err:
        return _fail(err, as_json=True, debug=False, job_id=job_id).exit_code
    except KeyboardInterrupt:
        return 130
    _report(result, as_json=True)
    return 0 if result.status in ("succeeded", "up-to-date") else 1
