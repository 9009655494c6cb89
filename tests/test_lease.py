"""The job lease (storage/lease.py): one controller per job. Local: a second process is refused
and told who holds it, a stale heartbeat or a SIGKILLed holder is taken over, release on exit,
renewal keeps it, a takeover is noticed by the old holder. Blob (Azurite): a held lease blocks,
an unrenewed one expires and is taken over while a renewed one is kept, a dead local holder's
lease is broken at once."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

from serverless_score.errors import LeaseHeld
from serverless_score.storage import StoreConfig
from serverless_score.storage.lease import Holder, LocalLease, get_lease

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from serverless_score.storage.lease import get_lease
lease = get_lease(sys.argv[1], "job-x")
lease.acquire()
print("held", flush=True)
sys.stdin.readline()          # hold until told to go (or killed)
lease.release()
"""


def _holder_process(output: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, output], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "held", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def _foreign(job_id: str, heartbeat_age: float, ttl: float = 30.0) -> dict[str, Any]:
    now = time.time()
    return Holder(token="f" * 32, job_id=job_id, host="another-machine", pid=4242,
                  since=now - 3600, heartbeat=now - heartbeat_age, ttl=ttl).to_dict()


# -- local ----------------------------------------------------------------------------------------
def test_a_second_process_is_refused_with_the_holder_and_gets_it_after_release(tmp_path) -> None:
    output = str(tmp_path / "out" / "s.csv")
    holder = _holder_process(output)
    try:
        with pytest.raises(LeaseHeld) as err:
            get_lease(output, "job-x").acquire()
        assert err.value.exit_code == 3 and err.value.kind == "job-locked"
        assert err.value.holder["pid"] == holder.pid
        assert err.value.holder["host"] == platform.node()
        assert f"(pid {holder.pid})" in err.value.message and "since 20" in err.value.message
        assert get_lease(output, "job-x").holder() is not None
    finally:
        holder.communicate("go\n", timeout=30)
    assert holder.returncode == 0
    assert not Path(f"{output}.lease").exists()  # released on a normal exit
    lease = get_lease(output, "job-x")
    assert lease.acquire().pid == os.getpid()
    lease.release()
    assert lease.holder() is None


def test_a_sigkilled_holder_on_this_machine_is_taken_over_at_once(tmp_path) -> None:
    output = str(tmp_path / "s.csv")
    holder = _holder_process(output)
    holder.kill()
    holder.communicate(timeout=30)
    assert Path(f"{output}.lease").exists()  # it never released it
    started = time.monotonic()
    lease = get_lease(output, "job-x")
    assert lease.acquire().pid == os.getpid()
    assert time.monotonic() - started < 5  # no wait for the heartbeat to go stale
    lease.release()


def test_a_stale_heartbeat_is_taken_over_a_fresh_one_blocks(tmp_path) -> None:
    path = tmp_path / "s.csv.lease"
    path.write_text(json.dumps(_foreign("job-x", heartbeat_age=5)))
    with pytest.raises(LeaseHeld) as err:
        get_lease(str(tmp_path / "s.csv"), "job-x").acquire()
    assert err.value.holder["host"] == "another-machine" and err.value.holder["pid"] == 4242
    path.write_text(json.dumps(_foreign("job-x", heartbeat_age=31)))
    lease = get_lease(str(tmp_path / "s.csv"), "job-x")
    mine = lease.acquire()
    assert json.loads(path.read_text())["token"] == mine.token
    lease.release()
    assert not path.exists()


def test_the_heartbeat_keeps_it_and_a_takeover_is_noticed(tmp_path) -> None:
    uri = str(tmp_path / "s.csv.lease")
    lease = LocalLease(uri, "job-x", ttl=0.6)
    mine = lease.acquire()
    assert wait_for(lambda: json.loads(Path(uri).read_text())["heartbeat"] > mine.heartbeat + 0.3,
                    timeout=5)
    with pytest.raises(LeaseHeld):  # held well past its ttl: renewed, not stale
        LocalLease(uri, "job-x", ttl=0.6).acquire()
    Path(uri).write_text(json.dumps(_foreign("job-x", heartbeat_age=0)))  # someone took it over
    assert wait_for(lambda: lease.lost, timeout=5)
    lease.release()
    assert json.loads(Path(uri).read_text())["token"] == "f" * 32  # not ours: left alone


# -- blob storage (Azurite) ----------------------------------------------------------------------
@pytest.mark.azurite
def test_blob_lease_blocks_expires_unrenewed_and_renewal_keeps_it(azurite, container) -> None:
    from serverless_score.storage.blob.lease import BlobLease

    config = StoreConfig.from_env(azurite.env())
    kept_uri, crashed_uri = f"az://{container}/a/s.csv.lease", f"az://{container}/b/s.csv.lease"
    kept = BlobLease(kept_uri, "job-a", config, duration=15)
    kept.acquire()
    kept_at = time.monotonic()
    crashed = BlobLease(crashed_uri, "job-b", config, duration=15)
    crashed.acquire()
    assert crashed._heartbeat is not None
    crashed._heartbeat.stop()  # a controller that hangs or lost its network: no more renewals
    started = time.monotonic()
    with pytest.raises(LeaseHeld) as err:
        BlobLease(kept_uri, "job-a", config, duration=15).acquire()
    assert err.value.holder["pid"] == os.getpid() and err.value.holder["job_id"] == "job-a"
    with pytest.raises(LeaseHeld):
        BlobLease(crashed_uri, "job-b", config, duration=15).acquire()

    taker = BlobLease(crashed_uri, "job-b", config, duration=15)
    assert wait_for(lambda: _try(taker), timeout=25, interval=0.5)  # once the lease expired
    assert time.monotonic() - started > 10  # not before it expired
    assert time.monotonic() - kept_at > 15  # so `kept` outlived its duration:
    with pytest.raises(LeaseHeld):  # renewed all along: still held past its 15 s
        BlobLease(kept_uri, "job-a", config, duration=15).acquire()
    assert not kept.lost
    kept.release()
    taker.release()
    again = BlobLease(kept_uri, "job-a", config, duration=15)
    again.acquire()  # released: free at once
    again.release()


def _try(lease: Any) -> bool:
    try:
        lease.acquire()
    except LeaseHeld:
        return False
    return True


@pytest.mark.azurite
def test_blob_lease_of_a_sigkilled_holder_here_is_broken_at_once(azurite, container) -> None:
    output = f"az://{container}/s.csv"
    holder = _holder_process(output, azurite.env())
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    lease = get_lease(output, "job-x", StoreConfig.from_env(azurite.env()))
    started = time.monotonic()
    assert lease.acquire().pid == os.getpid()
    assert time.monotonic() - started < 10  # not the 60 s of the lease
    lease.release()
    assert lease.holder() is None
