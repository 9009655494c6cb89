"""What a Logic App's container group hands the controller it starts: environment variables, all
plain (no secrets: the group's managed identity does the authenticating). Shared by the template
generator (which writes them into the workflow) and the controller role (which reads them)."""

from __future__ import annotations

# Makes `python -m serverless_score.runner` (every image's entrypoint) run `serverless-score run`
# instead of a work order, so any image with the runner installed can be the controller.
ROLE = "SERVERLESS_SCORE_ROLE"
ROLE_CONTROLLER = "controller"
# No variable is ever empty (ACI has refused environment variables without a value): which of
# JOB / JOB_URI the group gets is decided at deployment.
JOB = "SERVERLESS_SCORE_JOB"          # the job as JSON (the template's `job` parameter)
JOB_URI = "SERVERLESS_SCORE_JOB_URI"  # or: a TOML job file in blob storage
# The HTTP request's body (JSON; workflow.REQUEST_SCHEMA): input, output, model, date, and set,
# an object of job keys (dotted for tables: {"chunks": 8, "resources.cpu": 2}) applied like --set.
REQUEST = "SERVERLESS_SCORE_REQUEST"
DATE = "SERVERLESS_SCORE_DATE"        # the run's UTC date: replaces {date} in model/input/output
# Where the workers go when the job does not say: the deployment's subscription, resource group,
# region and identity (the ACI backend's own fallbacks, backends/aci/settings.py; the registry it
# takes from the job or the image's host).
SUBSCRIPTION = "SERVERLESS_SCORE_AZURE_SUBSCRIPTION_ID"
RESOURCE_GROUP = "SERVERLESS_SCORE_AZURE_RESOURCE_GROUP"
LOCATION = "SERVERLESS_SCORE_AZURE_LOCATION"
IDENTITY = "SERVERLESS_SCORE_AZURE_IDENTITY"
ARM_ENDPOINT = "SERVERLESS_SCORE_ARM_ENDPOINT"
CLIENT_ID = "AZURE_CLIENT_ID"  # which user-assigned identity DefaultAzureCredential asks for

CONTROLLER_CONTAINER = "controller"
ACI_API_VERSION = "2023-05-01"
