"""``backend = "aci"``: Azure Container Instances, through azure-mgmt-containerinstance.

Modules, one job each: ``settings`` (the job's [azure] keys and the environment, checked),
``groups`` (GroupSpec -> ContainerGroup model, pure), ``states`` (GET answer -> GroupState,
pure), ``pacer`` (ACI's create and delete windows per subscription, pure), ``throttle`` (read
token bucket, capped jittered backoff), ``polling`` (when to spend a GET on which group), ``quota`` (regional usage vs the job's width, pure), ``client`` (the only
module that calls ARM), ``backend`` (the Backend protocol on top).
"""

from .backend import AciBackend, Packing
from .settings import AciSettings

__all__ = ["AciBackend", "AciSettings", "Packing"]
