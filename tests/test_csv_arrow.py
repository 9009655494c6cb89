"""Arrow's parse of a CSV batch is taken only when it is the frame pandas gives (csv_arrow)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serverless_score.runner.csv_arrow import read_csv_batch
from serverless_score.runner.python_scorer import PythonScorer, pandas_csv, read_batch

# Tokens where the two parsers have been seen to differ, or could: NaN text, hex, signs,
# integers past int64, blanks, exponents, quoted numbers, booleans, dates.
TRICKY = ["nan", "NaN", "-nan", "NA", "inf", "-Infinity", "0x1A", "0X1A", "+5", "-0", "007",
          " 1.5", "1.5 ", "\t2", '"3.25"', '""', "9223372036854775807", "9223372036854775808",
          "18446744073709551616", "-9223372036854775809", "1e5", "1E+05", "1.5e400", "1e-400",
          "5.", ".5", "true", "False", "2024-01-02", "12:30:00", "1_000", "n/a", "", "0.1e",
          '"1,5"', '"a""b"', '"x\ny"', "1.7976931348623157e308", "4.9e-324"]

ints = st.integers(-(2**70), 2**70).map(str)
floats = st.floats(allow_nan=False, width=64).map(repr)
fixed = st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.6f}")
junk = st.text(alphabet='0123456789.eE+-xXnaNIf \t"', max_size=6).filter(
    lambda t: t.count('"') == 0)
token = st.one_of(st.sampled_from(TRICKY), ints, floats, fixed, fixed, fixed, junk)
ident = st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(["", "a", "x1", "NA", '" 7"']))


@st.composite
def batches(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    width = draw(st.integers(2, 4))
    names = draw(st.lists(st.sampled_from(["f0", "f1", "f2", "f3", "", "f0 ", "x"]),
                          min_size=width - 1, max_size=width - 1))
    header = ",".join(["id", *names]) + "\n"
    # a column is mostly of one kind, with one tricky value (or none) here and there
    kinds = [draw(st.sampled_from([fixed, ints, floats, token, st.one_of(ints, fixed)]))
             for _ in names]
    odd = [draw(st.sampled_from([*TRICKY, None])) for _ in names]
    rows = draw(st.integers(1, 12))
    lines = []
    for _ in range(rows):
        cells = [draw(ident)]
        for kind, tricky in zip(kinds, odd, strict=True):
            use = tricky is not None and draw(st.integers(0, 4)) == 0
            cells.append(tricky if use else draw(kind))
        lines.append(",".join(cells))
    body = "\n".join(lines) + "\n"
    return header.encode(), body.encode(), rows


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_arrow_frame_is_pandas_frame_or_declined(batch: tuple[bytes, bytes, int]) -> None:
    header, body, rows = batch
    fast = read_csv_batch(body, header, ["id"], rows)
    if fast is None:
        return  # pandas parses it, as before
    slow = pandas_csv(body, header, ["id"])
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)


def test_ordinary_numbers_take_arrow() -> None:
    header, body = b"id,a,b\n", b"k1,1.5,3\nk2,,4\n,-2.25,5\n"
    fast = read_csv_batch(body, header, ["id"], 3)
    assert fast is not None
    pd.testing.assert_frame_equal(fast, pandas_csv(body, header, ["id"]), check_exact=True)
    assert fast["id"].tolist() == ["k1", "k2", ""]


def test_a_scorer_can_write_into_the_frame_as_into_pandas_own() -> None:
    """Arrow's zero-copy arrays are read-only: the frame's columns are copies, one block each,
    as pandas lays them out (so ``.values`` of several columns is a fresh, writable array)."""
    header, body = b"id,a,b\n", b"k1,1.5,3.5\nk2,2.5,4.5\n"
    fast = read_csv_batch(body, header, ["id"], 2)
    slow = pandas_csv(body, header, ["id"])
    assert fast is not None
    for frame in (fast, slow):
        frame.loc[0, "a"] = 9.0
        values = frame[["a", "b"]].values
        values[1, 1] = 7.0  # raises on a read-only view
        assert frame.loc[0, "a"] == 9.0
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)


@pytest.mark.parametrize(("body", "why"), [
    (b"1,nan,2\n2,1.5,3\n", "NaN text is a bad value for pandas, not a number"),
    (b"1,0X1A,2\n2,1.5,3\n", "Arrow reads hex integers"),
    (b"1,+5,2\n2,1,3\n", "pandas reads +5 as int64, Arrow as a double"),
    (b"1,9223372036854775808,2\n2,1,3\n", "past int64: uint64 for pandas"),
    (b"1,18446744073709551616,2\n2,4.9e-324,3\n", "past uint64: text for pandas, even so"),
    (b"1,1.5,2,9\n2,1.5,3\n", "a record with a field too many"),
    (b"1,1.5\n2,1.5,3\n", "a record with a field too few"),
    (b"1,n/a,2\n2,1.5,3\n", "text in a numeric column"),
    (b"1,1.5,2\n2,\xff,3\n", "not UTF-8"),
])
def test_declined(body: bytes, why: str) -> None:
    assert read_csv_batch(body, b"id,a,b\n", ["id"], 2) is None, why


@pytest.mark.parametrize("header", [b"id,a,a\n", b"id,,b\n", b"id,a\n"])
def test_headers_pandas_renames_or_that_do_not_fit_are_declined(header: bytes) -> None:
    assert read_csv_batch(b"1,1.5,2.5\n", header, ["id"], 1) is None


def test_a_wrong_record_count_is_declined() -> None:
    assert read_csv_batch(b"1,1.5,2.5\n2,1.5,2.5\n", b"id,a,b\n", ["id"], 3) is None


def test_other_encodings_read_by_pandas() -> None:
    body = "é1,1.5,2.5\n".encode("latin-1")
    frame = read_batch(body, "csv", b"id,a,b\n", ["id"], "latin-1", 1)
    assert frame["id"].tolist() == ["é1"]


def test_a_model_scores_both_frames_alike() -> None:
    """Same frame, same scores to the bit: the model gets the same array from either."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 5))
    train = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    model = LogisticRegression().fit(train, (x[:, 0] + x[:, 1] > 0).astype(int))
    out = io.StringIO()
    train.insert(0, "id", [f"r{i}" for i in range(len(train))])
    train.to_csv(out, index=False, float_format="%.6f")
    text = out.getvalue().encode()
    header, body = text[: text.index(b"\n") + 1], text[text.index(b"\n") + 1:]
    fast = read_csv_batch(body, header, ["id"], 2000)
    assert fast is not None
    scorer = PythonScorer.__new__(PythonScorer)
    scorer.model, scorer.module, scorer.predict_method, scorer.id_columns = \
        model, None, "auto", ["id"]
    a = scorer.score_frame(fast)
    b = scorer.score_frame(pandas_csv(body, header, ["id"]))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
