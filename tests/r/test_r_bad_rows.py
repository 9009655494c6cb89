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


# A model of numbers only: its batches are read with the usual "no number" tokens as NA and the
# rows with an NA looked up in the raw text (score.R's read_numeric). row -> {column: text}
# The first chunk (rows 0-199) also has a text the tokens do not cover (row 50), so it takes the
# plain read (fread's text column): both reads must tell the same rows apart.
TOKENS = {2: {"x2": ""}, 3: {"x1": "n/a"}, 10: {"x1": "-", "k": "NULL"}, 20: {"x2": ""}, 30: {"k": "NA"},
          210: {"x1": "-", "k": "NULL"}, 220: {"x2": ""}, 230: {"k": "NA"}, 250: {"x2": "N/A"},
          260: {"x2": "NaN"}, 399: {"k": "null"}}
TOKEN_ERRORS = {3: "column 'x1': 'n/a' is not a number", 10: "column 'x1': '-' is not a number",
                210: "column 'x1': '-' is not a number",
                250: "column 'x2': 'N/A' is not a number", 399: "column 'k': 'null' is not a number"}


def test_numeric_model_tells_empty_fields_from_tokens(r_models: RModels, r_job,
                                                      job_dir: Path) -> None:
    with open(r_models.data, newline="", encoding="utf-8") as f:
        rows = [r[:4] for r in csv.reader(f)][:401]  # id, x1, x2, k
    (job_dir / "clean.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    header = rows[0]
    for row, fields in TOKENS.items():
        for column, value in fields.items():
            rows[row + 1][header.index(column)] = value
    # "abc" is no token: fread makes that column text and the first chunk takes the plain read
    rows[50 + 1][header.index("k")] = "abc"
    (job_dir / "bad.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    model = job_dir / "numeric.rds"
    from rhelpers import run_r
    run_r(f'd <- read.csv("{job_dir / "clean.csv"}"); '
          f'saveRDS(glm(I(sin(7 * x1) + x2 > 0) ~ x1 + x2 + k, data = d, family = binomial), "{model}")',
          cwd=job_dir)
    keys = {"model": model, "id_columns": ["id"], "on_error": "skip",
            "predict_args": {"type": "response"}}
    clean = r_job(input=job_dir / "clean.csv", output="clean/scores.csv", **keys)
    assert clean.code == 0, clean
    result = r_job(input=job_dir / "bad.csv", **keys)
    assert result.code == 0, result
    expected_errors = {**TOKEN_ERRORS, 50: "column 'k': 'abc' is not a number"}
    errors = read_rows(Path(result.json["errors"]))
    assert [int(e["record"]) for e in errors] == sorted(expected_errors)
    for error in errors:
        assert error["error"].startswith(expected_errors[int(error["record"])]), error
    scores = {r["id"]: r["prediction"] for r in read_rows(job_dir / "out/scores.csv")}
    reference = {r["id"]: r["prediction"] for r in read_rows(job_dir / "clean/scores.csv")}
    ids = [r[0] for r in rows[1:]]
    assert list(scores) == [i for n, i in enumerate(ids) if n not in expected_errors]
    for n in (20, 30, 220, 230, 260):  # an empty field, NA and NaN are scored (as NA / NaN), not errors
        assert scores[ids[n]] not in reference.values(), (n, scores[ids[n]])
    assert {i: s for i, s in scores.items() if ids.index(i) not in TOKENS} == {
        i: s for i, s in reference.items() if i in scores and ids.index(i) not in TOKENS}
    # on_error = "fail" names the first token (record 4, counted from 1), not the empty field before it
    fail = [list(r) for r in rows]
    fail[51][header.index("k")] = "3"  # rows 0-199 without "abc": the token read
    (job_dir / "fail.csv").write_text("".join(",".join(r) + "\n" for r in fail))
    failed = r_job(input=job_dir / "fail.csv", output="fail/scores.csv", chunks=1,
                   **{**keys, "on_error": "fail"})
    assert failed.code == 1, failed
    assert ("column 'x1': the model was trained on numbers but record 4 of task t00000 has 'n/a'"
            in failed.json["error"]["message"])
