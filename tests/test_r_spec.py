"""Validation of the R keys of a job: runtime = "r", predict_args, on_unknown_level."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from serverless_score.errors import SpecError
from serverless_score.spec import spec_from_dict

BASE = {"name": "r", "input": "data.csv", "output": "out/scores.csv"}


def spec(**keys: Any) -> Any:
    return spec_from_dict({**BASE, **keys})


def error(**keys: Any) -> str:
    with pytest.raises(SpecError) as info:
        spec(**keys)
    return str(info.value)


def test_an_r_job_with_predict_args_and_na_levels() -> None:
    job = spec(runtime="r", model="m.rds", predict_args={"type": "prob", "num.threads": 1},
               on_unknown_level="na")
    assert job.runtime == "r"
    assert job.predict_args == {"type": "prob", "num.threads": 1}
    assert job.on_unknown_level == "na"
    assert spec(runtime="r", model="m.rds").on_unknown_level == "error"


@pytest.mark.parametrize(("keys", "message"), [
    ({"runtime": "r"}, 'model: required for runtime = "r"'),
    ({"runtime": "r", "model": "m.rds", "output": "s.parquet"}, 'runtime = "r" writes csv'),
    ({"runtime": "r", "model": "m.rds", "input": "d.jsonl"}, "runtime = \"r\" reads csv input; got 'jsonl'"),
    ({"runtime": "r", "model": "m.rds", "scorer": "score.py"}, "an R script (.R)"),
    ({"runtime": "r", "model": "m.rds", "scorer": "s.R", "predict_args": {"type": "prob"}},
     'predict_args: only used with scorer = "predict"'),
    ({"runtime": "r", "model": "m.rds", "predict_method": "predict"}, "predict_method: Python only"),
    ({"runtime": "r", "model": "m.rds", "on_unknown_level": "drop"}, "on_unknown_level: Input should be 'error' or 'na'"),
    ({"runtime": "r", "model": "m.rds", "predict_args": {"2x": 1}}, "'2x' is not an R argument name"),
    ({"runtime": "r", "model": "m.rds", "predict_args": {"num": {"threads": 1}}},
     'R argument names with a dot must be quoted in TOML, e.g. { "num.threads" = ... }'),
    ({"runtime": "r", "model": "m.rds", "predict_args": {"when": datetime.date(2026, 1, 1)}},
     "when: datetime.date(2026, 1, 1) cannot be passed to R"),
    ({"model": "m.joblib", "predict_args": {"type": "prob"}}, 'predict_args: only used with runtime = "r"'),
    ({"model": "m.joblib", "on_unknown_level": "na"}, 'on_unknown_level: only used with runtime = "r"'),
    ({"model": "m.rds"}, "'m.rds' is an R model; set runtime = \"r\""),
    ({"model": "m.joblib", "scorer": "score.R"}, "is an R script; set runtime = \"r\""),
])
def test_r_keys_are_checked_and_named(keys: dict[str, Any], message: str) -> None:
    assert message in error(**keys)


def test_r_scorer_paths_resolve_against_the_job_file(tmp_path: Any) -> None:
    job = spec_from_dict({**BASE, "runtime": "r", "model": "m.rds", "scorer": "score.R"},
                         base=tmp_path)
    assert job.scorer == str(tmp_path / "score.R")
    assert job.model == str(tmp_path / "m.rds")
