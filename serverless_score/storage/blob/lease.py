"""The job lease on blob storage: ``<output>.lease`` is a small blob holding a real blob lease.

The service refuses a second ``acquire`` while the lease is active, so two controllers on two
machines cannot both hold it. The holder renews it from a heartbeat thread (every quarter of its
duration); a holder that crashed stops renewing and the lease expires (at most ``duration``
seconds later), after which the next controller acquires it. Who holds it (host, pid, since) is
the blob's metadata, written under the lease. A holder known to be gone (same machine, process no
longer there) has its lease broken at once instead of waited out.
"""

from __future__ import annotations

import contextlib
import logging
import time

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobLeaseClient

from ..config import StoreConfig
from ..lease import Heartbeat, Holder, held_error
from .clients import Clients
from .errors import translated

log = logging.getLogger(__name__)
BLOB_LEASE_SECONDS = 60  # the service allows 15..60 (or infinite, which a crash would never end)


def _code(err: HttpResponseError) -> str:
    code = getattr(err, "error_code", None) or ""
    return str(getattr(code, "value", code))


class BlobLease:
    def __init__(self, uri: str, job_id: str, config: StoreConfig, *,
                 duration: int = BLOB_LEASE_SECONDS) -> None:
        if not 15 <= duration <= 60:
            raise ValueError(f"blob lease duration must be 15..60 seconds, not {duration}")
        self.uri = uri
        self.job_id = job_id
        self.duration = duration
        self._blob = Clients(config).blob(uri)
        self._lease: BlobLeaseClient | None = None
        self._heartbeat: Heartbeat | None = None

    @property
    def lost(self) -> bool:
        return self._heartbeat is not None and self._heartbeat.lost

    def _holder_of_blob(self) -> tuple[bool, Holder | None]:
        """(leased now?, the holder its metadata names)."""
        with translated(self.uri, "reading the job lease"):
            try:
                props = self._blob.get_blob_properties()
            except ResourceNotFoundError:
                return False, None
        leased = str(getattr(props.lease, "state", "")).lower() == "leased"
        meta = props.metadata or {}
        try:
            holder = Holder.from_dict(dict(meta)) if "token" in meta else None
        except (ValueError, KeyError):
            holder = None
        return leased, holder

    def _try_acquire(self, lease: BlobLeaseClient) -> bool:
        try:
            lease.acquire(lease_duration=self.duration)
        except HttpResponseError as err:
            if err.status_code == 409 and _code(err) in ("LeaseAlreadyPresent", ""):
                return False
            with translated(self.uri, "taking the job lease"):
                raise
        return True

    def acquire(self) -> Holder:
        with translated(self.uri, "creating the job lease blob"):
            try:
                self._blob.upload_blob(b"", overwrite=False)
            except ResourceExistsError:
                pass  # it stays between runs' leases only if a release was cut short
            except HttpResponseError as err:
                if err.status_code != 412:  # exists and leased: acquire decides
                    raise
        lease = BlobLeaseClient(self._blob)
        if not self._try_acquire(lease):
            _, current = self._holder_of_blob()
            if current is not None and current.process_gone():
                log.warning("breaking the lease of job %s: its controller (pid %s on this "
                            "machine) is gone", current.job_id, current.pid)
                with translated(self.uri, "breaking a dead controller's job lease"):
                    lease.break_lease(lease_break_period=0)
            if not self._try_acquire(lease):
                _, current = self._holder_of_blob()
                unknown = Holder(token="", job_id=self.job_id, host="unknown", pid=0,
                                 since=time.time(), heartbeat=time.time(), ttl=self.duration)
                raise held_error(self.uri, current or unknown,
                                 f"lets it expire within {self.duration}s")
        mine = Holder.this_process(self.job_id, float(self.duration))
        try:
            with translated(self.uri, "recording the job lease's holder"):
                self._blob.set_blob_metadata({k: str(v) for k, v in mine.to_dict().items()},
                                             lease=lease)
        except BaseException:  # not recorded: give it back rather than block for `duration`
            with contextlib.suppress(AzureError):
                lease.release()
            raise
        self._lease = lease
        self._heartbeat = Heartbeat(self._renew, self.duration / 4, f"lease-{self.job_id}")
        return mine

    def _renew(self) -> bool:
        lease = self._lease
        if lease is None:
            return True
        try:
            lease.renew()
        except HttpResponseError as err:
            if err.status_code in (409, 412):  # broken, or another lease id: not ours any more
                return False
            raise
        return True

    def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:  # deleting under our lease ends it too; a later holder's blob is never touched
            self._blob.delete_blob(lease=lease)
        except AzureError as err:
            log.warning("%s: could not release the job lease (%s); it expires within %ss",
                        self.uri, type(err).__name__, self.duration)

    def holder(self) -> Holder | None:
        leased, current = self._holder_of_blob()
        if not leased:
            return None
        if current is None:
            return Holder(token="", job_id=self.job_id, host="unknown", pid=0, since=0.0,
                          heartbeat=time.time(), ttl=float(self.duration))
        if current.process_gone():
            return None
        # The service says it is leased: alive, whatever the recorded heartbeat says.
        return Holder(**{**current.to_dict(), "heartbeat": time.time()})
