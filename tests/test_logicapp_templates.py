"""The Logic App templates as files: the shipped ones are exactly what `templates render` makes,
they validate offline against the official ARM schemas and the workflow-language schema (with the
real public templates as positive controls), they hold no secrets, and the interpreter accepts
their definitions. Render's refusals, `templates deploy`, the request schema and the controller
role's reading of its environment."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from logicapp.arm import ArmContext, deploy
from logicapp.checks import all_actions
from logicapp.engine import Workflow
from logicapp.expressions import ExpressionError
from logicapp.validate import definition_errors, parameters_errors, template_errors

from serverless_score.errors import SpecError
from serverless_score.templates import REQUEST_SCHEMA, Options, read_job, render
from serverless_score.templates import contract as c
from serverless_score.templates.controller import job_from_env

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "logic_app_templates"
REAL = Path(__file__).parent / "logicapp" / "real_templates"
EXAMPLE = SHIPPED / "example-job.toml"
SHIPPED_OPTIONS = {"timer": Options(start="2026-12-01T02:00:00",
                                    time_zone="W. Europe Standard Time"),
                   "http": Options()}


def shipped(trigger: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return (json.loads((SHIPPED / f"{trigger}-trigger.json").read_text()),
            json.loads((SHIPPED / f"{trigger}-trigger.parameters.json").read_text()))


@pytest.mark.parametrize("trigger", ["timer", "http"])
def test_the_shipped_templates_are_what_render_makes(trigger: str) -> None:
    template, parameters = render(read_job(EXAMPLE, []), trigger, SHIPPED_OPTIONS[trigger])  # type: ignore[arg-type]
    assert shipped(trigger) == (template, parameters), (
        "logic_app_templates/ is stale: re-render it (commands in example-job.toml)")


@pytest.mark.parametrize("trigger", ["timer", "http"])
def test_the_templates_validate_against_the_official_schemas(trigger: str) -> None:
    template, parameters = shipped(trigger)
    assert template_errors(template) == []
    assert parameters_errors(parameters) == []
    definition = template["resources"][0]["properties"]["definition"]
    assert definition_errors(definition) == []


@pytest.mark.parametrize("name", sorted(p.name for p in REAL.glob("*.json")
                                        if not p.name.endswith(".parameters.json")))
def test_real_public_templates_pass_the_same_validation(name: str) -> None:
    """Positive controls: the validator accepts real, deployed templates."""
    template = json.loads((REAL / name).read_text())
    assert template_errors(template) == []
    for resource in template["resources"]:
        if resource["type"].lower() == "microsoft.logic/workflows":
            assert definition_errors(resource["properties"]["definition"]) == []


def test_the_validation_catches_broken_templates() -> None:
    template, _ = shipped("http")
    bad = copy.deepcopy(template)
    bad["resources"][0]["apiVersion"] = "2099-01-01"
    assert template_errors(bad)
    bad = copy.deepcopy(template)
    bad["resources"][0]["properties"]["definition"]["actions"]["Delete_group"]["runAfter"] = {
        "Read_result": ["Finished"]}
    assert definition_errors(bad["resources"][0]["properties"]["definition"])
    bad = copy.deepcopy(template)
    bad["parameters"]["identity"]["type"] = "text"
    assert template_errors(bad)


def deployed_workflow(trigger: str) -> Workflow:
    template, parameters = shipped(trigger)
    values = {k: v["value"] for k, v in parameters["parameters"].items()}
    references = {values["identity"]: {"clientId": "c", "principalId": "p"}}
    resource = deploy(template, values, ArmContext(references=references)).resource(
        "Microsoft.Logic/workflows")
    return Workflow(resource["properties"]["definition"])


@pytest.mark.parametrize("trigger", ["timer", "http"])
def test_the_interpreter_accepts_the_definitions_and_their_shape_is_the_contract(trigger: str) -> None:
    definition = deployed_workflow(trigger).definition
    actions = definition["actions"]
    assert sorted(actions["Delete_group"]["runAfter"]["Read_result"]) == sorted(
        ["Succeeded", "Failed", "Skipped", "TimedOut"])
    loop = actions["Wait_for_group"]
    assert loop["limit"] == {"count": 5000, "timeout": "PT6H"}  # bounded, filled in by ARM
    assert loop["actions"]["Delay"]["inputs"]["interval"] == {"count": 30, "unit": "Second"}
    for name in ("Create_group", "Delete_group", "Get_logs"):
        assert actions[name]["type"] == "Http"
        assert actions[name]["inputs"]["authentication"]["type"] == "ManagedServiceIdentity"
    # One run at a time: a second trigger waits for the first run instead of racing it.
    [trigger_def] = definition["triggers"].values()
    assert trigger_def["runtimeConfiguration"] == {"concurrency": {"runs": 1}}
    fail = actions["Check_outcome"]["else"]["actions"]["Fail_run"]["inputs"]["runError"]
    assert "job-locked" in fail["code"] and "JobLocked" in fail["code"]
    if trigger == "timer":
        assert definition["triggers"]["Recurrence"]["recurrence"] == {
            "frequency": "Day", "interval": 1, "startTime": "2026-12-01T02:00:00",
            "timeZone": "W. Europe Standard Time"}
    else:
        responses = [a for _, a in all_actions(actions) if a["type"] == "Response"]
        assert sorted(r["inputs"]["statusCode"] for r in responses) == [200, 409, 500]
        assert all(r["operationOptions"] == "Asynchronous" for r in responses)
        respond = actions["Check_outcome"]["else"]["actions"]["Respond"]
        assert respond["expression"] == "@equals(variables('result')?['error']?['kind'], 'job-locked')"
        locked = respond["actions"]["Respond_locked"]["inputs"]["body"]
        assert locked["status"] == "Locked" and locked["jobId"] == "@variables('result')?['job_id']"
        assert set(locked) >= {"holder", "since", "error", "runId"}


@pytest.mark.parametrize("trigger", ["timer", "http"])
def test_no_secrets_in_templates_or_parameters(trigger: str) -> None:
    template, parameters = shipped(trigger)
    text = json.dumps([template, parameters]).lower()
    assert "securestring" not in text and "securevalue" not in text and "secureobject" not in text
    assert "sig=" not in text and "accountkey" not in text and "password" not in text


def test_an_untested_function_in_a_template_is_refused_by_the_interpreter() -> None:
    template, parameters = shipped("timer")
    template = copy.deepcopy(template)
    actions = template["resources"][0]["properties"]["definition"]["actions"]
    actions["Keep_logs"]["inputs"]["value"] = "@{base64(body('Get_logs'))}"
    values = {k: v["value"] for k, v in parameters["parameters"].items()}
    resource = deploy(template, values, ArmContext(references={values["identity"]: {
        "clientId": "c"}})).resource("Microsoft.Logic/workflows")
    with pytest.raises(ExpressionError, match="base64"):
        Workflow(resource["properties"]["definition"])


# -- render's refusals -----------------------------------------------------------------------
GOOD = {"name": "churn", "model": "az://models/model.joblib", "input": "az://data/in.csv",
        "output": "az://scores/out.csv", "image": "reg.azurecr.io/ss:1",
        "azure": {"identity": "/subscriptions/s/resourceGroups/g/providers/"
                              "Microsoft.ManagedIdentity/userAssignedIdentities/i"}}


@pytest.mark.parametrize(("change", "message"), [
    ({"input": "data/in.csv"}, "local path"),
    ({"output": "az://scores/out.csv?sv=2024&sig=abc"}, "SAS"),
    ({"backend": "docker"}, "Azure Container Instances"),
    ({"azure": {}}, "no identity"),
    ({"image": None}, "no image"),
    ({"azure": {"identity": "scoring-id"}}, "user-assigned managed identity"),
    ({"scorer": "score.py"}, "file on this machine"),
    ({"chunks": 0}, "chunks"),  # the job is validated as `run` would
    ({"model": "models:/churn@champion"}, "no MLflow client"),
    ({"model": "pins:///srv/boards/churn"}, "folder board of this machine"),
])
def test_render_refuses_what_cannot_run_from_a_logic_app(change: dict[str, Any], message: str) -> None:
    raw = {**GOOD, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(SpecError, match=message):
        render(raw, "timer", Options())


@pytest.mark.parametrize(("options", "message"), [
    (Options(frequency="Fortnight"), "frequency"), (Options(start="tomorrow"), "start"),
    (Options(timeout="6 hours"), "timeout"), (Options(arm_endpoint="https://x/"), "trailing"),
])
def test_render_checks_its_options(options: Options, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        render(GOOD, "timer", options)


def test_a_job_file_uri_leaves_the_job_out_of_the_template() -> None:
    _, parameters = render(GOOD, "http", Options(job_uri="az://jobs/churn.toml"))
    values = parameters["parameters"]
    assert values["job"]["value"] == {} and values["jobUri"]["value"] == "az://jobs/churn.toml"


def test_render_and_deploy_on_the_command_line(tmp_path: Path, cli: Any) -> None:
    out = tmp_path / "t" / "churn.json"
    rendered = cli("templates", "render", "--trigger", "http", EXAMPLE, "-o", out)
    assert rendered.code == 0, rendered
    assert json.loads(out.read_text()) == shipped("http")[0]
    assert (tmp_path / "t" / "churn.parameters.json").is_file()
    printed = cli("templates", "deploy", out, "-g", "scoring")
    assert printed.code == 0, printed
    assert printed.stdout.split() == [
        "az", "deployment", "group", "create", "--resource-group", "scoring", "--template-file",
        str(out), "--parameters", f"@{tmp_path / 't' / 'churn.parameters.json'}"]
    assert "not run" in printed.stderr
    refused = cli("templates", "render", tmp_path / "missing.toml")
    assert refused.code == 2 and "does not exist" in refused.stderr


@pytest.mark.parametrize(("body", "valid"), [
    ({}, True),
    ({"input": "az://d/2026-11/*.csv", "output": "az://s/x.csv", "date": "2026-11-01",
      "set": {"chunks": 8, "resources.cpu": 2}}, True),
    ({"date": "1 Nov"}, False),
    ({"inptu": "az://d/x.csv"}, False),
    ({"set": "chunks=8"}, False),
])
def test_the_http_request_schema(body: dict[str, Any], valid: bool) -> None:
    assert Draft7Validator(REQUEST_SCHEMA).is_valid(body) is valid


# -- the controller role ---------------------------------------------------------------------
def test_the_controller_builds_its_job_from_the_environment() -> None:
    env = {c.JOB: json.dumps({**GOOD, "input": "az://data/{date}/in.csv", "resources": {"cpu": 1}}),
           c.REQUEST: json.dumps({"output": "az://scores/{date}.csv", "date": "2026-11-01",
                                  "set": {"chunks": 8, "resources.memory_gb": 3}}),
           c.DATE: "2026-11-29"}
    raw, source = job_from_env(env)
    assert source == "job"
    assert raw["input"] == "az://data/2026-11-01/in.csv"  # the request's date wins
    assert raw["output"] == "az://scores/2026-11-01.csv"
    assert raw["chunks"] == 8 and raw["resources"] == {"cpu": 1, "memory_gb": 3}
    assert raw["backend"] == "aci"
    raw, _ = job_from_env({c.JOB: env[c.JOB], c.DATE: "2026-11-29"})  # the timer: no request
    assert raw["input"] == "az://data/2026-11-29/in.csv"


@pytest.mark.parametrize(("env", "message"), [
    ({c.JOB: ""}, "JSON object"),
    ({c.JOB: "[1]"}, "JSON object"),
    ({c.JOB: "{}"}, "JSON object"),
    ({c.JOB: json.dumps(GOOD), c.REQUEST: "[]"}, "expected a JSON object"),
    ({c.JOB: json.dumps(GOOD), c.REQUEST: json.dumps({"set": "chunks=8"})}, "object of job keys"),
    ({c.JOB: json.dumps({**GOOD, "output": "az://scores/{date}.csv"})}, "no date"),
    ({c.JOB: json.dumps(GOOD), c.REQUEST: json.dumps({"set": {"name.x": 1}})}, "not a table"),
])
def test_the_controller_refuses_a_bad_environment(env: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        job_from_env(env)


def test_render_applies_set_overrides_like_run() -> None:
    raw = read_job(EXAMPLE, ["chunks=4", "resources.cpu=2", "name=churn-eu"])
    _, parameters = render({k: v for k, v in raw.items() if k != "chunk_size"}, "http", Options())
    job = parameters["parameters"]["job"]["value"]
    assert job["chunks"] == 4 and job["resources"]["cpu"] == 2 and job["name"] == "churn-eu"
    assert parameters["parameters"]["jobName"]["value"] == "churn-eu"
    with pytest.raises(SpecError, match="not a table"):
        read_job(EXAMPLE, ["name.x=1"])


@pytest.mark.parametrize(("change", "message"), [
    ({"identity": None}, "required"), ({"frequency": "Fortnight"}, "not one of"),
    ({"pollSeconds": 0}, "minValue"), ({"interval": "1"}, "not of type"),
])
def test_the_deployment_checks_parameter_values(change: dict[str, Any], message: str) -> None:
    template, parameters = shipped("timer")
    values = {k: v["value"] for k, v in parameters["parameters"].items()}
    values.update(change)
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(ExpressionError, match=message):
        deploy(template, values, ArmContext(references={GOOD["azure"]["identity"]: {}}))
