"""metering domain: budgets users set on their projects, and usage alerts.

Imports eventsourcing.domain and the standard library only. Usage itself is not here: it is
folded in plain SQL (see store.py). What is here changes rarely and wants history.

Uniqueness is structural: a UsageAlert's id is uuid5 of its natural key (organization,
project, metric, kind, period, threshold), so the event store refuses a second alert for
the same crossing whoever tries to record it.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("7a3e9c10-4b2d-4f6e-8a1c-5d9b0e2f7c34")
THRESHOLDS = (50, 80, 100)
Meta = dict[str, Any]


class RuleViolation(Exception):
    pass


class Budgets(Aggregate):
    """An organization's per-project budgets: a monthly quantity per project and metric."""

    @staticmethod
    def create_id(org_slug: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "budgets:" + org_slug)

    @event("Started")
    def __init__(self, org_slug: str) -> None:
        self.org_slug = org_slug
        self.limits: dict[str, dict[str, int]] = {}

    def set_budget(self, ref: str, metric: str, limit: int, meta: Meta) -> bool:
        if limit < 1:
            raise RuleViolation("a budget must be at least 1")
        if self.limits.get(ref, {}).get(metric) == limit:
            return False
        self._budget_set(ref=ref, metric=metric, limit=limit, meta=meta)
        return True

    @event("BudgetSet")
    def _budget_set(self, ref: str, metric: str, limit: int, meta: Meta) -> None:
        self.limits.setdefault(ref, {})[metric] = limit

    def remove_budget(self, ref: str, metric: str, meta: Meta) -> None:
        if metric not in self.limits.get(ref, {}):
            raise RuleViolation(f"no {metric} budget on project {ref}")
        self._budget_removed(ref=ref, metric=metric, meta=meta)

    @event("BudgetRemoved")
    def _budget_removed(self, ref: str, metric: str, meta: Meta) -> None:
        del self.limits[ref][metric]
        if not self.limits[ref]:
            del self.limits[ref]


class UsageAlert(Aggregate):
    """One crossing of one threshold: created once, never changed."""

    @staticmethod
    def create_id(org_slug: str, project_ref: str | None, metric: str, kind: str, period_start: int,
                  threshold_percent: int, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"alert:{org_slug}:{project_ref or ''}:{metric}:{kind}:{period_start}:"
                                     f"{threshold_percent}")

    @event("Triggered")
    def __init__(self, org_slug: str, project_ref: str | None, metric: str, kind: str, threshold_percent: int,
                 limit: int, quantity: int, period_start: int, period_end: int) -> None:
        self.org_slug = org_slug
        self.project_ref = project_ref
        self.metric = metric
        self.kind = kind
        self.threshold_percent = threshold_percent
        self.limit = limit
        self.quantity = quantity
        self.period_start = period_start
        self.period_end = period_end


class AlertLog(Aggregate):
    """The alerts of one organization, newest last (what the alerts route lists)."""

    @staticmethod
    def create_id(org_slug: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "alert-log:" + org_slug)

    @event("Started")
    def __init__(self, org_slug: str) -> None:
        self.org_slug = org_slug
        self.alerts: list[dict[str, Any]] = []

    @event("AlertRecorded")
    def record(self, alert: dict[str, Any]) -> None:
        self.alerts.append(dict(alert))


def crossed(quantity: int, limit: int) -> list[int]:
    """The thresholds (percent of `limit`) that `quantity` has reached."""
    return [t for t in THRESHOLDS if quantity * 100 >= t * limit]
