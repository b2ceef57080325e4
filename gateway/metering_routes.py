"""Usage routes of the gateway: an organization's or project's usage per period (for the
dashboard), usage alerts, and per-project budgets. Plain handler functions: authorise
through orgs (`usage.read`, `usage.budgets`), then call the metering service.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from marshmallow import RAISE, Schema, fields, validate
from werkzeug.wrappers import Request, Response

from .app import json_response
from .errors import HttpError
from .routing import route

METRICS = ["api_requests", "egress_bytes", "function_invocations", "realtime_messages", "realtime_peak_connections",
           "db_size_bytes", "storage_bytes"]
GAUGES = {"db_size_bytes", "storage_bytes", "realtime_peak_connections"}
GRANULARITIES = ["hour", "day", "week", "month"]
Ctx = dict[str, Any]


# ---- schemas ----------------------------------------------------------------------------------

class UsagePeriod(Schema):
    period_start = fields.String(required=True, metadata={"description": "Start of the period (ISO 8601, UTC)"})
    quantity = fields.Integer(required=True, metadata={"description": "Sum (counters) or peak (gauges) in the period"})


class UsageSeriesResponse(Schema):
    organization_slug = fields.String(required=True)
    project_ref = fields.String(required=True, allow_none=True, metadata={"description": "null: the whole organization"})
    metric = fields.String(required=True, validate=validate.OneOf(METRICS))
    aggregate = fields.String(required=True, validate=validate.OneOf(["sum", "peak"]),
                              metadata={"description": "sum for counters; peak for sizes (an organization's size "
                                                       "is the sum of its projects' hourly peaks)"})
    unit = fields.String(required=True, validate=validate.OneOf(["bytes", "count"]))
    granularity = fields.String(required=True, validate=validate.OneOf(GRANULARITIES))
    start = fields.String(required=True)
    end = fields.String(required=True)
    periods = fields.List(fields.Nested(UsagePeriod), required=True,
                          metadata={"description": "Every period from the one containing start to end; 0 where nothing was used"})


class UsageAlertResponse(Schema):
    id = fields.String(required=True)
    org_slug = fields.String(required=True)
    project_ref = fields.String(required=True, allow_none=True, metadata={"description": "Set for a budget alert"})
    kind = fields.String(required=True, validate=validate.OneOf(["quota", "budget"]))
    metric = fields.String(required=True, validate=validate.OneOf(METRICS))
    threshold_percent = fields.Integer(required=True, validate=validate.OneOf([50, 80, 100]))
    limit = fields.Integer(required=True)
    quantity = fields.Integer(required=True, metadata={"description": "Usage in the period when the crossing was seen"})
    period_start = fields.String(required=True)
    period_end = fields.String(required=True)
    triggered_at = fields.String(required=True)


class BudgetResponse(Schema):
    project_ref = fields.String(required=True)
    metric = fields.String(required=True, validate=validate.OneOf(METRICS))
    limit = fields.Integer(required=True, metadata={"description": "Per calendar month, in the metric's unit "
                                                                   "(bytes or count); alerts at 50, 80 and 100 %"})


class BudgetBody(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**63 - 1),
                           metadata={"description": "Per calendar month, in the metric's unit (bytes or count)"})


# ---- helpers ----------------------------------------------------------------------------------

def _month_bounds(now: datetime) -> tuple[str, str]:
    start = datetime(now.year, now.month, 1, tzinfo=timezone.utc)
    end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=timezone.utc)
    return start.isoformat(), end.isoformat()


def _project_org(gw: Any, me: Any, ref: str, action: str) -> str:
    """The organization of a project the caller may `action` in (404 for non-members)."""
    project = gw.services.projects.get_project(me.id, ref)
    org = project["organization_slug"]
    gw.services.orgs.authorize(me.id, org, action)
    return str(org)


# ---- routes -----------------------------------------------------------------------------------

@route("GET", "/platform/organizations/<slug>/usage", summary="Usage of the organization or one project, per period",
       tag="usage", response=UsageSeriesResponse,
       query={"metric": f"required: one of {', '.join(METRICS)}",
              "granularity": "hour, day (default), week (ISO, from Monday) or month",
              "start": "ISO 8601 (default: start of this calendar month, UTC)",
              "end": "ISO 8601, exclusive (default: start of next month)",
              "project_ref": "one project of the organization (default: the whole organization)"})
def get_usage(gw: Any, request: Request, ctx: Ctx, slug: str) -> Response:
    me = gw.caller(request, ctx)
    gw.services.orgs.authorize(me.id, slug, "usage.read")
    args = request.args
    metric = args.get("metric")
    if metric not in METRICS:
        raise HttpError.invalid({"metric": [f"one of {', '.join(METRICS)}"]})
    granularity = args.get("granularity", "day")
    if granularity not in GRANULARITIES:
        raise HttpError.invalid({"granularity": [f"one of {', '.join(GRANULARITIES)}"]})
    default_start, default_end = _month_bounds(datetime.now(timezone.utc))
    start, end = args.get("start", default_start), args.get("end", default_end)
    ref = args.get("project_ref") or None
    if ref is not None and _project_org(gw, me, ref, "usage.read") != slug:
        raise HttpError(404, f"project {ref} not found in organization {slug}")
    periods = gw.services.metering.query_usage(slug, ref, metric, start, end, granularity)
    return json_response(UsageSeriesResponse().dump({
        "organization_slug": slug, "project_ref": ref, "metric": metric,
        "aggregate": "peak" if metric in GAUGES else "sum", "unit": "bytes" if metric.endswith("_bytes") else "count",
        "granularity": granularity, "start": start, "end": end, "periods": periods}))


@route("GET", "/platform/organizations/<slug>/usage/alerts", summary="Usage alerts (quotas and budgets), newest first",
       tag="usage", response=UsageAlertResponse, many=True, query={"limit": "at most this many (1-1000, default 100)"})
def list_usage_alerts(gw: Any, request: Request, ctx: Ctx, slug: str) -> Response:
    me = gw.caller(request, ctx)
    gw.services.orgs.authorize(me.id, slug, "usage.read")
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise HttpError.invalid({"limit": ["must be an integer from 1 to 1000"]})
    return json_response(UsageAlertResponse(many=True).dump(gw.services.metering.list_alerts(slug, int(raw))))


@route("GET", "/platform/projects/<ref>/budgets", summary="The project's usage budgets", tag="usage",
       response=BudgetResponse, many=True)
def list_budgets(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    org = _project_org(gw, me, ref, "usage.read")
    return json_response(BudgetResponse(many=True).dump(gw.services.metering.list_budgets(org, ref)))


@route("PUT", "/platform/projects/<ref>/budgets/<metric>",
       summary="Set a monthly budget for one metric (owner, admin); alerts at 50, 80 and 100 %", tag="usage",
       body=BudgetBody, response=BudgetResponse)
def set_budget(gw: Any, request: Request, ctx: Ctx, ref: str, metric: str) -> Response:
    me = gw.caller(request, ctx)
    data = gw.body(request, BudgetBody)
    if metric not in METRICS:
        raise HttpError(404, f"no metric {metric}; one of {', '.join(METRICS)}")
    org = _project_org(gw, me, ref, "usage.budgets")
    return json_response(BudgetResponse().dump(gw.services.metering.set_budget(org, ref, metric, data["limit"], ctx)))


@route("DELETE", "/platform/projects/<ref>/budgets/<metric>", summary="Remove a budget (owner, admin)",
       tag="usage", status=204)
def remove_budget(gw: Any, request: Request, ctx: Ctx, ref: str, metric: str) -> Response:
    me = gw.caller(request, ctx)
    if metric not in METRICS:
        raise HttpError(404, f"no metric {metric}; one of {', '.join(METRICS)}")
    org = _project_org(gw, me, ref, "usage.budgets")
    gw.services.metering.remove_budget(org, ref, metric, ctx)
    return json_response(None, 204)
