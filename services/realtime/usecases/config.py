"""Use cases of a project's realtime settings: read them, change them (checked against the
spec's bounds and the plan's ceilings), shut the project's realtime connections down.

Mixed into RealtimeApplication (services/realtime/application.py). Imports the domain, the
shared settings shape (services/realtime/config.py) and shared errors. Ports are passed per
call by the service: `projects` (who may see a project), `orgs` (authorize changes),
`billing` (the plan's entitlements: `realtime.max_*` ceilings).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from services.shared.errors import Conflict, Forbidden, InvalidInput, LimitExceeded, NotFound

from ..config import BOUNDS, DEFAULT, RealtimeConfig
from ..domain import ProjectRealtime, RuleViolation

FIELDS = tuple(DEFAULT.as_dict())
BOOLEAN = tuple(k for k in FIELDS if k not in BOUNDS)
# Statuses in which a project has no realtime tenant to shut down (the spec's "Tenant not found").
NO_TENANT = {"INACTIVE", "PAUSING", "REMOVED", "GOING_DOWN", "RESTORING", "COMING_UP", "INIT_FAILED"}


class ProjectsPort(Protocol):
    def get_project(self, user_id: str, ref: str) -> dict[str, Any]: ...


class OrgsPort(Protocol):
    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]: ...


class BillingPort(Protocol):
    def get_entitlements(self, org_slug: str) -> dict[str, Any]: ...


def meta_of(ctx: dict[str, Any] | None) -> dict[str, Any]:
    ctx = ctx or {}
    return {k: ctx.get(k) for k in ("actor", "correlation_id", "causation_id")}


def ceilings(entitlements: dict[str, Any]) -> dict[str, int]:
    """The plan's `realtime.max_*` ceilings (a null or missing one: the spec's own maximum)."""
    plan = entitlements.get("realtime") or {}
    return {k: int(plan[k]) if plan.get(k) is not None else hi for k, (_, hi) in BOUNDS.items()}


def plan_defaults(caps: dict[str, int]) -> dict[str, Any]:
    """Supabase's defaults for a new project, never above what the plan allows."""
    return {k: (min(v, caps[k]) if k in caps else v) for k, v in DEFAULT.as_dict().items()}


def check_changes(body: Any) -> dict[str, Any]:
    """UpdateRealtimeConfigBody, checked field by field (every message names its field)."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object of realtime settings")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown realtime setting (known: {', '.join(FIELDS)})")
    for k, v in body.items():
        if k in BOOLEAN:
            if not isinstance(v, bool):
                raise InvalidInput(f"{k}: true or false")
        else:
            lo, hi = BOUNDS[k]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InvalidInput(f"{k}: an integer from {lo} to {hi}")
    return dict(body)


class ConfigCommands:
    """The config part of RealtimeApplication (an eventsourcing Application)."""

    views: Any
    repository: Any
    clock: Callable[[], float] = staticmethod(time.time)

    # -- reads ---------------------------------------------------------------------------------
    def get_realtime_config(self, user_id: str, ref: str, projects: ProjectsPort) -> dict[str, Any]:
        """RealtimeConfigResponse: every field, defaults filled in."""
        self._readable(user_id, ref, projects)
        return self.config_of(ref).as_dict()

    def realtime_settings_page(self, user_id: str, ref: str, projects: ProjectsPort, orgs: OrgsPort,
                               billing: BillingPort) -> dict[str, Any]:
        """What the dashboard's settings form needs: the settings, the plan's ceilings, the
        spec's bounds and whether the caller may change them (the UI does not re-code roles)."""
        project = self._readable(user_id, ref, projects)
        org = _org(project)
        ent = billing.get_entitlements(org)
        try:  # the matrix lives in orgs: ask it rather than re-code who may change settings
            orgs.authorize(user_id, org, "projects.manage")
            can_change = True
        except Forbidden:
            can_change = False
        return {"ref": ref, "plan": ent.get("plan"), "settings": self.config_of(ref).as_dict(),
                "ceilings": ceilings(ent), "bounds": {k: list(v) for k, v in BOUNDS.items()},
                "can_change": can_change,
                "shutdowns": (self.views.get(ref) or {}).get("shutdowns", 0)}

    def config_of(self, ref: str) -> RealtimeConfig:
        """The settings in force (from the read model; DEFAULT for a project never changed)."""
        row = self.views.get(ref)
        if row is None:
            return DEFAULT
        known = {k: v for k, v in row["settings"].items() if k in FIELDS}
        return DEFAULT.updated(**known)

    def config_row(self, ref: str) -> dict[str, Any]:
        """For the realtime server: the settings in force, their version and shutdown count."""
        row = self.views.get(ref)
        if row is None:
            return {"ref": ref, "version": 0, "settings": DEFAULT.as_dict(), "shutdowns": 0}
        return {**row, "settings": self.config_of(ref).as_dict()}

    # -- commands ------------------------------------------------------------------------------
    def update_realtime_config(self, user_id: str, ref: str, body: Any, projects: ProjectsPort, orgs: OrgsPort,
                               billing: BillingPort, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """PATCH: checks everything before changing anything; returns the settings in force
        and {field: [from, to]} of what changed."""
        project = self._writable(user_id, ref, projects, orgs)
        org = _org(project)
        changes = check_changes(body)
        ent = billing.get_entitlements(org)
        caps = ceilings(ent)
        for k, v in changes.items():
            if k in caps and v > caps[k]:
                raise LimitExceeded(f"{k}: the {ent.get('plan', 'current')} plan allows at most {caps[k]} "
                                    f"(asked for {v}); upgrade the plan for more")
        for _ in range(10):
            agg = self._aggregate(ref, org, caps)
            try:
                changed = agg.change(changes, at_ms=self._now_ms(), meta=meta_of(ctx))
            except RuleViolation as e:
                raise InvalidInput(str(e)) from None
            if not changed and agg.version > 1:
                return {"settings": self.config_of(ref).as_dict(), "changed": {}}
            try:
                self.save(agg)
            except IntegrityError:
                continue  # changed at the same moment: reload and apply again
            return {"settings": dict(agg.settings), "changed": changed}
        raise Conflict("realtime settings changed at the same time by another request; try again")

    def shutdown_realtime(self, user_id: str, ref: str, projects: ProjectsPort, orgs: OrgsPort,
                          billing: BillingPort, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Disconnect every realtime client of the project (they may connect again): recorded
        as an event, which the realtime server acts on."""
        project = self._writable(user_id, ref, projects, orgs)
        if project.get("status") in NO_TENANT:
            raise NotFound(f"Tenant not found: the project is {project.get('status')}, it has no realtime connections")
        caps = ceilings(billing.get_entitlements(_org(project)))
        for _ in range(10):
            agg = self._aggregate(ref, _org(project), caps)
            seq = agg.shutdown(at_ms=self._now_ms(), meta=meta_of(ctx))
            try:
                self.save(agg)
            except IntegrityError:
                continue
            return {"ref": ref, "shutdowns": seq}
        raise Conflict("realtime settings changed at the same time by another request; try again")

    # -- helpers -------------------------------------------------------------------------------
    def config_view_row(self, agg: ProjectRealtime) -> tuple[str, str, int, dict[str, Any], int]:
        return (agg.ref, agg.org_slug, agg.version, dict(agg.settings), agg.shutdowns)

    def _aggregate(self, ref: str, org: str, caps: dict[str, int]) -> ProjectRealtime:
        try:
            agg: ProjectRealtime = self.repository.get(ProjectRealtime.create_id(ref=ref))
            return agg
        except AggregateNotFoundError:
            return ProjectRealtime(ref=ref, org_slug=org, settings=plan_defaults(caps))

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _readable(self, user_id: str, ref: str, projects: ProjectsPort) -> dict[str, Any]:
        project = projects.get_project(user_id, ref)  # members only; NotFound for anyone else
        if project.get("status") == "REMOVED":
            raise NotFound(f"project {ref} not found")
        return project

    def _writable(self, user_id: str, ref: str, projects: ProjectsPort, orgs: OrgsPort) -> dict[str, Any]:
        project = self._readable(user_id, ref, projects)
        orgs.authorize(user_id, _org(project), "projects.manage")
        return project


def _org(project: dict[str, Any]) -> str:
    return str(project.get("organization_slug") or project["organization_id"])
