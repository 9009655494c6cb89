"""End to end through the ``serverless-score`` console script: every input format, every way of
splitting it, and the job-level behaviours (plan, --set, reruns, foreign outputs).

Each test runs the real CLI as a subprocess with real worker processes on small data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
import sys
from pathlib import Path

import pytest
from manifests import manifest_tasks

pytestmark = pytest.mark.slow

PY = shlex.quote(sys.executable)
SCORE_COLUMNS = ["proba_0", "proba_1"]


def read_scores(path: Path):  # -> pandas.DataFrame
    import pandas as pd

    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False)


def assert_scores_match(scores, frame, model, columns=SCORE_COLUMNS) -> None:
    """``scores`` has one row per row of ``frame``, same ids in the same order, and the model's
    own predict_proba (computed here, in the test process) as its score columns."""
    import numpy as np

    assert scores["id"].astype(str).tolist() == frame["id"].astype(str).tolist()
    expected = model.proba(frame)
    np.testing.assert_allclose(scores[columns].to_numpy(dtype=float), expected, rtol=1e-12, atol=0)


def manifest_of(output: Path) -> dict:
    return json.loads(Path(f"{output}.manifest.json").read_text())


def run_ok(cli, job: Path, *args: str):
    result = cli("run", job, "--json", "-q", *args)
    assert result.code == 0, result
    assert result.json is not None, result
    assert result.json["status"] == "succeeded", result
    return result


# -- csv ---------------------------------------------------------------------------------------
def test_csv_scores_equal_model_predict_proba_for_every_chunking(
        job_dir, make_job, cli, trained_model, make_frame):
    import pandas as pd

    make_frame(60, 7).to_csv(job_dir / "data.csv", index=False)
    size = (job_dir / "data.csv").stat().st_size
    job = make_job(job_dir, name="csv-chunks", model=trained_model.path, input="data.csv",
                   output="out/unused.csv", id_columns=["id"])
    chunkings = {"chunks1": (["chunks=1"], 1), "chunks3": (["chunks=3"], 3),
                 "chunks17": (["chunks=17"], 17), "bytes13": (["chunk_size=13"], -(-size // 13))}
    outputs = {}
    for label, (sets, expected_tasks) in chunkings.items():
        args = [a for s in sets for a in ("--set", s)]
        result = run_ok(cli, job, "--set", f'output="out/{label}.csv"', *args)
        assert result.json["tasks"] == expected_tasks
        assert result.json["rows_in"] == result.json["rows_out"] == 60
        output = job_dir / "out" / f"{label}.csv"
        outputs[label] = output.read_bytes()
        manifest = manifest_of(output)
        assert manifest["totals"]["records_out"] == 60
        assert len(manifest_tasks(output)) == expected_tasks == manifest["totals"]["tasks"]
        assert sum(t["records_out"] for t in manifest_tasks(output)) == 60
        assert manifest["output"]["sha256"] == hashlib.sha256(outputs[label]).hexdigest()
    # Every chunking: the same header, the same ids in input order, and the model's own scores.
    # Scores are compared at 1e-12, not byte for byte: a model's predict_proba may round the
    # last bit differently for another batch shape (OpenBLAS picks its kernel by shape: on
    # AVX-512 machines a 1-row batch differs from a 60-row one by ~1e-15 relative).
    frame = pd.read_csv(job_dir / "data.csv")
    reference = outputs["chunks1"].splitlines()
    for label, data in outputs.items():
        lines = data.splitlines()
        assert lines[0] == reference[0], label
        assert [line.split(b",")[0] for line in lines] == [r.split(b",")[0] for r in reference], label
        scores = read_scores(job_dir / "out" / f"{label}.csv")
        assert list(scores.columns) == ["id", *SCORE_COLUMNS]
        assert_scores_match(scores, frame, trained_model)


QUOTED_SCORER = """\
import csv, hashlib, io, sys
rows = csv.reader(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline=""))
header = next(rows, None)
assert header == ["id", "text", "n"], header
for row in rows:
    print(f"{row[0]}|{row[2]}|{len(row[1])}|{hashlib.sha1(row[1].encode()).hexdigest()[:12]}")
"""


def _quoted_text(i: int) -> str:
    return [
        f"plain {i}",
        f'line one\n{i},"fake record\nanother, with comma',
        'quote "inside" and\n\nblank line',
        f"x\n{i + 1000},looks,like,a,row\n",
        "trailing comma,",
        f'"\n"\n{i}\n',
    ][i % 6]


def _expected_quoted_lines(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    return [f"{r[0]}|{r[2]}|{len(r[1])}|{hashlib.sha1(r[1].encode()).hexdigest()[:12]}"
            for r in rows]


def test_csv_quoted_newlines_every_record_once_in_order(job_dir, make_job, cli):
    data = job_dir / "quoted.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text", "n"])
        for i in range(36):
            writer.writerow([f"q{i:03d}", _quoted_text(i), i])
    expected = _expected_quoted_lines(data)
    assert len(expected) == 36 and data.read_bytes().count(b"\n") > 36 * 2
    (job_dir / "score_quoted.py").write_text(QUOTED_SCORER)
    job = make_job(job_dir, name="quoted", input="quoted.csv", output="out/unused.txt",
                   runtime="command", scorer=f"{PY} {shlex.quote(str(job_dir / 'score_quoted.py'))}", retries=1)
    repaired = []
    for chunk_size in (7, 29):
        result = run_ok(cli, job, "--set", f"chunk_size={chunk_size}",
                        "--set", f'output="out/q{chunk_size}.txt"')
        lines = (job_dir / "out" / f"q{chunk_size}.txt").read_text().splitlines()
        assert lines == expected, f"chunk_size={chunk_size}"
        assert result.json["rows_out"] == 36
        repaired.append(result.json["repaired_boundaries"])
    assert max(repaired) > 0, f"no boundary guess was ever repaired: {repaired}"


def test_csv_field_spanning_many_tasks_every_record_once(job_dir, make_job, cli):
    """The issue's file (shrunk; CRLF, a BOM): row 150's quoted field (newlines, commas, escaped
    quotes) and row 200's (quotes that tell no role, so guesses inside it are wrong) cover most of
    16 tasks. Those tasks end empty, the wrong guesses are repaired, and no retry is spent
    (retries = 0)."""
    from test_long_fields import TABLE_SCORER, expected_csv, reported_csv, unquote

    data = reported_csv(reps=1500, roleless=4000, newline="\r\n", bom=True)
    (job_dir / "data.csv").write_bytes(data)
    (job_dir / "model.bin").write_bytes(b"unused")
    (job_dir / "scorer.py").write_text(TABLE_SCORER)
    job = make_job(job_dir, name="long-field", model="model.bin", input="data.csv",
                   output="out/scores.csv", scorer="scorer.py", id_columns=["id"], chunks=16)
    result = run_ok(cli, job)
    lines = (job_dir / "out" / "scores.csv").read_text().splitlines()
    assert unquote(lines[1:]) == expected_csv(data)
    assert result.json["rows_out"] == 300
    assert result.json["repaired_boundaries"] > 0
    tasks = manifest_tasks(job_dir / "out" / "scores.csv")
    assert sum(t["records_out"] == 0 for t in tasks) >= 8  # the tasks inside the fields


def test_csv_crlf_without_final_newline(job_dir, make_job, cli, trained_model, make_frame):
    frame = make_frame(40, 11)
    text = frame.to_csv(index=False, lineterminator="\r\n")
    assert text.endswith("\r\n")
    (job_dir / "crlf.csv").write_bytes(text[:-2].encode())  # no final line end
    job = make_job(job_dir, name="crlf", model=trained_model.path, input="crlf.csv",
                   output="out/scores.csv", id_columns=["id"], chunk_size=97)
    result = run_ok(cli, job)
    assert result.json["tasks"] > 5
    assert result.json["rows_out"] == 40
    output = (job_dir / "out" / "scores.csv").read_bytes()
    assert b"\r" not in output
    assert_scores_match(read_scores(job_dir / "out" / "scores.csv"), frame, trained_model)


def test_csv_crlf_and_no_final_newline_through_a_command(job_dir, make_job, cli):
    lines = ["id,v"] + [f"k{i},{i * i}" for i in range(50)]
    (job_dir / "crlf.csv").write_bytes("\r\n".join(lines).encode())
    job = make_job(job_dir, name="crlf-cmd", input="crlf.csv", output="out/ids.txt",
                   runtime="command", scorer="tail -n +2 | cut -d, -f1", chunk_size=17)
    result = run_ok(cli, job)
    assert result.json["tasks"] > 20
    assert (job_dir / "out" / "ids.txt").read_text().splitlines() == [f"k{i}" for i in range(50)]


def test_file_uris_work_from_any_folder_and_leave_nothing_beside_it(job_dir, make_job, cli,
                                                                   tmp_path):
    """``file://`` input and output, the CLI run from another folder: the output is where the
    URI says, and nothing (the controller's wake-up pipe included) lands in the working folder."""
    (job_dir / "in.csv").write_text("id,v\n" + "".join(f"k{i},{i}\n" for i in range(30)))
    job = make_job(job_dir, name="uris", input=f"file://{job_dir / 'in.csv'}",
                   output=f"file://{job_dir / 'out' / 'ids.txt'}", runtime="command",
                   scorer="tail -n +2 | cut -d, -f1", chunks=3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("run", job, "--json", "-q", cwd=elsewhere)
    assert result.code == 0, result
    assert (job_dir / "out" / "ids.txt").read_text().splitlines() == [f"k{i}" for i in range(30)]
    assert list(elsewhere.iterdir()) == []
    assert not (job_dir / "out" / "ids.txt.work" / "queue").exists()  # tickets and pipe gone


# -- jsonl -------------------------------------------------------------------------------------
def test_jsonl_input_to_jsonl_output(job_dir, make_job, cli, trained_model, make_frame):
    import pandas as pd

    frame = make_frame(60, 13)
    text = frame.to_json(orient="records", lines=True)
    (job_dir / "data.jsonl").write_text(text.rstrip("\n"))  # and no final newline
    job = make_job(job_dir, name="jsonl", model=trained_model.path, input="data.jsonl",
                   output="out/scores.jsonl", id_columns=["id"], chunks=4)
    result = run_ok(cli, job)
    assert result.json["tasks"] == 4 and result.json["rows_out"] == 60
    out_lines = (job_dir / "out" / "scores.jsonl").read_text().splitlines()
    assert len(out_lines) == 60
    scores = pd.DataFrame([json.loads(line) for line in out_lines])
    assert list(scores.columns) == ["id", *SCORE_COLUMNS]
    assert_scores_match(scores, frame, trained_model)


# -- parquet -----------------------------------------------------------------------------------
@pytest.mark.parametrize("out_name", ["scores.parquet", "scores.csv"])
def test_parquet_input_with_row_groups(job_dir, make_job, cli, trained_model, make_frame,
                                       out_name):
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = make_frame(120, 17)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), job_dir / "data.parquet",
                   row_group_size=20)
    assert pq.ParquetFile(job_dir / "data.parquet").num_row_groups == 6
    job = make_job(job_dir, name="parquet", model=trained_model.path, input="data.parquet",
                   output=f"out/{out_name}", id_columns=["id"], chunks=3)
    result = run_ok(cli, job)
    assert result.json["tasks"] == 3 and result.json["rows_out"] == 120
    output = job_dir / "out" / out_name
    if out_name.endswith(".parquet"):
        scores = pq.read_table(output).to_pandas()
    else:
        scores = read_scores(output)
    assert list(scores.columns) == ["id", *SCORE_COLUMNS]
    assert_scores_match(scores, frame, trained_model)
    tasks = manifest_tasks(output)
    assert len(tasks) == 3 and sum(t["records_out"] for t in tasks) == 120
    assert all(t["records_out"] > 0 and t["records_out"] % 20 == 0 for t in tasks)  # whole groups
    assert all("row groups" in t["input"] for t in tasks)


# -- records (FASTQ) ---------------------------------------------------------------------------
FASTQ_SCORER = """\
def score(model, data):
    kind = type(model).__name__
    out = []
    for record in data:
        name, seq, plus, qual = record.split("\\n")
        assert plus.startswith("+") and len(seq) == len(qual), record
        gc = sum(base in "GC" for base in seq)
        out.append(f"{name[1:]}\\t{len(seq)}\\t{gc}\\t{kind}")
    return out
"""


def test_records_fastq_with_a_python_script(job_dir, make_job, cli, trained_model):
    import random

    rng = random.Random(3)
    reads, expected = [], []
    for i in range(45):
        seq = "".join(rng.choice("ACGT") for _ in range(rng.randint(5, 30)))
        # Quality lines starting with '@' look like a record start: the classic FASTQ trap.
        qual = "@" + "".join(rng.choice("!#5@AIJ+") for _ in range(len(seq) - 1))
        reads.append(f"@read{i} lane=1\n{seq}\n+\n{qual}\n")
        expected.append(f"read{i} lane=1\t{len(seq)}\t{seq.count('G') + seq.count('C')}"
                        "\tLogisticRegression")
    (job_dir / "reads.fastq").write_text("".join(reads))
    (job_dir / "gc.py").write_text(FASTQ_SCORER)
    job = make_job(job_dir, name="fastq", model=trained_model.path, input="reads.fastq",
                   format="records", record_pattern=r"@[^\n]*\n[ACGTN]*\n\+[^\n]*\n[^\n]*\n",
                   scorer="gc.py", output="out/gc.tsv", chunk_size=64)
    result = run_ok(cli, job)
    assert result.json["tasks"] > 10
    assert result.json["rows_in"] == result.json["rows_out"] == 45
    assert (job_dir / "out" / "gc.tsv").read_text().splitlines() == expected


# -- directories and globs ---------------------------------------------------------------------
def test_directory_and_glob_inputs_in_sorted_order(job_dir, make_job, cli):
    parts = job_dir / "parts"
    parts.mkdir()
    for name in ("c", "a", "b"):  # written out of order on purpose
        rows = "".join(f"{name}{i},{i}\n" for i in range(12))
        (parts / f"{name}.csv").write_text("key,v\n" + rows)
    (parts / ".hidden.csv").write_text("key,v\nhidden,1\n")
    expected = {n: [f"{n}{i},{i}" for i in range(12)] for n in "abc"}
    job = make_job(job_dir, name="many-files", input="parts", format="csv",
                   output="out/dir.txt", runtime="command", scorer="tail -n +2", chunk_size=40)

    result = run_ok(cli, job)
    assert result.json["tasks"] >= 6
    assert (job_dir / "out" / "dir.txt").read_text().splitlines() == \
        expected["a"] + expected["b"] + expected["c"]
    inputs = [Path(f["path"]).name for f in manifest_of(job_dir / "out" / "dir.txt")["inputs"]]
    assert inputs == ["a.csv", "b.csv", "c.csv"]

    run_ok(cli, job, "--set", 'input="parts/[cb].csv"', "--set", 'output="out/glob.txt"')
    assert (job_dir / "out" / "glob.txt").read_text().splitlines() == expected["b"] + expected["c"]


# -- shards and bins ---------------------------------------------------------------------------
def test_shards_cover_every_bin_exactly_once(job_dir, make_job, cli):
    command = ('for b in $(seq "$BIN_START" "$BIN_END"); do '
               'echo "$SHARD_INDEX $SHARD_COUNT $BIN_START $BIN_END $b"; done')
    job = make_job(job_dir, name="shards", runtime="command", scorer=command, shards=4, bins=10,
                   output="out/bins.txt")
    result = run_ok(cli, job)
    assert result.json["tasks"] == 4
    rows = [line.split() for line in (job_dir / "out" / "bins.txt").read_text().splitlines()]
    assert [int(r[4]) for r in rows] == list(range(10))  # every bin once, in shard order
    assert {r[1] for r in rows} == {"4"}
    shard_of_bin = [int(r[0]) for r in rows]
    assert shard_of_bin == sorted(shard_of_bin) and set(shard_of_bin) == {0, 1, 2, 3}
    for r in rows:
        assert int(r[2]) <= int(r[4]) <= int(r[3])


# -- user python scorer ------------------------------------------------------------------------
DATAFRAME_SCORER = """\
import pandas as pd

def score(model, data):
    p = model.predict_proba(data[["a", "b", "c"]])[:, 1]
    return pd.DataFrame({"p_one": p, "b_twice": data["b"] * 2})
"""


def test_python_script_returning_a_dataframe(job_dir, make_job, cli, trained_model, make_frame):
    import numpy as np

    frame = make_frame(50, 19)
    frame.to_csv(job_dir / "data.csv", index=False)
    (job_dir / "scorer.py").write_text(DATAFRAME_SCORER)
    job = make_job(job_dir, name="df-scorer", model=trained_model.path, input="data.csv",
                   output="out/scores.csv", id_columns=["id"], scorer="scorer.py", chunks=3)
    result = run_ok(cli, job)
    assert result.json["rows_out"] == 50
    scores = read_scores(job_dir / "out" / "scores.csv")
    assert list(scores.columns) == ["id", "p_one", "b_twice"]
    assert scores["id"].tolist() == frame["id"].tolist()
    np.testing.assert_allclose(scores["p_one"], trained_model.proba(frame)[:, 1], rtol=1e-12)
    assert scores["b_twice"].tolist() == (frame["b"] * 2).tolist()


# -- plan, --set, reruns, foreign outputs ------------------------------------------------------
def test_plan_json_lists_tasks_and_creates_nothing(job_dir, make_job, cli, trained_model,
                                                    make_frame):
    make_frame(30, 23).to_csv(job_dir / "data.csv", index=False)
    size = (job_dir / "data.csv").stat().st_size
    job = make_job(job_dir, name="plan-only", model=trained_model.path, input="data.csv",
                   output="out/scores.csv", id_columns=["id"], chunks=4)
    before = sorted(p.name for p in job_dir.iterdir())
    result = cli("plan", job, "--json")
    assert result.code == 0, result
    plan = result.json
    assert plan["status"] == "planned" and plan["name"] == "plan-only"
    assert plan["job_id"].startswith("plan-only-")
    assert [t["id"] for t in plan["tasks"]] == ["t00000", "t00001", "t00002", "t00003"]
    assert plan["tasks"][0]["start"] == 0 and plan["tasks"][-1]["end"] == size
    for prev, cur in zip(plan["tasks"], plan["tasks"][1:], strict=False):
        assert prev["end"] == cur["start"]
    assert plan["input_bytes"] == size
    assert sorted(p.name for p in job_dir.iterdir()) == before
    assert not (job_dir / "out").exists()
    # The plan is deterministic: the same job plans the same id.
    assert cli("plan", job, "--json").json["job_id"] == plan["job_id"]


def test_set_overrides_change_the_job(job_dir, make_job, cli):
    (job_dir / "data.csv").write_text("k,v\n" + "".join(f"x{i},{i}\n" for i in range(30)))
    job = make_job(job_dir, name="overrides", input="data.csv", output="out/default.txt",
                   runtime="command", scorer="tail -n +2", chunks=2)
    result = run_ok(cli, job, "--set", "chunks=5", "--set", "output=out/other.txt")
    assert result.json["tasks"] == 5
    assert result.json["output"] == str(job_dir / "out" / "other.txt")
    assert (job_dir / "out" / "other.txt").read_text().splitlines() == [f"x{i},{i}" for i in range(30)]
    assert not (job_dir / "out" / "default.txt").exists()

    bad = cli("plan", job, "--set", "chunkz=3")
    assert bad.code == 2, bad
    assert "chunkz" in bad.flat_stderr and "Traceback" not in bad.stderr
    no_value = cli("plan", job, "--set", "chunks")
    assert no_value.code == 2, no_value
    assert "key=value" in no_value.flat_stderr


def test_rerun_of_a_finished_job_is_up_to_date(job_dir, make_job, cli):
    (job_dir / "data.csv").write_text("k,v\n" + "".join(f"x{i},{i}\n" for i in range(20)))
    job = make_job(job_dir, name="rerun", input="data.csv", output="out/s.txt",
                   runtime="command", scorer="tail -n +2", chunks=3)
    first = run_ok(cli, job)
    output = job_dir / "out" / "s.txt"
    stamp, content = output.stat().st_mtime_ns, output.read_bytes()
    manifest = output.with_name("s.txt.manifest.json").read_bytes()

    again = cli("run", job, "--json", "-q")
    assert again.code == 0, again
    assert again.json["status"] == "up-to-date"
    assert again.json["job_id"] == first.json["job_id"]
    assert again.json["rows_out"] == 20 and again.json["attempts"] == 0
    assert output.stat().st_mtime_ns == stamp and output.read_bytes() == content
    assert output.with_name("s.txt.manifest.json").read_bytes() == manifest
    human = cli("run", job)
    assert human.code == 0 and "up to date" in human.stdout, human


def test_foreign_output_is_refused_unless_overwrite(job_dir, make_job, cli):
    (job_dir / "data.csv").write_text("k,v\n" + "".join(f"x{i},{i}\n" for i in range(20)))
    (job_dir / "out").mkdir()
    output = job_dir / "out" / "s.txt"
    output.write_text("precious results of another job\n")
    job = make_job(job_dir, name="foreign", input="data.csv", output="out/s.txt",
                   runtime="command", scorer="tail -n +2", chunks=2)

    refused = cli("run", job, "--json", "-q")
    assert refused.code != 0, refused
    assert "already exists" in refused.flat_stderr and "overwrite" in refused.flat_stderr
    assert "Traceback" not in refused.stderr
    assert refused.json is not None and refused.json["status"] == "failed"
    assert output.read_text() == "precious results of another job\n"
    assert not Path(f"{output}.manifest.json").exists()

    replaced = run_ok(cli, job, "--set", "overwrite=true")
    assert replaced.json["rows_out"] == 20
    assert output.read_text().splitlines() == [f"x{i},{i}" for i in range(20)]
