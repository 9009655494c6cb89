"""Token credentials for Blob Storage (azure-identity), created once per process.

``DefaultAzureCredential`` tries, in order, environment service principals, workload identity,
managed identity, the Azure CLI, ... which is what a container on ACI (managed identity) and a
developer's shell (``az login``) both need. The interactive browser flow stays off: a batch job
must never wait for a person.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..errors import InputError


@cache
def default_credential() -> Any:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as err:
        raise InputError(
            "Azure Blob Storage needs the azure-identity package, which is not installed",
            hint="pip install 'serverless-score[blob]'", retryable=False,
        ) from err
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)
