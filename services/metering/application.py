"""metering application: fold usage, answer usage queries, sample tenants, check quotas and
budgets, raise and announce alerts. One method per command; returns plain data.

Imports the domain, eventsourcing, shared errors/mail and its own pure helpers; no framework.
Ports set by `services.metering.bootstrap`: `usage` (the SQL usage store), `measurer`
(tenant sizes), `mailer`, `clock`. Other services are passed per call: `projects` (active
projects), `billing` (entitlements), `orgs` (who to tell).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import AbstractContextManager
from typing import Any, Callable, Iterable, Protocol, Sequence

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from services.shared.errors import Conflict, InvalidInput, NotFound
from services.shared.mail import Mail, Mailer

from .domain import AlertLog, Budgets, RuleViolation, UsageAlert, crossed
from .periods import GRANULARITIES, METRICS, Record, UsageError, check_records, iso, month_bounds, parse_instant

log = logging.getLogger("metering")

REF_RE = re.compile(r"^[a-z]{20}$")
SLUG_RE = re.compile(r"^[\w-]{1,64}$")
MAX_QUANTITY = 2**63 - 1


class UsagePort(Protocol):
    def fold(self, ledger_id: uuid.UUID, source: str, records: Sequence[Record],
             event_ids: Sequence[str] = ()) -> bool: ...
    def query(self, org_slug: str, project_ref: str | None, metric: str, granularity: str, start: int,
              end: int, limit: int = 2000) -> list[dict[str, Any]]: ...
    def totals(self, org_slug: str, start: int, end: int) -> dict[str, int]: ...
    def month_usage(self, org_slug: str, month_start: int) -> tuple[dict[str, int], dict[str, dict[str, int]]]: ...
    def claim_changed_orgs(self) -> list[str]: ...
    def mark_changed(self, org_slugs: Iterable[str]) -> None: ...
    def once(self, consumer: str, event_id: str) -> AbstractContextManager[bool]: ...
    def verify(self) -> list[str]: ...
    def rebuild(self) -> int: ...


class MeasurerPort(Protocol):
    def database_sizes(self, refs: Iterable[str]) -> dict[str, int]: ...
    def storage_sizes(self, refs: Iterable[str]) -> dict[str, int]: ...


class ProjectsPort(Protocol):
    def list_active_projects(self) -> list[dict[str, Any]]: ...


class BillingPort(Protocol):
    def get_entitlements(self, org_slug: str) -> dict[str, Any]: ...


class OrgsPort(Protocol):
    def list_org_members(self, slug: str, roles: list[str]) -> list[dict[str, Any]]: ...


def meta_of(ctx: dict[str, Any] | None) -> dict[str, Any]:
    ctx = ctx or {}
    return {k: ctx.get(k) for k in ("actor", "correlation_id", "causation_id")}


class MeteringApplication(Application):
    name = "metering"

    usage: UsagePort
    measurer: MeasurerPort
    mailer: Mailer
    public_url: str = "http://127.0.0.1:8080"
    sample_interval_s: float = 300.0
    alert_interval_s: float = 30.0
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._next_sample = 0.0
        self._next_check = 0.0

    def close(self) -> None:
        super().close()
        close = getattr(getattr(self, "usage", None), "close", None)
        if callable(close):
            close()

    # ===== usage queries (gateway, billing) ====================================================
    def query_usage(self, org_slug: str, project_ref: str | None, metric: str, start_iso: str, end_iso: str,
                    granularity: str) -> list[dict[str, Any]]:
        _check_org(org_slug)
        if project_ref is not None and (not isinstance(project_ref, str) or not REF_RE.match(project_ref)):
            raise InvalidInput("project_ref: a project ref (20 lowercase letters)")
        _check_metric(metric)
        if granularity not in GRANULARITIES:
            raise InvalidInput(f"granularity: one of {', '.join(GRANULARITIES)}")
        start, end = _range(start_iso, end_iso)
        try:
            return self.usage.query(org_slug, project_ref, metric, granularity, start, end)
        except ValueError as e:
            raise InvalidInput(f"granularity: {e}; choose a coarser one or a shorter range") from None

    def period_totals(self, org_slug: str, start_iso: str, end_iso: str) -> dict[str, int]:
        _check_org(org_slug)
        start, end = _range(start_iso, end_iso)
        if start % 3600 or end % 3600:
            raise InvalidInput("start and end must be on the hour (usage is aggregated by hour)")
        return self.usage.totals(org_slug, start, end)

    def verify_usage(self, limit: int = 100) -> list[str]:
        """Differences between the aggregates and a fold of the ledger (none when exact);
        the first `limit` of them, and how many more there are."""
        problems = self.usage.verify()
        more = len(problems) - limit
        return problems[:limit] + ([f"... and {more} more"] if more > 0 else [])

    def rebuild_usage(self) -> int:
        """Derive the aggregates again from the ledger; returns the records folded."""
        return self.usage.rebuild()

    # ===== sources ==============================================================================
    def record_usage(self, source: str, records: Sequence[Record], event_ids: Sequence[str] = ()) -> bool:
        """Fold records that arrived together (one message, one consumer batch or one sample)."""
        try:
            checked = check_records(records)
        except UsageError as e:
            raise InvalidInput(str(e)) from None
        return self.usage.fold(uuid.uuid4(), source, checked, event_ids)

    def sample_tenants(self, projects: ProjectsPort) -> int:
        """Measure each active project's database and bucket now; fold the samples (gauges).
        Returns how many samples were recorded."""
        owners = {p["ref"]: p["org_slug"] for p in projects.list_active_projects()}
        if not owners:
            return 0
        now = int(self.clock())
        records: list[Record] = []
        for metric, sizes in (("db_size_bytes", self.measurer.database_sizes(owners)),
                              ("storage_bytes", self.measurer.storage_sizes(owners))):
            records += [(owners[ref], ref, metric, now, int(size)) for ref, size in sorted(sizes.items())]
        if records:
            self.record_usage("sampler", records)
        return len(records)

    def sample_if_due(self, projects: ProjectsPort) -> int | None:
        now = time.monotonic()
        if now < self._next_sample:
            return None
        self._next_sample = now + self.sample_interval_s
        return self.sample_tenants(projects)

    # ===== budgets ==============================================================================
    def set_budget(self, org_slug: str, project_ref: str, metric: str, limit: int,
                   ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        _check_org(org_slug)
        _check_ref(project_ref)
        _check_metric(metric)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_QUANTITY:
            raise InvalidInput("limit: a whole number of the metric's unit, at least 1")
        budgets = self._budgets(org_slug)
        try:
            changed = budgets.set_budget(ref=project_ref, metric=metric, limit=limit, meta=meta_of(ctx))
        except RuleViolation as e:
            raise InvalidInput(f"limit: {e}") from None
        if changed:
            self._save_budgets(budgets)
            # A lower budget may already be crossed: have the next check look at this org.
            self.usage.mark_changed([org_slug])
        return {"project_ref": project_ref, "metric": metric, "limit": limit}

    def remove_budget(self, org_slug: str, project_ref: str, metric: str, ctx: dict[str, Any] | None = None) -> None:
        _check_org(org_slug)
        _check_ref(project_ref)
        _check_metric(metric)
        budgets = self._budgets(org_slug)
        try:
            budgets.remove_budget(ref=project_ref, metric=metric, meta=meta_of(ctx))
        except RuleViolation as e:
            raise NotFound(str(e)) from None
        self._save_budgets(budgets)

    def list_budgets(self, org_slug: str, project_ref: str) -> list[dict[str, Any]]:
        _check_org(org_slug)
        _check_ref(project_ref)
        limits = self._budgets(org_slug).limits.get(project_ref, {})
        return [{"project_ref": project_ref, "metric": m, "limit": limits[m]} for m in METRICS if m in limits]

    # ===== alerts ===============================================================================
    def check_alerts(self, billing: BillingPort) -> list[dict[str, Any]]:
        """Compare the current month's usage of every organization whose usage (or budgets)
        changed since the last check with its plan's quotas and its projects' budgets;
        record each newly crossed threshold once. Returns the new alerts."""
        triggered: list[dict[str, Any]] = []
        for org in self.usage.claim_changed_orgs():
            try:
                triggered += self.check_org(org, billing)
            except Exception:  # noqa: BLE001 -- one org's failure must not stop the others
                self.usage.mark_changed([org])  # look again next time
                log.exception("checking usage alerts of %s failed; will retry", org)
        return triggered

    def check_alerts_if_due(self, billing: BillingPort) -> list[dict[str, Any]] | None:
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.alert_interval_s
        return self.check_alerts(billing)

    def check_org(self, org_slug: str, billing: BillingPort) -> list[dict[str, Any]]:
        now = int(self.clock())
        period_start, period_end = month_bounds(now)
        org_usage, project_usage = self.usage.month_usage(org_slug, period_start)
        candidates: list[tuple[str | None, str, str, int, int]] = []  # (ref, metric, kind, limit, used)
        quotas = billing.get_entitlements(org_slug).get("quotas") or {}
        for metric in METRICS:
            included = (quotas.get(metric) or {}).get("included")
            if included:  # null: nothing included to measure against (unlimited or not sold)
                candidates.append((None, metric, "quota", int(included), org_usage.get(metric, 0)))
        for ref, limits in sorted(self._budgets(org_slug).limits.items()):
            for metric, limit in sorted(limits.items()):
                candidates.append((ref, metric, "budget", limit, project_usage.get(ref, {}).get(metric, 0)))
        alert_log = self._alert_log(org_slug)
        seen = {a["id"] for a in alert_log.alerts}
        new: list[UsageAlert] = []
        for ref, metric, kind, limit, used in candidates:
            for threshold in crossed(used, limit):
                alert_id = UsageAlert.create_id(org_slug, ref, metric, kind, period_start, threshold)
                if str(alert_id) in seen:
                    continue
                alert = UsageAlert(org_slug=org_slug, project_ref=ref, metric=metric, kind=kind,
                                   threshold_percent=threshold, limit=limit, quantity=used,
                                   period_start=period_start, period_end=period_end)
                new.append(alert)
                alert_log.record(alert=_alert_view(alert, now))
        if not new:
            return []
        try:
            self.save(*new, alert_log)
        except IntegrityError:
            # Another checker recorded one of these (the ids are unique), or this org's log
            # moved meanwhile: look again next time; what is recorded is then skipped.
            self.usage.mark_changed([org_slug])
            return []
        return [_alert_view(a, now) for a in new]

    def list_alerts(self, org_slug: str, limit: int = 100) -> list[dict[str, Any]]:
        _check_org(org_slug)
        alerts = self._alert_log(org_slug).alerts
        return [_public(a) for a in reversed(alerts[-max(1, min(int(limit), 1000)):])]

    def notify_alert(self, envelope: dict[str, Any], orgs: OrgsPort) -> bool:
        """Mail an alert to the organization's owners and admins, once per message."""
        with self.usage.once("metering.alert_mail", envelope["event_id"]) as fresh:
            if not fresh:
                return False
            p = envelope["payload"]
            recipients = orgs.list_org_members(p["org_slug"], ["owner", "admin"])
            subject, body = alert_mail(p, self.public_url)
            for r in sorted({m["email"] for m in recipients}):
                self.mailer.send(Mail(to=r, subject=subject, body=body))
            return True

    # ===== helpers ==============================================================================
    def _budgets(self, org_slug: str) -> Budgets:
        try:
            return self.repository.get(Budgets.create_id(org_slug))  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return Budgets(org_slug=org_slug)

    def _save_budgets(self, budgets: Budgets) -> None:
        try:
            self.save(budgets)
        except IntegrityError:
            raise Conflict("budgets changed at the same time; try again") from None

    def _alert_log(self, org_slug: str) -> AlertLog:
        try:
            return self.repository.get(AlertLog.create_id(org_slug))  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return AlertLog(org_slug=org_slug)


def _alert_view(a: UsageAlert, now: int) -> dict[str, Any]:
    return {"id": str(a.id), "org_slug": a.org_slug, "project_ref": a.project_ref, "metric": a.metric,
            "kind": a.kind, "threshold_percent": a.threshold_percent, "limit": a.limit, "quantity": a.quantity,
            "period_start": a.period_start, "period_end": a.period_end, "triggered_at": now}


def _public(a: dict[str, Any]) -> dict[str, Any]:
    return {**a, "period_start": iso(a["period_start"]), "period_end": iso(a["period_end"]),
            "triggered_at": iso(a["triggered_at"])}


def alert_mail(p: dict[str, Any], public_url: str) -> tuple[str, str]:
    metric = p["metric"]
    what = f"project {p['project_ref']}" if p.get("project_ref") else f"organization {p['org_slug']}"
    target = "budget" if p["kind"] == "budget" else "plan quota"
    subject = f"{what} has used {p['threshold_percent']}% of its {metric} {target}"
    start = p["period_start"]
    start = start.isoformat() if hasattr(start, "isoformat") else str(start)
    body = (
        f"Usage alert for {what} (organization {p['org_slug']}).\n\n"
        f"{metric}: {human(metric, p['quantity'])} used of {human(metric, p['limit'])} "
        f"({target}) in the billing period starting {start[:10]}.\n"
        f"That is at least {p['threshold_percent']}% of the {target}.\n\n"
        f"See the organization's usage: {public_url.rstrip('/')}/platform/organizations/{p['org_slug']}/usage\n"
    )
    return subject, body


def human(metric: str, quantity: int) -> str:
    if metric.endswith("_bytes"):
        for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
            if quantity >= size:
                return f"{quantity / size:.2f} {unit}"
        return f"{quantity} bytes"
    return f"{quantity:,}"


def _check_org(org_slug: Any) -> None:
    if not isinstance(org_slug, str) or not SLUG_RE.match(org_slug):
        raise NotFound("organization not found")


def _check_ref(ref: Any) -> None:
    if not isinstance(ref, str) or not REF_RE.match(ref):
        raise NotFound("project not found")


def _check_metric(metric: Any) -> None:
    if metric not in METRICS:
        raise InvalidInput(f"metric: one of {', '.join(METRICS)}")


def _range(start_iso: str, end_iso: str) -> tuple[int, int]:
    try:
        start = parse_instant(start_iso, "start")
        end = parse_instant(end_iso, "end")
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    if end <= start:
        raise InvalidInput("end: must be after start")
    return start, end

