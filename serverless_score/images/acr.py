"""Azure Container Registry login without a password: an Azure AD access token (azure-identity,
DefaultAzureCredential unless one is given) is exchanged at ``https://REGISTRY/oauth2/exchange``
for an ACR refresh token, which the registry accepts as the password of the null-GUID user.
This is what ``az acr login`` does; the token is used for this push only and never printed.
"""

from __future__ import annotations

from typing import Any

from ..errors import ScoreError
from ..secrets import Secret

ACR_USER = "00000000-0000-0000-0000-000000000000"
ARM_SCOPE = "https://management.azure.com/.default"


def exchange_token(registry: str, aad_token: Secret, *, scheme: str = "https",
                   timeout: float = 30) -> Secret:
    """The ACR refresh token for ``aad_token`` (``scheme`` is "http" only for a local test server)."""
    import requests

    try:
        response = requests.post(
            f"{scheme}://{registry}/oauth2/exchange",
            data={"grant_type": "access_token", "service": registry,
                  "access_token": aad_token.reveal()},
            timeout=timeout)
    except requests.RequestException as err:
        raise ScoreError(f"{registry}: token exchange failed: {type(err).__name__}",
                         hint="Check the registry name (myregistry.azurecr.io) and the network.") from None
    if response.status_code != 200:
        raise ScoreError(
            f"{registry}: the registry refused the Azure AD token (HTTP {response.status_code})",
            hint="The identity needs the AcrPush role on the registry (az role assignment create "
                 "--role AcrPush ...), and the registry must allow Azure AD authentication.")
    try:
        token = response.json()["refresh_token"]
    except (ValueError, KeyError):
        raise ScoreError(f"{registry}: the token exchange answered without a refresh_token") from None
    return Secret(token)


def acr_auth(registry: str, credential: Any = None, *, scheme: str = "https") -> dict[str, str]:
    """Push credentials for ``registry`` from an Azure AD identity."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise ScoreError("--azure-login needs azure-identity",
                         hint="pip install 'serverless-score[blob]'") from None
    from azure.core.exceptions import ClientAuthenticationError

    credential = credential or DefaultAzureCredential()
    try:
        aad = Secret(credential.get_token(ARM_SCOPE).token)
    except ClientAuthenticationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "no credential"
        raise ScoreError(f"no Azure AD token for the registry login: {first}",
                         hint="Sign in (az login), or set AZURE_CLIENT_ID/AZURE_TENANT_ID/"
                              "AZURE_CLIENT_SECRET, or use a managed identity.") from None
    return {"username": ACR_USER, "password": exchange_token(registry, aad, scheme=scheme).reveal()}
