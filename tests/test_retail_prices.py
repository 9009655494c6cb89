"""Prices from the Azure Retail Prices API: the meters read from its items, its paging, the cache
in the user's cache folder, the fallbacks when it cannot be read, and the shipped table's
generator. Every answer comes from a local server shaped like the real API (tests/retail_api.py),
never the internet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from retail_api import RetailApi, recorded_items, serve

from serverless_score.controller.estimate import Pricing
from serverless_score.pricing import SHIPPED, load_prices, region_price, retail, table
from serverless_score.spec import spec_from_dict

ROOT = Path(__file__).resolve().parents[1]


def _spec(**azure: object):
    return spec_from_dict({"name": "c", "runtime": "command", "scorer": "cat", "shards": 2,
                           "backend": "aci", "output": "/tmp/never/out.txt", "azure": azure})


@pytest.mark.parametrize(("price", "unit", "expected"), [
    (0.0405, "1 Hour", 0.0405 / 3600), (0.00445, "1 GB Hour", 0.00445 / 3600),
    (0.0025, "100 Seconds", 0.000025), (0.000012, "1 Second", 0.000012),
])
def test_units_of_measure_become_per_second(price: float, unit: str, expected: float) -> None:
    assert retail.per_second(price, unit) == pytest.approx(expected)


def test_an_unknown_unit_is_refused() -> None:
    with pytest.raises(retail.RetailError, match="1/Month"):
        retail.per_second(1.0, "1/Month")


def test_the_linux_standard_and_spot_meters_are_picked_from_the_items() -> None:
    m = retail.region_prices(recorded_items(), "EastUS")
    assert m is not None
    # Not the Windows surcharge, the confidential SKU or the GPU product beside them.
    assert m.vcpu_second == pytest.approx(0.0405 / 3600)
    assert m.gb_second == pytest.approx(0.00445 / 3600)
    assert m.spot_vcpu_second == pytest.approx(0.01215 / 3600)
    assert m.spot_gb_second == pytest.approx(0.001335 / 3600)


def test_a_coming_price_change_is_not_used_before_it_starts() -> None:
    m = retail.region_prices(recorded_items(), "westeurope")
    assert m is not None and m.vcpu_second == pytest.approx(0.05 / 3600)


def test_a_region_without_spot_meters_has_no_spot_price_and_an_unknown_region_none() -> None:
    m = retail.region_prices(recorded_items(), "brazilsouth")
    assert m is not None and m.spot_vcpu_second is None
    assert retail.region_prices(recorded_items(), "marsnorth") is None


def test_every_page_is_read_through_next_page_link() -> None:
    with serve(RetailApi(recorded_items(), page_size=2)) as api:
        url = retail.query_url(api.url, "eastus", "USD")
        items = list(retail.fetch_items(url))
    assert len(api.requests) == 4  # 7 East US items, 2 a page
    assert "$skip=2" in api.requests[1] and "$skip=6" in api.requests[3]
    assert len(items) == 7 and {i["armRegionName"] for i in items} == {"eastus"}
    assert "$filter=serviceName%20eq%20'Container%20Instances'%20and%20armRegionName%20eq%20'eastus'" in api.requests[0]


def test_a_region_is_fetched_once_then_read_from_the_cache(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(RetailApi(recorded_items(), page_size=2)) as api:
        monkeypatch.setenv(retail.URL_ENV, api.url)
        first, problem = retail.cached_region("westeurope")
        asked = len(api.requests)
        second, _ = retail.cached_region("westeurope")
    assert problem == "" and first is not None and first.fresh
    assert asked >= 1 and len(api.requests) == asked  # the second came from the cache
    assert second is not None and second.meters == first.meters
    cached = json.loads(next(Path(os.environ[retail.CACHE_ENV]).glob("aci-westeurope-USD.json"))
                        .read_text())
    assert cached["fetched_at"] == pytest.approx(time.time(), abs=60) and cached["items"]


def test_another_currency_is_asked_for_and_cached_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(RetailApi(recorded_items(), rates={"USD": 1.0, "EUR": 0.9})) as api:
        monkeypatch.setenv(retail.URL_ENV, api.url)
        pricing = Pricing.for_spec(_spec(location="eastus", currency="EUR"))
    assert "currencyCode='EUR'" in api.requests[0]
    assert pricing.price is not None and pricing.price.currency == "EUR"
    assert pricing.price.vcpu_second == pytest.approx(0.0405 * 0.9 / 3600, rel=1e-4)


def test_when_the_api_fails_a_stale_cache_is_used_and_says_how_old(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(RetailApi(recorded_items())) as api:
        monkeypatch.setenv(retail.URL_ENV, api.url)
        retail.cached_region("westeurope")
        path = Path(os.environ[retail.CACHE_ENV]) / "aci-westeurope-USD.json"
        data = json.loads(path.read_text())
        data["fetched_at"] -= 10 * 86400  # read ten days ago: stale
        path.write_text(json.dumps(data))
        api.fail_status = 503
        price = region_price(load_prices(None), "westeurope")
    assert price is not None and price.vcpu_second == pytest.approx(0.05 / 3600)
    assert "cached 10 days ago" in price.note and "503" in price.note


def test_offline_without_a_cache_the_shipped_table_is_used_with_its_age(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(RetailApi(recorded_items(), fail_status=500)) as api:
        monkeypatch.setenv(retail.URL_ENV, api.url)
        pricing = Pricing.for_spec(_spec(location="eastus"))
    p = pricing.price
    assert p is not None and p.source.startswith("Azure Retail Prices API, read 2026-10-09")
    assert "could not be read" in p.note and "500" in p.note and "days old" in p.note
    assert "price table as of 2026-10-09" in pricing.describe()


def test_a_user_table_wins_over_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "ea.toml"
    mine.write_text('[regions.westeurope]\nvcpu_second = 0.00001\ngb_second = 0.000001\n'
                    'as_of = "2026-12-01"\nsource = "our EA sheet"\nverified = true\n')
    with serve(RetailApi(recorded_items())) as api:
        monkeypatch.setenv(retail.URL_ENV, api.url)
        pricing = Pricing.for_spec(_spec(location="westeurope", price_file=str(mine)))
    assert api.requests == []  # the user's figure for the region is not even asked about
    assert pricing.price is not None and pricing.price.source == "our EA sheet"


def test_spot_jobs_are_priced_at_spot_and_plan_gets_both(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(RetailApi(recorded_items())) as api:
        monkeypatch.setenv(retail.URL_ENV, api.url)
        spot = Pricing.for_spec(_spec(location="westeurope", priority="Spot"))
        regular = Pricing.for_spec(_spec(location="westeurope"))
    assert spot.price is not None and spot.price.priority == "Spot"
    assert spot.price.vcpu_second == pytest.approx(0.015 / 3600)
    assert spot.alt_price is not None and spot.alt_price.vcpu_second == pytest.approx(0.05 / 3600)
    assert regular.alt_price is not None and regular.alt_price.priority == "Spot"


def test_the_shipped_table_is_the_generators_output_of_the_recorded_answer(tmp_path: Path) -> None:
    shipped = SHIPPED.read_text()
    recorded = ROOT / "scripts" / "recorded" / "retail-aci-eastus-2026-10-09.json"
    items = json.loads(recorded.read_text())["Items"]
    data = tomllib.loads(shipped)
    assert set(data["regions"]) == set(retail.regions_in(items))
    east = data["regions"]["eastus"]
    m = retail.region_prices(items, "eastus")
    assert m is not None and east["vcpu_second"] == pytest.approx(m.vcpu_second, rel=1e-9)
    assert east["spot_gb_second"] == pytest.approx(m.spot_gb_second, rel=1e-9)
    assert "MISSING: Every public region but East US" in shipped  # said, not hidden


def test_the_update_script_writes_every_region_the_api_lists(tmp_path: Path) -> None:
    out = tmp_path / "prices.toml"
    out.write_text(SHIPPED.read_text())
    with serve(RetailApi(recorded_items(), page_size=4)) as api:
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "update-prices.py"), "--out", str(out)],
            env={**os.environ, retail.URL_ENV: api.url, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = tomllib.loads(out.read_text())
    assert set(data["regions"]) == {"brazilsouth", "eastus", "westeurope"}
    assert "spot_vcpu_second" not in data["regions"]["brazilsouth"]
    assert data["estimate"]["throughput_mb_per_s"] == 5.0  # the measured part is kept
    table_of = load_prices(out)
    assert table_of.price("westeurope", "Spot") is not None


def test_render_refuses_a_table_without_an_estimate_section() -> None:
    with pytest.raises(ValueError, match=r"\[estimate\]"):
        table.estimate_section("[regions.x]\n")
