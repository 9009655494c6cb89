"""The frames between the runner and score.R, and how R's binary scores become CSV text."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from serverless_score.runner.r_protocol import (
    HEADER_BYTES,
    INT_NA,
    Frame,
    ProtocolError,
    decode_columns,
    encode_frame,
    header_line,
    read_frame,
    scores_csv,
)


def strings(values: list[str | None]) -> bytes:
    """A string column as score.R writes it: NA flags, then NUL-terminated text."""
    return bytes(v is None for v in values) + b"".join(
        ("NA" if v is None else v).encode() + b"\0" for v in values)


def cols_frame(rows: int, columns: list[tuple[str, str, bytes]]) -> Frame:
    meta = json.dumps({"rows": rows, "columns": [
        {"name": n, "type": t, "bytes": len(b)} for n, t, b in columns]}).encode()
    return Frame("COLS", len(meta), meta + b"".join(b for _, _, b in columns))


def test_frames_round_trip_and_have_a_fixed_header() -> None:
    data = encode_frame("COLS", b"x,y\n" * 3, count=4)
    assert len(data) - 12 == HEADER_BYTES
    stream = io.BytesIO(data + encode_frame("DONE"))
    assert read_frame(stream) == Frame("COLS", 4, b"x,y\n" * 3)
    assert read_frame(stream) == Frame("DONE", 0, b"")
    assert read_frame(stream) is None  # end of stream: R exited


def test_stray_output_on_stdout_is_reported_not_parsed() -> None:
    with pytest.raises(ProtocolError, match="something printed straight to stdout"):
        read_frame(io.BytesIO(b"[1] 42 printed by a package" + b" " * 10))
    with pytest.raises(ProtocolError, match="in the middle of a COLS frame"):
        read_frame(io.BytesIO(encode_frame("COLS", b"12345")[:-2]))


def test_doubles_are_written_as_the_shortest_text_that_reads_back_exactly() -> None:
    values = np.array([1 / 3, 0.1, 0.42613804124007443, 1e-300, 123456789.0, 2.0**60, np.nan])
    ids: list[str | None] = ["a", "b", "c", "d", "e", "f", "g"]
    scores = decode_columns(cols_frame(7, [("id", "string", strings(ids)),
                                           ("p", "double", values.astype("<f8").tobytes())]))
    lines = scores_csv(scores).decode().splitlines()
    assert lines[0] == "a,0.3333333333333333"
    assert lines[1] == "b,0.1"
    assert lines[6] == "g,"  # R's NA (a NaN) is an empty field
    parsed = [float(line.split(",")[1]) for line in lines[:6]]
    assert parsed == values[:6].tolist()  # bit for bit


def test_text_is_quoted_only_when_it_must_be_and_na_is_empty() -> None:
    names: list[str | None] = ["plain", 'say "hi"', "a,b", "two\nlines", None]
    ints = np.array([1, INT_NA, 3, 4, 5], dtype="<i4").tobytes()
    scores = decode_columns(cols_frame(5, [("label", "string", strings(names)),
                                           ("n", "integer", ints)]))
    assert scores.columns[0].to_pylist() == names
    assert scores.columns[1].to_pylist() == [1, None, 3, 4, 5]
    text = scores_csv(scores).decode()
    assert text == '"plain",1\n"say ""hi""",\n"a,b",3\n"two\nlines",4\n,5\n'
    plain = decode_columns(cols_frame(3, [("label", "string", strings(["x", "é", ""]))]))
    assert scores_csv(plain).decode() == "x\né\n\n"


def test_header_is_csv_and_columns_must_match_their_row_count() -> None:
    assert header_line(["id", "p,1", "no"]) == 'id,"p,1",no\n'
    with pytest.raises(ProtocolError, match="column 'p': 1 values for 2 rows"):
        decode_columns(cols_frame(2, [("p", "double", struct.pack("<d", 1.0))]))
    with pytest.raises(ProtocolError, match="column 's': 1 strings for 2 rows"):
        decode_columns(cols_frame(2, [("s", "string", strings(["ab", "c"])[:-1])]))
    with pytest.raises(ProtocolError, match="unknown type 'complex'"):
        decode_columns(cols_frame(1, [("p", "complex", b"")]))


def test_decoding_and_writing_scores_imports_no_pandas() -> None:
    # pandas costs a worker ~0.3 s of CPU to import; the R path has no use for it.
    code = (
        "import sys, json, numpy as np\n"
        "from serverless_score.runner.r_protocol import Frame, decode_columns, scores_csv\n"
        "values = np.array([0.5, np.nan]).astype('<f8').tobytes()\n"
        "meta = json.dumps({'rows': 2, 'columns': [{'name': 'p', 'type': 'double', 'bytes': 16}]}).encode()\n"
        "assert scores_csv(decode_columns(Frame('COLS', len(meta), meta + values))) == b'0.5\\n\\n'\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_id_columns_of_a_record_longer_than_the_parsers_block() -> None:
    # The runner parses ids in 1 MB blocks; a record spanning several blocks (a long quoted text
    # with a line break) still gives its id, and the ids stay in order.
    from serverless_score.runner.csv_ids import read_id_columns

    long_text = "x" * (3 << 20)
    data = ("a1,1\n" + f'"a,2","{long_text}\nmore"\n' + "a3,3\n" * 200_000).encode()
    ids = read_id_columns(memoryview(data), ["id", "v"], ["id"], 200_002, "t00000")
    values = ids[0].to_pylist()
    assert values[:3] == ["a1", "a,2", "a3"] and len(values) == 200_002
