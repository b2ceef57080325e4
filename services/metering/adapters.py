"""metering adapters: measuring tenants (database size on the local PostgreSQL, bucket size on
the local object store). Imports psycopg and the standard library.

The local driver names a tenant's database after its ref and its bucket `sp-<ref>` (a
directory under <state_dir>/storage); the provisioner's own backups live under `_platform/`
in that bucket and are not the tenant's storage, so they are not counted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import psycopg

from psycopg_pool import ConnectionPool

PLATFORM_PREFIX = "_platform"


class TenantMeasurer:
    def __init__(self, pool: ConnectionPool, storage_root: Path | None,
                 tenant_conninfo: Callable[[str], str] | None = None):
        """`storage_root`: the local object store's directory; None when buckets live
        elsewhere (S3): then the sizes the project's Storage API recorded in the tenant's
        storage.objects are summed instead (`tenant_conninfo(ref)`: how to reach its database)."""
        self.pool = pool
        self.storage_root = storage_root
        self.tenant_conninfo = tenant_conninfo

    def database_sizes(self, refs: Iterable[str]) -> dict[str, int]:
        """Bytes per tenant database that exists (one that is not created yet is skipped)."""
        refs = list(refs)
        if not refs:
            return {}
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datname = ANY(%s)", (refs,)
            ).fetchall()
        return {name: int(size) for name, size in rows}

    def storage_sizes(self, refs: Iterable[str]) -> dict[str, int]:
        """Bytes of objects per tenant bucket that exists."""
        if self.storage_root is None:
            return self._table_sizes(refs) if self.tenant_conninfo is not None else {}
        out = {}
        for ref in refs:
            bucket = self.storage_root / f"sp-{ref}"
            if bucket.is_dir():
                out[ref] = directory_bytes(bucket)
        return out


    def _table_sizes(self, refs: Iterable[str]) -> dict[str, int]:
        """sum(metadata.size) of storage.objects per tenant database that has the table."""
        assert self.tenant_conninfo is not None
        out = {}
        for ref in refs:
            try:
                with psycopg.connect(self.tenant_conninfo(ref), autocommit=True, connect_timeout=3,
                                     application_name="metering") as conn:
                    found = conn.execute("SELECT to_regclass('storage.objects')").fetchone()
                    row = conn.execute("SELECT coalesce(sum((metadata->>'size')::bigint), 0) FROM storage.objects"
                                       ).fetchone() if found and found[0] else None
            except psycopg.Error:
                continue  # paused, deleted, or not reachable now: no sample
            if row and row[0] is not None:
                out[ref] = int(row[0])
        return out


def directory_bytes(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root and PLATFORM_PREFIX in dirnames:
            dirnames.remove(PLATFORM_PREFIX)
        for name in filenames:
            if name.endswith(".part"):
                continue  # an upload in progress (renamed into place when complete)
            try:
                total += (Path(dirpath) / name).stat().st_size
            except FileNotFoundError:
                pass  # deleted while we walked
    return total
