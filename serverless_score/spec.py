"""The job spec: one description of a scoring job for every target (local, Docker, ACI, Logic App).

A spec comes from a TOML job file, from ``--set key=value`` overrides, or from the Python API.
Validation happens here, before anything is created; every message names the key, what is
allowed and what was found. Unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .backends.registry import BACKENDS
from .errors import SpecError
from .secrets import Secret, redact
from .storage.uris import BlobUriError, is_blob_uri, parse_blob_uri, split_sas
from .units import parse_duration, parse_size

Format = Literal["csv", "jsonl", "parquet", "records"]
Runtime = Literal["python", "r", "command"]
BackendName = Literal["local", "docker", "aci"]

_FORMAT_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_R_NAME = re.compile(r"[A-Za-z.][A-Za-z0-9._]*")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
AVAILABLE_RUNTIMES = ("python", "r", "command")
StorageCredential = Literal["auto", "default", "connection_string", "key", "sas"]
WorkerAccess = Literal["auto", "sas", "identity"]
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
UnknownLevel = Literal["error", "na"]
OnError = Literal["fail", "skip"]
# R-only keys: set with another runtime they would be silently ignored, so they are refused.
_R_ONLY_KEYS = ("predict_args", "on_unknown_level")


class Resources(BaseModel):
    """What each worker / container gets."""

    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(default=1.0, gt=0, le=32)
    memory_gb: float = Field(default=1.5, gt=0, le=240)


def parse_rate_windows(value: Any) -> tuple[tuple[int, float], ...]:
    """``[[100, "5m"], [300, "1h"]]`` -> ((100, 300.0), (300, 3600.0)): 1-4 windows, each a
    count of at least 1 and a duration ("90s", "5m", "1h" or seconds) of at most a day."""
    example = 'expected [[count, duration], ...] such as [[100, "5m"], [300, "1h"]]'
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= 4:
        raise ValueError(f"{example}, 1 to 4 windows")
    pairs = []
    for item in value:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ValueError(f"{example}; {item!r} is not a [count, duration] pair")
        count, duration = item
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"a window's count is a whole number >= 1, not {count!r}")
        seconds = parse_duration(duration)
        if seconds > 86400:
            raise ValueError(f"a window lasts at most a day, not {duration!r}")
        pairs.append((count, seconds))
    return tuple(pairs)


class AzureSettings(BaseModel):
    """The ``[azure]`` table. Blob Storage keys start with ``storage_`` (README: Blob Storage)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    storage_account: str | None = None
    storage_credential: StorageCredential = "auto"
    storage_endpoint: str | None = None
    worker_access: WorkerAccess = "auto"
    # Compute (backend = "aci"): where container groups are created and what they run as.
    # Each falls back to an environment variable (README: ACI backend), so one job file
    # serves several subscriptions.
    subscription_id: str | None = None
    resource_group: str | None = None
    location: str | None = None
    # Resource id of a user-assigned managed identity: blob access and ACR pull from the group.
    identity: str | None = None
    # Registry login server the images come from, e.g. myregistry.azurecr.io.
    registry: str | None = None
    # Creations per minute: ACI allows 100 creates per 5 minutes per subscription and region.
    creates_per_minute: int = Field(default=15, ge=1, le=100, strict=True)
    # ACI's windows per subscription and region, [[count, duration], ...]: every backend of one
    # process keeps all of them (README: Throttling and quota). Lower them when other tools
    # share the subscription; raise them only with a quota increase.
    create_rate: tuple[tuple[int, float], ...] = ((100, 300.0), (300, 3600.0))
    delete_rate: tuple[tuple[int, float], ...] = ((100, 300.0), (300, 3600.0))
    # A TOML price table (README: Cost) for plan's estimate, max_cost and the manifest's cost;
    # relative to the job file. Default: SERVERLESS_SCORE_PRICES, else the table shipped inside.
    price_file: str | None = None
    # The currency of the estimate and of the manifest's cost, as the Azure Retail Prices API
    # names it (USD, EUR, GBP...); the shipped table is in USD.
    currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    # "Spot": container groups on ACI's evictable capacity at the Spot price; an eviction
    # retries the group's tasks (README: Cost).
    priority: Literal["Regular", "Spot"] = "Regular"
    # Evictions per task rerun without spending a retry; past them an eviction is an ordinary
    # failure (it spends the task's retries), so a region short of Spot capacity fails the job
    # instead of rerunning it for as long as they go on.
    max_evictions: int = Field(default=3, ge=0, strict=True)

    @field_validator("storage_account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT.fullmatch(value):
            raise ValueError(f"expected 3-24 lowercase letters and digits; got {value!r}")
        return value

    @field_validator("create_rate", "delete_rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> tuple[tuple[int, float], ...]:
        return parse_rate_windows(value)

    @field_validator("price_file")
    @classmethod
    def _price_file(cls, value: str | None) -> str | None:
        if value is not None and ("://" in value or not value.strip()):
            raise ValueError(f"expected the path of a local TOML file; got {value!r}")
        return value

    @field_validator("storage_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith(("https://", "http://")) or "?" in value):
            raise ValueError("expected the account's blob endpoint, e.g. "
                             f"https://ACCOUNT.blob.core.usgovcloudapi.net; got {value!r}")
        return value.rstrip("/") if value else value


class MlflowSettings(BaseModel):
    """The ``[mlflow]`` table: where ``models:/`` and ``runs:/`` model URIs are resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Default: MLFLOW_TRACKING_URI. The registry is the tracking server's own.
    tracking_uri: str | None = None


class JobSpec(BaseModel):
    """A validated scoring job. Paths are resolved against the job file's directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: str | None = None
    input: str | None = None
    output: str
    format: Format | None = None
    record_pattern: str | None = None
    runtime: Runtime = "python"
    scorer: str = "predict"
    predict_method: str = "auto"
    predict_args: dict[str, Any] = Field(default_factory=dict)
    on_unknown_level: UnknownLevel = "error"
    id_columns: list[str] = Field(default_factory=list)
    # A record that cannot be parsed or scored: "fail" the job (after naming where it is), or
    # "skip" it into <output>.errors.csv; with skip, the job still fails past these budgets.
    on_error: OnError = "fail"
    max_failed_rows: int | None = Field(default=None, ge=0, strict=True)
    max_failed_fraction: float | None = Field(default=None, ge=0, le=1)
    # The input's text encoding (any Python codec name); outputs are always UTF-8.
    encoding: str = "utf-8"
    chunk_size: int | None = None
    chunks: int | None = Field(default=None, ge=1, le=100_000, strict=True)
    shards: int | None = Field(default=None, ge=1, le=100_000, strict=True)
    bins: int | None = Field(default=None, ge=1, strict=True)
    max_parallel: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1, le=1000,
                              strict=True)
    retries: int = Field(default=2, ge=0, le=20, strict=True)
    timeout: float = 3600.0
    # A task running this many times the median task (once no other task waits) gets a second
    # attempt on a free group; the first to finish wins. 0 turns second attempts off.
    straggler_factor: float = Field(default=3.0, ge=0)
    backend: BackendName = "local"
    # The container image (docker / aci backends). Unset: the built-in runner image of the
    # runtime (README: Images). Any image with the runner installed works.
    image: str | None = None
    # Refuse to start when the plan's cost estimate (USD) is above this.
    max_cost: float | None = Field(default=None, gt=0)
    overwrite: bool = False
    resources: Resources = Field(default_factory=Resources)
    azure: AzureSettings = Field(default_factory=AzureSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    # SAS tokens taken off the URLs of model/input/output (by container URI): kept out of the
    # fields, so plans, logs, manifests and job ids never hold them (see spec_from_dict).
    _sas: dict[str, Secret] = PrivateAttr(default_factory=dict)

    @property
    def sas_tokens(self) -> dict[str, Secret]:
        return dict(self._sas)

    @field_validator("model", "input", "output")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is None or not is_blob_uri(value):
            return value
        if split_sas(value)[1] is not None:
            raise ValueError("a URL with a query string (SAS) must be given through the job file, "
                             "--set or spec_from_dict, which keep the token out of the plan")
        try:
            parse_blob_uri(value)
        except BlobUriError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                "expected 1-40 lowercase letters, digits or '-', starting with a letter or digit "
                f"(it becomes part of container group names); got {value!r}"
            )
        return value

    @field_validator("predict_args")
    @classmethod
    def _predict_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        """They travel to R as JSON and become ``predict()`` arguments, so each key must be an R
        argument name and each value a string, number, boolean or array."""
        for key, item in value.items():
            if isinstance(item, dict):  # almost always an unquoted R name with a dot
                inner = next(iter(item), "x")
                raise ValueError(
                    f"{key}: a table; R argument names with a dot must be quoted in TOML, "
                    f'e.g. {{ "{key}.{inner}" = ... }}'
                )
            if not _R_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not an R argument name")
            try:
                json.dumps(item, allow_nan=False)
            except (TypeError, ValueError):
                raise ValueError(f"{key}: {item!r} cannot be passed to R (use a string, number, "
                                 "boolean or array)") from None
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs

        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"{value!r} is not a text encoding Python knows (e.g. utf-8, "
                             "latin-1, cp1252)") from None

    @field_validator("chunk_size", mode="before")
    @classmethod
    def _chunk_size(cls, value: Any) -> int | None:
        return None if value is None else parse_size(value)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("record_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value.encode())
        except re.error as err:
            raise ValueError(f"not a valid regular expression: {err}") from err
        if compiled.match(b"") is not None:
            raise ValueError("the pattern matches an empty string, so it cannot delimit records")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if self.shards is None and self.input is None:
            raise ValueError("input: required (a file, a directory or a glob), unless `shards` is set")
        if self.shards is not None and self.input is not None:
            raise ValueError("input and shards: set one, not both")
        if self.bins is not None and self.shards is None:
            raise ValueError("bins: only meaningful with `shards`")
        if self.shards is not None and self.bins is not None and self.bins < self.shards:
            raise ValueError(f"bins: must be >= shards ({self.shards}); got {self.bins}")
        if self.shards is not None and self.runtime != "command":
            raise ValueError("shards: need runtime = \"command\" (a command that reads SHARD_INDEX etc.)")
        if self.chunk_size is not None and self.chunks is not None:
            raise ValueError("chunk_size and chunks: set one, not both")
        if self.input is not None and self.format is None:
            raise ValueError(
                "format: could not infer it from the input's extension; "
                "set it to csv, jsonl, parquet or records"
            )
        if self.format == "records" and not self.record_pattern:
            raise ValueError('record_pattern: required with format = "records" (a regex matching one whole record)')
        if self.record_pattern and self.format != "records":
            raise ValueError('record_pattern: only used with format = "records"')
        if self.runtime == "command" and self.scorer == "predict":
            raise ValueError('scorer: with runtime = "command" set it to the shell command to run')
        if self.runtime == "python" and self.model is None:
            raise ValueError("model: required for runtime = \"python\" (path to a joblib/pickle file)")
        if self.on_error == "fail":
            for key in ("max_failed_rows", "max_failed_fraction"):
                if key in self.model_fields_set:
                    raise ValueError(f'{key}: only used with on_error = "skip"')
        if self.on_error == "skip" and self.runtime == "command":
            raise ValueError('on_error: "skip" needs runtime = "python" or "r" (a command '
                             "scores its records itself)")
        if self.encoding != "utf-8" and self.runtime == "command":
            raise ValueError("encoding: a command reads the input's bytes itself; leave it unset")
        if self.runtime == "r":
            self._check_r()
        else:
            self._check_not_r()
        if self.format == "records" and self.runtime == "python" and self.scorer == "predict":
            raise ValueError('scorer: format "records" needs a scoring script or a command, not "predict"')
        if self.runtime not in AVAILABLE_RUNTIMES:
            raise ValueError(f"runtime: {self.runtime!r} is not available in this version; use python, r or command")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: {self.backend!r} is not available in this version; use "
                             f"{' or '.join(BACKENDS)}")
        return self

    def _check_r(self) -> None:
        if self.model is None:
            raise ValueError('model: required for runtime = "r" (an .rds file written by saveRDS)')
        if self.format not in (None, "csv"):
            raise ValueError(f'format: runtime = "r" reads csv input; got {self.format!r}')
        if Path(self.output).suffix.lower() not in ("", ".csv"):
            raise ValueError(f'output: runtime = "r" writes csv; got {self.output!r} (use a .csv name)')
        if self.scorer != "predict" and not self.scorer.lower().endswith(".r"):
            raise ValueError(
                f'scorer: with runtime = "r" use "predict" or an R script (.R) that defines '
                f"score(model, data); got {self.scorer!r}"
            )
        if self.predict_args and self.scorer != "predict":
            raise ValueError('predict_args: only used with scorer = "predict" (a score.R calls '
                             "predict itself)")
        if self.encoding != "utf-8":
            raise ValueError(f'encoding: runtime = "r" reads utf-8 input; got {self.encoding!r} '
                             "(convert the file, e.g. iconv -f latin1 -t utf-8)")
        if "predict_method" in self.model_fields_set:
            raise ValueError('predict_method: Python only; with runtime = "r" use predict_args, '
                             'e.g. predict_args = { type = "prob" }')

    def _check_not_r(self) -> None:
        for key in _R_ONLY_KEYS:
            if key in self.model_fields_set:
                raise ValueError(f'{key}: only used with runtime = "r"')
        if self.runtime == "python" and self.model and self.model.lower().endswith(".rds"):
            raise ValueError(f'model: {self.model!r} is an R model; set runtime = "r"')
        if self.runtime == "python" and self.scorer.lower().endswith(".r"):
            raise ValueError(f'scorer: {self.scorer!r} is an R script; set runtime = "r"')

    @property
    def bin_count(self) -> int:
        """``bins``, else 100 (or one per shard, for more than 100 shards: every shard gets at
        least one bin)."""
        return self.bins if self.bins is not None else max(100, self.shards or 0)

    @property
    def effective_format(self) -> Format:
        assert self.format is not None
        return self.format


_PATH_KEYS = ("model", "input", "output")


def _infer_format(raw: dict[str, Any]) -> None:
    if "format" in raw or not isinstance(raw.get("input"), str):
        return
    suffix = Path(raw["input"].rstrip("/*")).suffix.lower()
    if suffix in _FORMAT_BY_SUFFIX:
        raw["format"] = _FORMAT_BY_SUFFIX[suffix]
    elif "://" not in raw["input"] and os.path.isdir(raw["input"]):
        output = raw.get("output")
        found = _folder_format(Path(raw["input"]), output if isinstance(output, str) else "")
        if found is not None:
            raw["format"] = found


def _folder_format(folder: Path, output: str) -> str | None:
    """A local folder whose (non-hidden) files all have one format's extension: that format.
    Files of no known format (a README) and the job's own output files (planning leaves them
    out of the input) do not count."""
    formats = {
        _FORMAT_BY_SUFFIX[p.suffix.lower()] for p in folder.rglob("*")
        if p.suffix.lower() in _FORMAT_BY_SUFFIX and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and not (output and (str(p) == output or str(p).startswith(output + ".")))
    }
    return formats.pop() if len(formats) == 1 else None


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Relative paths in a job file are relative to the job file, not to the caller's cwd."""
    for key in _PATH_KEYS:
        value = raw.get(key)
        if (isinstance(value, str) and "://" not in value and not os.path.isabs(value)
                and not value.startswith(("models:/", "runs:/"))):  # MLflow URIs, not paths
            raw[key] = str((base / os.path.expanduser(value)).resolve()) if value else value
    mlflow = raw.get("mlflow")
    mlflow = mlflow if isinstance(mlflow, dict) else {}
    tracking = mlflow.get("tracking_uri")
    if isinstance(tracking, str) and tracking.startswith("sqlite:///") and not tracking.startswith(
            "sqlite:////"):  # sqlite:///mlflow.db is relative: to the job file, like paths
        db = str((base / tracking.removeprefix("sqlite:///")).resolve())
        raw["mlflow"] = {**mlflow, "tracking_uri": f"sqlite:///{db}"}
    model = raw.get("model")
    if isinstance(model, str) and model.startswith("pins://"):
        board = model.removeprefix("pins://")  # a folder board is relative to the job file too
        if "://" not in board and not os.path.isabs(board):
            raw["model"] = "pins://" + str((base / os.path.expanduser(board)).resolve())
    azure = raw.get("azure")
    if isinstance(azure, dict):
        prices = azure.get("price_file")
        if isinstance(prices, str) and prices.strip() and "://" not in prices and not os.path.isabs(prices):
            raw["azure"] = {**azure, "price_file": str((base / os.path.expanduser(prices)).resolve())}
    scorer = raw.get("scorer")
    if not isinstance(scorer, str) or scorer == "predict" or raw.get("runtime") == "command":
        return  # a command is a shell line: its paths are the user's business
    if "://" not in scorer and not os.path.isabs(scorer):
        raw["scorer"] = str((base / scorer).resolve())


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"resources.cpu=2"`` -> (["resources", "cpu"], 2). Values are read as TOML when they parse
    (numbers, booleans, arrays), otherwise kept as strings, so ``--set input=data/*.csv`` just works."""
    if "=" not in item:
        raise SpecError(f"--set {item!r}: expected key=value, e.g. --set chunks=8")
    key, _, text = item.partition("=")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key.strip().split("."), value


def set_key(raw: dict[str, Any], path: list[str], value: Any, *, context: str) -> None:
    """``raw[path[0]][path[1]]... = value``, making tables on the way; ``context`` starts the
    error when a step is not a table (``--set 'a.b=1'`` where ``a`` is a string)."""
    target = raw
    for part in path[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise SpecError(f"{context}: {part} is not a table")
    target[path[-1]] = value


# Keys that say the same thing two ways: setting one with --set drops the other from the job
# file, so ``--set chunk_size=32MB`` on a job with ``chunks = 4`` means "use this instead".
_EXCLUSIVE = {"chunks": "chunk_size", "chunk_size": "chunks"}


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> None:
    """Apply ``--set key=value`` items to a job document (a TOML table) in place."""
    for item in overrides:
        path, value = parse_override(item)
        set_key(raw, path, value, context=f"--set {item!r}")
        if len(path) == 1 and path[0] in _EXCLUSIVE:
            raw.pop(_EXCLUSIVE[path[0]], None)


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _format_error(error: dict[str, Any], source: str) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        tables: dict[str, type[BaseModel]] = {"resources": Resources, "azure": AzureSettings}
        parent = tables.get(str(error["loc"][0]), JobSpec) if len(error["loc"]) > 1 else JobSpec
        allowed = _allowed_keys(parent)
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        suggestion = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{source}: unknown key {loc!r}{suggestion}; allowed keys: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{source}: {loc}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "literal_error":
        message = f"{message}; got {error.get('input')!r}"
    elif (
        "input" in error and not isinstance(error["input"], dict) and loc
        and f"got {error['input']!r}" not in message
    ):
        message = f"{message} (got {error['input']!r})"
    message = redact(message)
    return f"{source}: {loc}: {message}" if loc else f"{source}: {message}"


def _take_sas(raw: dict[str, Any]) -> dict[str, Secret]:
    """Split SAS tokens off the model/input/output URLs, by container URI."""
    tokens: dict[str, Secret] = {}
    for key in _PATH_KEYS:
        value = raw.get(key)
        if not isinstance(value, str):
            continue
        base, token = split_sas(value)
        if token is None:
            continue
        raw[key] = base
        with contextlib.suppress(BlobUriError):  # validation reports a malformed URI (sans token)
            tokens[parse_blob_uri(base).container_uri] = Secret(token)
    return tokens


def spec_from_dict(raw: dict[str, Any], *, base: Path | None = None, source: str = "job") -> JobSpec:
    """Validate a job given as a dict (the TOML document, an HTTP body, Python API keywords)."""
    raw = dict(raw)
    tokens = _take_sas(raw)
    if base is not None:
        _resolve_paths(raw, base)
    _infer_format(raw)
    try:
        spec = JobSpec.model_validate(raw)
        spec._sas = tokens
        return spec
    except ValidationError as err:
        messages = [_format_error(dict(e), source) for e in err.errors()]
        raise SpecError(
            "\n".join(messages),
            hint="See the job-file reference in README.md for every key and its allowed values.",
        ) from None


def load_spec(path: str | Path, overrides: list[str] | None = None) -> JobSpec:
    """Read a TOML job file, apply ``--set`` overrides and validate it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"job file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"job file {str(path)!r} cannot be read: {err}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(
            f"{path}: not valid TOML: {err}",
            hint="Strings need quotes (name = \"churn\"), tables go in [brackets].",
        ) from None
    apply_overrides(raw, overrides or [])
    return spec_from_dict(raw, base=path.resolve().parent, source=str(path))
