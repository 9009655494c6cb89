"""GroupSpec -> the SDK's ContainerGroup model (pure: no client, no network).

One container per group, ``restart_policy = Never`` (a scoring run that failed must not run
again behind the controller's back: the controller decides about retries), the job's labels as
tags, secrets only as ``secure_value`` (ARM never returns them and they are not shown in the
portal), and the user-assigned identity both on the group (blob access) and for the ACR pull.
"""

from __future__ import annotations

from azure.mgmt.containerinstance.models import (
    Container,
    ContainerGroup,
    ContainerGroupIdentity,
    EnvironmentVariable,
    ImageRegistryCredential,
    ResourceRequests,
    ResourceRequirements,
    UserAssignedIdentities,
)

from ...storage.azure_auth import ENV_WORKER_IDENTITY
from ..base import GroupSpec
from .settings import AciSettings

CONTAINER = "runner"  # the one container of every group: its logs are the group's logs
TAG_VALUE_MAX = 256  # ARM: tag values hold at most 256 characters


def build_group(group: GroupSpec, settings: AciSettings) -> ContainerGroup:
    plain = {**group.thread_caps(), **group.env}
    if settings.identity:  # the runner's blob credential asks for this identity's tokens
        plain[ENV_WORKER_IDENTITY] = settings.identity
    env = [EnvironmentVariable(name=k, value=v) for k, v in sorted(plain.items())]
    env += [EnvironmentVariable(name=k, secure_value=v) for k, v in sorted(group.secure_env.items())]
    container = Container(
        name=CONTAINER,
        image=settings.image,
        resources=ResourceRequirements(
            requests=ResourceRequests(cpu=group.cpu, memory_in_gb=group.memory_gb)),
        environment_variables=env,
        # No command: the image's entrypoint is the runner (README: the runner contract).
    )
    identity = None
    credentials = None
    if settings.identity:
        identity = ContainerGroupIdentity(
            type="UserAssigned",
            user_assigned_identities={settings.identity: UserAssignedIdentities()})
        if settings.registry_server:
            credentials = [ImageRegistryCredential(server=settings.registry_server,
                                                   identity=settings.identity)]
    return ContainerGroup(
        location=settings.location,
        containers=[container],
        os_type="Linux",
        restart_policy="Never",
        tags={k: v[:TAG_VALUE_MAX] for k, v in group.labels.items()},
        identity=identity,
        image_registry_credentials=credentials,
        priority=settings.priority,  # "Spot": ACI restarts an evicted group (states.py)
    )
