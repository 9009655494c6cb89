"""The ARM template around the workflow: one ``Microsoft.Logic/workflows`` resource running as a
user-assigned managed identity (the same identity its container groups get), optionally a
Contributor role assignment for that identity on the resource group. No connection resource and
no secret parameter: every call authenticates with the identity."""

from __future__ import annotations

from typing import Any

from . import contract as c
from .workflow import Trigger, definition

TEMPLATE_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
PARAMETERS_SCHEMA = ("https://schema.management.azure.com/schemas/2019-04-01/"
                     "deploymentParameters.json#")
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
FREQUENCIES = ["Minute", "Hour", "Day", "Week", "Month"]


def _p(kind: str, description: str, default: Any = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "metadata": {"description": description}, **extra}
    if default is not None:
        spec["defaultValue"] = default
    return spec


def _parameters(trigger: Trigger) -> dict[str, Any]:
    params = {
        "workflowName": _p("string", "Name of the Logic App.", "serverless-score"),
        "location": _p("string", "Region of the Logic App and of the container groups.",
                       "[resourceGroup().location]"),
        "identity": _p("string", "Resource id of the user-assigned managed identity the workflow, "
                       "the controller and the workers run as (see README: Logic App templates "
                       "for its role assignments)."),
        "image": _p("string", "Image with the serverless-score runner: runs the controller "
                    "(and the workers, unless the job names another image)."),
        "registry": _p("string", "Login server of the registry the image comes from (pulled with "
                       "the identity), or empty for a public image.", ""),
        "controllerResources": _p("object", "CPU and memory of the controller's container "
                                  "(the workers get the job's [resources]).",
                                  {"cpu": 1, "memoryInGB": 1.5}),
        "jobName": _p("string", "The job's name (container group names start with it)."),
        "job": _p("object", "The job, as JSON (the job file's keys). Ignored when jobUri is set.",
                  {}),
        "jobUri": _p("string", "Or: URI of a TOML job file in blob storage, read by the "
                     "controller with its identity.", ""),
        "output": _p("string", "Where the job writes its scores (reported in responses).", ""),
        "armEndpoint": _p("string", "Azure Resource Manager endpoint, without a trailing slash "
                          "(sovereign clouds differ).", "https://management.azure.com"),
        "armAudience": _p("string", "Token audience for that endpoint.",
                          "https://management.azure.com/"),
        "pollSeconds": _p("int", "Seconds between looks at the controller's container group.", 30,
                          minValue=1),
        "maxPolls": _p("int", "At most this many looks (Until count limit).", 5000, minValue=1,
                       maxValue=5000),
        "timeout": _p("string", "Longest the workflow waits for the job (ISO 8601, Until "
                      "timeout limit); the group is deleted after it either way.", "PT6H"),
        "lifetimeSeconds": _p("int", "The controller group's `expires` tag: this long after its "
                              "creation `serverless-score cleanup --expired` may delete it. Keep "
                              "it above timeout (render sets timeout + 10 minutes).", 22200,
                              minValue=60),
        "assignContributor": _p("bool", "Also give the identity Contributor on this resource "
                                "group (the deploying principal needs Owner or User Access "
                                "Administrator for that).", False),
    }
    if trigger == "timer":
        params.update({
            "frequency": _p("string", "Recurrence unit.", "Day", allowedValues=FREQUENCIES),
            "interval": _p("int", "Run every `interval` units.", 1, minValue=1),
            "startTime": _p("string", "First run, YYYY-MM-DDThh:mm:ss in timeZone."),
            "timeZone": _p("string", "Windows time zone name of startTime, e.g. "
                           "'W. Europe Standard Time'.", "UTC"),
        })
    return params


def workflow_parameter_values() -> dict[str, str]:
    """The workflow's parameters, filled by ARM at deployment (each an ARM expression)."""
    return {
        "groupsUri": "[concat(parameters('armEndpoint'), '/subscriptions/', "
                     "subscription().subscriptionId, '/resourceGroups/', resourceGroup().name, "
                     "'/providers/Microsoft.ContainerInstance/containerGroups/')]",
        "armAudience": "[parameters('armAudience')]",
        "armEndpoint": "[parameters('armEndpoint')]",
        "subscriptionId": "[subscription().subscriptionId]",
        "resourceGroup": "[resourceGroup().name]",
        "location": "[parameters('location')]",
        "identity": "[parameters('identity')]",
        "identityClientId": "[reference(parameters('identity'), '2023-01-31').clientId]",
        "groupIdentity": "[createObject('type', 'UserAssigned', 'userAssignedIdentities', "
                         "createObject(parameters('identity'), createObject()))]",
        "registryCredentials": "[if(empty(parameters('registry')), createArray(), createArray("
                               "createObject('server', parameters('registry'), 'identity', "
                               "parameters('identity'))))]",
        "image": "[parameters('image')]",
        "resources": "[parameters('controllerResources')]",
        "jobSource": f"[if(empty(parameters('jobUri')), createObject('name', '{c.JOB}', "
                     f"'value', string(parameters('job'))), createObject('name', '{c.JOB_URI}', "
                     "'value', parameters('jobUri')))]",
        "jobName": "[parameters('jobName')]",
        "output": "[parameters('output')]",
        "lifetimeSeconds": "[parameters('lifetimeSeconds')]",
    }


def template(trigger: Trigger) -> dict[str, Any]:
    workflow: dict[str, Any] = {
        "type": "Microsoft.Logic/workflows",
        "apiVersion": "2019-05-01",
        "name": "[parameters('workflowName')]",
        "location": "[parameters('location')]",
        "tags": {"serverless-score": trigger},
        "identity": {"type": "UserAssigned",
                     "userAssignedIdentities": {"[parameters('identity')]": {}}},
        "properties": {
            "state": "Enabled",
            # The workflow's parameters get their values as defaultValues inside the definition
            # (ARM fills them in): the published schema's `parameters.value` is a oneOf that
            # every ARM expression matches twice, so `properties.parameters` cannot be valid.
            "definition": definition(trigger, workflow_parameter_values()),
        },
    }
    role = {
        "condition": "[parameters('assignContributor')]",
        "type": "Microsoft.Authorization/roleAssignments",
        "apiVersion": "2022-04-01",
        "name": "[guid(resourceGroup().id, parameters('identity'), 'serverless-score')]",
        "properties": {
            "roleDefinitionId": f"[subscriptionResourceId('Microsoft.Authorization/"
                                f"roleDefinitions', '{CONTRIBUTOR}')]",
            "principalId": "[reference(parameters('identity'), '2023-01-31').principalId]",
            "principalType": "ServicePrincipal",
        },
    }
    outputs: dict[str, Any] = {"workflowId": {
        "type": "string",
        "value": "[resourceId('Microsoft.Logic/workflows', parameters('workflowName'))]"}}
    if trigger == "http":
        outputs["triggerUrl"] = {
            "type": "string",
            "value": "[listCallbackURL(concat(resourceId('Microsoft.Logic/workflows', "
                     "parameters('workflowName')), '/triggers/manual'), '2019-05-01').value]"}
    return {
        "$schema": TEMPLATE_SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {"description": f"serverless-score: run a scoring job from a "
                     f"{'schedule' if trigger == 'timer' else 'HTTP request'} (generated by "
                     f"`serverless-score templates render`; do not edit by hand)."},
        "parameters": _parameters(trigger),
        "resources": [workflow, role],
        "outputs": outputs,
    }


def parameters_file(values: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": PARAMETERS_SCHEMA, "contentVersion": "1.0.0.0",
            "parameters": {name: {"value": value} for name, value in values.items()}}
