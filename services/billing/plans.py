"""Plans and their entitlements (typed keys, like Supabase's), loaded from config/plans.yaml
once by the billing process, checked on load. Imports PyYAML and the standard library.

The numbers stay exactly as the file writes them in what `entitlements` returns (other
services read them); money is only ever computed from `price(...)`, which turns the
file's text into an exact Decimal.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(__file__).resolve().parents[2] / "config" / "plans.yaml"

METRICS = ("db_size_bytes", "egress_bytes", "storage_bytes", "function_invocations", "realtime_messages",
           "api_requests")
# Gauges are billed on their peak in the period; the others are counters (the period's sum).
GAUGES = ("db_size_bytes", "storage_bytes")
QUOTA_KEYS = {"included", "unit", "overage_price", "limit"}
# Ceilings of a project's realtime settings (`realtime.max_*`, the Management API's field names).
REALTIME_KEYS = ("max_concurrent_users", "max_events_per_second", "max_bytes_per_second", "max_channels_per_client",
                 "max_joins_per_second", "max_presence_events_per_second", "max_payload_size_in_kb")
# Order of plans from cheapest to most complete: it decides "upgrade" or "downgrade".
ORDER = ("free", "pro", "team", "enterprise")

Plans = dict[str, dict[str, Any]]


class PlanConfigError(ValueError):
    pass


def load_plans(path: Path = CONFIG) -> Plans:
    data = yaml.safe_load(path.read_text())
    plans = data.get("plans") if isinstance(data, dict) else None
    if not isinstance(plans, dict) or not plans:
        raise PlanConfigError(f"{path}: no plans")
    currency = data.get("currency", "usd")
    for name, plan in plans.items():
        _check_plan(name, plan)
        plan.setdefault("currency", currency)
    return dict(plans)


def _check_plan(name: str, plan: Any) -> None:
    if not isinstance(plan, dict):
        raise PlanConfigError(f"plan {name}: not a mapping")
    for key in ("max_projects", "price_monthly", "spend_cap", "quotas"):
        if key not in plan:
            raise PlanConfigError(f"plan {name}: missing {key}")
    if plan["max_projects"] is not None and (not isinstance(plan["max_projects"], int) or plan["max_projects"] < 0):
        raise PlanConfigError(f"plan {name}: max_projects must be an integer >= 0 or null")
    if not isinstance(plan["spend_cap"], bool):
        raise PlanConfigError(f"plan {name}: spend_cap must be true or false")
    _decimal(plan["price_monthly"], f"plan {name}: price_monthly")
    realtime = plan.setdefault("realtime", {k: None for k in REALTIME_KEYS})
    if not isinstance(realtime, dict) or set(realtime) - set(REALTIME_KEYS):
        raise PlanConfigError(f"plan {name}: realtime takes only {', '.join(REALTIME_KEYS)}")
    for key in REALTIME_KEYS:
        value = realtime.setdefault(key, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PlanConfigError(f"plan {name}: realtime.{key} must be an integer >= 1 or null")
    quotas = plan["quotas"]
    if not isinstance(quotas, dict):
        raise PlanConfigError(f"plan {name}: quotas must be a mapping")
    for metric, q in quotas.items():
        where = f"plan {name}: quota {metric}"
        if metric not in METRICS:
            raise PlanConfigError(f"{where}: unknown metric (one of {', '.join(METRICS)})")
        if not isinstance(q, dict) or set(q) != QUOTA_KEYS:
            raise PlanConfigError(f"{where}: needs exactly {', '.join(sorted(QUOTA_KEYS))}")
        if q["limit"] not in ("hard", "soft"):
            raise PlanConfigError(f"{where}: limit is hard or soft")
        if not isinstance(q["unit"], int) or q["unit"] <= 0:
            raise PlanConfigError(f"{where}: unit must be a positive integer")
        if q["included"] is not None and (not isinstance(q["included"], int) or q["included"] < 0):
            raise PlanConfigError(f"{where}: included must be an integer >= 0 or null")
        if q["overage_price"] is not None:
            _decimal(q["overage_price"], f"{where}: overage_price")


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PlanConfigError(f"{where}: must be a number")
    # str() first: 0.09 read as a float must mean exactly 9 cents, not 0.0899999...
    d = Decimal(str(value))
    if d < 0:
        raise PlanConfigError(f"{where}: must be >= 0")
    return d


def price(value: Any) -> Decimal:
    """An amount from the plans file as an exact Decimal (prices are written in dollars)."""
    return Decimal(str(value))


def spend_cap_adjustable(plan: dict[str, Any]) -> bool:
    """A plan whose spend cap is on by default and which sells some overage lets the owner
    switch the cap off (Supabase's Pro); elsewhere the cap is fixed by the plan."""
    sells_overage = any(q["overage_price"] is not None for q in plan["quotas"].values())
    return bool(plan["spend_cap"]) and sells_overage


def entitlements(plans: Plans, plan: str, spend_cap: bool | None = None) -> dict[str, Any]:
    """What an organization on `plan` may use: the keys other services read."""
    p = plans[plan]
    return {
        "plan": plan,
        "max_projects": p["max_projects"],
        "price_monthly": p["price_monthly"],
        "currency": p["currency"],
        "spend_cap": p["spend_cap"] if spend_cap is None else spend_cap,
        "quotas": {metric: dict(q) for metric, q in p["quotas"].items()},
        "realtime": dict(p.get("realtime") or {k: None for k in REALTIME_KEYS}),
    }


def rank(plan: str) -> int:
    return ORDER.index(plan) if plan in ORDER else len(ORDER)
