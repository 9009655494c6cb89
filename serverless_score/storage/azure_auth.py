"""Token credentials for Blob Storage (azure-identity), created once per process.

``DefaultAzureCredential`` tries, in order, environment service principals, workload identity,
managed identity, the Azure CLI, ... which is what a container on ACI (managed identity) and a
developer's shell (``az login``) both need. The interactive browser flow stays off: a batch job
must never wait for a person.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from ..errors import InputError

# The resource id of the user-assigned managed identity a worker runs as (set on ACI groups).
ENV_WORKER_IDENTITY = "SERVERLESS_SCORE_WORKER_IDENTITY"


@cache
def default_credential() -> Any:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as err:
        raise InputError(
            "Azure Blob Storage needs the azure-identity package, which is not installed",
            hint="pip install 'serverless-score[blob]'", retryable=False,
        ) from err
    resource_id = os.environ.get(ENV_WORKER_IDENTITY)
    if resource_id:
        # Inside an ACI container group with a user-assigned identity (the backend sets this):
        # ask for that identity's token by its resource id, which the group knows, instead of
        # relying on the platform picking it when no client id is given.
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(identity_config={"resource_id": resource_id})
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)
