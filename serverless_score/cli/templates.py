"""``serverless-score templates ...``: Logic App templates for a job, and their deployment."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..errors import ScoreError, SpecError

app = typer.Typer(help="Logic App templates that run a job on a schedule or on an HTTP call.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
err_console = Console(stderr=True)


def parameters_path(template: Path) -> Path:
    """``out/churn.json`` -> ``out/churn.parameters.json`` (the az CLI's convention)."""
    return template.with_name(template.name.removesuffix(".json") + ".parameters.json")


@app.command()
def render(
    job: Annotated[Path, typer.Argument(help="The job file (TOML).", show_default=False)],
    trigger: Annotated[str, typer.Option(help="timer (Recurrence) or http (Request).")] = "timer",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the template here "
                      "and its parameters beside it (NAME.parameters.json); default: print both.")] = None,
    image: Annotated[str | None, typer.Option(help="Runner image (default: the job's image).")] = None,
    identity: Annotated[str | None, typer.Option(help="User-assigned identity resource id "
                        "(default: the job's \\[azure] identity).")] = None,
    registry: Annotated[str | None, typer.Option(help="Registry login server (default: \\[azure] registry).")] = None,
    job_uri: Annotated[str | None, typer.Option(help="Read the job from this blob at run time "
                       "instead of embedding it.")] = None,
    name: Annotated[str | None, typer.Option(help="Logic App name (default serverless-score-JOBNAME).")] = None,
    frequency: Annotated[str, typer.Option(help="timer: Minute, Hour, Day, Week or Month.")] = "Day",
    interval: Annotated[int, typer.Option(help="timer: every INTERVAL units.", min=1)] = 1,
    start: Annotated[str | None, typer.Option(help="timer: first run, YYYY-MM-DDThh:mm:ss in "
                     "--time-zone (default: next midnight).")] = None,
    time_zone: Annotated[str, typer.Option(help="timer: Windows time zone name.")] = "UTC",
    poll_seconds: Annotated[int, typer.Option(help="Seconds between looks at the controller.", min=1)] = 30,
    timeout: Annotated[str, typer.Option(help="Longest wait for the job, ISO 8601.")] = "PT6H",
    arm_endpoint: Annotated[str, typer.Option(help="ARM endpoint (sovereign clouds).")] = "https://management.azure.com",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a job key (repeatable).")] = None,
) -> None:
    """Generate the ARM template and its parameters for JOB (the job is their one source)."""
    from ..templates import Options, read_job
    from ..templates import render as render_job
    from . import _fail

    try:
        raw = read_job(job, set_ or [])
        options = Options(image=image, identity=identity, registry=registry, job_uri=job_uri,
                          workflow_name=name, frequency=frequency, interval=interval, start=start,
                          time_zone=time_zone, poll_seconds=poll_seconds, timeout=timeout,
                          arm_endpoint=arm_endpoint)
        template, parameters = render_job(raw, trigger, options, source=str(job))  # type: ignore[arg-type]
    except ScoreError as err:
        raise _fail(err, as_json=False, debug=False) from None
    if output is None:
        print(json.dumps({"template": template, "parameters": parameters}, indent=2))
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
    params = parameters_path(output)
    params.write_text(json.dumps(parameters, indent=2) + "\n", encoding="utf-8")
    err_console.print(f"wrote {output} and {params}", highlight=False)
    err_console.print(f"deploy: serverless-score templates deploy {output} -g RESOURCE_GROUP",
                      highlight=False)


def deploy_command(template: Path, parameters: Path, resource_group: str,
                   name: str | None) -> list[str]:
    command = ["az", "deployment", "group", "create", "--resource-group", resource_group,
               "--template-file", str(template), "--parameters", f"@{parameters}"]
    if name:
        command += ["--name", name]
    return command


@app.command()
def deploy(
    template: Annotated[Path, typer.Argument(help="A template written by `templates render -o`.")],
    resource_group: Annotated[str, typer.Option("--resource-group", "-g", help="Target resource group.")],
    parameters: Annotated[Path | None, typer.Option(help="Parameters file (default: TEMPLATE's "
                          ".parameters.json).")] = None,
    name: Annotated[str | None, typer.Option(help="Deployment name.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Run the command (default: only print it).")] = False,
) -> None:
    """Print (and with --yes run) the `az deployment group create` command for a template."""
    from . import _fail

    params = parameters or parameters_path(template)
    try:
        for path in (template, params):
            if not path.is_file():
                raise SpecError(f"{path} does not exist",
                                hint="Write it with: serverless-score templates render JOB -o FILE")
        command = deploy_command(template, params, resource_group, name)
        print(shlex.join(command))
        if not yes:
            err_console.print("(not run: add --yes to run it; `az login` first)", highlight=False)
            return
        if shutil.which("az") is None:
            raise ScoreError("the Azure CLI (az) is not installed",
                             hint="Install it (https://aka.ms/azcli) or run the printed command "
                                  "where it is.")
    except ScoreError as err:
        raise _fail(err, as_json=False, debug=False) from None
    raise typer.Exit(code=subprocess.run(command, check=False).returncode)
