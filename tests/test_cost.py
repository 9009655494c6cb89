"""Cost arithmetic, the price table (shipped and overridden), the max_cost check, container-second
metering, cleanup's selection and how status reads a group's tasks: pure pieces, no workers."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serverless_score.backends import GroupState, Phase
from serverless_score.backends.base import GroupInfo
from serverless_score.controller.cleanup import select
from serverless_score.controller.estimate import Pricing, check_max_cost
from serverless_score.controller.inspect import group_tasks, output_of, task_id_of
from serverless_score.controller.usage import UsageMeter
from serverless_score.errors import ScoreError, SpecError
from serverless_score.planning.cost import (
    Assumptions,
    RegionPrice,
    cost_of,
    estimate,
    task_seconds,
    wall_seconds,
)
from serverless_score.planning.tasks import Shard, Task
from serverless_score.pricing import PRICES_ENV, SHIPPED, job_region, load_prices
from serverless_score.spec import spec_from_dict

PRICE = RegionPrice("eastus", vcpu_second=0.0000135, gb_second=0.0000015, currency="USD",
                    as_of="2026-11-22", source="test")
ASSUME = Assumptions(throughput_mb_per_s=5.0, startup_seconds=60.0, shard_seconds=30.0)


def _bytes_task(index: int, size: int) -> Task:
    return Task(index=index, kind="bytes", path="/d/x.csv", start=0, end=size, size=size)


# -- the arithmetic ---------------------------------------------------------------------------------
def test_task_seconds_from_bytes_or_per_shard() -> None:
    assert task_seconds(_bytes_task(0, 50_000_000), ASSUME) == pytest.approx(10.0)
    shard = Task(index=0, kind="shard", shard=Shard(0, 2, 0, 49), size=1)
    assert task_seconds(shard, ASSUME) == 30.0


def test_an_estimate_adds_start_up_per_group_and_bills_requested_cpu_and_memory() -> None:
    # Two groups of two 100 MB tasks: 60 s start-up + 2 x 20 s each = 100 s per group.
    tasks = [_bytes_task(i, 100_000_000) for i in range(4)]
    est = estimate([tasks[:2], tasks[2:]], backend="aci", max_parallel=2, cpu=2, memory_gb=4,
                   assumptions=ASSUME, billed=True, price=PRICE)
    assert (est.groups, est.tasks, est.tasks_per_group) == (2, 4, 2)
    assert est.container_seconds == pytest.approx(200.0)
    assert est.vcpu_seconds == pytest.approx(400.0) and est.gb_seconds == pytest.approx(800.0)
    assert est.cost == pytest.approx(400 * 0.0000135 + 800 * 0.0000015)
    assert est.wall_seconds == pytest.approx(100.0)  # both groups at once
    assert est.to_dict()["price"]["as_of"] == "2026-11-22"


def test_local_groups_cost_nothing_but_still_show_core_seconds() -> None:
    est = estimate([[_bytes_task(0, 10_000_000)]], backend="local", max_parallel=1, cpu=4,
                   memory_gb=8, assumptions=ASSUME, billed=False, price=PRICE)
    assert est.cost == 0.0 and est.price is None
    assert est.vcpu_seconds == pytest.approx(4 * 62.0)


def test_a_billed_backend_without_a_price_has_no_cost() -> None:
    est = estimate([[_bytes_task(0, 1)]], backend="aci", max_parallel=1, cpu=1, memory_gb=1,
                   assumptions=ASSUME, billed=True, price=None)
    assert est.cost is None


def test_wall_time_puts_each_group_in_the_first_free_slot() -> None:
    assert wall_seconds([10, 10, 10], 2) == 20
    assert wall_seconds([30, 10, 10, 10], 2) == 30
    assert wall_seconds([], 4) == 0


# -- the price table ----------------------------------------------------------------------------------
def test_every_shipped_price_says_when_and_where_it_came_from() -> None:
    data = tomllib.loads(SHIPPED.read_text())
    assert data["regions"], "the shipped table has no region"
    for region, entry in data["regions"].items():
        assert entry["vcpu_second"] > 0 and entry["gb_second"] > 0, region
        datetime.strptime(entry["as_of"], "%Y-%m-%d")
        assert entry["source"].strip(), region
        assert "verified" in entry, region
    table = load_prices(None)
    assert table.price(data["default_region"]) is not None


def test_a_user_table_adds_regions_and_replaces_assumptions(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "prices.toml"
    mine.write_text('[regions.westeurope]\nvcpu_second = 0.00002\ngb_second = 0.000002\n'
                    'as_of = "2026-11-01"\nsource = "our EA sheet"\nverified = true\n'
                    '[estimate]\nthroughput_mb_per_s = 50\n[estimate.startup_seconds]\naci = 20\n')
    monkeypatch.setenv(PRICES_ENV, str(mine))
    table = load_prices(None)
    west = table.price("WestEurope")
    assert west is not None and west.vcpu_second == 0.00002 and west.source == "our EA sheet"
    assert table.price("eastus") is not None  # the shipped regions stay
    assumptions = table.assumptions("aci")
    assert assumptions.throughput_mb_per_s == 50 and assumptions.startup_seconds == 20
    assert table.assumptions("local").startup_seconds == 2.0  # not overridden: shipped value
    assert table.sources[-1] == str(mine)


@pytest.mark.parametrize(("text", "expected"), [
    ("[regions.x]\nvcpu_second = -1\ngb_second = 0\n", "regions.x.vcpu_second: expected a non-negative number"),
    ("[regions.x]\nvcpu_second = 1\n", "regions.x.gb_second: missing"),
    ("[estimate]\nthroughput_mb_per_s = 0\n", "estimate.throughput_mb_per_s: expected a positive number"),
    ("not toml = = 1", "cannot be read"),
])
def test_a_bad_user_table_is_refused_naming_file_and_key(tmp_path: Path, text: str,
                                                          expected: str) -> None:
    mine = tmp_path / "bad.toml"
    mine.write_text(text)
    with pytest.raises(SpecError) as info:
        load_prices(mine)
    assert expected in str(info.value) and str(mine) in str(info.value)


def test_a_missing_user_table_is_an_error() -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_prices("/nonexistent/prices.toml")


def test_the_region_is_the_job_location_else_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVERLESS_SCORE_AZURE_LOCATION", raising=False)
    table = load_prices(None)
    assert job_region("West Europe", table) == ("westeurope", False)
    assert job_region(None, table) == (table.default_region, True)


# -- max_cost -------------------------------------------------------------------------------------------
def _spec(**keys: object):
    return spec_from_dict({"name": "c", "runtime": "command", "scorer": "cat", "shards": 4,
                           "output": "/tmp/never/out.txt", **keys})


def test_max_cost_refuses_an_estimate_above_it_and_says_how_to_change_it() -> None:
    spec = _spec(max_cost=0.001)
    pricing = Pricing(True, PRICE, "eastus", False, load_prices(None))
    est = estimate([[_bytes_task(0, 10**9)]], backend="aci", max_parallel=1, cpu=4, memory_gb=16,
                   assumptions=ASSUME, billed=True, price=PRICE)
    with pytest.raises(SpecError) as info:
        check_max_cost(spec, est, pricing)
    message = str(info.value)
    assert "max_cost" in message and f"{est.cost:.4f} USD" in message and "0.001" in message
    assert "eastus" in message and "2026-11-22" in message
    assert "max_cost" in info.value.hint and "--set max_cost" in info.value.hint
    check_max_cost(_spec(max_cost=1.0), est, pricing)  # below: fine
    check_max_cost(_spec(), est, pricing)  # none set: fine


def test_max_cost_without_a_price_for_the_region_is_refused() -> None:
    pricing = Pricing(True, None, "marsnorth", False, load_prices(None))
    est = estimate([[_bytes_task(0, 1)]], backend="aci", max_parallel=1, cpu=1, memory_gb=1,
                   assumptions=ASSUME, billed=True, price=None)
    with pytest.raises(SpecError, match="marsnorth"):
        check_max_cost(_spec(max_cost=5), est, pricing)


# -- metering -----------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_meter_measures_create_to_finish_and_prefers_backend_times() -> None:
    clock = _Clock()
    meter = UsageMeter(wall=clock, clock=clock)
    meter.created("g1", ["t00000", "t00001"], {"t00000": 1, "t00001": 1}, cpu=2, memory_gb=4)
    meter.created("g2", ["t00002"], {"t00002": 1}, cpu=2, memory_gb=4)
    clock.now += 30
    meter.finished("g1", GroupState("g1", Phase.SUCCEEDED, 0), "succeeded")
    meter.finished("g1", None, "stopped")  # a second report changes nothing
    clock.now += 30
    reported = GroupState("g2", Phase.FAILED, 1, "x", started_at=5000.0, finished_at=5012.5)
    meter.finished("g2", reported, "failed")
    summary = meter.summary(billed=True, price=PRICE)
    assert summary["container_seconds"] == pytest.approx(30 + 12.5)
    assert summary["vcpu_seconds"] == pytest.approx(2 * 42.5)
    assert summary["cost"] == pytest.approx(cost_of(85, 170, PRICE))
    by_name = {g["name"]: g for g in summary["per_group"]}
    assert by_name["g1"]["measured_by"] == "controller" and by_name["g1"]["outcome"] == "succeeded"
    assert by_name["g2"]["measured_by"] == "backend" and by_name["g2"]["seconds"] == 12.5
    assert meter.task_seconds() == {"t00000": 15.0, "t00001": 15.0, "t00002": 12.5}
    assert meter.summary(billed=False, price=None)["cost"] == 0.0


# -- cleanup's selection and status's reading of groups -----------------------------------------------
def test_cleanup_selects_by_job_and_by_expiry() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    past = (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    future = (now + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    groups = [GroupInfo("a-1", "a", {"expires": past}), GroupInfo("a-2", "a", {"expires": future}),
              GroupInfo("b-1", "b", {"expires": past}), GroupInfo("c-1", "c", {})]
    names = lambda chosen: [g.name for g in chosen]  # noqa: E731
    assert names(select(groups, job_id="a", expired=False, now=now)) == ["a-1", "a-2"]
    assert names(select(groups, job_id=None, expired=True, now=now)) == ["a-1", "b-1"]
    assert names(select(groups, job_id="a", expired=True, now=now)) == ["a-1"]


def test_group_tasks_from_labels_ranges_or_the_name() -> None:
    ids = [f"t{i:05d}" for i in range(6)]
    assert group_tasks(GroupInfo("j-t00000-1", "j", {"tasks": "t00000,t00001"}), "j", ids) == ids[:2]
    assert group_tasks(GroupInfo("j-t00001-1", "j", {"tasks": "t00001..t00004"}), "j", ids) == ids[1:5]
    assert group_tasks(GroupInfo("j-t00003-2", "j", {}), "j", ids) == ["t00003"]


def test_task_ids_and_output_paths_are_read_leniently(tmp_path: Path) -> None:
    assert task_id_of("3") == task_id_of("t3") == task_id_of("t00003") == "t00003"
    with pytest.raises(ScoreError):
        task_id_of("three")
    out = str(tmp_path / "s.csv")
    for given in (out, out + ".manifest.json", out + ".work", out + ".work/job.json"):
        assert output_of(given) == out
    assert output_of("az://c/scores/s.csv.manifest.json") == "az://c/scores/s.csv"
