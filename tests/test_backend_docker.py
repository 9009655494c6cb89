"""The docker backend's lifecycle on a real engine, through the Backend protocol: labels, limits,
exit codes, an OOM kill, logs, listing by label, and removal (of a finished container, of a
running one, of one that ignores SIGTERM). A tiny image runs the shell line in $TEST_SCRIPT."""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

import pytest

from serverless_score.backends.base import LABEL_EXPIRES, LABEL_JOB, LABEL_TASKS, GroupSpec, Phase
from serverless_score.backends.docker import DockerBackend
from serverless_score.backends.docker_mounts import Bind
from serverless_score.controller.wakeup import StatusWakeup
from serverless_score.controller.watch import group_labels
from serverless_score.errors import ScoreError
from serverless_score.planning.tasks import Task
from serverless_score.runner.contract import ENV_NOTIFY

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
SHELL_IMAGE = "serverless-score-test-shell:1"


@pytest.fixture(scope="module")
def shell_image(docker_engine: Any) -> str:
    dockerfile = b'FROM local/bookworm\nENTRYPOINT ["/bin/sh", "-c", "eval \\"$TEST_SCRIPT\\""]\n'
    docker_engine.client.images.build(fileobj=io.BytesIO(dockerfile), tag=SHELL_IMAGE, rm=True)
    return SHELL_IMAGE


@pytest.fixture
def backend(docker_engine: Any, shell_image: str) -> Any:
    made = DockerBackend(shell_image, client=docker_engine.client, network="host")
    yield made
    for info in made.list_all_groups():  # nothing of a failed test stays behind
        if info.job_id.startswith("dkt-"):
            made.delete_group(info.name)


def _group(script: str, *, cpu: float = 1.0, memory_gb: float = 0.25, tasks: int = 1) -> GroupSpec:
    job = f"dkt-{uuid.uuid4().hex[:8]}"
    task_list = [Task(index=i, kind="bytes", path=f"/d/{i}.csv", file_index=i, end=1, file_size=1)
                 for i in range(tasks)]
    return GroupSpec(name=f"{job}-t00000-1", job_id=job, task_ids=tuple(t.id for t in task_list),
                     env={"TEST_SCRIPT": script}, cpu=cpu, memory_gb=memory_gb,
                     labels=group_labels(job, task_list, 60), secure_env={"TOKEN": "s3cr3t"})


def _wait_finished(backend: DockerBackend, name: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = backend.get_states([name])[name]
        if state.phase.finished:
            return state
        time.sleep(0.1)
    raise AssertionError(f"{name} did not finish in {timeout}s")


def test_a_group_runs_with_its_labels_limits_and_logs_and_is_removed(backend: Any, docker_engine: Any) -> None:
    group = _group('echo "out $TOKEN"; echo err >&2; exit 0', cpu=0.5, memory_gb=0.25, tasks=2)
    backend.begin_create_group(group)
    state = _wait_finished(backend, group.name)
    assert (state.phase, state.exit_code) == (Phase.SUCCEEDED, 0)
    logs = backend.get_logs(group.name)
    assert "out s3cr3t" in logs and "err" in logs  # secure values reach the process

    inspected = docker_engine.client.api.inspect_container(group.name)
    labels = inspected["Config"]["Labels"]
    assert labels[LABEL_JOB] == group.job_id and labels[LABEL_TASKS] == "t00000,t00001"
    assert labels[LABEL_EXPIRES].endswith("Z") and labels["managed-by"] == "serverless-score"
    host = inspected["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 256 * 1024**2
    assert host["NetworkMode"] == "host" and host["Init"] is True

    assert backend.list_groups(group.job_id) == [group.name]
    infos = [i for i in backend.list_all_groups() if i.name == group.name]
    assert len(infos) == 1 and infos[0].job_id == group.job_id and infos[0].expires
    backend.delete_group(group.name)
    assert backend.list_groups(group.job_id) == []
    backend.delete_group(group.name)  # already gone: fine
    gone = backend.get_states([group.name])[group.name]
    assert gone.phase is Phase.FAILED and "gone" in gone.detail
    assert backend.get_logs(group.name) == ""


def test_an_exit_code_fails_the_group_with_it(backend: Any) -> None:
    group = _group("echo working; exit 3")
    backend.begin_create_group(group)
    state = _wait_finished(backend, group.name)
    assert (state.phase, state.exit_code, state.detail) == (Phase.FAILED, 3, "exited with code 3")
    backend.delete_group(group.name)


def test_a_container_over_its_memory_limit_says_so(backend: Any) -> None:
    group = _group("head -c 400M /dev/zero | tail -c 300M > /dev/null", memory_gb=0.0625)
    backend.begin_create_group(group)
    state = _wait_finished(backend, group.name)
    assert state.phase is Phase.FAILED and state.exit_code == 137
    assert "more memory than its limit (0.0625 GB)" in state.detail
    assert "memory_gb" in state.detail
    backend.delete_group(group.name)


@pytest.mark.parametrize("script", ["sleep 300", "trap '' TERM; while :; do sleep 1; done"],
                         ids=["sleeping", "ignoring-SIGTERM"])
def test_deleting_a_running_group_stops_and_removes_it(backend: Any, script: str) -> None:
    group = _group(script)
    backend.begin_create_group(group)
    deadline = time.monotonic() + 30
    while backend.get_states([group.name])[group.name].phase is not Phase.RUNNING:
        assert time.monotonic() < deadline, "the container never ran"
        time.sleep(0.1)
    started = time.monotonic()
    backend.delete_group(group.name)
    assert time.monotonic() - started < 15
    assert backend.list_groups(group.job_id) == []


def test_a_missing_image_says_how_to_build_it(docker_engine: Any) -> None:
    backend = DockerBackend("serverless-score-r:no-such-version", client=docker_engine.client)
    with pytest.raises(ScoreError) as err:
        backend.check_image("r", False)
    assert "serverless-score-r:no-such-version is not on the Docker engine" in err.value.message
    assert "serverless-score image build --runtime r --tag serverless-score-r:no-such-version" in err.value.hint


def test_containers_writing_to_local_paths_run_as_the_caller(docker_engine: Any, shell_image: str) -> None:
    import os

    writes = DockerBackend(shell_image, client=docker_engine.client,
                           binds=[Bind("/tmp/in", True), Bind("/tmp/out.work", False)])
    assert writes.user == f"{os.getuid()}:{os.getgid()}"
    reads = DockerBackend(shell_image, client=docker_engine.client, binds=[Bind("/tmp/in", True)])
    assert reads.user is None  # the image's own (non-root) user


def test_a_container_wakes_the_controller_through_the_pipe_in_its_bind_mount(
        docker_engine: Any, shell_image: str, tmp_path: Any) -> None:
    """The work folder is bind-mounted at the same path: a container writes to the controller's
    named pipe there (as the runner does after each status), and the controller's wait wakes at
    once instead of at its next poll."""
    work = tmp_path / "out.work"
    wakeup = StatusWakeup.create(str(work / "queue" / "run.wakeup"))
    assert wakeup is not None
    backend = DockerBackend(shell_image, client=docker_engine.client, network="host",
                            binds=[Bind(str(work), False)])
    group = _group('sleep 1; printf s > "$SERVERLESS_SCORE_NOTIFY"; sleep 60')
    group.env[ENV_NOTIFY] = wakeup.path
    try:
        assert wakeup.wait(0.2) is False  # nothing written yet
        backend.begin_create_group(group)
        started = time.monotonic()
        assert wakeup.wait(60) is True
        assert time.monotonic() - started < 30
        assert not backend.get_states([group.name])[group.name].phase.finished
    finally:
        backend.delete_group(group.name)
        wakeup.close()


# -- image push ---------------------------------------------------------------------------------
def test_image_push_tags_for_the_registry_and_pushes_with_progress(
        docker_engine: Any, tmp_path: Any, cli: Any) -> None:
    import json
    import urllib.request

    from dockerhelp import local_registry, tiny_image

    tag = tiny_image(docker_engine, "serverless-score-test-tiny")
    with local_registry(tmp_path) as registry:
        result = cli("image", "push", tag, "--registry", registry, "--json")
        assert result.code == 0, result
        assert result.json == {"image": f"{registry}/{tag}", "digest": result.json["digest"]}  # type: ignore[index]
        assert result.json["digest"].startswith("sha256:")  # type: ignore[index]
        with urllib.request.urlopen(f"http://{registry}/v2/serverless-score-test-tiny/tags/list") as r:
            assert json.load(r)["tags"] == ["1"]
        docker_engine.client.images.remove(f"{registry}/{tag}")
    missing = cli("image", "push", f"{registry}/serverless-score-test-tiny:nope")
    assert missing.code == 1 and "does not exist on this engine" in missing.flat_stderr
    unnamed = cli("image", "push", tag)
    assert unnamed.code == 1 and "name the registry in the tag" in unnamed.flat_stderr


def test_cleanup_removes_expired_containers_without_needing_an_image(
        backend: Any, docker_engine: Any, cli: Any) -> None:
    """A container whose controller died (expiry label in the past) is found by its labels and
    removed by `cleanup --expired`; one still in its time is left alone."""
    stale, fresh = _group("sleep 300"), _group("sleep 300")
    stale = GroupSpec(**{**stale.__dict__, "labels": {**stale.labels, LABEL_EXPIRES: "2020-01-01T00:00:00Z"}})
    backend.begin_create_group(stale)
    backend.begin_create_group(fresh)
    dry = cli("cleanup", "--expired", "--backend", "docker", "--dry-run", "--json")
    assert dry.code == 0, dry
    listed = [g["name"] for g in dry.json["groups"]]  # type: ignore[index]
    assert stale.name in listed and fresh.name not in listed
    assert backend.list_groups(stale.job_id) == [stale.name]
    done = cli("cleanup", "--expired", "--backend", "docker", "--json")
    assert done.code == 0, done
    deleted = [g["name"] for g in done.json["groups"] if g["deleted"]]  # type: ignore[index]
    assert stale.name in deleted and fresh.name not in deleted
    assert backend.list_groups(stale.job_id) == []
    assert backend.list_groups(fresh.job_id) == [fresh.name]
