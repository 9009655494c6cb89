"""runtime = "r" with on_error = "skip": the rows R cannot score are left out and listed in the
errors file, and every other row gets exactly what predict() gives it in a plain R session."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from rhelpers import RModels, read_rows

pytestmark = pytest.mark.slow
# row (0-based) -> how it is broken: text in a numeric column, a region the model never saw
# (both found by one vectorised look), an id the scorer refuses (found by bisection), and a
# field too many or too few (where fread would stop: left out before R reads the batch).
BROKEN = {4: ("x1", "n/a"), 1000: ("+", "surplus"), 1499: ("region", "mars"),
          2222: ("id", None), 2500: ("-", None), 2999: ("k", "many")}
MISSHAPEN = {1000, 2500}
REFUSING_SCORER = """
score <- function(model, data) {
  if (any(data$id == "%s")) stop("refused %s")
  predict(model, newdata = data, type = "response")
}
"""


def _broken_copy(source: Path, target: Path) -> list[str]:
    """The test data with BROKEN rows; returns every row's id."""
    with open(source, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    for row, (column, value) in BROKEN.items():
        if column == "+":
            rows[row + 1].append(str(value))
        elif column == "-":
            rows[row + 1].pop(2)
        elif value is not None:
            rows[row + 1][header.index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    target.write_text(out.getvalue(), encoding="utf-8")
    return [r[0] for r in rows[1:]]


def test_glm_skips_bad_rows_and_scores_the_rest_as_r_does(r_models: RModels, r_job,
                                                         job_dir: Path) -> None:
    data = job_dir / "bad.csv"
    ids = _broken_copy(r_models.data, data)
    refused = ids[2222]
    (job_dir / "score.R").write_text(REFUSING_SCORER % (refused, refused))
    result = r_job(model=r_models.model("glm"), input=data, id_columns=["id"], chunks=3,
                   scorer="score.R", on_error="skip")
    assert result.code == 0, result
    assert result.json["rows_out"] == 3000 - len(BROKEN)
    assert result.json["rows_failed"] == len(BROKEN)
    rows = read_rows(job_dir / "out/scores.csv")
    reference = {r["id"]: r["glm_response"] for r in r_models.reference()}
    good = [i for n, i in enumerate(ids) if n not in BROKEN]
    assert [r["id"] for r in rows] == good  # input order, the bad rows left out
    # the same doubles as predict() on the whole file in a plain R session
    assert [float(r["score"]) for r in rows] == [float(reference[i]) for i in good]
    errors = read_rows(Path(result.json["errors"]))
    assert [int(e["record"]) for e in errors] == sorted(BROKEN)
    assert [e["id"] for e in errors] == [
        "" if n in MISSHAPEN else ids[n] for n in sorted(BROKEN)]
    text = data.read_bytes()
    for error in errors:  # the offset is where the record's text is
        assert text[int(error["offset"]):].decode().startswith(error["text"])
    reasons = [e["error"] for e in errors]
    assert reasons[0] == "column 'x1': 'n/a' is not a number (the model was trained on numbers)"
    assert reasons[1] == "the record has 7 fields where the header has 6"
    assert reasons[2] == "column 'region': level 'mars' was not seen when the model was trained"
    assert f"refused {refused}" in reasons[3]
    assert reasons[4] == "the record has 5 fields where the header has 6"
    assert reasons[5].startswith("column 'k': 'many' is not a number")
