"""projects application: create, list, pause, restore, delete projects; credentials and
settings; applies provisioner outcomes. One method per command, one save each.

Imports the domain, eventsourcing, shared errors/crypto and its own helpers. Ports: `orgs`
(authorize), `billing` (entitlements), `provisioner` (tenant health), passed per call by
the service; `box` (secrets at rest) set by bootstrap.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from typing import ContextManager, Any, Callable, Protocol

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from services.shared.crypto import SecretBox
from services.shared.eventstore import GroupCommit, retry_on_conflict
from services.shared.errors import Conflict, Forbidden, InvalidInput, LimitExceeded, NotFound, PlatformError, rules_as
from services.shared.secretnames import SEALED_PREFIX, auth_secret_context, is_secret_name

from . import keys
from .auth_config_fields import FIELDS as AUTH_FIELDS
from .domain import ACTIVE, TRANSITIONAL, IdempotencyRecord, OrgProjects, Project, RuleViolation

REF_RE = re.compile(r"^[a-z]{20}$")
REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-east-1", "ap-southeast-1", "ap-northeast-1",
           "ap-northeast-2", "ap-southeast-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1", "eu-central-1",
           "eu-central-2", "ca-central-1", "ap-south-1", "sa-east-1")
SMART_GROUPS = {"americas": "us-east-1", "emea": "eu-central-1", "apac": "ap-southeast-1"}
POSTGRES_VERSION = "15"


class OrgsPort(Protocol):
    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]: ...
    def list_organizations(self, user_id: str) -> list[dict[str, Any]]: ...


class BillingPort(Protocol):
    def get_entitlements(self, org_slug: str) -> dict[str, Any]: ...


class ProvisionerPort(Protocol):
    def check_tenant(self, ref: str) -> dict[str, Any]: ...


def new_ref() -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(20))


def meta_of(ctx: dict[str, Any] | None) -> dict[str, Any]:
    ctx = ctx or {}
    return {k: ctx.get(k) for k in ("actor", "correlation_id", "causation_id")}


class ProjectsApplication(GroupCommit, Application):
    name = "projects"

    box: SecretBox
    db_host: str = "127.0.0.1"
    clock: Callable[[], float] = staticmethod(time.time)

    # project_views, the read model (services/projects/readmodel.py): set by bootstrap
    views: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._org_locks = tuple(threading.Lock() for _ in range(64))  # striped by org slug
        self._org_queues: dict[str, list[_NewProject]] = {}
        self._org_queues_lock = threading.Lock()
        # ref -> (operation_id, step_index, operation over) as last stored (see _note_seen)
        self._seen: OrderedDict[str, tuple[str, int, bool]] = OrderedDict()
        self._seen_lock = threading.Lock()

    # ===== create ==============================================================================
    def create_project(self, user_id: str, body: dict[str, Any], orgs: OrgsPort, billing: BillingPort,
                       idempotency_key: str | None = None, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        name, org_slug, db_pass, region = self._check_create(body)
        orgs.authorize(user_id, org_slug, "projects.create")
        request_hash = hashlib.sha256(json.dumps([name, org_slug, db_pass, region]).encode()).hexdigest()
        if idempotency_key is not None:
            if not (1 <= len(idempotency_key) <= 255):
                raise InvalidInput("Idempotency-Key: 1 to 255 characters")
            earlier = self._idempotent_result(user_id, idempotency_key, request_hash)
            if earlier is not None:
                return earlier
        entitlements = billing.get_entitlements(org_slug)
        meta = meta_of(ctx)
        for _ in range(20):
            ref = new_ref()
            secret = keys.new_jwt_secret()
            new = _NewProject(ref, entitlements, {
                "name": name, "region": region, "db_pass_enc": self.box.encrypt(db_pass, ref),
                "jwt_secret_enc": self.box.encrypt(secret, ref), "meta": meta,
                "authenticator_pass_enc": self.box.encrypt(keys.new_jwt_secret(), ref)},
                None if idempotency_key is None else {"scope": user_id, "key": idempotency_key,
                                                      "request_hash": request_hash})
            try:
                return self._view(self._add_in_turn(org_slug, new))
            except IntegrityError:
                # Another create for this org (or with this key) won the race: look again.
                if idempotency_key is not None:
                    earlier = self._idempotent_result(user_id, idempotency_key, request_hash)
                    if earlier is not None:
                        return earlier
        raise Conflict("too many concurrent changes to this organization's projects; try again")

    def _add_in_turn(self, org_slug: str, new: _NewProject) -> Project:
        """Record a new project in its organization's OrgProjects. Creates for one
        organization all append to that aggregate, so side by side all but one would lose
        the save and start again: in this process they take turns (a lock per organization,
        striped), and whoever's turn it is adds every create queued for the organization
        meanwhile, in one save. Another process can still win a race: IntegrityError, and
        the caller tries again, as before."""
        with self._org_queues_lock:
            self._org_queues.setdefault(org_slug, []).append(new)
        with self._org_locks[zlib.crc32(org_slug.encode()) % len(self._org_locks)]:
            if not new.done:
                with self._org_queues_lock:
                    batch = self._org_queues.pop(org_slug, [])
                self._add_batch(org_slug, batch)
        if new.error is not None:
            raise new.error
        assert new.project is not None
        return new.project

    def _add_batch(self, org_slug: str, batch: list[_NewProject]) -> None:
        try:
            org_projects = self._org_projects(org_slug)
            pending: list[Any] = []
            added: list[tuple[_NewProject, Project]] = []
            keys_seen: set[tuple[str, str]] = set()
            later: list[_NewProject] = []
            for new in batch:
                if new.idempotency is not None:
                    key = (new.idempotency["scope"], new.idempotency["key"])
                    if key in keys_seen:
                        # The same request twice at once: the first is saved, this one then
                        # finds its record (the caller looks on IntegrityError).
                        later.append(new)
                        continue
                    keys_seen.add(key)
                try:
                    self._check_limit(org_projects, new.entitlements, adding=new.ref)
                except LimitExceeded as exc:
                    new.error, new.done = exc, True
                    continue
                project = Project(ref=new.ref, org_slug=org_slug, keys_issued_at=int(self.clock()),
                                  operation_id=str(uuid.uuid4()), **new.fields)
                org_projects.add(ref=new.ref)
                pending.append(project)
                if new.idempotency is not None:
                    pending.append(IdempotencyRecord(ref=new.ref, **new.idempotency))
                added.append((new, project))
            if added:
                self.save(*pending, org_projects)
            for new, project in added:
                new.project, new.done = project, True
            for new in later:
                new.error, new.done = IntegrityError("same Idempotency-Key in flight"), True
        except Exception as exc:  # noqa: BLE001 -- each waiting create gets it (IntegrityError: they retry)
            for new in batch:
                if not new.done:
                    new.error, new.done = exc, True
        finally:
            for new in batch:
                if not new.done:
                    new.error, new.done = RuntimeError("create interrupted"), True

    def _check_create(self, body: dict[str, Any]) -> tuple[str, str, str, str]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 256:
            raise InvalidInput("name: 1 to 256 characters")
        org_slug = body.get("organization_slug") or body.get("organization_id")
        if not isinstance(org_slug, str) or not re.match(r"^[\w-]{1,64}$", org_slug):
            raise InvalidInput("organization_slug: required, an organization slug")
        db_pass = body.get("db_pass")
        if not isinstance(db_pass, str) or len(db_pass) < 8 or len(db_pass) > 256:
            raise InvalidInput("db_pass: at least 8 characters")
        region = body.get("region")
        selection = body.get("region_selection")
        if region is not None and selection is not None:
            raise InvalidInput("region: give region or region_selection, not both")
        if isinstance(selection, dict):
            if selection.get("type") == "specific":
                region = selection.get("code")
            elif selection.get("type") == "smartGroup" and selection.get("code") in SMART_GROUPS:
                region = SMART_GROUPS[selection["code"]]
            else:
                raise InvalidInput("region_selection: type specific with a region code, or smartGroup "
                                   "with americas, emea or apac")
        region = region or "us-east-1"
        if region not in REGIONS:
            raise InvalidInput(f"region: unknown region {region!r}; one of {', '.join(REGIONS)}")
        return name.strip(), org_slug, db_pass, region

    def _idempotent_result(self, user_id: str, key: str, request_hash: str) -> dict[str, Any] | None:
        try:
            rec: IdempotencyRecord = self.repository.get(IdempotencyRecord.create_id(scope=user_id, key=key))
        except AggregateNotFoundError:
            return None
        if rec.request_hash != request_hash:
            raise Conflict("Idempotency-Key was already used with a different request body")
        return self._view(self._project(rec.ref))

    def _check_limit(self, org_projects: OrgProjects, entitlements: dict[str, Any], adding: str) -> None:
        limit = entitlements.get("max_projects")
        if limit is not None and adding not in org_projects.active and len(org_projects.active) >= limit:
            raise LimitExceeded(
                f"the {entitlements.get('plan', 'current')} plan allows at most {limit} active projects per "
                f"organization ({len(org_projects.active)} active); pause or delete one, or upgrade the plan")

    # ===== lifecycle ===========================================================================
    @retry_on_conflict
    def pause_project(self, user_id: str, ref: str, orgs: OrgsPort, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        project = self._authorized(user_id, ref, "projects.manage", orgs)
        with _rules():
            project.request_pause(operation_id=str(uuid.uuid4()), meta=meta_of(ctx))
        self.save(project)
        return self._view(project)

    @retry_on_conflict
    def restore_project(self, user_id: str, ref: str, orgs: OrgsPort, billing: BillingPort,
                        ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        project = self._authorized(user_id, ref, "projects.manage", orgs)
        org_projects = self._org_projects(project.org_slug)
        self._check_limit(org_projects, billing.get_entitlements(project.org_slug), adding=ref)
        with _rules():
            project.request_restore(operation_id=str(uuid.uuid4()), meta=meta_of(ctx))
        org_projects.set_active(ref, True)
        self.save(project, org_projects)
        return self._view(project)

    @retry_on_conflict
    def delete_project(self, user_id: str, ref: str, orgs: OrgsPort, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        project = self._authorized(user_id, ref, "projects.delete", orgs)
        with _rules():
            project.request_deletion(operation_id=str(uuid.uuid4()), meta=meta_of(ctx))
        self.save(project)
        return self._view(project)

    def close(self) -> None:
        close = getattr(self.views, "close", None)
        if callable(close):
            close()
        super().close()

    # ===== read model ==========================================================================
    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Every save also writes the saved projects' rows of the read model: in the events'
        transaction on PostgreSQL, right after it in memory."""
        rows = [self._view_row(o) for o in objs if isinstance(o, Project)] if self.views is not None else []
        if rows and self.views.in_transaction:
            kwargs["read_model"] = rows
        recordings = super().save(*objs, **kwargs)
        if rows and not self.views.in_transaction:
            self.views.apply(rows)
        return recordings

    def _view_row(self, project: Project) -> tuple[str, str, str, str, int, dict[str, Any]]:
        return (project.ref, project.org_slug, project.status, project.created_on.isoformat(), project.version,
                self._view(project, detail=True))

    def rebuild_views(self) -> int:
        """Fill the read model again from the events (`platformctl projections rebuild`)."""
        self.views.clear()
        topic = get_topic(Project.Requested)
        position, count = 1, 0
        while True:
            batch = self.recorder.select_notifications(position, limit=1000, topics=[topic])
            self.views.apply(self._view_row(self.repository.get(n.originator_id)) for n in batch)
            count += len(batch)
            if len(batch) < 1000:
                return count
            position = batch[-1].id + 1

    # ===== reads ===============================================================================
    def get_project(self, user_id: str, ref: str, orgs: OrgsPort, org_slugs: list[str] | None = None) -> dict[str, Any]:
        """One project, for a member of its organization. `org_slugs`: the caller's
        organizations as the gateway knows them (then orgs is not asked; any role may read)."""
        if org_slugs is None or self.views is None:
            return self._view(self._authorized(user_id, ref, "projects.read", orgs), detail=True)
        view = self.views.get(ref) if isinstance(ref, str) and REF_RE.match(ref) else None
        if view is None or view["organization_slug"] not in org_slugs:
            raise NotFound(f"project {ref} not found")
        return view

    def list_projects(self, user_id: str, orgs: OrgsPort, org_slugs: list[str] | None = None) -> list[dict[str, Any]]:
        """The projects of the caller's organizations (`org_slugs` as for get_project), from
        the read model: one query."""
        if org_slugs is None:
            org_slugs = [org["slug"] for org in orgs.list_organizations(user_id)]
        if self.views is None:
            return [self._view(p) for s in org_slugs for p in map(self._project, self._org_projects(s).refs)
                    if p.status != "REMOVED"]
        return [{k: v for k, v in view.items() if k not in ("progress", "connection")}
                for view in self.views.list_for_orgs(org_slugs)]

    def list_projects_json(self, org_slugs: list[str]) -> str:
        """list_projects for the gateway's GET /v1/projects, as JSON text (the read model
        builds it; a list of 200 costs about what a list of 1 does)."""
        if self.views is None:
            return json.dumps(self.list_projects("", _NoOrgs(), org_slugs))
        return str(self.views.list_json_for_orgs(list(org_slugs)))

    def count_projects(self, org_slug: str) -> int:
        """Projects of an organization that still exist (any status but REMOVED)."""
        org_projects = self._org_projects(org_slug)
        return sum(1 for ref in org_projects.refs if self._project(ref).status != "REMOVED")

    def project_org(self, ref: str) -> str:
        """The organization a project belongs to (for the gateway's usage meter)."""
        return self._project(ref).org_slug

    def list_active_projects(self) -> list[dict[str, Any]]:
        """Every project that uses resources now (not paused, not removed), with its
        organization: what metering samples database and storage size of."""
        topic = get_topic(Project.Requested)
        out: list[dict[str, Any]] = []
        position = 1
        while True:
            batch = self.recorder.select_notifications(position, limit=1000, topics=[topic])
            for n in batch:
                project: Project = self.repository.get(n.originator_id)
                if project.status in ACTIVE:
                    out.append({"ref": project.ref, "org_slug": project.org_slug, "status": project.status})
            if len(batch) < 1000:
                return out
            position = batch[-1].id + 1

    def api_keys(self, user_id: str, ref: str, orgs: OrgsPort) -> list[dict[str, Any]]:
        project = self._authorized(user_id, ref, "projects.read", orgs)
        self._require_live(project)
        secret = self.box.decrypt(project.jwt_secret_enc, ref)
        out = [{"name": "anon", "api_key": keys.api_key(secret, ref, "anon", project.keys_issued_at)}]
        role = orgs.authorize(user_id, project.org_slug, "projects.read")["role"]
        if role in ("owner", "admin"):
            out.append({"name": "service_role",
                        "api_key": keys.api_key(secret, ref, "service_role", project.keys_issued_at)})
        return [{**k, "id": k["name"], "type": "legacy", "description": None, "prefix": None, "hash": None,
                 "secret_jwt_template": None, "inserted_at": None, "updated_at": None} for k in out]

    @retry_on_conflict
    def rotate_jwt_secret(self, user_id: str, ref: str, orgs: OrgsPort, ctx: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        project = self._authorized(user_id, ref, "projects.secrets", orgs)
        self._require_live(project)
        with _rules():
            project.rotate_jwt_secret(jwt_secret_enc=self.box.encrypt(keys.new_jwt_secret(), ref),
                                      keys_issued_at=int(self.clock()), meta=meta_of(ctx))
        self.save(project)
        return self.api_keys(user_id, ref, orgs)

    def health(self, user_id: str, ref: str, services: list[str], orgs: OrgsPort,
               provisioner: ProvisionerPort) -> list[dict[str, Any]]:
        project = self._authorized(user_id, ref, "projects.read", orgs)
        state = provisioner.check_tenant(ref) if project.status in ("ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY") else {}
        out = []
        for name in services:
            if project.status == "COMING_UP":
                out.append({"name": name, "healthy": False, "status": "COMING_UP"})
                continue
            check = state.get(name)
            if check is None:
                out.append({"name": name, "healthy": False, "status": "UNHEALTHY",
                            "error": f"{name} is not run by this platform's driver"
                            if project.status.startswith("ACTIVE") else f"project is {project.status}"})
            else:
                ok = bool(check.get("healthy"))
                item = {"name": name, "healthy": ok, "status": "ACTIVE_HEALTHY" if ok else "UNHEALTHY"}
                if not ok and check.get("error"):
                    item["error"] = str(check["error"])
                out.append(item)
        return out

    # ===== settings ============================================================================
    def get_postgrest(self, user_id: str, ref: str, orgs: OrgsPort) -> dict[str, Any]:
        project = self._authorized(user_id, ref, "projects.read", orgs)
        return dict(project.postgrest)

    @retry_on_conflict
    def update_postgrest(self, user_id: str, ref: str, changes: dict[str, Any], orgs: OrgsPort,
                         ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        project = self._authorized(user_id, ref, "projects.manage", orgs)
        limits = {"max_rows": (0, 1_000_000), "db_pool": (0, 1000)}
        for key, value in changes.items():
            if key in ("db_schema", "db_extra_search_path"):
                if not isinstance(value, str) or len(value) > 1024:
                    raise InvalidInput(f"{key}: must be a string")
            elif key in limits:
                lo, hi = limits[key]
                if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                    raise InvalidInput(f"{key}: an integer from {lo} to {hi}")
            else:
                raise InvalidInput(f"{key}: unknown field")
        real = {k: v for k, v in changes.items() if project.postgrest.get(k) != v}
        if real:
            project.change_postgrest(changes=real, meta=meta_of(ctx))
            self.save(project)
        return dict(project.postgrest)

    def get_auth_config(self, user_id: str, ref: str, orgs: OrgsPort) -> dict[str, Any]:
        """The auth settings; secret ones (SECRET_AUTH_FIELDS) readable only by roles allowed
        `projects.secrets`, masked as SECRET_MASK for the others."""
        project = self._authorized(user_id, ref, "projects.read", orgs)
        return self._auth_for(user_id, project, orgs)

    @retry_on_conflict
    def update_auth_config(self, user_id: str, ref: str, changes: dict[str, Any], orgs: OrgsPort,
                           ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        project = self._authorized(user_id, ref, "projects.manage", orgs)
        for key, value in changes.items():
            _check_auth_field(key, value)
        current = self._plain_auth(project)
        # The mask sent back (a form that showed it) leaves the secret as it is.
        real = {k: v for k, v in changes.items()
                if current.get(k) != v and not (k in SECRET_AUTH_FIELDS and v == SECRET_MASK)}
        if real:
            project.change_auth(changes=self._seal(ref, real), meta=meta_of(ctx))
            self.save(project)
        return self._auth_for(user_id, project, orgs)

    # Secret auth settings are stored encrypted (SECRET_PREFIX + the box's token, bound to the
    # project), like the database password; values from before that are read as they are
    # until the migration 0002_encrypt_auth_secrets seals them.
    def _seal(self, ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        return {k: (SECRET_PREFIX + self.box.encrypt(v, auth_secret_context(ref))
                    if k in SECRET_AUTH_FIELDS and isinstance(v, str) and v else v)
                for k, v in changes.items()}

    def _plain_auth(self, project: Project) -> dict[str, Any]:
        out = self._auth_view(project)
        for k in SECRET_AUTH_FIELDS:
            v = out.get(k)
            if isinstance(v, str) and v.startswith(SECRET_PREFIX):
                out[k] = self.box.decrypt(v[len(SECRET_PREFIX):], auth_secret_context(project.ref))
        return out

    def _auth_for(self, user_id: str, project: Project, orgs: OrgsPort) -> dict[str, Any]:
        try:
            orgs.authorize(user_id, project.org_slug, "projects.secrets")
        except Forbidden:
            return _without_secrets(self._auth_view(project), SECRET_MASK)
        return self._plain_auth(project)

    def settings_history(self, user_id: str, ref: str, orgs: OrgsPort) -> list[dict[str, Any]]:
        project = self._authorized(user_id, ref, "projects.read", orgs)
        out = []
        for e in self.repository.event_store.get(project.id):
            kind = {"PostgrestConfigChanged": "postgrest", "AuthConfigChanged": "auth",
                    "JwtSecretRotated": "jwt_secret", "SettingsRestored": "rollback"}.get(type(e).__name__)
            if kind is None:
                continue
            if kind == "jwt_secret":
                changes: dict[str, Any] = {"rotated": True}
            elif kind == "rollback":
                changes = {"restored_version": e.restored_version}
            else:
                changes = _without_secrets(dict(e.changes))
            out.append({"at": e.timestamp.isoformat(), "setting": kind, "changes": changes,
                        "actor_id": (e.meta or {}).get("actor"), "version": e.originator_version,
                        "restores_version": e.restored_version if kind == "rollback" else None})
        out.reverse()
        return out

    @retry_on_conflict
    def rollback_settings(self, user_id: str, ref: str, version: int, orgs: OrgsPort,
                          ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Project settings (PostgREST, auth) back to what they were at `version` of the
        project's history, as a new event naming that version. The JWT secret is not rolled
        back: rotating it is a security action, undone only by rotating again."""
        project = self._authorized(user_id, ref, "projects.manage", orgs)
        if project.status == "REMOVED":
            raise InvalidInput("project is deleted")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= project.version:
            raise InvalidInput(f"version: must be a version of this project's history (1 to {project.version})")
        past = self.repository.get(project.id, version=version)
        if past.postgrest == project.postgrest and past.auth == project.auth:
            raise InvalidInput(f"the settings are already as they were at version {version}")
        project.restore_settings(restored_version=version, postgrest=dict(past.postgrest), auth=dict(past.auth),
                                 meta=meta_of(ctx))
        self.save(project)
        return {"restored_version": version, "version": project.version, "postgrest": dict(project.postgrest),
                "auth": _without_secrets(self._auth_view(project))}

    # ===== internal (provisioner) ==============================================================
    def get_tenant_credentials(self, ref: str) -> dict[str, str]:
        project = self._project(ref)
        self._require_live(project)
        secret = self.box.decrypt(project.jwt_secret_enc, ref)
        # The keys too, exactly as the API shows them: the functions runtime hands them to
        # workers (SUPABASE_ANON_KEY, SUPABASE_SERVICE_ROLE_KEY), and code may compare them.
        out = {"db_pass": self.box.decrypt(project.db_pass_enc, ref), "jwt_secret": secret,
               "anon_key": keys.api_key(secret, ref, "anon", project.keys_issued_at),
               "service_role_key": keys.api_key(secret, ref, "service_role", project.keys_issued_at)}
        enc = getattr(project, "authenticator_pass_enc", "")
        if enc:
            out["authenticator_pass"] = self.box.decrypt(enc, ref)
        return out

    def edge_tenant(self, ref: str) -> dict[str, Any]:
        """What the project edge needs to serve a project's APIs: its status, secrets and
        keys (get_tenant_credentials), PostgREST and auth settings, and where its database is.
        NotFound for unknown or deleted projects."""
        project = self._project(ref)
        self._require_live(project)
        return {"ref": ref, "status": project.status, **self.get_tenant_credentials(ref),
                "postgrest": dict(project.postgrest), "auth": self._plain_auth(project),
                "connection": dict(project.connection or {})}

    def get_tenant_auth_config(self, ref: str) -> dict[str, Any]:
        """Internal (the project edge's Auth API): the project's auth settings."""
        project = self._project(ref)
        self._require_live(project)
        return {**self._plain_auth(project), "status": project.status}

    # ===== provisioner outcomes (idempotent) ===================================================
    def apply_progress(self, envelope: dict[str, Any]) -> bool:
        p = envelope["payload"]
        with self._seen_lock:
            seen = self._seen.get(p["ref"])
        if seen is not None and seen[0] == p["operation_id"] and (seen[2] or p["step_index"] < seen[1]):
            # Already past this step (or done), as this process last read or wrote the
            # project: report_step would refuse it, so skip the read. Under a burst most
            # progress reports arrive after a later one, or after the outcome.
            return False
        return self._apply(p["ref"], lambda project: project.report_step(
            envelope["event_id"], p["operation_id"], p["step"], p["step_index"], p["total_steps"]))

    def apply_completion(self, envelope: dict[str, Any], operation: str) -> bool:
        p = envelope["payload"]

        def act(project: Project) -> bool:
            return project.complete_operation(envelope["event_id"], p["operation_id"], operation,
                                              p.get("connection"))
        return self._apply(p["ref"], act, activity={"pause": False, "delete": False}.get(operation))

    def apply_failure(self, envelope: dict[str, Any]) -> bool:
        p = envelope["payload"]
        return self._apply(p["ref"], lambda project: project.fail_operation(
            envelope["event_id"], p["operation_id"], p["operation"], p["step"], p["reason"]))

    def _apply(self, ref: str, act: Callable[[Project], bool], activity: bool | None = None) -> bool:
        for _ in range(10):
            try:
                project = self._project(ref)
            except NotFound:
                return False  # not ours (or never created): nothing to update
            if not act(project):
                self._note_seen(project)
                return False
            pending: list[Any] = [project]
            if activity is not None:
                org_projects = self._org_projects(project.org_slug)
                org_projects.set_active(ref, activity)
                pending.append(org_projects)
            try:
                self.save(*pending)
            except IntegrityError:
                continue  # a concurrent change: reload and apply again
            self._note_seen(project)
            return True
        raise Conflict(f"could not record outcome for project {ref}: too many concurrent changes")

    def _note_seen(self, project: Project) -> None:
        """Remember how far a project's current operation was in a stored state. A project
        only moves forward within an operation, so this never overstates it."""
        with self._seen_lock:
            self._seen[project.ref] = (project.operation_id, project.step_index, project.status not in TRANSITIONAL)
            self._seen.move_to_end(project.ref)
            while len(self._seen) > 10_000:
                self._seen.popitem(last=False)

    # ===== platform admins =====================================================================
    def admin_list_projects(self, actor_id: str, orgs: Any) -> list[dict[str, Any]]:
        """Every project of the platform, removed ones too (for platform admins; orgs says who is)."""
        orgs.require_admin(actor_id)
        topic = get_topic(Project.Requested)
        out: list[dict[str, Any]] = []
        position = 1
        while True:
            batch = self.recorder.select_notifications(position, limit=1000, topics=[topic])
            out += [self._view(self.repository.get(n.originator_id), detail=True) for n in batch]
            if len(batch) < 1000:
                return out
            position = batch[-1].id + 1

    def admin_project_action(self, actor_id: str, ref: str, action: str, orgs: Any, billing: BillingPort,
                             ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Pause, restore or delete any project as a platform admin: the same commands and
        rules as for an organization's owner, only the authorisation differs."""
        as_admin = _AdminActing(orgs, actor_id)
        if action == "pause":
            return self.pause_project(actor_id, ref, as_admin, ctx)
        if action == "restore":
            return self.restore_project(actor_id, ref, as_admin, billing, ctx)
        if action == "delete":
            return self.delete_project(actor_id, ref, as_admin, ctx)
        raise InvalidInput("action: one of pause, restore, delete")

    # ===== helpers =============================================================================
    def _authorized(self, user_id: str, ref: str, action: str, orgs: OrgsPort) -> Project:
        project = self._project(ref)
        try:
            orgs.authorize(user_id, project.org_slug, action)
        except NotFound:
            raise NotFound(f"project {ref} not found") from None
        if project.status == "REMOVED" and action != "projects.read":
            raise NotFound(f"project {ref} not found")
        return project

    def _project(self, ref: str) -> Project:
        if not isinstance(ref, str) or not REF_RE.match(ref):
            raise NotFound(f"project {ref} not found")
        try:
            return self.repository.get(Project.create_id(ref=ref))
        except AggregateNotFoundError:
            raise NotFound(f"project {ref} not found") from None

    def _org_projects(self, org_slug: str) -> OrgProjects:
        try:
            return self.repository.get(OrgProjects.create_id(org_slug=org_slug))
        except AggregateNotFoundError:
            return OrgProjects(org_slug=org_slug)

    @staticmethod
    def _require_live(project: Project) -> None:
        if project.status == "REMOVED":
            raise NotFound(f"project {project.ref} not found")

    def _view(self, project: Project, detail: bool = False) -> dict[str, Any]:
        view = {
            "id": project.ref, "ref": project.ref, "organization_id": project.org_slug,
            "organization_slug": project.org_slug, "name": project.name, "region": project.region,
            "created_at": project.created_on.isoformat(), "status": project.status,
            "database": {"host": (project.connection or {}).get("db_host", self.db_host), "version": POSTGRES_VERSION,
                         "postgres_engine": POSTGRES_VERSION, "release_channel": "ga"},
        }
        if detail:
            view["progress"] = {"operation": project.operation, "step": project.step, "step_index": project.step_index,
                                "total_steps": project.total_steps, "reason": project.reason}
            view["connection"] = project.connection
        return view

    @staticmethod
    def _auth_view(project: Project) -> dict[str, Any]:
        out = {name: _auth_default(name, f) for name, f in AUTH_FIELDS.items()}
        out.update(project.auth)
        return out


SECRET_AUTH_FIELDS = frozenset(k for k in AUTH_FIELDS if is_secret_name(k))
SECRET_MASK = "(secret set)"
SECRET_PREFIX = SEALED_PREFIX


def _without_secrets(settings: dict[str, Any], mask: str = SECRET_MASK) -> dict[str, Any]:
    """Secret settings as a reference: whether one is set, not its value."""
    return {k: (mask if v else v) if k in SECRET_AUTH_FIELDS else v for k, v in settings.items()}


class _NewProject:
    """A create waiting for its turn in its organization (see `_add_in_turn`)."""

    def __init__(self, ref: str, entitlements: dict[str, Any], fields: dict[str, Any],
                 idempotency: dict[str, Any] | None):
        self.ref = ref
        self.entitlements = entitlements
        self.fields = fields
        self.idempotency = idempotency
        self.project: Project | None = None
        self.error: BaseException | None = None
        self.done = False


class _NoOrgs:
    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
        raise NotFound(f"organization {slug} not found")

    def list_organizations(self, user_id: str) -> list[dict[str, Any]]:
        return []


class _AdminActing:
    """The orgs port as seen by a platform admin's command: orgs confirms the admin flag once,
    then every organization action is allowed (admins act on any project)."""

    def __init__(self, orgs: Any, actor_id: str):
        orgs.require_admin(actor_id)

    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
        return {"slug": slug, "name": slug, "role": "admin"}

    def list_organizations(self, user_id: str) -> list[dict[str, Any]]:
        return []


def numeric_id(ref: str) -> int:
    """V1ProjectRefResponse wants an integer id: a stable one derived from the ref."""
    return zlib.crc32(ref.encode())


AUTH_DEFAULTS: dict[str, Any] = {
    "site_url": "http://localhost:3000", "disable_signup": False, "jwt_exp": 3600, "external_email_enabled": True,
    "external_phone_enabled": False, "mailer_autoconfirm": False, "mailer_otp_exp": 3600, "mailer_otp_length": 6,
    "sms_otp_exp": 60, "sms_otp_length": 6, "mfa_phone_otp_length": 6, "password_min_length": 6,
    "refresh_token_rotation_enabled": True, "security_refresh_token_reuse_interval": 10, "passkey_enabled": False,
    "oauth_server_enabled": False, "oauth_server_allow_dynamic_registration": False, "custom_oauth_enabled": False,
    "custom_oauth_max_providers": 0, "rate_limit_email_sent": 2,
}


def _auth_default(name: str, f: dict[str, Any]) -> Any:
    if name in AUTH_DEFAULTS:
        return AUTH_DEFAULTS[name]
    if "enum" in f:
        # OpenAPI 3.0 validators read `nullable` with an enum as "null only if listed".
        return f["enum"][0]
    if f["nullable"]:
        return None
    return {"boolean": False, "integer": 0, "number": 0, "string": ""}[f["type"]]


def _check_auth_field(key: str, value: Any) -> None:
    f = AUTH_FIELDS.get(key)
    if f is None or not f["updatable"]:
        raise InvalidInput(f"{key}: unknown or read-only auth setting")
    if value is None:
        if not f["nullable"]:
            raise InvalidInput(f"{key}: must not be null")
        return
    kind = f["type"]
    ok = {"boolean": isinstance(value, bool), "string": isinstance(value, str),
          "integer": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, (int, float)) and not isinstance(value, bool)}[kind]
    if not ok:
        raise InvalidInput(f"{key}: must be a {kind}")
    if "enum" in f and value not in f["enum"]:
        raise InvalidInput(f"{key}: one of {', '.join(map(str, f['enum']))}")
    if "minimum" in f and value < f["minimum"]:
        raise InvalidInput(f"{key}: at least {f['minimum']}")
    if "maximum" in f and value > f["maximum"]:
        raise InvalidInput(f"{key}: at most {f['maximum']}")
    if "pattern" in f and not re.search(f["pattern"], value):
        raise InvalidInput(f"{key}: does not match {f['pattern']}")
    if kind == "string" and len(value) > 10_000:
        raise InvalidInput(f"{key}: too long")


def _rules(error: type[PlatformError] = Conflict) -> ContextManager[None]:
    """Domain rule violations become user-facing errors (Conflict unless told otherwise)."""
    return rules_as(RuleViolation, error)
