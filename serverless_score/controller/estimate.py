"""A plan's cost estimate, packed exactly as the scheduler will pack it, and the ``max_cost`` check
that runs before anything is created."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..backends import Backend
from ..errors import ScoreError, SpecError
from ..planning import Plan
from ..planning.cost import Estimate, RegionPrice, estimate
from ..planning.partition import expected_shares
from ..planning.tasks import Task
from ..pricing import UNBILLED, PriceTable, job_region, load_prices, region_price
from ..spec import JobSpec
from ..storage.config import StoreConfig
from ..units import plural
from .calibration import Calibration, RunKey, calibrate, model_key, read_history

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pricing:
    """What a job's groups cost per second, decided once per run."""

    billed: bool
    price: RegionPrice | None
    region: str
    region_assumed: bool  # no [azure] location: the table's default region was used
    table: PriceTable
    priority: str = "Regular"
    alt_price: RegionPrice | None = None  # the other priority's price, for plan

    @classmethod
    def for_spec(cls, spec: JobSpec) -> Pricing:
        table = load_prices(spec.azure.price_file)
        region, assumed = job_region(spec.azure.location, table)
        billed = spec.backend not in UNBILLED
        # Spot is an ACI priority: other backends run what they run.
        priority = spec.azure.priority if spec.backend == "aci" else "Regular"
        if not billed:
            return cls(False, None, region, assumed, table, priority)
        other = "Regular" if priority == "Spot" else "Spot"
        currency = spec.azure.currency
        return cls(True, region_price(table, region, priority=priority, currency=currency),
                   region, assumed, table, priority,
                   region_price(table, region, priority=other, currency=currency))

    def describe(self) -> str:
        if not self.billed:
            return "runs on this machine: no charge"
        if self.price is None:
            what = "Spot price" if self.priority == "Spot" else "price"
            return (f"no {what} for region {self.region!r} from the Retail Prices API or the "
                    f"price table ({', '.join(self.table.sources)})")
        p = self.price
        where = f"{p.region}{' (assumed: no [azure] location)' if self.region_assumed else ''}"
        check = "" if p.verified else ", UNVERIFIED"
        note = f"; {p.note}" if p.note else ""
        return (f"{where}, {p.priority}: {p.vcpu_second:g} {p.currency}/vCPU-s + "
                f"{p.gb_second:g} {p.currency}/GB-s, as of {p.as_of}{check} ({p.source}{note})")


def tasks_per_group(plan: Plan, backend: Backend | None) -> tuple[int, str]:
    """How the scheduler will pack the plan's tasks (it asks the backend), and why in words.
    A backend class that explains its packing (``packing(pending, max_parallel)``, e.g. aci)
    is asked even when it cannot be built here (no Azure settings yet)."""
    pending, parallel = len(plan.tasks), plan.spec.max_parallel
    explained = _packing_of(plan.spec.backend, pending, parallel)
    if backend is not None:
        per = backend.tasks_per_group(pending, parallel)
        if explained is not None and explained.tasks_per_group == per:
            return per, str(explained.why)
        return per, (f"{plural(per, 'task')} per group, as the {backend.name} backend packs "
                     f"{plural(pending, 'task')} for {plural(parallel, 'slot')}")
    if explained is not None:
        return int(explained.tasks_per_group), str(explained.why)
    per = max(1, -(-pending // parallel))
    return per, (f"{plural(per, 'task')} per group (assumed: one group per slot; the backend "
                 "could not be built)")


def _packing_of(name: str, pending: int, parallel: int) -> Any:
    from ..backends import backend_class

    try:
        packing = getattr(backend_class(name), "packing", None)
    except ScoreError:
        return None
    return packing(pending, parallel) if packing is not None else None


def run_key(spec: JobSpec, model_sha256: str | None) -> RunKey:
    """What makes an earlier run comparable to this job (controller/calibration.py)."""
    image = "" if spec.backend == "local" else (spec.image or f"built-in {spec.runtime} image")
    return RunKey(spec.runtime, model_key(spec.runtime, model_sha256, spec.scorer), image,
                  spec.backend)


def model_sha256(spec: JobSpec, store_config: StoreConfig | None = None) -> str | None:
    """The model's sha256 for ``plan``'s calibration lookup; None when it cannot be had here. A
    remote model is never fetched for it: only the checksum ``models push`` stored with it is
    used, else None (the estimate then takes the nearest run). ``run`` has the model's
    ``model_info`` anyway and uses its sha256."""
    from ..storage import get_store
    from ..storage.uris import is_blob_uri
    from .model_info import model_info

    if spec.model is None:
        return None
    try:
        if is_blob_uri(spec.model):
            return get_store(spec.model, store_config).info(spec.model).sha256 or None
        info = model_info(spec.model, store_config)
    except (ScoreError, OSError) as err:
        log.debug("no model checksum for the estimate: %s", err)
        return None
    return info.sha256 if info is not None else None


def calibration_for(spec: JobSpec, pricing: Pricing, model_sha: str | None) -> Calibration:
    return calibrate(run_key(spec, model_sha), pricing.table.assumptions(spec.backend),
                     read_history())


def estimate_job(plan: Plan, backend: Backend | None, pricing: Pricing | None = None,
                 calibration: Calibration | None = None) -> Estimate:
    spec = plan.spec
    pricing = pricing or Pricing.for_spec(spec)
    calibration = calibration or calibration_for(spec, pricing, None)
    per, packing = tasks_per_group(plan, backend)
    shares = expected_shares(plan.tasks, per, spec.max_parallel)
    return estimate(
        shares, backend=spec.backend, max_parallel=spec.max_parallel,
        cpu=spec.resources.cpu, memory_gb=spec.resources.memory_gb,
        assumptions=calibration.assumptions, billed=pricing.billed,
        price=pricing.price, packing=_pulling(packing, shares, spec.max_parallel),
        alt_price=pricing.alt_price, calibration=calibration.describe(),
    )


def _pulling(packing: str, shares: list[list[Task]], max_parallel: int) -> str:
    """The packing's reason, and what it means for groups that pull their tasks."""
    if not shares:
        return packing
    fleet = len(shares)
    capped = " (max_parallel)" if fleet == max_parallel else ""
    return (f"{packing}; {plural(fleet, 'group')}{capped} pull the tasks from the job's queue, "
            f"about {plural(len(shares[0]), 'task')} each: {plural(fleet, 'create')} "
            f"expected, plus one per group that fails")


def check_max_cost(spec: JobSpec, est: Estimate, pricing: Pricing) -> None:
    """Refuse to start a job whose estimate is above its ``max_cost`` (or cannot be made)."""
    if spec.max_cost is None:
        return
    how = ("Raise max_cost in the job (or --set max_cost=N), request less per group "
           "(resources.cpu, resources.memory_gb), or remove max_cost.")
    if est.cost is None:
        raise SpecError(
            f"max_cost: {spec.max_cost:g} is set, but the cost cannot be estimated: "
            f"{pricing.describe()}",
            hint=f"Add the region to a price table (README: Cost) and point [azure] price_file or "
                 f"SERVERLESS_SCORE_PRICES at it, or remove max_cost. {how}")
    if est.cost > spec.max_cost:
        currency = est.price.currency if est.price else "USD"
        raise SpecError(
            f"max_cost: the estimate is {est.cost:.4f} {currency}, above max_cost = "
            f"{spec.max_cost:g} ({plural(est.groups, 'group')}, {est.vcpu_seconds:,.0f} vCPU-s, "
            f"{est.gb_seconds:,.0f} GB-s; {pricing.describe()}); nothing was started",
            hint=f"{how} `serverless-score plan JOB` shows the estimate and its assumptions.")


def safe_backend(spec: JobSpec, state_dir: str) -> Backend | None:
    """The job's backend for planning only; None when it cannot be built here (e.g. no Azure
    settings yet): the estimate then says it assumed the packing."""
    from ..backends import get_backend

    try:
        return get_backend(spec.backend, spec=spec, state_dir=state_dir)
    except (ScoreError, ImportError, TypeError, ValueError) as err:
        log.debug("backend %s not built for the estimate: %s", spec.backend, err)
        return None


@dataclass(frozen=True)
class PlanEstimate:
    estimate: Estimate
    pricing: Pricing
    groups: list[list[Task]]
    calibration: Calibration | None = None


def plan_estimate(plan: Plan, sample: int | None = None) -> PlanEstimate:
    """The estimate ``plan`` prints (``run`` makes the same one inside the job); ``sample``:
    first score that many records locally and estimate from their throughput."""
    from ..layout import JobLayout
    from ..storage.config import cache_root

    spec = plan.spec
    backend = safe_backend(spec, JobLayout(spec.output).local_state_dir(cache_root()))
    pricing = Pricing.for_spec(spec)
    calibration = calibration_for(
        spec, pricing, model_sha256(spec, StoreConfig.from_spec(spec)))
    if sample:
        from .sample import sample_calibration

        calibration = sample_calibration(plan, sample, calibration)
    per, _ = tasks_per_group(plan, backend)
    return PlanEstimate(estimate_job(plan, backend, pricing, calibration), pricing,
                        expected_shares(plan.tasks, per, spec.max_parallel), calibration)
