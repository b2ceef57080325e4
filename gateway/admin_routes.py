"""Admin panel API: platform-wide routes under /platform/admin/, for platform admins only.

Who is a platform admin is the orgs service's answer (`require_admin`: the User.is_admin flag,
set by `platformctl users promote` or another admin). Every route declares `who="admin"`, so
the gateway asks it before the handler runs (and no organization membership is required,
even with a project's <ref> in the path), and the
services ask it again for what they return or change, so a forged request gets 403 either way.
System health is the same computation as `platformctl status` (services/shared/status.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from marshmallow import Schema, fields, validate
from werkzeug.wrappers import Request, Response

from services.shared.status import platform_status

from . import schemas as s
from .app import Caller, json_response
from .errors import HttpError
from .routing import route

Ctx = dict[str, Any]
log = logging.getLogger("gateway.admin")


def _admin(gw: Any, request: Request, ctx: Ctx) -> Caller:
    return gw.require_admin(request, ctx)  # type: ignore[no-any-return]


# ---- schemas ----------------------------------------------------------------------------------

class AdminStats(Schema):
    users = fields.Integer(required=True)
    admins = fields.Integer(required=True)
    disabled_users = fields.Integer(required=True)
    organizations = fields.Integer(required=True)
    memberships = fields.Integer(required=True)
    pending_invitations = fields.Integer(required=True)
    projects = fields.Integer(required=True, metadata={"description": "Projects not removed"})
    projects_by_status = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    usage = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True, required=True,
                        metadata={"description": "This month's usage per metric over all organizations with projects "
                                                 "(sizes: the sum of their peaks); null when metering does not answer"})


class AdminOrganization(s.Organization):
    members = fields.Integer(required=True)
    owners = fields.List(fields.String(), required=True, metadata={"description": "Owners' emails"})
    projects = fields.Integer(required=True, metadata={"description": "Projects not removed"})


class AdminProject(s.ProjectDetail):
    pass


class AdminUser(s.User):
    disabled = fields.Boolean(required=True)
    created_at = fields.String(required=True)


class AdminUserUpdate(s.Strict):
    is_admin = fields.Boolean(metadata={"description": "Grant or take away platform admin rights"})
    disabled = fields.Boolean(metadata={"description": "Disable (no sign-in; sessions and tokens refused) or enable"})


class HealthProcess(Schema):
    name = fields.String(required=True)
    up = fields.Boolean(required=True)
    detail = fields.String(required=True)


class HealthQueue(Schema):
    name = fields.String(required=True)
    ready = fields.Integer(required=True)
    unacked = fields.Integer(required=True)
    consumers = fields.Integer(required=True)
    dead_letters = fields.Integer(required=True, metadata={"description": "Messages parked in this dead-letter queue"})


class HealthRelay(Schema):
    producer = fields.String(required=True)
    position = fields.Integer(required=True, metadata={"description": "Last position the relay published"})
    newest = fields.Integer(required=True, metadata={"description": "Newest position in the producer's store"})
    lag = fields.Integer(required=True)


class AdminHealth(Schema):
    processes = fields.List(fields.Nested(HealthProcess), required=True)
    queues = fields.List(fields.Nested(HealthQueue), required=True)
    relay = fields.List(fields.Nested(HealthRelay), required=True)
    down = fields.List(fields.String(), required=True)
    problems = fields.List(fields.String(), required=True)


# ---- routes -----------------------------------------------------------------------------------

@route("GET", "/platform/admin/overview", summary="Platform-wide statistics (platform admins)", tag="admin", who="admin",
       response=AdminStats)
def admin_overview(gw: Any, request: Request, ctx: Ctx) -> Response:
    me = _admin(gw, request, ctx)
    stats = dict(gw.services.orgs.admin_stats(me.id))
    projects = gw.services.projects.admin_list_projects(me.id)
    by_status = Counter(p["status"] for p in projects)
    stats["projects_by_status"] = dict(sorted(by_status.items()))
    stats["projects"] = sum(n for status, n in by_status.items() if status != "REMOVED")
    orgs = sorted({p["organization_slug"] for p in projects})
    stats["usage"] = _usage_totals(gw, orgs)
    return json_response(AdminStats().dump(stats))


def _usage_totals(gw: Any, org_slugs: list[str]) -> dict[str, int] | None:
    """This month's usage summed over the organizations that have projects (counters: the
    month's sum; sizes: the sum of each organization's peak). None if metering cannot say."""
    now = datetime.now(timezone.utc)
    start = datetime(now.year, now.month, 1, tzinfo=timezone.utc)
    end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=timezone.utc)
    totals: Counter[str] = Counter()
    try:
        for slug in org_slugs:
            totals.update(gw.services.metering.period_totals(slug, start.isoformat(), end.isoformat()))
    except Exception:  # noqa: BLE001 -- metering down or busy: the panel shows everything else
        log.warning("admin overview: no usage totals from metering", exc_info=True)
        return None
    return dict(sorted(totals.items()))


@route("GET", "/platform/admin/organizations", summary="Every organization (platform admins)", tag="admin", who="admin",
       response=AdminOrganization, many=True)
def admin_organizations(gw: Any, request: Request, ctx: Ctx) -> Response:
    me = _admin(gw, request, ctx)
    orgs = gw.services.orgs.admin_list_organizations(me.id)
    counts = Counter(p["organization_slug"] for p in gw.services.projects.admin_list_projects(me.id)
                     if p["status"] != "REMOVED")
    return json_response(AdminOrganization(many=True).dump([{**o, "projects": counts.get(o["slug"], 0)} for o in orgs]))


@route("GET", "/platform/admin/projects", summary="Every project, removed ones too (platform admins)", tag="admin", who="admin",
       response=AdminProject, many=True)
def admin_projects(gw: Any, request: Request, ctx: Ctx) -> Response:
    me = _admin(gw, request, ctx)
    return json_response(AdminProject(many=True).dump(gw.services.projects.admin_list_projects(me.id)))


def _project_action(gw: Any, request: Request, ctx: Ctx, ref: str, action: str) -> Response:
    me = _admin(gw, request, ctx)
    project = gw.services.projects.admin_project_action(me.id, ref, action, ctx)
    return json_response(s.V1ProjectResponse().dump(project))


@route("POST", "/platform/admin/projects/<ref>/pause", summary="Pause any project (platform admins)", tag="admin", who="admin",
       response=s.V1ProjectResponse)
def admin_pause_project(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    return _project_action(gw, request, ctx, ref, "pause")


@route("POST", "/platform/admin/projects/<ref>/restore", summary="Restore any paused project (platform admins)",
       tag="admin", who="admin", response=s.V1ProjectResponse)
def admin_restore_project(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    return _project_action(gw, request, ctx, ref, "restore")


@route("DELETE", "/platform/admin/projects/<ref>", summary="Delete any project (platform admins)", tag="admin", who="admin",
       response=s.V1ProjectResponse)
def admin_delete_project(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    return _project_action(gw, request, ctx, ref, "delete")


@route("GET", "/platform/admin/users", summary="Every user (platform admins)", tag="admin", who="admin", response=AdminUser,
       many=True)
def admin_users(gw: Any, request: Request, ctx: Ctx) -> Response:
    me = _admin(gw, request, ctx)
    return json_response(AdminUser(many=True).dump(gw.services.orgs.admin_list_users(me.id)))


@route("PATCH", "/platform/admin/users/<user_id>", summary="Promote, demote, disable or enable a user "
       "(platform admins; not yourself)", tag="admin", who="admin", body=AdminUserUpdate, response=AdminUser)
def admin_update_user(gw: Any, request: Request, ctx: Ctx, user_id: str) -> Response:
    me = _admin(gw, request, ctx)
    data = gw.body(request, AdminUserUpdate)
    user: dict[str, Any] | None = None
    if "disabled" in data:
        user = gw.services.orgs.admin_set_disabled(me.id, user_id, data["disabled"], ctx)
    if "is_admin" in data:
        user = gw.services.orgs.admin_set_admin(me.id, user_id, data["is_admin"], ctx)
    if user is None:
        raise HttpError.invalid({"_": ["give is_admin or disabled"]})
    return json_response(AdminUser().dump(user))


@route("GET", "/platform/admin/health", summary="System health: processes, queue depths, relay lag, dead letters "
       "(platform admins; what `platformctl status` shows)", tag="admin", who="admin", response=AdminHealth)
def admin_health(gw: Any, request: Request, ctx: Ctx) -> Response:
    _admin(gw, request, ctx)
    return json_response(AdminHealth().dump(platform_status(gw.settings)))
