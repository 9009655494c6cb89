"""``serverless-score init MODEL INPUT``: a commented starter job file for a model and an input.

The runtime comes from the model's extension (``.rds`` is R, ``.joblib``/``.pkl`` Python), the
paths are written relative to the job file (as the job file reads them), and the file is only
written when it validates and nothing is there yet.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import ScoreError, SpecError
from ..spec import load_spec

err_console = Console(stderr=True)

RUNTIME_BY_SUFFIX = {".rds": "r", ".joblib": "python", ".pkl": "python", ".pickle": "python"}


def infer_runtime(model: Path) -> str:
    runtime = RUNTIME_BY_SUFFIX.get(model.suffix.lower())
    if runtime is None:
        raise SpecError(
            f"model: cannot tell the runtime from the extension of {str(model)!r}",
            hint="Use an .rds (R, saveRDS) or .joblib/.pkl (Python) model, or give --runtime r|python.")
    return runtime


def job_name(model: Path) -> str:
    """A valid job name from the model's file name: ``Churn_Forest.rds`` -> ``churn-forest``."""
    name = re.sub(r"[^a-z0-9]+", "-", model.stem.lower()).strip("-")[:40].strip("-")
    return name or "scoring"


def _relative(path: Path, base: Path) -> str:
    return os.path.relpath(path.resolve(), base.resolve())


def _columns(path: Path) -> list[str]:
    """A CSV input's header (of its first file, for a folder); [] when there is none to read."""
    first = path if path.is_file() else next(
        (p for p in sorted(path.rglob("*.csv")) if p.is_file()), None) if path.is_dir() else None
    if first is None or first.suffix.lower() != ".csv":
        return []
    try:
        with open(first, encoding="utf-8", newline="") as f:
            return next(csv.reader(io.StringIO(f.readline())), [])
    except (OSError, UnicodeDecodeError):
        return []


def render_job(*, name: str, runtime: str, model: str, input_: str, output: str,
               columns: list[str]) -> str:
    """The job file's text: the keys a first run needs, each with a comment, and the keys one
    usually sets next, commented out."""
    model_note = ("an .rds written by saveRDS(); a real Rscript loads it once per worker"
                  if runtime == "r" else "a joblib or pickle file")
    lines = [
        "# A serverless-score job. Every key: README.md, \"The job file\".",
        "# Check it with `serverless-score plan FILE`, run it with `serverless-score run FILE`.",
        "",
        "# lowercase letters, digits and '-'; used in job ids and group names",
        f'name = "{name}"',
        f'runtime = "{runtime}"',
        f"# {model_note}; paths are relative to this file",
        f"model = {_toml(model)}",
        "# a file, a folder (every non-hidden file in it and its subfolders) or a glob",
        f"input = {_toml(input_)}",
        "# the merged scores; the manifest (.manifest.json) and work folder (.work) go beside it",
        f"output = {_toml(output)}",
        "# input columns copied to the output, before the scores"
        + (f" (the input's columns: {', '.join(columns)})" if columns else ""),
        "id_columns = []",
        "",
    ]
    if runtime == "r":
        lines += ["# extra predict() arguments, e.g. class probabilities of a classifier",
                  '# predict_args = { type = "prob" }',
                  "# or your own score <- function(model, data) in an R script",
                  '# scorer = "score.R"']
    else:
        lines += ["# default auto: predict_proba when the model has it, else predict",
                  '# predict_method = "predict"',
                  "# or your own score(model, data) in a Python script",
                  '# scorer = "score.py"']
    lines += [
        "# how to split the input (default: tasks of ~64 MB): a number of tasks, or a size",
        "# chunks = 8",
        '# chunk_size = "64MB"',
        "# workers at once (default: the CPU count)",
        "# max_parallel = 4",
        "# local (default), docker or aci",
        '# backend = "docker"',
        "",
        "# [resources]",
        "# cpu = 1",
        "# memory_gb = 1.5",
        "",
    ]
    return "\n".join(lines)


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init(
    model: Annotated[Path, typer.Argument(help="The model file: .rds (R) or .joblib/.pkl (Python).",
                                          show_default=False)],
    input_: Annotated[Path, typer.Argument(metavar="INPUT", help="The input: a file, a folder or a glob.",
                                           show_default=False)],
    job: Annotated[Path, typer.Option("--job", "-o", help="The job file to write.")] = Path("job.toml"),
    output: Annotated[str | None, typer.Option(help="The output (default: out/NAME-scores.csv).")] = None,
    name: Annotated[str | None, typer.Option(help="The job name (default: from the model's file name).")] = None,
    runtime: Annotated[str | None, typer.Option(help="r or python (default: from the model's extension).")] = None,
) -> None:
    """Write a commented starter job file for a model and an input."""
    try:
        if job.exists():
            raise SpecError(f"{str(job)!r} already exists; it was not changed",
                            hint="Give another name with --job, or remove it first.")
        chosen = runtime or infer_runtime(model)
        if chosen not in ("r", "python"):
            raise SpecError(f"--runtime: expected r or python; got {chosen!r}")
        base = job.parent
        job_name_ = name or job_name(model)
        text = render_job(
            name=job_name_, runtime=chosen, model=_relative(model, base),
            input_=_relative(input_, base) if not any(c in str(input_) for c in "*?[") else str(input_),
            output=output or f"out/{job_name_}-scores.csv", columns=_columns(input_))
        base.mkdir(parents=True, exist_ok=True)
        try:
            with open(job, "x", encoding="utf-8") as f:  # never over a file that appeared meanwhile
                f.write(text)
        except FileExistsError:
            raise SpecError(f"{str(job)!r} already exists; it was not changed") from None
        except OSError as err:
            raise SpecError(f"cannot write {str(job)!r}: {err.strerror or err}") from None
        try:
            load_spec(job)
        except ScoreError:
            job.unlink()
            raise
    except ScoreError as err:
        err_console.print(f"[red]error:[/] {escape(err.message)}", highlight=False)
        if err.hint:
            err_console.print(f"[cyan]hint:[/] {escape(err.hint)}", highlight=False)
        raise typer.Exit(code=err.exit_code) from None
    err_console.print(f"wrote {escape(str(job))} ({chosen} runtime); next: serverless-score plan "
                      f"{escape(str(job))}", highlight=False)
