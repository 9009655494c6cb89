"""runtime = "r" with ``model = "pins://..."``: an .rds pinned by the R package's
``push_model("pins://FOLDER/NAME")`` (no pins package) and one uploaded by the real Python
``pins``, each scored equal to R's own predict(); an R pin in a Python job is refused at plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rhelpers import read_rows, run_r

pytestmark = pytest.mark.slow
PACKAGE_R = Path(__file__).resolve().parents[2] / "rstudio" / "serveRless" / "R"

_TRAIN = """
for (f in list.files("{package}", full.names = TRUE)) source(f)
set.seed(11)
rows <- data.frame(id = sprintf("r%04d", 1:400), x = round(rnorm(400), 4),
                   g = sample(c("a", "b", "c"), 400, TRUE))
write.csv(rows, "data.csv", row.names = FALSE, quote = FALSE)
train <- rows
train$y <- 2 * train$x + (train$g == "b") + rnorm(400, sd = 0.1)
train$g <- factor(train$g)
model <- lm(y ~ x + g, data = train)
saveRDS(model, "model.rds")
pinned <- push_model(model, "pins://board/lmfit")
cat(pinned, attr(pinned, "version"), "\\n")
ref <- data.frame(id = rows$id, prediction = sprintf("%.17g", predict(model, rows)))
write.csv(ref, "reference.csv", row.names = FALSE, quote = FALSE)
"""


def _close(got: list[str], expected: list[str]) -> None:
    assert len(got) == len(expected) == 400
    worst = max(abs(float(a) - float(b)) / max(abs(float(b)), 1e-300)
                for a, b in zip(got, expected, strict=True))
    assert worst <= 1e-12, worst


def test_rds_pins_score_as_r_predicts(job_dir: Path, make_job, cli) -> None:
    pins = pytest.importorskip("pins")
    out = run_r(_TRAIN.format(package=PACKAGE_R), cwd=job_dir)
    uri, version = out.split()
    assert uri == f"pins://{job_dir / 'board'}/lmfit@{version}"
    meta = pins.board_folder(str(job_dir / "board")).pin_meta("lmfit")  # pins reads R's pin
    assert (meta.type, meta.file, meta.version.version) == ("rds", "lmfit.rds", version)
    reference = read_rows(job_dir / "reference.csv")

    # The latest version of the pin push_model wrote, on a board relative to the job file.
    job = make_job(job_dir, name="rpins", runtime="r", model="pins://board/lmfit",
                   input="data.csv", output="out/scores.csv", id_columns=["id"], chunks=2,
                   max_parallel=1)
    result = cli("run", job, "--json", "-q", timeout=180)
    assert result.code == 0, result
    assert result.json["model"]["source"]["version"] == version
    rows = read_rows(job_dir / "out" / "scores.csv")
    assert [r["id"] for r in rows] == [r["id"] for r in reference]
    _close([r["prediction"] for r in rows], [r["prediction"] for r in reference])

    # The same .rds uploaded by Python's pins (type "file"), scored by version.
    board = pins.board_folder(str(job_dir / "pyboard"))
    board.pin_upload([str(job_dir / "model.rds")], "uploaded")
    uploaded = board.pin_versions("uploaded")["version"].iloc[-1]
    other = cli("run", job, "--json", "-q", "--set", "overwrite=true", "--set",
                f"model=pins://{job_dir / 'pyboard'}/uploaded@{uploaded}", timeout=180)
    assert other.code == 0, other
    manifest = json.loads((job_dir / "out" / "scores.csv.manifest.json").read_text())
    assert manifest["model"]["source"]["version"] == uploaded
    assert manifest["model"]["source"]["type"] == "file"
    rows = read_rows(job_dir / "out" / "scores.csv")
    _close([r["prediction"] for r in rows], [r["prediction"] for r in reference])

    # An R pin in a Python job: refused before anything is created.
    refused = cli("run", job, "--json", "-q", "--set", 'runtime="python"', "--set",
                  f"output={job_dir / 'py' / 'scores.csv'}")
    assert refused.code == 2, refused
    assert "is an R model (lmfit.rds)" in refused.flat_stderr, refused
    assert not (job_dir / "py").exists()
