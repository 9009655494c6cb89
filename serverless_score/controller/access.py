"""What storage access each worker gets (``[azure] worker_access``).

* ``sas``: each group gets SAS URLs for exactly its tasks' blobs: read on the model and on each
  task's input blob, create/write on each task's part, log and status, expiring with the group's
  deadline (timeout x tasks, plus a few minutes of clock skew). Needs a credential that can sign:
  an account key (key or connection string) or Azure AD (user delegation key).
* ``identity``: workers use their own identity (managed identity on ACI; locally, this machine's
  credentials); the SAS tokens of URLs the job named are passed on as they are.
* ``auto`` (default): ``sas`` when the controller holds the account key of every blob the job
  touches; otherwise ``identity`` (a user delegation key needs the "Storage Blob Delegator" role,
  which a job should not need unless it asks for ``sas``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol, runtime_checkable

from ..errors import SpecError
from ..runner.contract import ENV_SECRETS, TaskOrder
from ..secrets import Secret
from ..spec import JobSpec
from ..storage import StoreConfig, get_store, is_local

SKEW = timedelta(minutes=5)
READ, WRITE = "r", "cw"


@runtime_checkable
class Grantor(Protocol):
    """A store that can hand out narrow, expiring access to one object (Blob: SAS)."""

    def signer(self, uri: str) -> str | None: ...

    def grant(self, uri: str, permission: str, lifetime: timedelta) -> Secret | None: ...


@dataclass(frozen=True)
class WorkerAccess:
    mode: Literal["none", "sas", "identity"]
    config: StoreConfig
    model: str | None
    timeout: float
    extra_reads: tuple[str, ...] = ()  # e.g. a scorer script shipped beside the output
    errors: bool = False  # on_error = "skip": each attempt may write its errors file

    @classmethod
    def decide(cls, spec: JobSpec, config: StoreConfig) -> WorkerAccess:
        remote = [u for u in (spec.model, spec.input, spec.output) if u and not is_local(u)]
        if not remote:
            return cls("none", config, spec.model, spec.timeout)
        wanted = spec.azure.worker_access
        signers = [store.signer(u) if isinstance(store := get_store(u, config), Grantor) else None
                   for u in remote]
        if wanted == "sas" and None in signers:
            raise SpecError(
                "azure.worker_access: \"sas\" needs a credential that can sign SAS URLs (an account "
                "key, a connection string with a key, or Azure AD for user delegation); the job's "
                "credential is a SAS, which cannot make narrower ones",
                hint='Use worker_access = "identity", or another storage_credential.')
        with_keys = all(s == "key" for s in signers)
        mode: Literal["sas", "identity"] = (
            "sas" if wanted == "sas" or (wanted == "auto" and with_keys) else "identity")
        return cls(mode, config, spec.model, spec.timeout, errors=spec.on_error == "skip")

    def grants(self, orders: list[TaskOrder], lifetime: float | None = None) -> dict[str, Secret]:
        """The SAS URL of every blob the tasks of one group touch, with the least permission."""
        wanted: dict[str, str] = {}
        if self.model:
            wanted[self.model] = READ
        for uri in self.extra_reads:
            wanted[uri] = READ
        for order in orders:
            if order.task.path:
                wanted[order.task.path] = READ
            for uri in (order.part, order.log, order.status):  # this attempt's files only
                wanted[uri] = WRITE
            if self.errors:
                wanted[order.errors] = WRITE
        valid = timedelta(seconds=lifetime if lifetime is not None
                          else self.timeout * max(1, len(orders))) + SKEW
        return {uri: Secret(self.sign(uri, permission, valid))
                for uri, permission in wanted.items() if not is_local(uri)}

    def secure_env(self, orders: list[TaskOrder], queue_grants: Mapping[str, str] | None = None,
                   lifetime: float | None = None) -> Mapping[str, str]:
        """The secure environment of one group: SAS URLs of what its listed ``orders`` touch,
        plus (a pulling group) its queue's reads, valid ``lifetime`` seconds (default: the
        timeout per order); or the job's own SAS tokens."""
        if self.mode == "sas":
            grants = self.grants(orders, lifetime)
            grants.update({u: Secret(v) for u, v in (queue_grants or {}).items()})
            return {ENV_SECRETS: self.config.worker_secrets(grants)}
        if self.mode == "identity" and self.config.sas:
            return {ENV_SECRETS: self.config.worker_secrets(None)}
        return {}

    def for_queue(self, lifetime: float) -> TicketAccess | None:
        """SAS URLs for a pulling group's tickets, valid ``lifetime`` seconds (a ticket may wait
        in the queue before it is claimed); None when workers need none."""
        return TicketAccess(self, timedelta(seconds=lifetime) + SKEW) if self.mode == "sas" else None

    def sign(self, uri: str, permission: str, lifetime: timedelta) -> str:
        store = get_store(uri, self.config)
        assert isinstance(store, Grantor)
        url = store.grant(uri, permission, lifetime)
        if url is None:  # decide() checked: this only happens if the credential changed
            raise SpecError(f"{uri}: cannot sign a SAS for the workers any more")
        return url.reveal()


@dataclass(frozen=True)
class TicketAccess:
    """``controller.tickets.QueueAccess`` for workers on SAS URLs."""

    access: WorkerAccess
    lifetime: timedelta

    def attempt(self, order: TaskOrder) -> Mapping[str, str]:
        wanted = {}
        if order.task.path:
            wanted[order.task.path] = READ
        claim = order.part.rsplit("/", 1)[0] + "/claim.json"
        for uri in (order.part, order.log, order.status, claim):
            wanted[uri] = WRITE
        if self.access.errors:
            wanted[order.errors] = WRITE
        return {uri: self.access.sign(uri, p, self.lifetime) for uri, p in wanted.items()
                if not is_local(uri)}

    def read(self, uri: str) -> str:
        return "" if is_local(uri) else self.access.sign(uri, READ, self.lifetime)
