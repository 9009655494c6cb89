"""Container Instances prices from the Azure Retail Prices API (public, no sign-in), cached on disk.

One GET per page: ``$filter=serviceName eq 'Container Instances' and armRegionName eq '<region>'
and priceType eq 'Consumption'`` (``currencyCode='EUR'`` for another currency), following
``NextPageLink`` until it is null. The answer's ``Items`` hold, per region, the meters this tool
bills by (names as the API spells them; the Linux price, since Windows has its own surcharge
meter)::

    skuName "Standard"       meterName "Standard vCPU Duration"       unitOfMeasure "1 Hour"
    skuName "Standard"       meterName "Standard Memory Duration"     unitOfMeasure "1 GB Hour"
    skuName "Standard Spot"  meterName "Standard Spot vCPU Duration"  unitOfMeasure "1 Hour"
    skuName "Standard Spot"  meterName "Standard Spot Memory Duration" unitOfMeasure "1 GB Hour"

``region_prices`` turns those items into per-second prices (pure); ``fetch_items`` does the HTTP;
``cached_region`` keeps a region's items in the user's cache folder with the time they were read.
The endpoint is ``SERVERLESS_SCORE_RETAIL_PRICES_URL`` (tests point it at a local server; ``off``
never asks the network).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RETAIL_URL = "https://prices.azure.com/api/retail/prices"
URL_ENV = "SERVERLESS_SCORE_RETAIL_PRICES_URL"
CACHE_ENV = "SERVERLESS_SCORE_PRICE_CACHE"
SERVICE = "Container Instances"
CACHE_MAX_AGE = 7 * 86400.0  # a cached answer younger than this is used without asking again
TIMEOUT = 10.0  # seconds per page: plan must not hang on a machine without internet
MAX_PAGES = 200  # a NextPageLink loop (a server bug) ends here, not never

# "1 Hour", "1 GB Hour", "100 Seconds", "100 GB Seconds", "1 Second": a count, an optional GB, a unit.
_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(GB\s*)?(second|seconds|hour|hours)\s*$", re.I)
_SECONDS = {"second": 1.0, "seconds": 1.0, "hour": 3600.0, "hours": 3600.0}


class RetailError(Exception):
    """The API could not be read or did not answer as documented (the caller falls back)."""


@dataclass(frozen=True)
class Meters:
    """Per-second prices of one region and currency, read from the API's items."""

    region: str
    currency: str
    vcpu_second: float
    gb_second: float
    spot_vcpu_second: float | None
    spot_gb_second: float | None
    effective: str  # the newest effectiveStartDate among the meters used (YYYY-MM-DD)


def endpoint() -> str | None:
    """The API's URL, or None when asking the network is switched off."""
    url = os.environ.get(URL_ENV, RETAIL_URL).strip()
    return None if url.lower() in ("", "off", "none", "0") else url


def per_second(price: float, unit: str) -> float:
    """A price per ``unitOfMeasure`` as a price per second (per vCPU or per GB)."""
    match = _UNIT.match(unit or "")
    if match is None:
        raise RetailError(f"unknown unitOfMeasure {unit!r}")
    return price / (float(match.group(1)) * _SECONDS[match.group(3).lower()])


def query_url(base: str, region: str | None, currency: str) -> str:
    """The first page's URL: every Consumption meter of the service (in one region if given)."""
    clauses = [f"serviceName eq '{SERVICE}'", "priceType eq 'Consumption'"]
    if region:
        clauses.insert(1, f"armRegionName eq '{region}'")
    params = {"$filter": " and ".join(clauses)}
    if currency.upper() != "USD":
        params["currencyCode"] = f"'{currency.upper()}'"
    # "$filter" and its quotes as the API's own examples write them (%24/%27 work too).
    query = urllib.parse.urlencode(params, safe="$'", quote_via=urllib.parse.quote)
    return f"{base}?{query}"


def fetch_items(url: str, *, timeout: float = TIMEOUT) -> Iterator[dict[str, Any]]:
    """Every item of every page from ``url`` on, following ``NextPageLink``."""
    pages = 0
    next_url: str | None = url
    while next_url:
        pages += 1
        if pages > MAX_PAGES:
            raise RetailError(f"more than {MAX_PAGES} pages from {url}: NextPageLink loops")
        page = _get_json(next_url, timeout)
        items = page.get("Items")
        if not isinstance(items, list):
            raise RetailError(f"{next_url}: the answer has no Items list")
        yield from (i for i in items if isinstance(i, dict))
        link = page.get("NextPageLink")
        next_url = link if isinstance(link, str) and link else None


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "serverless-score"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            data = json.loads(answer.read())
    except (OSError, ValueError) as err:  # URLError, HTTPError and timeouts are OSErrors
        raise RetailError(f"{url}: {err}") from err
    if not isinstance(data, dict):
        raise RetailError(f"{url}: expected a JSON object")
    return data


def _meter_kind(item: dict[str, Any]) -> tuple[bool, str] | None:
    """(spot, "vcpu" | "gb") for a Linux vCPU or memory duration meter of Container Instances,
    None for any other (Windows surcharge, GPU, confidential, reservations)."""
    if item.get("serviceName") != SERVICE or item.get("type", "Consumption") != "Consumption":
        return None
    if item.get("productName", SERVICE) != SERVICE:  # "Container Instances with GPU"
        return None
    sku = str(item.get("skuName", ""))
    if sku not in ("Standard", "Standard Spot"):  # not "Confidential containers ACI", "K80"...
        return None
    meter = str(item.get("meterName", ""))
    if "windows" in meter.lower():
        return None
    spot = sku == "Standard Spot" or "spot" in meter.lower()
    if meter.endswith("vCPU Duration"):
        return spot, "vcpu"
    if meter.endswith("Memory Duration"):
        return spot, "gb"
    return None


def region_prices(items: Iterable[dict[str, Any]], region: str, currency: str = "USD",
                  now: datetime | None = None) -> Meters | None:
    """The region's per-second Standard (and Spot, when sold there) prices, from API items; None
    when the items have no Standard vCPU and memory meter for it. Of several prices of one meter
    the newest already in effect wins (the API lists a coming change beside the current one)."""
    now = now or datetime.now(UTC)
    best: dict[tuple[bool, str], tuple[str, float]] = {}
    for item in items:
        if str(item.get("armRegionName", "")).lower() != region.lower():
            continue
        if float(item.get("tierMinimumUnits") or 0) > 0:
            continue
        if str(item.get("currencyCode", currency)).upper() != currency.upper():
            continue
        kind = _meter_kind(item)
        if kind is None:
            continue
        start = str(item.get("effectiveStartDate") or "")
        if start and _date(start) > now:
            continue
        try:
            raw = float(item.get("retailPrice", item.get("unitPrice")) or 0.0)
        except (TypeError, ValueError):
            raise RetailError(f"{item.get('meterName')!r}: retailPrice is not a number") from None
        price = per_second(raw, str(item.get("unitOfMeasure", "")))
        if kind not in best or start > best[kind][0]:
            best[kind] = (start, price)
    if (False, "vcpu") not in best or (False, "gb") not in best:
        return None
    spot_cpu, spot_gb = best.get((True, "vcpu")), best.get((True, "gb"))
    newest = max(s for s, _ in best.values())
    return Meters(region=region.lower(), currency=currency.upper(),
                  vcpu_second=best[(False, "vcpu")][1], gb_second=best[(False, "gb")][1],
                  spot_vcpu_second=spot_cpu[1] if spot_cpu and spot_gb else None,
                  spot_gb_second=spot_gb[1] if spot_cpu and spot_gb else None,
                  effective=newest[:10])


def regions_in(items: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({str(i.get("armRegionName", "")).lower() for i in items
                   if _meter_kind(i) is not None and i.get("armRegionName")})


def _date(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- the cache ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cached:
    meters: Meters
    fetched_at: float  # epoch seconds the API was read
    url: str
    fresh: bool  # read now, or read less than CACHE_MAX_AGE ago

    @property
    def age_days(self) -> float:
        return max(0.0, (time.time() - self.fetched_at) / 86400)

    @property
    def read_on(self) -> str:
        return datetime.fromtimestamp(self.fetched_at, UTC).strftime("%Y-%m-%d")


def cache_dir() -> Path:
    """``SERVERLESS_SCORE_PRICE_CACHE``, else ``prices/`` in the user's cache folder."""
    from ..storage.config import cache_root

    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else cache_root() / "prices"


def _cache_file(region: str, currency: str) -> Path:
    return cache_dir() / f"aci-{region.lower()}-{currency.upper()}.json"


def read_cache(region: str, currency: str) -> Cached | None:
    path = _cache_file(region, currency)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        meters = region_prices(data["items"], region, currency)
        fetched = float(data["fetched_at"])
    except (OSError, ValueError, KeyError, TypeError, RetailError):
        return None
    if meters is None:
        return None
    return Cached(meters, fetched, str(data.get("url", "")),
                  fresh=time.time() - fetched < CACHE_MAX_AGE)


def _write_cache(region: str, currency: str, url: str, items: list[dict[str, Any]]) -> None:
    path = _cache_file(region, currency)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fetched_at": time.time(), "url": url, "items": items}),
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs the next plan a fetch


def cached_region(region: str, currency: str = "USD") -> tuple[Cached | None, str]:
    """The region's prices: from a fresh cache, else fetched now (and cached), else a stale
    cache; with what went wrong in words when the API could not be read ("" when it was)."""
    cached = read_cache(region, currency)
    if cached is not None and cached.fresh:
        return cached, ""
    base = endpoint()
    if base is None:
        return cached, f"{URL_ENV}=off"
    url = query_url(base, region, currency)
    try:
        items = [i for i in fetch_items(url) if _meter_kind(i) is not None]
        meters = region_prices(items, region, currency)
    except RetailError as err:
        return cached, str(err)
    if meters is None:
        return cached, f"the Retail Prices API has no Container Instances price for {region!r}"
    _write_cache(region, currency, url, items)
    return Cached(meters, time.time(), url, fresh=True), ""
