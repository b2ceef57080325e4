"""functions application: deploy, update, roll back and delete edge functions; a project's
secrets; logs; what the runtime needs to run a function; invocation records. One method
per command, one save each.

Imports its domain, eventsourcing, shared errors/crypto and its own helpers. Ports passed
per call by the service: `projects` (get_project: who may see a project, its org and
status), `orgs` (authorize writes). Set by bootstrap: `box` (secrets at rest), `bundles`,
`logs`, `tenants`.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import datetime, timezone
from typing import ContextManager, Any, Callable, Protocol

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from services.shared.crypto import SecretBox
from services.shared.errors import Conflict, InvalidInput, NotFound, PlatformError, rules_as

from . import bundles as B
from .domain import Function, InvocationBatch, ProjectFunctions, ProjectSecrets, RuleViolation, reserved_secret_name
from .storage import LEVELS, BundleStore, LogStore, TenantStore

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
MAX_SECRET_VALUE = 24576
MAX_SECRETS = 100
CLOSED = {"REMOVED", "GOING_DOWN"}


class ProjectsPort(Protocol):
    def get_project(self, user_id: str, ref: str) -> dict[str, Any]: ...


class OrgsPort(Protocol):
    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]: ...


def meta_of(ctx: dict[str, Any] | None) -> dict[str, Any]:
    ctx = ctx or {}
    return {k: ctx.get(k) for k in ("actor", "correlation_id", "causation_id")}


def secret_digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class FunctionsApplication(Application):
    name = "functions"

    box: SecretBox
    bundles: BundleStore
    logs: LogStore
    tenants: TenantStore
    clock: Callable[[], float] = staticmethod(time.time)

    def close(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()
        super().close()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ===== deploy and manage ===================================================================
    def deploy_function(self, user_id: str, ref: str, slug: str, metadata: dict[str, Any],
                        files: list[tuple[str, bytes]], bundle_only: bool, projects: ProjectsPort,
                        orgs: OrgsPort, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Multipart deploy: a new immutable version from the uploaded files (live at once
        unless `bundle_only`). Creates the function on first deploy."""
        org = self._writable(user_id, ref, projects, orgs)
        B.check_slug(slug)
        name, verify_jwt = metadata.get("name"), metadata.get("verify_jwt")
        if name is not None and (not isinstance(name, str) or len(name) > 256):
            raise InvalidInput("metadata.name: at most 256 characters")
        if verify_jwt is not None and not isinstance(verify_jwt, bool):
            raise InvalidInput("metadata.verify_jwt: true or false")
        patterns = metadata.get("static_patterns") or []
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise InvalidInput("metadata.static_patterns: a list of glob patterns")
        packed = B.pack(files, metadata.get("entrypoint_path"), metadata.get("import_map_path"))
        self.bundles.put(packed["sha256"], packed["data"])
        return self._deploy(ref, org, slug, name, verify_jwt, packed, patterns, not bundle_only, ctx)

    def create_function(self, user_id: str, ref: str, body: dict[str, Any], projects: ProjectsPort,
                        orgs: OrgsPort, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """JSON create: `body` is the source of a one-file function (index.ts)."""
        org = self._writable(user_id, ref, projects, orgs)
        slug = B.check_slug(body.get("slug"))
        existing = self._function_or_none(ref, slug)
        if existing is not None and not existing.deleted:
            raise Conflict(f"function {slug} already exists; deploy a new version or update it")
        source = body.get("body")
        if not isinstance(source, str) or not source.strip():
            raise InvalidInput("body: the function's source code")
        packed = B.pack([("index.ts", source.encode())], "index.ts")
        self.bundles.put(packed["sha256"], packed["data"])
        return self._deploy(ref, org, slug, body.get("name") or slug, body.get("verify_jwt"), packed, [], True, ctx,
                            must_be_new=True)

    def _deploy(self, ref: str, org: str, slug: str, name: str | None, verify_jwt: bool | None,
                packed: dict[str, Any], patterns: list[str], activate: bool, ctx: dict[str, Any] | None,
                must_be_new: bool = False) -> dict[str, Any]:
        meta, at = meta_of(ctx), self._now_ms()
        for _ in range(10):
            fn = self._function_or_none(ref, slug)
            index = self._index(ref)
            if fn is None:
                fn = Function(ref=ref, org_slug=org, slug=slug, name=name or slug,
                              verify_jwt=True if verify_jwt is None else verify_jwt, at_ms=at, meta=meta)
            elif fn.deleted:
                fn.recreate(org_slug=org, name=name or slug, verify_jwt=True if verify_jwt is None else verify_jwt,
                            at_ms=at, meta=meta)
            else:
                if must_be_new:
                    raise Conflict(f"function {slug} already exists")
                fn.change(name=name, verify_jwt=verify_jwt, at_ms=at, meta=meta)
            index.add(slug)
            fn.deploy(bundle_sha256=packed["sha256"], size_bytes=packed["size_bytes"],
                      entrypoint_path=packed["entrypoint_path"], import_map_path=packed["import_map_path"],
                      static_patterns=patterns, activate=activate, at_ms=at, meta=meta)
            try:
                self.save(fn, index)
                return self._view(fn, latest=True)
            except IntegrityError:
                continue  # a concurrent deploy of this project took the version: reload and go again
        raise Conflict(f"too many concurrent deploys of {slug}; try again")

    def update_function(self, user_id: str, ref: str, slug: str, changes: dict[str, Any], projects: ProjectsPort,
                        orgs: OrgsPort, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """PATCH: rename, switch verify_jwt, and/or deploy a new one-file body."""
        self._writable(user_id, ref, projects, orgs)
        fn = self._live_function(ref, slug)
        if changes.get("slug") not in (None, slug):
            raise InvalidInput("slug: a function cannot be renamed; deploy it under the new slug and delete this one")
        name, verify_jwt, source = changes.get("name"), changes.get("verify_jwt"), changes.get("body")
        if name is not None and (not isinstance(name, str) or not name or len(name) > 256):
            raise InvalidInput("name: 1 to 256 characters")
        meta, at = meta_of(ctx), self._now_ms()
        with _rules():
            fn.change(name=name, verify_jwt=verify_jwt, at_ms=at, meta=meta)
            if source is not None:
                if not isinstance(source, str) or not source.strip():
                    raise InvalidInput("body: the function's source code")
                packed = B.pack([("index.ts", source.encode())], "index.ts")
                self.bundles.put(packed["sha256"], packed["data"])
                fn.deploy(bundle_sha256=packed["sha256"], size_bytes=packed["size_bytes"], entrypoint_path="index.ts",
                          import_map_path=None, static_patterns=[], activate=True, at_ms=at, meta=meta)
        self._save(fn)
        return self._view(fn)

    def bulk_update_functions(self, user_id: str, ref: str, items: list[dict[str, Any]], projects: ProjectsPort,
                              orgs: OrgsPort, ctx: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """PUT: make the given versions live together (after bundle-only deploys), with their
        names and verify_jwt. Every function is checked before any is changed."""
        self._writable(user_id, ref, projects, orgs)
        meta, at = meta_of(ctx), self._now_ms()
        fns = []
        for item in items:
            fn = self._live_function(ref, B.check_slug(item.get("slug")))
            version = item.get("version")
            if fn.version_info(version) is None:
                raise InvalidInput(f"version: {item.get('slug')} has no version {version}")
            fns.append((fn, item))
        with _rules():
            for fn, item in fns:
                fn.change(name=item.get("name"), verify_jwt=item.get("verify_jwt"), at_ms=at, meta=meta)
                fn.activate(item["version"], reason="bulk_update", at_ms=at, meta=meta)
        self._save(*[fn for fn, _ in fns])
        return [self._view(fn) for fn, _ in fns]

    def rollback_function(self, user_id: str, ref: str, slug: str, version: int | None, projects: ProjectsPort,
                          orgs: OrgsPort, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make an earlier version live again (default: the one deployed before the live one)."""
        self._writable(user_id, ref, projects, orgs)
        fn = self._live_function(ref, slug)
        if version is None:
            current = fn.active_version or len(fn.versions) + 1
            if current <= 1:
                raise Conflict(f"{slug} has no earlier version to roll back to")
            version = current - 1
        with _rules():
            fn.activate(version, reason="rollback", at_ms=self._now_ms(), meta=meta_of(ctx))
        self._save(fn)
        return self._view(fn)

    def delete_function(self, user_id: str, ref: str, slug: str, projects: ProjectsPort, orgs: OrgsPort,
                        ctx: dict[str, Any] | None = None) -> None:
        self._writable(user_id, ref, projects, orgs, allow_closed=True)
        fn = self._live_function(ref, slug)
        index = self._index(ref)
        fn.delete(at_ms=self._now_ms(), meta=meta_of(ctx))
        index.remove(slug)
        self._save(fn, index)

    def remove_project(self, ref: str) -> int:
        """The project is gone (provisioner's project_removed): delete its functions and
        secrets. Idempotent: a second call finds nothing left."""
        index = self._index(ref)
        pending: list[Any] = []
        at = self._now_ms()
        for slug in list(index.slugs):
            fn = self._function_or_none(ref, slug)
            if fn is not None and not fn.deleted:
                fn.delete(at_ms=at, meta={})
                pending.append(fn)
            index.remove(slug)
        secrets = self._secrets(ref)
        secrets.unset(list(secrets.secrets), at_ms=at, meta={})
        pending += [index, secrets]
        self._save(*pending)
        return len(pending) - 2

    # ===== reads ===============================================================================
    def list_functions(self, user_id: str, ref: str, projects: ProjectsPort) -> list[dict[str, Any]]:
        self._readable(user_id, ref, projects)
        out = []
        for slug in self._index(ref).slugs:
            fn = self._function_or_none(ref, slug)
            if fn is not None and not fn.deleted:
                out.append(self._view(fn))
        return out

    def get_function(self, user_id: str, ref: str, slug: str, projects: ProjectsPort) -> dict[str, Any]:
        self._readable(user_id, ref, projects)
        return self._view(self._live_function(ref, slug))

    def list_versions(self, user_id: str, ref: str, slug: str, projects: ProjectsPort) -> list[dict[str, Any]]:
        self._readable(user_id, ref, projects)
        fn = self._live_function(ref, slug)
        return [{**v, "active": v["version"] == fn.active_version} for v in reversed(fn.versions)]

    def get_function_body(self, user_id: str, ref: str, slug: str, projects: ProjectsPort,
                          version: int | None = None) -> dict[str, Any]:
        """The source files of the live version (or of `version`), as deployed."""
        self._readable(user_id, ref, projects)
        fn = self._live_function(ref, slug)
        info = fn.version_info(version if version is not None else (fn.active_version or len(fn.versions)))
        if info is None:
            raise NotFound(f"function {slug} has no version {version}")
        data = self.bundles.get(info["bundle_sha256"])
        if data is None:
            raise NotFound(f"the bundle of {slug} version {info['version']} is missing")
        return {"version": info["version"], "entrypoint_path": info["entrypoint_path"],
                "import_map_path": info["import_map_path"], "static_patterns": info["static_patterns"],
                "files": [{"name": p, "content": c} for p, c in B.unpack(data)]}

    def function_logs(self, user_id: str, ref: str, slug: str | None, query: dict[str, Any],
                      projects: ProjectsPort) -> list[dict[str, Any]]:
        """Console lines and invocation records of one function (slug None: of every function
        of the project), newest first. `query`: since/until (ISO 8601 or epoch ms), level (at
        least this level), kind, request_id, limit."""
        self._readable(user_id, ref, projects)
        if slug is not None and self._function_or_none(ref, slug) is None:
            raise NotFound(f"function {slug} not found")
        level = query.get("level")
        if level is not None and level not in LEVELS:
            raise InvalidInput(f"level: one of {', '.join(LEVELS)}")
        kind = query.get("kind")
        if kind is not None and kind not in ("log", "invocation"):
            raise InvalidInput("kind: log or invocation")
        limit = query.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidInput("limit: an integer from 1 to 1000")
        levels = list(LEVELS[LEVELS.index(level):]) if level else None
        return self.logs.query(ref, slug, _time(query.get("since"), "since"), _time(query.get("until"), "until"),
                               levels, kind, query.get("request_id"), limit)

    # ===== secrets =============================================================================
    def list_secrets(self, user_id: str, ref: str, projects: ProjectsPort) -> list[dict[str, Any]]:
        self._readable(user_id, ref, projects)
        secrets = self._secrets(ref).secrets
        return [{"name": n, "value": s["digest"],
                 "updated_at": datetime.fromtimestamp(s["updated_at_ms"] / 1000, timezone.utc).isoformat()}
                for n, s in sorted(secrets.items())]

    def set_secrets(self, user_id: str, ref: str, items: list[dict[str, Any]], projects: ProjectsPort,
                    orgs: OrgsPort, ctx: dict[str, Any] | None = None) -> None:
        self._writable(user_id, ref, projects, orgs)
        if not isinstance(items, list) or not items:
            raise InvalidInput("body: a non-empty array of {name, value}")
        clean: dict[str, str] = {}
        for i, item in enumerate(items):
            name, value = (item or {}).get("name"), (item or {}).get("value")
            if not isinstance(name, str) or not SECRET_NAME.match(name):
                raise InvalidInput(f"{i}.name: letters, digits and _, not starting with a digit (at most 256)")
            reserved = reserved_secret_name(name)
            if reserved:
                raise InvalidInput(f"{i}.name: {reserved}")
            if not isinstance(value, str) or len(value) > MAX_SECRET_VALUE:
                raise InvalidInput(f"{i}.value: a string of at most {MAX_SECRET_VALUE} characters")
            clean[name] = value
        secrets = self._secrets(ref)
        if len(set(secrets.secrets) | set(clean)) > MAX_SECRETS:
            raise InvalidInput(f"body: a project has at most {MAX_SECRETS} secrets")
        # The aggregate id binds each ciphertext to its project and name: a value copied to
        # another project or name does not decrypt.
        enc = [{"name": n, "value_enc": self.box.encrypt(v, f"{ref}:{n}"), "digest": secret_digest(v)}
               for n, v in clean.items()]
        secrets.set(items=enc, at_ms=self._now_ms(), meta=meta_of(ctx))
        self._save(secrets)

    def delete_secrets(self, user_id: str, ref: str, names: list[str], projects: ProjectsPort, orgs: OrgsPort,
                       ctx: dict[str, Any] | None = None) -> list[str]:
        self._writable(user_id, ref, projects, orgs)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InvalidInput("body: a non-empty array of secret names")
        secrets = self._secrets(ref)
        gone = secrets.unset(names, at_ms=self._now_ms(), meta=meta_of(ctx))
        if gone:
            self._save(secrets)
        return gone

    # ===== for the runtime =====================================================================
    def invocation_target(self, ref: str, slug: str) -> dict[str, Any] | None:
        """What runs for `POST …/functions/v1/<slug>`: the live version and its settings, or
        None when there is no such live function."""
        fn = self._function_or_none(ref, slug)
        if fn is None or fn.deleted:
            return None
        info = fn.version_info(fn.active_version)
        if info is None:
            return None
        return {"ref": ref, "slug": slug, "org_slug": fn.org_slug, "function_id": str(fn.id),
                "verify_jwt": fn.verify_jwt, **info}

    def secrets_env(self, ref: str) -> dict[str, str]:
        """The project's secrets in clear, for a worker's environment (never leaves the runtime).
        A secret stored before its name was reserved is left out: it must not steer the runtime."""
        return {n: self.box.decrypt(s["value_enc"], f"{ref}:{n}") for n, s in self._secrets(ref).secrets.items()
                if reserved_secret_name(n) is None}

    def bundle(self, sha256: str) -> bytes:
        data = self.bundles.get(sha256)
        if data is None:
            raise NotFound(f"bundle {sha256} missing")
        return data

    def record_invocations(self, runtime: str, records: list[dict[str, Any]], first_seq: int | None = None) -> int:
        """One save for a batch of invocation records: each becomes a `function_invoked`
        usage event through the outbox. With `first_seq` (the runtime's journal number of
        the first record) the batch has a deterministic id; if an earlier attempt already
        stored it, nothing is stored twice and the answer is how many records that attempt
        held (the caller sends the rest again). Otherwise the answer is 0."""
        if not records:
            return 0
        batch = InvocationBatch(runtime=runtime, first_seq=first_seq)
        for r in records:
            batch.record(ref=r["ref"], org_slug=r["org_slug"], slug=r["slug"], version=r["version"],
                         status=r["status"], duration_ms=r["duration_ms"], request_id=r["request_id"],
                         at_ms=r["at_ms"])
        try:
            self.save(batch)
        except IntegrityError:
            if first_seq is None:
                raise
            earlier: InvocationBatch = self.repository.get(batch.id)
            return int(earlier.count)
        return 0

    # ===== tenants (provisioner outcomes) ======================================================
    def apply_tenant_event(self, envelope: dict[str, Any], status: str) -> bool:
        """Remember a tenant's state and database address from a provisioner message.
        Idempotent: a message older than (or the same as) the last applied one changes nothing."""
        p = envelope["payload"]
        applied = self.tenants.apply(p["ref"], status, p.get("connection"), int(envelope["producer_position"]))
        if status == "REMOVED":
            self.remove_project(p["ref"])  # idempotent on its own: runs again harmlessly
        return applied

    def tenant(self, ref: str) -> dict[str, Any] | None:
        return self.tenants.get(ref)

    # ===== helpers =============================================================================
    def _readable(self, user_id: str, ref: str, projects: ProjectsPort) -> dict[str, Any]:
        project = projects.get_project(user_id, ref)  # members only; NotFound for anyone else
        if project.get("status") == "REMOVED":
            raise NotFound(f"project {ref} not found")
        return project

    def _writable(self, user_id: str, ref: str, projects: ProjectsPort, orgs: OrgsPort,
                  allow_closed: bool = False) -> str:
        project = self._readable(user_id, ref, projects)
        org = project.get("organization_slug") or project["organization_id"]
        orgs.authorize(user_id, org, "projects.manage")
        if project.get("status") in CLOSED and not allow_closed:
            raise Conflict(f"project {ref} is {project['status']}")
        return str(org)

    def _function_or_none(self, ref: str, slug: str) -> Function | None:
        try:
            fn: Function = self.repository.get(Function.create_id(ref=ref, slug=slug))
            return fn
        except AggregateNotFoundError:
            return None

    def _live_function(self, ref: str, slug: str) -> Function:
        fn = self._function_or_none(ref, slug) if isinstance(slug, str) else None
        if fn is None or fn.deleted:
            raise NotFound(f"function {slug} not found")
        return fn

    def _index(self, ref: str) -> ProjectFunctions:
        try:
            index: ProjectFunctions = self.repository.get(ProjectFunctions.create_id(ref=ref))
            return index
        except AggregateNotFoundError:
            return ProjectFunctions(ref=ref)

    def _secrets(self, ref: str) -> ProjectSecrets:
        try:
            secrets: ProjectSecrets = self.repository.get(ProjectSecrets.create_id(ref=ref))
            return secrets
        except AggregateNotFoundError:
            return ProjectSecrets(ref=ref)

    def _save(self, *aggregates: Any) -> None:
        try:
            self.save(*aggregates)
        except IntegrityError:
            raise Conflict("changed at the same time by another request; try again") from None

    def _view(self, fn: Function, latest: bool = False) -> dict[str, Any]:
        """FunctionResponse: the live version (or, for a deploy's answer, the new one)."""
        version = len(fn.versions) if latest or fn.active_version is None else fn.active_version
        info = fn.version_info(version) or {}
        out: dict[str, Any] = {
            "id": str(fn.id), "slug": fn.slug, "name": fn.name, "status": "REMOVED" if fn.deleted else "ACTIVE",
            "version": version, "created_at": fn.created_at_ms, "updated_at": fn.updated_at_ms,
            "verify_jwt": fn.verify_jwt, "import_map": bool(info.get("import_map_path")),
        }
        if info:
            out["entrypoint_path"] = info["entrypoint_path"]
            out["ezbr_sha256"] = info["bundle_sha256"]
            if info.get("import_map_path"):
                out["import_map_path"] = info["import_map_path"]
        return out


def _time(raw: Any, what: str) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        if isinstance(raw, (int, float)) or (isinstance(raw, str) and raw.isdigit()):
            return datetime.fromtimestamp(int(raw) / 1000, timezone.utc)
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(f"{what}: an ISO 8601 time or epoch milliseconds") from None


def _rules(error: type[PlatformError] = Conflict) -> ContextManager[None]:
    """Domain rule violations become user-facing errors (Conflict unless told otherwise)."""
    return rules_as(RuleViolation, error)
