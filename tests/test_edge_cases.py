"""Edge cases a new user hits (issue 13): header-only input, an output inside its own input
folder, output = input, an output location that cannot be created, file modes, --json on
failure, a rerun of a changed job, chunks that cannot be honoured, format inference, --set of
chunks/chunk_size, help text, --version, plurals, and ``init``. Each asserts the exit code, the
message, and (for a refusal) that nothing was written. Shell scorers (runtime = "command") keep
the end-to-end ones quick; the rest run in process."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from clihelp import CLI, cli_env

SCORE = "tail -n +2 | sed 's/,.*/,scored/'"  # one "<key>,scored" line per CSV record
ROOT = Path(__file__).resolve().parents[1]


def command_job(make_job, job_dir: Path, **keys):
    keys = {"name": "edge", "runtime": "command", "scorer": SCORE, "input": "data.csv",
            "output": "out/scores.csv", **keys}
    return make_job(job_dir, **keys)


def rows(path: Path, count: int) -> None:
    path.write_text("k,v\n" + "".join(f"k{i:03d},{i}\n" for i in range(count)))


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_refused(result, code: int, *needles: str) -> str:
    assert result.code == code, result
    assert "Traceback" not in result.stderr, result
    flat = result.flat_stderr
    for needle in needles:
        assert needle in flat, f"{needle!r} not in {flat!r}"
    return flat


# -- header-only input -----------------------------------------------------------------------
@pytest.mark.slow
def test_header_only_csv_gives_a_header_and_no_rows(job_dir, make_job, cli, trained_model):
    (job_dir / "data.csv").write_text("id,a,b,c\n")
    job = make_job(job_dir, name="empty", model=trained_model.path, input="data.csv",
                   output="out/scores.csv", id_columns=["id"], chunks=1)
    result = cli("run", job, "--json")
    assert result.code == 0, result
    assert result.json["status"] == "succeeded" and result.json["rows_out"] == 0
    assert "succeeded: 0 rows from 1 task " in result.flat_stderr  # never "1 tasks"
    assert (job_dir / "out/scores.csv").read_text() == "id,proba_0,proba_1\n"


@pytest.mark.slow
def test_header_only_parquet_gives_its_schema_and_no_rows(job_dir, make_job, trained_model):
    import pandas as pd
    import pyarrow.parquet as pq

    from serverless_score import load_spec, run_job

    pd.DataFrame({"id": pd.Series([], dtype=str), "a": [], "b": [], "c": []}).to_parquet(
        job_dir / "data.parquet")
    job = make_job(job_dir, name="empty", model=trained_model.path, input="data.parquet",
                    output="out/scores.parquet", id_columns=["id"])
    result = run_job(load_spec(job))
    assert result.status == "succeeded" and result.rows_out == 0
    table = pq.read_table(job_dir / "out/scores.parquet")
    assert table.num_rows == 0
    assert table.schema.names == ["id", "proba_0", "proba_1"]
    assert str(table.schema.field("proba_1").type) == "double"


@pytest.mark.slow
def test_header_only_input_of_a_command_gives_an_empty_output(job_dir, make_job, cli):
    rows(job_dir / "data.csv", 0)
    result = cli("run", command_job(make_job, job_dir), "--json", "-q")
    assert result.code == 0 and result.json["rows_out"] == 0, result
    assert (job_dir / "out/scores.csv").read_bytes() == b""  # lines: no header of its own


# -- the output inside a folder input, output = input ----------------------------------------
@pytest.mark.slow
def test_an_output_inside_the_input_folder_is_never_read(job_dir, make_job, cli):
    (job_dir / "data").mkdir()
    rows(job_dir / "data/a.csv", 3)
    job = command_job(make_job, job_dir, input="data", output="data/out.csv", format="csv")
    first = cli("run", job, "--json", "-q")
    assert first.code == 0 and first.json["rows_in"] == 3, first
    # What an earlier run leaves beside its output, plus a bad-rows file: none is input.
    (job_dir / "data/out.csv.errors.csv").write_text("source,offset\nx,1\n")
    (job_dir / "data/out.csv.lease").write_text("{}")
    again = cli("run", job, "--json", "-q", "--set", "chunks=3", "--set", "overwrite=true")
    assert again.code == 0, again
    assert again.json["rows_in"] == 3 and again.json["tasks"] == 3, again
    assert (job_dir / "data/out.csv").read_text() == "k000,scored\nk001,scored\nk002,scored\n"


def test_a_glob_input_skips_the_output_files_it_matches(job_dir, make_job):
    from serverless_score import load_spec
    from serverless_score.planning import make_plan

    (job_dir / "data/sub").mkdir(parents=True)
    rows(job_dir / "data/a.csv", 3)
    rows(job_dir / "data/sub/b.csv", 2)
    for name in ("out.csv", "out.csv.errors.csv", "out.csv.lease", "out.csv.manifest.json",
                 "out.csv.manifest.tasks.jsonl", "out.csv.work/tasks/t00000/attempt-1/part"):
        (job_dir / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (job_dir / "data" / name).write_text("k,v\nx,1\n")
    job = command_job(make_job, job_dir, input="data/**", output="data/out.csv", format="csv")
    files = [f.path for f in make_plan(load_spec(job)).files]
    assert files == [str(job_dir / "data/a.csv"), str(job_dir / "data/sub/b.csv")]
    assert [f.path for f in make_plan(load_spec(job, ["input=data"])).files] == files


@pytest.mark.slow
def test_output_equal_to_the_input_is_refused(job_dir, make_job, cli):
    rows(job_dir / "data.csv", 3)
    before = (job_dir / "data.csv").read_bytes()
    job = command_job(make_job, job_dir, output="data.csv", overwrite=True)
    result = cli("run", job, "--json", "-q")
    assert_refused(result, 2, f"output: '{job_dir / 'data.csv'}' is also the input",
                   "whatever overwrite says")
    assert result.json["status"] == "failed"
    assert (job_dir / "data.csv").read_bytes() == before
    assert tree(job_dir) == {"job.toml", "data.csv"}  # nothing written


# -- an output location that cannot be created -----------------------------------------------
@pytest.mark.slow
def test_a_file_in_the_way_of_the_output(job_dir, make_job, cli):
    rows(job_dir / "data.csv", 3)
    (job_dir / "out").write_text("not a folder")
    result = cli("run", command_job(make_job, job_dir, output="out/sub/scores.csv"), "--json")
    assert_refused(result, 2, f"cannot create '{job_dir / 'out/sub/scores.csv'}'",
                   f"'{job_dir / 'out'}' is a file, not a folder")
    assert result.json["error"]["type"] == "InputError"
    assert result.json["output"] == str(job_dir / "out/sub/scores.csv")
    assert tree(job_dir) == {"job.toml", "data.csv", "out"}
    assert (job_dir / "out").read_text() == "not a folder"


@pytest.mark.slow
def test_a_folder_the_system_refuses_to_create(job_dir, make_job, cli):
    """sysfs refuses new folders to everyone (root included): a real refusal, whoever runs."""
    rows(job_dir / "data.csv", 3)
    result = cli("run", command_job(make_job, job_dir, output="/sys/serverless-score/o.csv"),
                 "--json", "-q")
    flat = assert_refused(result, 2, "/sys")
    assert re.search(r"Operation not permitted|Permission denied|no permission", flat), flat
    assert result.json["status"] == "failed" and result.json["error"]["message"].startswith("output:")
    assert not Path("/sys/serverless-score").exists()
    assert tree(job_dir) == {"job.toml", "data.csv"}


def test_plan_refuses_an_output_that_is_a_folder(job_dir, make_job):
    from serverless_score import load_spec
    from serverless_score.errors import InputError
    from serverless_score.planning import make_plan

    rows(job_dir / "data.csv", 3)
    (job_dir / "out").mkdir()
    with pytest.raises(InputError, match="is a directory; give a file name inside it") as err:
        make_plan(load_spec(command_job(make_job, job_dir, output="out")))
    assert err.value.exit_code == 2


# -- file modes ------------------------------------------------------------------------------
def test_atomic_writes_follow_the_umask(tmp_path):
    from serverless_score.storage.local import LocalStore

    old = os.umask(0o027)
    try:
        LocalStore().write_bytes(str(tmp_path / "a/x.json"), b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a/x.json").stat().st_mode) == 0o640


@pytest.mark.slow
def test_outputs_manifests_and_logs_are_0644_under_umask_022(job_dir, make_job):
    rows(job_dir / "data.csv", 3)
    job = command_job(make_job, job_dir)
    proc = subprocess.run(["sh", "-c", 'umask 022 && exec "$0" run "$1" -q', str(CLI), str(job)],
                          env=cli_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = job_dir / "out"
    files = [out / "scores.csv", out / "scores.csv.manifest.json",
             out / "scores.csv.manifest.tasks.jsonl", out / "scores.csv.work/job.json",
             *out.glob("scores.csv.work/tasks/*/attempt-1/log.txt"),
             *out.glob("scores.csv.work/tasks/*/attempt-1/status.json")]
    assert len(files) == 8
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {
        f.name: "0o644" for f in files}


# -- --json on failure -----------------------------------------------------------------------
def _documented_json_keys() -> set[str]:
    text = (ROOT / "README.md").read_text()
    listed = re.search(r"`--json` prints `\{(.*?)\}`", text, re.S)
    assert listed, "README lists the keys of run --json"
    return set(re.findall(r'"(\w+)"', listed.group(1)))


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["bad-input", "task-fails"])
def test_json_on_failure_carries_every_documented_key(job_dir, make_job, cli, failure):
    rows(job_dir / "data.csv", 3)
    if failure == "bad-input":
        job = command_job(make_job, job_dir, input="missing.csv")
    else:
        job = command_job(make_job, job_dir, scorer="exit 3", chunks=1)
    result = cli("run", job, "--json", "-q")
    assert result.code == (2 if failure == "bad-input" else 1), result
    keys = _documented_json_keys()
    assert len(keys) >= 16
    assert keys <= set(result.json), keys - set(result.json)
    assert result.json["status"] == "failed" and result.json["name"] == "edge"
    assert result.json["output"] == str(job_dir / "out/scores.csv")
    if failure == "task-fails":
        assert result.json["job_id"].startswith("edge-") and result.json["tasks"] == 1
    assert "`up-to-date`" in (ROOT / "README.md").read_text()


# -- a rerun of a changed job ----------------------------------------------------------------
@pytest.mark.slow
def test_a_changed_job_says_what_changed_and_writes_nothing(job_dir, make_job, cli):
    rows(job_dir / "data.csv", 6)
    (job_dir / "model.bin").write_text("v1")
    job = command_job(make_job, job_dir, model="model.bin", chunks=2)
    assert cli("run", job, "-q").code == 0
    out = job_dir / "out"
    before = {p: p.read_bytes() for p in (out / "scores.csv", out / "scores.csv.manifest.json")}

    chunks = cli("run", job, "-q", "--set", "chunks=3", "--json")
    flat = assert_refused(chunks, 2, "written by an earlier version of this job",
                          "the chunking changed (chunks 2 -> 3: 2 -> 3 tasks)",
                          "overwrite = true replaces the old output")
    assert "not written by this job" not in flat and "model" not in flat and "input" not in flat

    (job_dir / "model.bin").write_text("v2, longer")
    rows(job_dir / "data.csv", 7)
    both = cli("run", job, "-q")
    assert_refused(both, 2, f"the model file '{job_dir / 'model.bin'}' changed since",
                   f"the input changed (changed since: '{job_dir / 'data.csv'}')")
    assert {p: p.read_bytes() for p in before} == before  # nothing replaced

    other = cli("run", job, "-q", "--set", "name=other")
    assert_refused(other, 2, "written by another job ('edge', job id edge-")
    replaced = cli("run", job, "-q", "--set", "overwrite=true", "--json")
    assert replaced.code == 0 and replaced.json["rows_out"] == 7, replaced


# -- chunks, format, --set -------------------------------------------------------------------
def test_plan_explains_chunks_it_cannot_honour(tmp_path, make_job):
    import pandas as pd

    from serverless_score import load_spec
    from serverless_score.planning import chunks_note, make_plan

    pd.DataFrame({"a": range(10)}).to_parquet(tmp_path / "one.parquet", row_group_size=5)
    job = make_job(tmp_path, name="pq", runtime="command", scorer="cat", input="one.parquet",
                   output="out/x.csv", chunks=8)
    plan = make_plan(load_spec(job))
    assert chunks_note(plan) == (
        "chunks = 8 asked for, 2 tasks planned: the Parquet input has 2 row groups in 1 file, "
        "and a task is whole row groups of one file (write the file with smaller row groups, "
        "e.g. pyarrow's row_group_size, for more)")
    (tmp_path / "csvs").mkdir()
    for name in "ab":
        (tmp_path / "csvs" / f"{name}.csv").write_text("k\n1\n")
    many = make_plan(load_spec(job, ["input=csvs", "format=csv", "chunks=5"]))
    assert "the input is 2 files and a task never spans two files" in str(chunks_note(many))
    tiny = make_plan(load_spec(job, ["input=csvs/a.csv", "format=csv", "chunks=50"]))
    assert chunks_note(tiny) == ("chunks = 50 asked for, 4 tasks planned: the input has only "
                                 "4 bytes (a task is at least one)")
    assert chunks_note(make_plan(load_spec(job, ["input=csvs/a.csv", "format=csv", "chunks=2"]))) is None


@pytest.mark.slow
def test_plan_prints_the_chunks_note(tmp_path, make_job, cli):
    (tmp_path / "a.csv").write_text("k\n1\n")
    job = make_job(tmp_path, name="tiny", runtime="command", scorer="cat", input="a.csv",
                   output="out/x.csv", chunks=9)
    result = cli("plan", job)
    assert result.code == 0, result
    assert "note: chunks = 9 asked for, 4 tasks planned: the input has only 4 bytes" in " ".join(
        result.stdout.split())


def test_a_folder_of_csv_files_infers_csv(tmp_path, make_job):
    from serverless_score import load_spec
    from serverless_score.errors import SpecError

    (tmp_path / "data/2026").mkdir(parents=True)
    (tmp_path / "data/a.csv").write_text("k\n1\n")
    (tmp_path / "data/2026/b.csv").write_text("k\n2\n")
    (tmp_path / "data/README").write_text("not data")
    job = make_job(tmp_path, name="f", runtime="command", scorer="cat", input="data",
                   output="data/out.jsonl")
    assert load_spec(job).format == "csv"  # the output's own files do not count
    (tmp_path / "data/c.jsonl").write_text("{}\n")
    with pytest.raises(SpecError, match="format: could not infer it"):
        load_spec(job)


def test_set_replaces_chunks_by_chunk_size_and_back(tmp_path, make_job):
    from serverless_score import load_spec

    (tmp_path / "a.csv").write_text("k\n1\n")
    job = make_job(tmp_path, name="s", runtime="command", scorer="cat", input="a.csv",
                   output="o.csv", chunks=4)
    by_size = load_spec(job, ["chunk_size=32MB"])
    assert (by_size.chunks, by_size.chunk_size) == (None, 32 * 10**6)
    back = load_spec(job, ["chunk_size=32MB", "chunks=8"])
    assert (back.chunks, back.chunk_size) == (8, None)


# -- help, --version, plurals ----------------------------------------------------------------
def _invoke(*args: str):
    from typer.testing import CliRunner

    from serverless_score.cli import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def test_help_shows_azure_in_brackets():
    assert "the [azure] settings" in _invoke("status", "--help").output
    render = _invoke("templates", "render", "--help").output
    assert "[azure] registry" in render and "[azure] identity" in render


def test_version():
    from serverless_score import __version__

    result = _invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == __version__


def test_one_of_a_thing_is_singular():
    from serverless_score.cli.progress import summary
    from serverless_score.controller import JobResult
    from serverless_score.units import plural

    assert plural(1, "task") == "1 task" and plural(2, "task") == "2 tasks"
    assert plural(1, "record boundary", "record boundaries") == "1 record boundary"
    done = JobResult(job_id="j-1", name="j", status="succeeded", tasks=1, rows_in=1, rows_out=1,
                     output="o.csv", manifest="o.csv.manifest.json", work_dir="o.csv.work",
                     attempts=1, reused_tasks=1, repaired_boundaries=1)
    text = summary(done)
    assert "1 row from 1 task" in text and "1 task reused" in text and "1 record boundary repaired" in text
    assert not re.search(r"\b1 (tasks|rows|groups|files)\b", text)


# -- init ------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, runtime", [("forest.rds", "r"), ("churn.joblib", "python"),
                                            ("m.pkl", "python")])
def test_init_writes_a_job_file_plan_accepts(tmp_path, model, runtime):
    from serverless_score import load_spec
    from serverless_score.planning import make_plan

    (tmp_path / model).write_bytes(b"model")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/customers.csv").write_text("customer_id,x\nC1,1\n")
    job = tmp_path / "jobs/job.toml"
    result = _invoke("init", str(tmp_path / model), str(tmp_path / "data"), "--job", str(job))
    assert result.exit_code == 0, result.output
    text = job.read_text()
    assert f'runtime = "{runtime}"' in text and f'model = "../{model}"' in text
    assert "(the input's columns: customer_id, x)" in text and "# chunks = 8" in text
    spec = load_spec(job)
    assert spec.runtime == runtime and spec.format == "csv"
    assert len(make_plan(spec).tasks) >= 1


def test_init_refuses_an_existing_file_and_an_unknown_model(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text("# mine\n")
    result = _invoke("init", "m.joblib", "data.csv", "--job", str(job))
    assert result.exit_code == 2 and "already exists; it was not changed" in result.output
    assert job.read_text() == "# mine\n"
    other = tmp_path / "other.toml"
    unknown = _invoke("init", "model.bin", "data.csv", "--job", str(other))
    assert unknown.exit_code == 2 and "cannot tell the runtime" in unknown.output
    assert not other.exists()


# -- on ACI (the emulator) with blob storage: listing blobs, not files -----------------------
ACI_IMAGE = "myreg.azurecr.io/serverless-score-python:test"  # the emulator runs the runner


def _put(azurite, container: str, name: str, data: bytes) -> str:
    azurite.service().get_blob_client(container, name).upload_blob(data, overwrite=True)
    return f"az://{container}/{name}"


@pytest.mark.slow
@pytest.mark.azurite
@pytest.mark.aci
def test_on_aci_an_output_under_the_input_prefix_is_skipped_and_output_as_input_refused(
        job_dir, make_job, cli, aci_env, aci_emulator, azurite, container):
    data = b"k,v\n" + b"".join(b"k%03d,%d\n" % (i, i) for i in range(3))
    _put(azurite, container, "data/a.csv", data)
    # What an earlier run leaves beside its output (and a bad-rows file): none of it is input.
    for name in ("out.csv", "out.csv.manifest.json", "out.csv.manifest.tasks.jsonl",
                 "out.csv.errors.csv", "out.csv.lease", "out.csv.work/tasks/t00000/attempt-1/part"):
        _put(azurite, container, f"data/{name}", b"k,v\nold,1\n")
    job = make_job(job_dir, name="edge", runtime="command", scorer=SCORE, format="csv",
                   input=f"az://{container}/data", output=f"az://{container}/data/out.csv",
                   backend="aci", image=ACI_IMAGE, chunks=2, overwrite=True)
    result = cli("run", job, "--json", "-q")
    assert result.code == 0 and result.json["rows_in"] == 3 and result.json["tasks"] == 2, result
    out = azurite.service().get_blob_client(container, "data/out.csv").download_blob().readall()
    assert out == b"k000,scored\nk001,scored\nk002,scored\n"
    assert aci_emulator.group_names() == []

    puts = aci_emulator.calls[("PUT", "group")]
    same = cli("run", job, "--json", "-q", "--set", f'input="az://{container}/data/a.csv"',
               "--set", f'output="az://{container}/data/a.csv"')
    assert_refused(same, 2, f"output: 'az://{container}/data/a.csv' is also the input")
    assert aci_emulator.calls[("PUT", "group")] == puts  # nothing created
    blob = azurite.service().get_blob_client(container, "data/a.csv").download_blob().readall()
    assert blob == data
    names = [b.name for b in azurite.service().get_container_client(container).list_blobs()]
    assert not any(n.startswith("data/a.csv.") for n in names)  # no manifest, no work folder
