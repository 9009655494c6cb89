"""How records reach R and ids reach the output: memory files or frames, ids read by the runner
(R skips id columns its model does not use, and reads them when it does)."""

from __future__ import annotations

import io
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import pytest
from rhelpers import RModels, read_rows, run_r

from serverless_score.records import Batch
from serverless_score.runner import r_scorer
from serverless_score.runner.r_feed import BatchFiles
from serverless_score.runner.writers import PartWriter


def test_a_model_that_uses_the_id_column_is_given_it(r_models: RModels, r_job, job_dir: Path) -> None:
    # The formula names `id`: R must read it although it is an id column.
    run_r(f"""
        library(data.table)
        d <- fread("{r_models.data}", data.table = FALSE)
        m <- lm(x1 ~ x2 + nchar(id) + as.integer(substr(id, 2, 6)), data = d)
        saveRDS(m, "uses_id.rds")
        p <- predict(m, newdata = d)
        writeLines(sprintf("%.17g", p), "reference.txt")
    """, cwd=job_dir)
    result = r_job(model=job_dir / "uses_id.rds", input=r_models.data, id_columns=["id"])
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    reference = (job_dir / "reference.txt").read_text().split()
    assert [r["id"] for r in rows[:2]] == ["r100001", "r100002"]
    assert [float(r["prediction"]) for r in rows] == [float(x) for x in reference]


def test_ids_are_the_input_text(r_models: RModels, r_job, job_dir: Path) -> None:
    data = job_dir / "ids.csv"
    data.write_text('id,x1,x2,k,region\n'
                    'NA,0.5,1,3,north\n'         # a text that R would read as missing
                    ' 7 ,0.5,1,3,north\n'        # blanks around a bare field: trimmed, as fread does
                    '"a,""b""",0.5,1,3,north\n'  # quoted: comma and doubled quotes
                    ',0.5,1,3,north\n'           # empty
                    '0042,0.5,1,3,north\n', encoding="utf-8")
    result = r_job(model=r_models.model("lm"), input=data, id_columns=["id"], chunks=1)
    assert result.code == 0, result
    rows = read_rows(job_dir / "out/scores.csv")
    assert [r["id"] for r in rows] == ["NA", "7", 'a,"b"', "", "0042"]
    assert len({r["prediction"] for r in rows}) == 1  # the same features: the same score


def _score_in_process(model: Path, data: Path, id_columns: list[str]) -> bytes:
    """One task through a real RSession in this process, its part as bytes."""
    work = SimpleNamespace(job_id="j", scorer="predict", id_columns=id_columns,
                           predict_args={}, on_unknown_level="error")
    raw = data.read_bytes()
    header, body = raw.split(b"\n", 1)
    header += b"\n"
    lines = body.splitlines(keepends=True)
    # three batches of whole records (none of these ids or regions holds a newline)
    cuts = [0, len(lines) // 3, 2 * len(lines) // 3, len(lines)]
    batches = [Batch(b"".join(lines[a:b]), b - a) for a, b in pairwise(cuts)]
    session = r_scorer.RSession(work, str(model))  # type: ignore[arg-type]
    try:
        session.wait_ready()
        out = io.BytesIO()
        writer = PartWriter(out, "csv")
        task = SimpleNamespace(id="t00000", index=0, path=str(data))
        sent = session.score_task(SimpleNamespace(task=task, attempt=1),  # type: ignore[arg-type]
                                  header, batches, writer)
        assert sent == len(lines) == writer.rows
        return writer.header.encode() + out.getvalue()
    finally:
        session.close()


def test_records_in_frames_score_as_records_in_memory_files(
        r_models: RModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "plain.csv"
    # the fixture's rows without the free-text column (its quoted newlines would need the reader)
    columns = ["id", "x1", "x2", "k", "region"]
    data.write_text("\n".join([",".join(columns)] + [",".join(r[c] for c in columns)
                                                    for r in read_rows(r_models.data)]) + "\n",
                    encoding="utf-8")
    via_files = _score_in_process(r_models.model("glm"), data, ["id"])
    files = BatchFiles.create()
    assert files is not None  # Linux: the run above went through memory files
    files.close()
    monkeypatch.setattr(BatchFiles, "create", classmethod(lambda cls, count=2: None))
    via_frames = _score_in_process(r_models.model("glm"), data, ["id"])
    assert via_frames == via_files
    assert via_files.startswith(b"id,prediction\nr100001,")
    assert via_files.count(b"\n") == 3001


def test_an_r_that_cannot_open_the_memory_files_gets_frames(
        r_models: RModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if R had no /proc: the paths it is told do not open, so it says files=false in REDY.
    monkeypatch.setattr(BatchFiles, "paths", lambda self: [str(tmp_path / "no-such-fd")])
    work = SimpleNamespace(job_id="j", scorer="predict", id_columns=["id"], predict_args={},
                           on_unknown_level="error")
    session = r_scorer.RSession(work, str(r_models.model("glm")))  # type: ignore[arg-type]
    try:
        assert session.files is not None
        session.wait_ready()
        assert session.files is None  # records will go in ROWS frames
    finally:
        session.close()
    data = tmp_path / "plain.csv"
    data.write_text("id,x1,x2,k,region\nr1,0.5,1,3,north\nr2,-1,0,2,east\n", encoding="utf-8")
    assert _score_in_process(r_models.model("glm"), data, ["id"]).startswith(
        b"id,prediction\nr1,")
