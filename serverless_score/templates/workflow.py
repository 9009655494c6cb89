"""The workflow definition of the Logic App templates, built as data (pure functions).

trigger (one run at a time) -> create a container group that runs the controller -> Until the
group is terminal (bounded by count and timeout) -> get its logs -> read the controller's JSON
result from them -> delete the group after ANY outcome -> (HTTP) respond: 200, 500, or 409 when
the controller found another controller holding the job's lease -> a failed job ends the run
Failed.

State the later steps need lives in variables, never in the outputs of an action that may have
been skipped (reading those is an error in the service).

Calls go straight to ARM (``Http`` with the workflow's managed identity) rather than through the
ACI managed connector: no ``Microsoft.Web/connections`` resource and its consent, no connector
throttling (100 calls a minute per connection), and the ARM endpoint is a parameter (sovereign
clouds, and the local emulator the tests run it against).
"""

from __future__ import annotations

from typing import Any, Literal

from . import contract as c

Trigger = Literal["timer", "http"]
WDL_SCHEMA = ("https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/"
              "workflowdefinition.json#")
ALL_OUTCOMES = ["Succeeded", "Failed", "Skipped", "TimedOut"]

# The group's fields the loop remembers each time it looks (a variable: always readable).
_GROUP = "@body('Get_group')?['properties']"
_REMEMBER = {
    "httpStatus": "@outputs('Get_group')?['statusCode']",
    "provisioningState": f"{_GROUP}?['provisioningState']",
    "state": f"{_GROUP}?['instanceView']?['state']",
    "container": f"{_GROUP}?['containers']?[0]?['properties']?['instanceView']?['currentState']",
    "restartCount": f"{_GROUP}?['containers']?[0]?['properties']?['instanceView']?['restartCount']",
}
# Finished: the group ended (restart policy Never), or its container terminated, or provisioning
# failed (the state may then stay Pending forever), or the group is gone.
_TERMINAL = ("@or(equals(variables('group')?['state'], 'Succeeded'), "
             "equals(variables('group')?['state'], 'Failed'), "
             "equals(variables('group')?['provisioningState'], 'Failed'), "
             "equals(variables('group')?['container']?['state'], 'Terminated'), "
             "equals(variables('group')?['httpStatus'], 404))")
_SUCCEEDED = ("@and(equals(variables('group')?['container']?['exitCode'], 0), "
              "variables('deleted'))")
_WHY = ("@{coalesce(variables('result')?['error']?['message'], concat('container group ', "
        "variables('groupName'), if(equals(variables('group')?['container']?['state'], "
        "'Terminated'), concat(' ended with exit code ', "
        "string(variables('group')?['container']?['exitCode'])), concat(' did not finish in time "
        "or could not start (state ', coalesce(variables('group')?['state'], 'none'), "
        "', provisioning ', coalesce(variables('group')?['provisioningState'], 'none'), ')')), "
        "if(variables('deleted'), '', '; deleting it failed')))}")

# The controller stopped because another controller runs this job (`run --json` says
# "error": {"kind": "job-locked", "holder": {...}, "since": ...}; exit code 3).
_LOCKED = "@equals(variables('result')?['error']?['kind'], 'job-locked')"
# One run at a time per deployment: a second trigger waits until the first run ends (then
# finds the job up to date, or runs the next one) instead of starting a second controller.
# Waiting runs are capped by the service (default 10 + runs); beyond that a request gets 429.
CONCURRENCY: dict[str, Any] = {"concurrency": {"runs": 1}}

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Overrides of the job for this run; all optional.",
    "properties": {
        "input": {"type": "string", "description": "input URI (replaces the job's input)"},
        "output": {"type": "string", "description": "output URI (replaces the job's output)"},
        "model": {"type": "string", "description": "model URI (replaces the job's model)"},
        "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                 "description": "replaces {date} in model, input and output (default: today, UTC)"},
        "set": {"type": "object", "description": "any job key, as with --set: "
                "{\"chunks\": 8, \"resources.cpu\": 2}"},
    },
    "additionalProperties": False,
}


def _arm_call(method: str, uri: str, body: Any = None) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "method": method, "uri": uri,
        "queries": {"api-version": c.ACI_API_VERSION},
        "authentication": {"type": "ManagedServiceIdentity", "identity": "@parameters('identity')",
                           "audience": "@parameters('armAudience')"},
    }
    if body is not None:
        inputs["body"] = body
    return {"type": "Http", "inputs": inputs}


def _env(trigger: Trigger) -> list[Any]:
    pairs = [
        (c.ROLE, c.ROLE_CONTROLLER),
        (c.DATE, "@{utcNow('yyyy-MM-dd')}"),
        (c.SUBSCRIPTION, "@{parameters('subscriptionId')}"),
        (c.RESOURCE_GROUP, "@{parameters('resourceGroup')}"),
        (c.LOCATION, "@{parameters('location')}"), (c.IDENTITY, "@{parameters('identity')}"),
        (c.ARM_ENDPOINT, "@{parameters('armEndpoint')}"),
        (c.CLIENT_ID, "@{parameters('identityClientId')}"),
    ]
    if trigger == "http":
        pairs.append((c.REQUEST, "@{coalesce(triggerBody(), json('{}'))}"))
    env: list[Any] = [{"name": name, "value": value} for name, value in pairs]
    # SERVERLESS_SCORE_JOB or SERVERLESS_SCORE_JOB_URI, whichever the deployment was given.
    env.append("@parameters('jobSource')")
    return env


def _group_body(trigger: Trigger) -> dict[str, Any]:
    return {
        "location": "@parameters('location')",
        "identity": "@parameters('groupIdentity')",
        # `job` and `expires` as on every group this tool makes (backends/base.py): should the
        # Logic App itself vanish mid-run, `serverless-score cleanup --expired` finds this one.
        "tags": {"job": "@{concat('logic-app-', workflow()['run']['name'])}",
                 "expires": "@{addSeconds(utcNow(), parameters('lifetimeSeconds'), "
                            "'yyyy-MM-ddTHH:mm:ssZ')}",
                 "serverless-score": "controller", "job-name": "@{parameters('jobName')}"},
        "properties": {
            "osType": "Linux",
            "restartPolicy": "Never",  # a finished controller must stay finished
            "imageRegistryCredentials": "@parameters('registryCredentials')",
            "containers": [{
                "name": c.CONTROLLER_CONTAINER,
                "properties": {
                    "image": "@parameters('image')",
                    "resources": {"requests": "@parameters('resources')"},
                    "environmentVariables": _env(trigger),
                },
            }],
        },
    }


def _variables() -> dict[str, Any]:
    names = [("groupName", "string",
              "@{concat('ssc-', parameters('jobName'), '-', substring(guid(), 0, 8))}"),
             ("group", "object", {}), ("logs", "string", ""), ("result", "object", {}),
             ("deleted", "boolean", False)]
    actions: dict[str, Any] = {}
    previous = None
    for name, kind, value in names:
        action_name = f"Init_{name}"
        actions[action_name] = {
            "type": "InitializeVariable",
            "inputs": {"variables": [{"name": name, "type": kind, "value": value}]},
            "runAfter": {previous: ["Succeeded"]} if previous else {},
        }
        previous = action_name
    return actions


def _response(status: int, outcome: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": outcome,
        "jobId": "@variables('result')?['job_id']",
        "runId": "@workflow()['run']['name']",
        "containerGroup": "@variables('groupName')",
        "output": "@coalesce(variables('result')?['output'], parameters('output'))",
        "manifest": "@variables('result')?['manifest']",
        "rowsOut": "@variables('result')?['rows_out']",
    }
    if outcome == "Failed":
        body["error"] = _WHY
        body["group"] = "@variables('group')"
        body["groupDeleted"] = "@variables('deleted')"
    return {"type": "Response", "kind": "Http", "operationOptions": "Asynchronous",
            "inputs": {"statusCode": status, "headers": {"Content-Type": "application/json"},
                       "body": body}}


def _locked_response() -> dict[str, Any]:
    """409: another controller runs this job; its id, who holds the job's lease, since when."""
    return {"type": "Response", "kind": "Http", "operationOptions": "Asynchronous",
            "inputs": {"statusCode": 409, "headers": {"Content-Type": "application/json"},
                       "body": {"status": "Locked",
                                "jobId": "@variables('result')?['job_id']",
                                "runId": "@workflow()['run']['name']",
                                "holder": "@variables('result')?['error']?['holder']",
                                "since": "@variables('result')?['error']?['since']",
                                "error": "@variables('result')?['error']?['message']"}}}


def _outcome(trigger: Trigger) -> dict[str, Any]:
    fail = {"type": "Terminate", "inputs": {"runStatus": "Failed", "runError": {
        "code": f"@{{if({_LOCKED[1:]}, 'JobLocked', 'ScoringJobFailed')}}", "message": _WHY}}}
    succeeded: dict[str, Any] = {}
    failed: dict[str, Any] = {"Fail_run": fail}
    if trigger == "http":
        succeeded = {"Respond_succeeded": _response(200, "Succeeded")}
        fail["runAfter"] = {"Respond": ["Succeeded", "Failed"]}
        respond = {"type": "If", "expression": _LOCKED,
                   "actions": {"Respond_locked": _locked_response()},
                   "else": {"actions": {"Respond_failed": _response(500, "Failed")}}}
        failed = {"Respond": respond, "Fail_run": fail}
    return {"type": "If", "expression": _SUCCEEDED, "actions": succeeded,
            "else": {"actions": failed},
            "runAfter": {"Remember_deleted": ALL_OUTCOMES}}


def definition(trigger: Trigger, values: dict[str, str]) -> dict[str, Any]:
    """The definition; ``values`` are the parameters' defaultValues (ARM expressions)."""
    groups = "@{parameters('groupsUri')}@{encodeURIComponent(variables('groupName'))}"
    actions = _variables()
    actions["Create_group"] = {**_arm_call("PUT", groups, _group_body(trigger)),
                               "runAfter": {"Init_deleted": ["Succeeded"]}}
    actions["Wait_for_group"] = {
        "type": "Until",
        "expression": _TERMINAL,
        # ARM fills these in at deployment: plain numbers for the loop, not run-time expressions.
        "limit": {"count": "[parameters('maxPolls')]", "timeout": "[parameters('timeout')]"},
        "actions": {
            "Delay": {"type": "Wait", "inputs": {"interval": {
                "count": "[parameters('pollSeconds')]", "unit": "Second"}}},
            "Get_group": {**_arm_call("GET", groups), "runAfter": {"Delay": ["Succeeded"]}},
            "Remember_group": {"type": "SetVariable",
                               "inputs": {"name": "group", "value": _REMEMBER},
                               "runAfter": {"Get_group": ["Succeeded", "Failed"]}},
        },
        "runAfter": {"Create_group": ["Succeeded"]},
    }
    logs = f"{groups}/containers/{c.CONTROLLER_CONTAINER}/logs"
    actions["Get_logs"] = {**_arm_call("GET", logs),
                           "runAfter": {"Wait_for_group": ["Succeeded", "Failed", "TimedOut"]}}
    actions["Keep_logs"] = {"type": "SetVariable", "inputs": {
        "name": "logs", "value": "@{coalesce(body('Get_logs')?['content'], '')}"},
        "runAfter": {"Get_logs": ["Succeeded"]}}
    # `serverless-score run --json` ends its output with one JSON line: the job's result.
    actions["Read_result"] = {"type": "SetVariable", "inputs": {
        "name": "result",
        "value": "@json(last(split(trim(variables('logs')), decodeUriComponent('%0A'))))"},
        "runAfter": {"Keep_logs": ["Succeeded"]}}
    actions["Delete_group"] = {**_arm_call("DELETE", groups),
                               "runAfter": {"Read_result": ALL_OUTCOMES}}
    actions["Remember_deleted"] = {"type": "SetVariable",
                                   "inputs": {"name": "deleted", "value": True},
                                   "runAfter": {"Delete_group": ["Succeeded"]}}
    actions["Check_outcome"] = _outcome(trigger)
    return {
        "$schema": WDL_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": _parameters(values),
        "triggers": _trigger(trigger),
        "actions": actions,
        "outputs": {},
    }


def _parameters(values: dict[str, str]) -> dict[str, Any]:
    kinds = {"groupsUri": "String", "armAudience": "String", "armEndpoint": "String",
             "subscriptionId": "String", "resourceGroup": "String", "location": "String",
             "identity": "String", "identityClientId": "String", "groupIdentity": "Object",
             "registryCredentials": "Array", "image": "String", "resources": "Object",
             "jobSource": "Object", "jobName": "String", "output": "String",
             "lifetimeSeconds": "Int"}
    return {name: {"type": kind, "defaultValue": values[name]} for name, kind in kinds.items()}


def _trigger(trigger: Trigger) -> dict[str, Any]:
    if trigger == "http":
        return {"manual": {"type": "Request", "kind": "Http",
                           "inputs": {"method": "POST", "schema": REQUEST_SCHEMA},
                           "runtimeConfiguration": CONCURRENCY}}
    return {"Recurrence": {"type": "Recurrence", "recurrence": {
        "frequency": "[parameters('frequency')]", "interval": "[parameters('interval')]",
        "startTime": "[parameters('startTime')]", "timeZone": "[parameters('timeZone')]"},
        "runtimeConfiguration": CONCURRENCY}}
