"""functions domain: Function (an edge function and its immutable versions), ProjectFunctions
(a project's slugs, for listing), ProjectSecrets (encrypted values and digests), and
InvocationBatch (a group of invocation records saved at once, for metering).

Imports eventsourcing.domain and the standard library only. Ids are uuid5 of natural keys.
Times are passed in as epoch milliseconds (the Management API's unit), never read here.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("0b7e6c1d-3f2a-4e8b-9c5d-7a1f2e3d4c5b")
Meta = dict[str, Any]


class RuleViolation(Exception):
    pass


# Secret names a worker's loader, Deno, Node, npm or the shell would read as configuration
# (or the platform sets itself): a secret so named could steer the runtime (LD_PRELOAD,
# DENO_DIR, HTTPS_PROXY, PATH...), so none is accepted, whatever its case.
RESERVED_SECRET_PREFIXES = ("LD_", "DENO_", "NODE_", "NPM_CONFIG_", "SUPABASE_", "MALLOC_", "RUST_")
RESERVED_SECRET_NAMES = ("PATH", "HOME", "GLIBC_TUNABLES")
RESERVED_SECRET_SUFFIXES = ("_PROXY",)


def reserved_secret_name(name: str) -> str | None:
    """Why a secret may not have this name (the rule it breaks), or None if it may."""
    upper = name.upper()
    for prefix in RESERVED_SECRET_PREFIXES:
        if upper.startswith(prefix):
            return f"names starting with {prefix} are reserved (they configure the runtime)"
    if upper in RESERVED_SECRET_NAMES:
        return f"{upper} is reserved (it configures the runtime)"
    for suffix in RESERVED_SECRET_SUFFIXES:
        if upper.endswith(suffix):
            return f"names ending in {suffix} are reserved (they configure the runtime's network)"
    return None


class Function(Aggregate):
    """One slug in one project. Every deploy appends a version; exactly one version (or none,
    before the first activation) is active and answers invocations."""

    @staticmethod
    def create_id(ref: str, slug: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"function:{ref}:{slug}")

    @event("Created")
    def __init__(self, ref: str, org_slug: str, slug: str, name: str, verify_jwt: bool, at_ms: int,
                 meta: Meta) -> None:
        self.ref = ref
        self.org_slug = org_slug
        self.slug = slug
        self.name = name
        self.verify_jwt = verify_jwt
        self.created_at_ms = at_ms
        self.updated_at_ms = at_ms
        self.deleted = False
        self.versions: list[dict[str, Any]] = []
        self.active_version: int | None = None

    @property
    def next_version(self) -> int:
        return len(self.versions) + 1

    def version_info(self, version: int | None) -> dict[str, Any] | None:
        if version is None or not 1 <= version <= len(self.versions):
            return None
        return self.versions[version - 1]

    # -- commands ------------------------------------------------------------------------------
    def deploy(self, bundle_sha256: str, size_bytes: int, entrypoint_path: str, import_map_path: str | None,
               static_patterns: list[str], activate: bool, at_ms: int, meta: Meta) -> int:
        if self.deleted:
            raise RuleViolation("function is deleted")
        version = self.next_version
        self._version_deployed(ref=self.ref, slug=self.slug, version=version, bundle_sha256=bundle_sha256,
                               size_bytes=size_bytes, entrypoint_path=entrypoint_path,
                               import_map_path=import_map_path, static_patterns=list(static_patterns),
                               active=activate, at_ms=at_ms, meta=meta)
        return version

    @event("VersionDeployed")
    def _version_deployed(self, ref: str, slug: str, version: int, bundle_sha256: str, size_bytes: int,
                          entrypoint_path: str, import_map_path: str | None, static_patterns: list[str],
                          active: bool, at_ms: int, meta: Meta) -> None:
        self.versions.append({"version": version, "bundle_sha256": bundle_sha256, "size_bytes": size_bytes,
                              "entrypoint_path": entrypoint_path, "import_map_path": import_map_path,
                              "static_patterns": static_patterns, "deployed_at_ms": at_ms})
        if active:
            self.active_version = version
        self.updated_at_ms = at_ms

    def activate(self, version: int, reason: str, at_ms: int, meta: Meta) -> bool:
        """Make an existing version the live one (rollback, or a bulk update after bundle-only
        deploys). Returns False when it already is."""
        if self.deleted:
            raise RuleViolation("function is deleted")
        if self.version_info(version) is None:
            raise RuleViolation(f"version {version} does not exist (latest is {len(self.versions)})")
        if version == self.active_version:
            return False
        self._version_activated(version=version, previous=self.active_version, reason=reason, at_ms=at_ms,
                                meta=meta)
        return True

    @event("VersionActivated")
    def _version_activated(self, version: int, previous: int | None, reason: str, at_ms: int, meta: Meta) -> None:
        self.active_version = version
        self.updated_at_ms = at_ms

    def change(self, name: str | None, verify_jwt: bool | None, at_ms: int, meta: Meta) -> bool:
        changes: dict[str, Any] = {}
        if name is not None and name != self.name:
            changes["name"] = name
        if verify_jwt is not None and verify_jwt != self.verify_jwt:
            changes["verify_jwt"] = verify_jwt
        if not changes:
            return False
        self._settings_changed(changes=changes, at_ms=at_ms, meta=meta)
        return True

    @event("SettingsChanged")
    def _settings_changed(self, changes: dict[str, Any], at_ms: int, meta: Meta) -> None:
        self.name = changes.get("name", self.name)
        self.verify_jwt = changes.get("verify_jwt", self.verify_jwt)
        self.updated_at_ms = at_ms

    def delete(self, at_ms: int, meta: Meta) -> None:
        if self.deleted:
            raise RuleViolation("function already deleted")
        self._deleted(ref=self.ref, slug=self.slug, at_ms=at_ms, meta=meta)

    @event("Deleted")
    def _deleted(self, ref: str, slug: str, at_ms: int, meta: Meta) -> None:
        self.deleted = True
        self.active_version = None
        self.updated_at_ms = at_ms

    def recreate(self, org_slug: str, name: str, verify_jwt: bool, at_ms: int, meta: Meta) -> None:
        """The slug is used again after a delete: a fresh function whose version numbers go on
        from the old ones (a version number never names two different bundles)."""
        if not self.deleted:
            raise RuleViolation("function exists")
        self._recreated(org_slug=org_slug, name=name, verify_jwt=verify_jwt, at_ms=at_ms, meta=meta)

    @event("Recreated")
    def _recreated(self, org_slug: str, name: str, verify_jwt: bool, at_ms: int, meta: Meta) -> None:
        self.org_slug = org_slug
        self.name = name
        self.verify_jwt = verify_jwt
        self.deleted = False
        self.active_version = None
        self.created_at_ms = at_ms
        self.updated_at_ms = at_ms


class ProjectFunctions(Aggregate):
    """The slugs of a project's live functions, in creation order (for listing)."""

    @staticmethod
    def create_id(ref: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"project-functions:{ref}")

    @event("Started")
    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.slugs: list[str] = []

    def add(self, slug: str) -> None:
        if slug not in self.slugs:
            self._added(slug=slug)

    @event("SlugAdded")
    def _added(self, slug: str) -> None:
        self.slugs.append(slug)

    def remove(self, slug: str) -> None:
        if slug in self.slugs:
            self._removed(slug=slug)

    @event("SlugRemoved")
    def _removed(self, slug: str) -> None:
        self.slugs.remove(slug)


class ProjectSecrets(Aggregate):
    """A project's secrets: each value encrypted (by the application, before it gets here)
    with its SHA-256 digest for listing. Values never appear in clear in an event."""

    @staticmethod
    def create_id(ref: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"project-secrets:{ref}")

    @event("Started")
    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.secrets: dict[str, dict[str, Any]] = {}

    @event("SecretsSet")
    def set(self, items: list[dict[str, Any]], at_ms: int, meta: Meta) -> None:
        for item in items:
            self.secrets[item["name"]] = {"value_enc": item["value_enc"], "digest": item["digest"],
                                          "updated_at_ms": at_ms}

    def unset(self, names: list[str], at_ms: int, meta: Meta) -> list[str]:
        present = [n for n in names if n in self.secrets]
        if present:
            self._unset(names=present, at_ms=at_ms, meta=meta)
        return present

    @event("SecretsDeleted")
    def _unset(self, names: list[str], at_ms: int, meta: Meta) -> None:
        for n in names:
            self.secrets.pop(n, None)


class InvocationBatch(Aggregate):
    """Invocation records flushed together by a runtime: one save for many (one transaction),
    each record one event, so each becomes one `function_invoked` message."""

    @staticmethod
    def create_id(runtime: str, first_seq: int | None = None, **_: Any) -> uuid.UUID:
        # Deterministic when the runtime numbers its records: re-sending a batch after a
        # crash finds the one already stored instead of storing it twice.
        if first_seq is None:
            return uuid.uuid4()
        return uuid.uuid5(NAMESPACE, f"invocations:{runtime}:{first_seq}")

    @event("Started")
    def __init__(self, runtime: str, first_seq: int | None = None) -> None:
        self.runtime = runtime
        self.first_seq = first_seq
        self.count = 0

    @event("Invoked")
    def record(self, ref: str, org_slug: str, slug: str, version: int | None, status: int, duration_ms: float,
               request_id: str, at_ms: int) -> None:
        self.count += 1
