"""Price tables as data: ``aci_prices.toml`` beside this module, overridable by the user.

Which table: the job's ``[azure] price_file``, else ``SERVERLESS_SCORE_PRICES``, else only the
shipped one. A user table is laid over the shipped one: its regions add to or replace the shipped
regions, its ``[estimate]`` keys replace the shipped assumptions. Every figure carries its date
and source, and the estimate prints them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..planning.cost import Assumptions, RegionPrice

PRICES_ENV = "SERVERLESS_SCORE_PRICES"
SHIPPED = Path(__file__).with_name("aci_prices.toml")
# Backends that run on machines you already pay for: their groups cost 0 here.
UNBILLED = frozenset({"local", "docker"})
# Where a job without `[azure] location` says its region (the ACI backend's fallback).
LOCATION_ENV = "SERVERLESS_SCORE_AZURE_LOCATION"


@dataclass(frozen=True)
class PriceTable:
    sources: tuple[str, ...]  # the files read, shipped first
    currency: str
    default_region: str
    regions: dict[str, dict[str, Any]] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)

    def price(self, region: str) -> RegionPrice | None:
        entry = self.regions.get(region.lower())
        if entry is None:
            return None
        return RegionPrice(
            region=region.lower(), vcpu_second=float(entry["vcpu_second"]),
            gb_second=float(entry["gb_second"]), currency=str(entry.get("currency", self.currency)),
            as_of=str(entry.get("as_of", "unknown")), source=str(entry.get("source", "unknown")),
            verified=bool(entry.get("verified", False)),
        )

    def assumptions(self, backend: str) -> Assumptions:
        startup = self.estimate.get("startup_seconds", {})
        return Assumptions(
            throughput_mb_per_s=float(self.estimate["throughput_mb_per_s"]),
            startup_seconds=float(startup.get(backend, startup.get("aci", 0.0))),
            shard_seconds=float(self.estimate["shard_seconds"]),
        )


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"price table {str(path)!r} does not exist",
                        hint=f"Fix [azure] price_file or {PRICES_ENV}, or unset it to use the "
                             "shipped table.") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SpecError(f"price table {str(path)!r} cannot be read: {err}") from None


def _positive(path: Path, where: str, value: Any, *, zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (
        value >= 0 if zero else value > 0)
    if not ok:
        raise SpecError(f"price table {str(path)!r}: {where}: expected a "
                        f"{'non-negative' if zero else 'positive'} number; got {value!r}")
    return float(value)


def _check(path: Path, data: dict[str, Any]) -> None:
    """Refuse a table that would give a silently wrong figure: names the file, key and value."""
    regions = data.get("regions", {})
    if not isinstance(regions, dict):
        raise SpecError(f"price table {str(path)!r}: [regions] must be a table of regions")
    for name, entry in regions.items():
        if not isinstance(entry, dict):
            raise SpecError(f"price table {str(path)!r}: regions.{name}: expected a table with "
                            "vcpu_second and gb_second")
        for key in ("vcpu_second", "gb_second"):
            if key not in entry:
                raise SpecError(f"price table {str(path)!r}: regions.{name}.{key}: missing")
            _positive(path, f"regions.{name}.{key}", entry[key], zero=True)
    estimate = data.get("estimate", {})
    for key in ("throughput_mb_per_s", "shard_seconds"):
        if key in estimate:
            _positive(path, f"estimate.{key}", estimate[key])
    for backend, seconds in estimate.get("startup_seconds", {}).items():
        _positive(path, f"estimate.startup_seconds.{backend}", seconds, zero=True)


def load_prices(override: str | Path | None = None) -> PriceTable:
    """The shipped table, with ``override`` (or ``SERVERLESS_SCORE_PRICES``) laid over it."""
    shipped = _read(SHIPPED)
    _check(SHIPPED, shipped)
    sources = [str(SHIPPED)]
    regions = {k.lower(): dict(v) for k, v in shipped.get("regions", {}).items()}
    estimate = dict(shipped.get("estimate", {}))
    currency, default_region = shipped["currency"], shipped["default_region"]
    user_path = override or os.environ.get(PRICES_ENV) or None
    if user_path:
        path = Path(user_path).expanduser()
        user = _read(path)
        _check(path, user)
        sources.append(str(path))
        regions.update({k.lower(): dict(v) for k, v in user.get("regions", {}).items()})
        user_estimate = user.get("estimate", {})
        startup = {**estimate.get("startup_seconds", {}), **user_estimate.get("startup_seconds", {})}
        estimate = {**estimate, **user_estimate, "startup_seconds": startup}
        currency = user.get("currency", currency)
        default_region = user.get("default_region", default_region)
    return PriceTable(tuple(sources), str(currency), str(default_region).lower(), regions, estimate)


def job_region(location: str | None, table: PriceTable) -> tuple[str, bool]:
    """(region, assumed): the job's ``[azure] location``, else the location environment variable,
    else the table's default region (``assumed`` is then True, and the estimate says so)."""
    region = location or os.environ.get(LOCATION_ENV)
    if region:
        return region.lower().replace(" ", ""), False
    return table.default_region, True
