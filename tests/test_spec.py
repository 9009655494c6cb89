"""Job spec validation: TOML files, ``--set`` overrides, paths, and the size/duration units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serverless_score.errors import SpecError
from serverless_score.spec import JobSpec, load_spec, parse_override, spec_from_dict
from serverless_score.units import format_size, parse_duration, parse_size

VALID = """\
name = "churn"
model = "model/churn.joblib"
input = "data/customers.csv"
output = "out/churn-scores.csv"
id_columns = ["customer_id"]
chunks = 4
max_parallel = 2
timeout = "30m"

[resources]
cpu = 1
memory_gb = 1.5
"""

BASE: dict[str, Any] = {"name": "a", "model": "/m/model.joblib", "input": "/d/x.csv",
                        "output": "/o/scores.csv"}


def write(tmp_path: Path, text: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def spec_error(raw: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        spec_from_dict(raw)
    assert info.value.exit_code == 2
    return str(info.value)


def load_error(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    return str(info.value)


# -- a valid file -------------------------------------------------------------------------------
def test_valid_job_file(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, VALID))
    base = tmp_path.resolve()
    assert spec.name == "churn"
    assert spec.model == str(base / "model" / "churn.joblib")
    assert spec.input == str(base / "data" / "customers.csv")
    assert spec.output == str(base / "out" / "churn-scores.csv")
    assert spec.format == "csv"  # from the input's extension
    assert spec.id_columns == ["customer_id"]
    assert spec.chunks == 4 and spec.chunk_size is None
    assert spec.max_parallel == 2
    assert spec.timeout == 1800.0
    assert (spec.resources.cpu, spec.resources.memory_gb) == (1.0, 1.5)
    assert (spec.runtime, spec.scorer, spec.backend, spec.retries) == ("python", "predict", "local", 2)


def test_paths_resolve_against_the_job_file_not_the_cwd(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = tmp_path / "jobs" / "nightly"
    jobs.mkdir(parents=True)
    text = VALID.replace('"data/customers.csv"', '"../data/*.csv"')
    path = write(jobs, text.replace("chunks = 4\n", 'chunks = 4\nscorer = "score.py"\n'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load_spec(path)
    base = jobs.resolve()
    assert spec.input == str(base.parent / "data" / "*.csv")
    assert spec.model == str(base / "model" / "churn.joblib")
    assert spec.scorer == str(base / "score.py")
    # the same, with the job file given relative to the cwd
    monkeypatch.chdir(tmp_path)
    assert load_spec(Path("jobs/nightly/job.toml")) == spec


def test_price_file_resolves_against_the_job_file(tmp_path: Path) -> None:
    job = write(tmp_path, VALID + '\n[azure]\nprice_file = "prices/mine.toml"\n')
    assert load_spec(job).azure.price_file == str(tmp_path / "prices" / "mine.toml")
    assert load_spec(job, ["azure.price_file=/etc/p.toml"]).azure.price_file == "/etc/p.toml"


def test_max_evictions_defaults_to_3_and_is_set_in_the_azure_table(tmp_path: Path) -> None:
    job = write(tmp_path, VALID + '\n[azure]\npriority = "Spot"\nmax_evictions = 5\n')
    assert spec_from_dict(BASE).azure.max_evictions == 3
    assert load_spec(job).azure.max_evictions == 5
    assert load_spec(job, ["azure.max_evictions=0"]).azure.max_evictions == 0


def test_absolute_paths_uris_and_commands_are_kept(tmp_path: Path) -> None:
    text = (
        'name = "x"\ninput = "az://container/data/*.jsonl"\noutput = "/abs/out/scores.jsonl"\n'
        'runtime = "command"\nscorer = "python3 my_scorer.py"\n'
    )
    spec = load_spec(write(tmp_path, text))
    assert spec.input == "az://container/data/*.jsonl"
    assert spec.output == "/abs/out/scores.jsonl"
    assert spec.scorer == "python3 my_scorer.py"  # a command is not a path
    assert spec.model is None
    assert spec.format == "jsonl"


def test_home_directory_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = load_spec(write(tmp_path, VALID.replace('"model/churn.joblib"', '"~/m.joblib"')))
    assert spec.model == str((tmp_path / "home" / "m.joblib").resolve())


# -- unknown keys -------------------------------------------------------------------------------
def test_unknown_key_is_named_with_the_close_match(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, 'chunk_sise = "1MB"\n' + VALID))
    assert "unknown key 'chunk_sise'" in message
    assert "did you mean 'chunk_size'?" in message
    assert "job.toml" in message


def test_unknown_key_in_resources(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, VALID.replace("cpu = 1", "cpus = 1")))
    assert "unknown key 'resources.cpus'" in message
    assert "did you mean 'cpu'?" in message
    assert "allowed keys: cpu, memory_gb" in message


def test_unknown_key_without_a_close_match() -> None:
    message = spec_error({**BASE, "zzzzzz": 1})
    assert "unknown key 'zzzzzz'" in message
    assert "did you mean" not in message


# -- bad values ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("format", "xml", ["format:", "'csv', 'jsonl', 'parquet' or 'records'", "got 'xml'"]),
        ("runtime", "julia", ["runtime:", "'python'", "got 'julia'"]),
        ("chunk_size", "abc", ["chunk_size:", "expected a size like '64MB'", "got 'abc'"]),
        ("chunk_size", 0, ["chunk_size:", "positive size"]),
        ("chunk_size", "-5MB", ["chunk_size:", "got '-5MB'"]),
        ("timeout", "soon", ["timeout:", "expected a duration", "got 'soon'"]),
        ("timeout", -1, ["timeout:", "positive duration"]),
        ("timeout", "0s", ["timeout:", "positive duration"]),
        ("name", "Churn Model", ["name:", "lowercase letters", "got 'Churn Model'"]),
        ("name", "-churn", ["name:", "got '-churn'"]),
        ("name", "a" * 41, ["name:", "1-40"]),
        ("name", "churn\n", ["name:", "got 'churn\\n'"]),
        ("chunks", 0, ["chunks:", "greater than or equal to 1", "got 0"]),
        ("backend", "lambda", ["backend:", "got 'lambda'"]),
        ("resources", {"cpu": 0}, ["resources.cpu:", "greater than 0"]),
        ("max_parallel", 2.5, ["max_parallel:", "got 2.5"]),
        ("max_cost", 0, ["max_cost:", "greater than 0"]),
        ("azure", {"creates_per_minute": 500}, ["azure.creates_per_minute:", "less than or equal to 100"]),
        ("azure", {"max_evictions": -1}, ["azure.max_evictions:", "greater than or equal to 0",
                                          "got -1"]),
        ("azure", {"max_evictions": 1.5}, ["azure.max_evictions:", "valid integer", "got 1.5"]),
        ("azure", {"max_evictions": "3"}, ["azure.max_evictions:", "valid integer", "got '3'"]),
        ("azure", {"subscripton_id": "x"}, ["unknown key 'azure.subscripton_id'",
                                            "did you mean 'subscription_id'?"]),
        ("azure", {"price_file": "https://example.com/prices.toml"},
         ["azure.price_file:", "a local TOML file"]),
    ],
)
def test_bad_values_name_the_key_and_what_was_found(key: str, value: Any,
                                                    expected: list[str]) -> None:
    message = spec_error({**BASE, key: value})
    for part in expected:
        assert part in message
    assert message.count(f"got {value!r}") <= 1  # what was found is said once, not twice


def test_longest_allowed_name() -> None:
    assert spec_from_dict({**BASE, "name": "a" + "-9" * 19 + "z"}).name == "a" + "-9" * 19 + "z"


def test_missing_required_keys() -> None:
    message = spec_error({"name": "a", "model": "/m", "input": "/x.csv"})
    assert "output: required key is missing" in message
    message = spec_error({"model": "/m", "input": "/x.csv", "output": "/o.csv"})
    assert "name: required key is missing" in message
    assert "input: required" in spec_error({"name": "a", "model": "/m", "output": "/o.csv"})
    assert "model: required" in spec_error({**BASE, "model": None})


def test_every_error_is_reported_at_once() -> None:
    message = spec_error({**BASE, "format": "xml", "chunk_size": "abc", "bogus": 1})
    assert "format:" in message and "chunk_size:" in message and "'bogus'" in message
    assert len(message.splitlines()) == 3


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "churn"\ninput = "a.csv"\nmodel = churn.joblib\n')
    message = load_error(path)
    assert "not valid TOML" in message
    assert "line 3" in message
    assert str(path) in message


def test_missing_job_file(tmp_path: Path) -> None:
    assert "does not exist" in load_error(tmp_path / "nope.toml")


# -- overrides ----------------------------------------------------------------------------------
def test_set_overrides_are_typed(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    spec = load_spec(path, ["chunks=8", "resources.cpu=2", "input=data/*.csv"])
    assert spec.chunks == 8
    assert spec.resources.cpu == 2.0
    assert spec.resources.memory_gb == 1.5  # the rest of the table is kept
    assert spec.input == str(tmp_path.resolve() / "data" / "*.csv")
    assert spec.format == "csv"
    spec = load_spec(path, ["overwrite=true", "timeout=2h", 'id_columns=["a", "b"]'])
    assert spec.overwrite is True
    assert spec.timeout == 7200.0
    assert spec.id_columns == ["a", "b"]


def test_set_of_chunk_size_replaces_chunks_but_the_file_may_not_set_both(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    replaced = load_spec(path, ["chunk_size=512KiB"])  # issue 13: --set swaps one for the other
    assert (replaced.chunk_size, replaced.chunks) == (512 * 1024, None)
    both = write(tmp_path, VALID.replace("chunks = 4\n", "chunks = 4\nchunk_size = 1024\n"), "job2.toml")
    assert "chunk_size and chunks: set one, not both" in load_error(both)


def test_set_creates_missing_tables(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.split("[resources]")[0])
    assert load_spec(path, ["resources.memory_gb=4"]).resources.memory_gb == 4.0


def test_set_errors(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    assert "expected key=value" in load_error(path, ["chunks"])
    assert "name is not a table" in load_error(path, ["name.x=1"])
    assert "unknown key 'chunkz'" in load_error(path, ["chunkz=3"])


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("chunks=8", (["chunks"], 8)),
        ("resources.cpu=2.5", (["resources", "cpu"], 2.5)),
        ("overwrite=false", (["overwrite"], False)),
        ("input=data/*.csv", (["input"], "data/*.csv")),
        ('name="2024"', (["name"], "2024")),
        ("timeout=30m", (["timeout"], "30m")),
        (" chunks = 3", (["chunks"], 3)),
        ("scorer=python3 a.py --flag=1", (["scorer"], "python3 a.py --flag=1")),
    ],
)
def test_parse_override(item: str, expected: tuple[list[str], Any]) -> None:
    assert parse_override(item) == expected


# -- format inference and exclusive keys --------------------------------------------------------
@pytest.mark.parametrize(
    ("input_", "expected"),
    [("x.csv", "csv"), ("data/*.CSV", "csv"), ("x.jsonl", "jsonl"), ("x.ndjson", "jsonl"),
     ("data/*.parquet", "parquet"), ("part-*.csv", "csv")],
)
def test_format_from_the_extension(input_: str, expected: str) -> None:
    assert spec_from_dict({**BASE, "input": "/d/" + input_}).format == expected


def test_explicit_format_wins_and_unknown_extensions_need_one() -> None:
    assert spec_from_dict({**BASE, "input": "/d/x.csv", "format": "jsonl"}).format == "jsonl"
    for input_ in ("/d/data", "/d/data/", "/d/x.txt", "/d/*"):
        assert "format: could not infer it" in spec_error({**BASE, "input": input_})
    spec = spec_from_dict({**BASE, "input": "/d/x.txt", "format": "jsonl"})
    assert spec.effective_format == "jsonl"


def test_mutually_exclusive_keys() -> None:
    assert "chunk_size and chunks: set one, not both" in spec_error(
        {**BASE, "chunk_size": "1MB", "chunks": 3})
    command = {"name": "s", "output": "/o/out.txt", "runtime": "command", "scorer": "echo"}
    assert "input and shards: set one, not both" in spec_error(
        {**command, "input": "/d/x.csv", "shards": 4})
    spec = spec_from_dict({**command, "shards": 4, "bins": 10})
    assert (spec.shards, spec.bin_count, spec.input) == (4, 10, None)
    assert spec_from_dict({**command, "shards": 4}).bin_count == 100
    assert "bins: must be >= shards" in spec_error({**command, "shards": 4, "bins": 3})
    assert "bins: only meaningful with `shards`" in spec_error({**BASE, "bins": 3})
    assert 'shards: need runtime = "command"' in spec_error({**BASE, "input": None, "shards": 2})


def test_records_format_needs_a_usable_pattern() -> None:
    records = {**BASE, "input": "/d/reads.fastq", "format": "records", "scorer": "/s/score.py"}
    pattern = r"@[^\n]*\n[ACGTN]*\n\+[^\n]*\n[^\n]*\n"
    assert spec_from_dict({**records, "record_pattern": pattern}).record_pattern == pattern
    assert "record_pattern: required" in spec_error(records)
    assert "matches an empty string" in spec_error({**records, "record_pattern": r"[^\n]*"})
    assert "not a valid regular expression" in spec_error({**records, "record_pattern": "(@"})
    assert "only used with format" in spec_error({**BASE, "record_pattern": "x\n"})
    assert 'needs a scoring script or a command' in spec_error(
        {**records, "scorer": "predict", "record_pattern": pattern})


def test_command_runtime_needs_a_command() -> None:
    raw = {"name": "c", "input": "/d/x.csv", "output": "/o/y.txt", "runtime": "command"}
    assert 'scorer: with runtime = "command"' in spec_error(raw)
    assert spec_from_dict({**raw, "scorer": "wc -l"}).model is None


def test_spec_is_frozen() -> None:
    spec = spec_from_dict(BASE)
    with pytest.raises(ValueError, match="frozen"):
        spec.name = "b"  # type: ignore[misc]
    assert isinstance(spec, JobSpec)


# -- units --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("64MB", 64_000_000), ("4MiB", 4 * 2**20), ("512KiB", 512 * 1024), ("1024", 1024),
     (1024, 1024), ("1.5KB", 1500), (" 10 kb ", 10_000), ("2g", 2 * 2**30), ("1GB", 10**9),
     ("3TiB", 3 * 2**40), ("7b", 7), ("0.5MB", 500_000)],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["abc", "", "MB", "-5MB", "0", "0KB", "1e3", "5 parsecs",
                                 "0.0001KB", 0, -1, True])
def test_parse_size_refuses(bad: str | int) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30m", 1800.0), ("2h", 7200.0), ("90s", 90.0), ("90", 90.0), (90, 90.0), (1.5, 1.5),
     ("1.5h", 5400.0), ("2 min", 120.0), ("1d", 86400.0), ("10M", 600.0)],
)
def test_parse_duration(text: str | float, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["soon", "", "-3s", "0", "0s", "5 weeks", "h", 0, -1.0, False])
def test_parse_duration_refuses(bad: str | float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10**9), st.sampled_from([("", 1), ("KiB", 1024), ("MB", 10**6)]))
def test_parse_size_of_whole_numbers(n: int, unit: tuple[str, int]) -> None:
    suffix, factor = unit
    assert parse_size(f"{n}{suffix}") == n * factor
    assert parse_size(f"{n} {suffix.lower()}") == n * factor


def test_format_size() -> None:
    assert format_size(999) == "999 B"
    assert format_size(1500) == "1.5 KB"
    assert format_size(64_000_000) == "64.0 MB"
    assert format_size(2 * 10**9) == "2.0 GB"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("chunk_size", 1.5, "whole number of bytes"),
        ("chunks", True, "valid integer"),
        ("retries", True, "valid integer"),
        ("timeout", float("inf"), "finite duration"),
    ],
)
def test_values_that_would_be_silently_coerced_are_refused(key: str, value: object, expected: str) -> None:
    raw = {"name": "j", "input": "x.csv", "output": "o.csv", "model": "m.joblib", key: value}
    with pytest.raises(SpecError, match=expected):
        spec_from_dict(raw)


def test_sizes_are_exact_decimals() -> None:
    assert parse_size("1.005KB") == 1005
    assert parse_size("576460752305MB") == 576_460_752_305 * 10**6


# -- bad rows: on_error, the budgets, encoding ---------------------------------------------------
def test_on_error_budgets_and_encoding() -> None:
    spec = spec_from_dict({**BASE, "on_error": "skip", "max_failed_rows": 10,
                           "max_failed_fraction": 0.001, "encoding": "Latin-1"})
    assert (spec.on_error, spec.max_failed_rows, spec.max_failed_fraction) == ("skip", 10, 0.001)
    assert spec.encoding == "iso8859-1"  # Python's own name for the codec
    assert spec_from_dict(BASE).on_error == "fail" and spec_from_dict(BASE).encoding == "utf-8"


@pytest.mark.parametrize(("keys", "needle"), [
    ({"on_error": "ignore"}, "on_error: Input should be 'fail' or 'skip'"),
    ({"max_failed_rows": 5}, 'max_failed_rows: only used with on_error = "skip"'),
    ({"on_error": "skip", "max_failed_fraction": 1.5}, "max_failed_fraction: Input should be less"),
    ({"on_error": "skip", "max_failed_rows": -1}, "max_failed_rows: Input should be greater"),
    ({"encoding": "klingon"}, "encoding: 'klingon' is not a text encoding Python knows"),
    ({"runtime": "r", "model": "/m/m.rds", "encoding": "latin-1"},
     'encoding: runtime = "r" reads utf-8 input'),
])
def test_bad_row_keys_are_checked(keys: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict({**BASE, **keys})
    assert needle in str(err.value)


def test_budgets_do_not_change_the_job_id(tmp_path: Path) -> None:
    """Raising a budget that stopped a job resumes it (its finished tasks are kept): the bad-row
    budgets, and the evictions a task may have without spending a retry."""
    from serverless_score.planning import make_plan

    (tmp_path / "x.csv").write_text("a\n1\n")
    (tmp_path / "m.joblib").write_bytes(b"model")
    keys = {**BASE, "input": str(tmp_path / "x.csv"), "model": str(tmp_path / "m.joblib"),
            "on_error": "skip"}
    ids = {make_plan(spec_from_dict({**keys, **extra})).job_id
           for extra in ({}, {"max_failed_rows": 1}, {"max_failed_fraction": 0.5},
                         {"azure": {"max_evictions": 7}}, {"azure": {"max_evictions": 0}})}
    assert len(ids) == 1
    assert make_plan(spec_from_dict({**keys, "on_error": "fail"})).job_id not in ids
