"""Billing arithmetic, as pure functions: billing periods, prorated base fees, overage and
correction lines, totals, and which limits a plan would break. Imports the standard
library and plans.py only.

Exact: every amount is a Decimal computed from the plans file's text, each line rounded
once to cents (half up), and a total is the sum of its rounded lines, so an invoice adds
up to the cent and the same inputs always give the same invoice.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable

from .plans import METRICS, Plans, price

CENT = Decimal("0.01")
PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
Line = dict[str, Any]


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def money(amount: Decimal) -> str:
    return str(cents(amount))


# -- periods ---------------------------------------------------------------------------------

def period_bounds(period: str) -> tuple[datetime, datetime]:
    """A calendar month in UTC, half open: [first instant, first instant of the next)."""
    m = PERIOD_RE.match(period)
    if not m:
        raise ValueError(f"period must be YYYY-MM, not {period!r}")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=timezone.utc)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def period_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def previous_period(period: str) -> str:
    start, _ = period_bounds(period)
    return f"{start.year - 1:04d}-12" if start.month == 1 else f"{start.year:04d}-{start.month - 1:02d}"


def end_of_hour(at: datetime) -> datetime:
    """The first instant of the next hour (`at` itself if it is on the hour)."""
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(hours=1)


def parse_time(iso: str) -> datetime:
    t = datetime.fromisoformat(iso)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat()


# -- base fee, prorated -----------------------------------------------------------------------

def plan_stretches(segments: list[dict[str, Any]], start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """(plan, from, until) for each stretch of [start, end) spent on one plan, oldest first.
    Segments are the subscription's history; spend-cap changes do not split a stretch."""
    out: list[tuple[str, datetime, datetime]] = []
    for i, seg in enumerate(segments):
        seg_from = parse_time(seg["from"])
        seg_until = parse_time(segments[i + 1]["from"]) if i + 1 < len(segments) else end
        a, b = max(seg_from, start), min(seg_until, end)
        if a >= b:
            continue
        if out and out[-1][0] == seg["plan"] and out[-1][2] == a:
            out[-1] = (seg["plan"], out[-1][1], b)
        else:
            out.append((seg["plan"], a, b))
    return out


def fraction(a: datetime, b: datetime, start: datetime, end: datetime) -> Decimal:
    return Decimal(int((b - a).total_seconds())) / Decimal(int((end - start).total_seconds()))


def base_lines(plans: Plans, segments: list[dict[str, Any]], start: datetime, end: datetime) -> list[Line]:
    lines = []
    for plan, a, b in plan_stretches(segments, start, end):
        fee = price(plans[plan]["price_monthly"])
        whole = a == start and b == end
        amount = fee if whole else fee * fraction(a, b, start, end)
        span = "" if whole else f", {a.date().isoformat()} to {b.date().isoformat()} (prorated)"
        lines.append({"kind": "base", "metric": None, "plan": plan,
                      "description": f"{plan.capitalize()} plan{span}", "quantity": None, "unit": None,
                      "unit_price": money(fee), "amount": money(amount), "from": iso(a), "until": iso(b)})
    return lines


def proration(plans: Plans, from_plan: str, to_plan: str, at: datetime, start: datetime, end: datetime) -> Decimal:
    """What changing plan at `at` adds to this period's base fee (negative: a credit)."""
    if at >= end:
        return Decimal("0.00")
    diff = price(plans[to_plan]["price_monthly"]) - price(plans[from_plan]["price_monthly"])
    return cents(diff * fraction(max(at, start), end, start, end))


# -- usage --------------------------------------------------------------------------------------

def unit_label(metric: str, unit: int) -> str:
    if metric.endswith("_bytes") and unit == 10**9:
        return "GB"
    if unit == 10**6:
        return "million"
    return f"x{unit}"


def metric_label(metric: str) -> str:
    return {"db_size_bytes": "Database size", "egress_bytes": "Egress", "storage_bytes": "Storage size",
            "function_invocations": "Function invocations", "realtime_messages": "Realtime messages",
            "api_requests": "API requests"}.get(metric, metric)


def rates_of(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The quota terms that price usage on this plan (metrics with an included quantity)."""
    return {m: {"included": q["included"], "unit": q["unit"], "overage_price": q["overage_price"], "limit": q["limit"]}
            for m, q in plan["quotas"].items() if q["included"] is not None}


def overage(rates: dict[str, dict[str, Any]], spend_cap: bool, usage: dict[str, int]) -> dict[str, tuple[int, Decimal]]:
    """Per billable metric over its quota: (quantity beyond included, amount due)."""
    out: dict[str, tuple[int, Decimal]] = {}
    for metric in METRICS:
        r = rates.get(metric)
        if r is None or r["overage_price"] is None:
            continue  # not sold: a hard limit restricts instead of billing
        over = max(0, int(usage.get(metric, 0)) - int(r["included"]))
        if over == 0:
            continue
        amount = Decimal("0.00") if spend_cap else cents(Decimal(over) / Decimal(r["unit"]) * price(r["overage_price"]))
        out[metric] = (over, amount)
    return out


def _quantity_text(metric: str, quantity: int, unit: int) -> str:
    return f"{Decimal(quantity) / Decimal(unit):f} {unit_label(metric, unit)}"


def overage_lines(rates: dict[str, dict[str, Any]], spend_cap: bool, usage: dict[str, int]) -> list[Line]:
    lines = []
    for metric, (over, amount) in overage(rates, spend_cap, usage).items():
        r = rates[metric]
        label = unit_label(metric, r["unit"])
        capped = " (not billed: spend cap on)" if spend_cap else ""
        lines.append({"kind": "overage", "metric": metric, "plan": None,
                      "description": (f"{metric_label(metric)}: {_quantity_text(metric, over, r['unit'])} beyond "
                                      f"{_quantity_text(metric, r['included'], r['unit'])} included, at "
                                      f"${price(r['overage_price'])} per {label}{capped}"),
                      "quantity": over, "unit": r["unit"], "unit_price": str(price(r["overage_price"])),
                      "amount": money(amount), "from": None, "until": None})
    return lines


def correction_lines(previous: dict[str, Any], revised_usage: dict[str, int]) -> list[Line]:
    """Lines for the next invoice that settle a closed period whose usage was revised after
    it closed: the difference between what it billed and what the revised usage costs,
    per metric, on the terms it was rated with. The closed invoice itself never changes."""
    billed: dict[str, tuple[int, Decimal]] = {}
    for line in previous["lines"]:
        if line["kind"] == "overage":
            billed[line["metric"]] = (int(line["quantity"]), Decimal(line["amount"]))
    revised = overage(previous["rates"], previous["rated_spend_cap"], revised_usage)
    lines = []
    for metric in METRICS:
        old_q, old_a = billed.get(metric, (0, Decimal("0.00")))
        new_q, new_a = revised.get(metric, (0, Decimal("0.00")))
        if new_a == old_a and new_q == old_q:
            continue
        r = previous["rates"][metric]
        lines.append({"kind": "correction", "metric": metric, "plan": None, "corrects": previous["period"],
                      "description": (f"Correction for {previous['period']}: {metric_label(metric)} usage revised, "
                                      f"overage {_quantity_text(metric, old_q, r['unit'])} -> "
                                      f"{_quantity_text(metric, new_q, r['unit'])}"),
                      "quantity": new_q - old_q, "unit": r["unit"], "unit_price": str(price(r["overage_price"])),
                      "amount": money(new_a - old_a), "from": None, "until": None})
    return lines


def number_lines(lines: Iterable[Line]) -> list[Line]:
    return [{"line": i, **line} for i, line in enumerate(lines, start=1)]


def total(lines: Iterable[Line]) -> str:
    return money(sum((Decimal(line["amount"]) for line in lines), Decimal("0.00")))


# -- limits ------------------------------------------------------------------------------------

def quota_usage(plan: dict[str, Any], spend_cap: bool, usage: dict[str, int]) -> list[dict[str, Any]]:
    """Per metric with a quota: what it allows and what happens past it."""
    out = []
    for metric in METRICS:
        q = plan["quotas"].get(metric)
        if q is None or q["included"] is None:
            continue
        used = int(usage.get(metric, 0))
        if q["overage_price"] is None or q["limit"] == "hard":
            past = "restricted"
        else:
            past = "restricted" if spend_cap else "billed"
        out.append({"metric": metric, "used": used, "included": q["included"], "over": used > q["included"],
                    "past_quota": past, "unit": q["unit"], "overage_price": q["overage_price"]})
    return out


def broken_limits(plans: Plans, target: str, spend_cap: bool, active_projects: int | None,
                  usage: dict[str, int] | None) -> list[dict[str, Any]]:
    """Each limit of `target` that the organization is already past. `effect` says what would
    happen: refused (the change is refused until fixed), restricted, or billed (overage)."""
    plan = plans[target]
    out: list[dict[str, Any]] = []
    limit = plan["max_projects"]
    if limit is not None and active_projects is not None and active_projects > limit:
        out.append({"limit": "max_projects", "metric": None, "current": active_projects, "allowed": limit,
                    "effect": "refused",
                    "message": (f"the {target} plan allows at most {limit} active projects per organization; this "
                                f"organization has {active_projects} active: pause or delete "
                                f"{active_projects - limit} first")})
    for q in quota_usage(plan, spend_cap, usage or {}):
        if not q["over"]:
            continue
        metric = q["metric"]
        used = _quantity_text(metric, q["used"], q["unit"])
        included = _quantity_text(metric, q["included"], q["unit"])
        if q["past_quota"] == "restricted":
            why = "spend cap" if q["overage_price"] is not None else "hard limit"
            message = (f"{metric_label(metric)} this period ({used}) is past the {target} plan's {included} "
                       f"({why}): it would be restricted until the period ends")
        else:
            message = (f"{metric_label(metric)} this period ({used}) is past the {target} plan's {included}: the "
                       f"excess would be billed at ${price(q['overage_price'])} per {unit_label(metric, q['unit'])}")
        out.append({"limit": f"quotas.{metric}", "metric": metric, "current": q["used"], "allowed": q["included"],
                    "effect": q["past_quota"], "message": message})
    return out


def entitlement_changes(plans: Plans, current: str, current_cap: bool, target: str, target_cap: bool) -> list[dict[str, Any]]:
    """Every entitlement key whose value differs between two plans (and caps)."""
    a, b = plans[current], plans[target]
    out = []
    for key in ("price_monthly", "max_projects"):
        if a[key] != b[key]:
            out.append({"entitlement": key, "from": a[key], "to": b[key]})
    if current_cap != target_cap:
        out.append({"entitlement": "spend_cap", "from": current_cap, "to": target_cap})
    for metric in METRICS:
        qa, qb = a["quotas"].get(metric, {}), b["quotas"].get(metric, {})
        for field in ("included", "overage_price", "limit"):
            if qa.get(field) != qb.get(field):
                out.append({"entitlement": f"quotas.{metric}.{field}", "from": qa.get(field), "to": qb.get(field)})
    ra, rb = a.get("realtime") or {}, b.get("realtime") or {}
    for key in sorted(set(ra) | set(rb)):
        if ra.get(key) != rb.get(key):
            out.append({"entitlement": f"realtime.{key}", "from": ra.get(key), "to": rb.get(key)})
    return out
