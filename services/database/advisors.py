"""The database advisors: security and performance lints over a tenant's catalog, named and
shaped as Supabase's splinter lints (`rls_disabled_in_public`, `auth_rls_initplan`,
`unindexed_foreign_keys`, …). Each lint is one read-only catalog query. Imports the
standard library only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Lint:
    name: str
    title: str
    level: str
    category: str
    description: str
    remediation: str
    sql: str  # rows: schema, name, type, detail (+ optional fkey_name, fkey_columns)


EXPOSED = "%(schemas)s"

LINTS: tuple[Lint, ...] = (
    Lint("rls_disabled_in_public", "RLS Disabled in Public", "ERROR", "SECURITY",
         "Detects cases where row level security (RLS) has not been enabled on tables in schemas exposed to PostgREST",
         "https://supabase.com/docs/guides/database/database-linter?lint=0013_rls_disabled_in_public",
         f"""SELECT n.nspname AS schema, c.relname AS name, 'table' AS type,
                   format('Table `%%s.%%s` is public, but RLS has not been enabled.', n.nspname, c.relname) AS detail
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT c.relrowsecurity AND n.nspname = ANY({EXPOSED})
            ORDER BY 1, 2"""),
    Lint("policy_exists_rls_disabled", "Policy Exists RLS Disabled", "ERROR", "SECURITY",
         "Detects cases where row level security (RLS) policies have been created, but RLS has not been enabled for the underlying table.",
         "https://supabase.com/docs/guides/database/database-linter?lint=0007_policy_exists_rls_disabled",
         """SELECT n.nspname AS schema, c.relname AS name, 'table' AS type,
                   format('Table `%%s.%%s` has RLS policies but RLS is not enabled on the table. Policies include %%s.',
                          n.nspname, c.relname, array_agg(p.polname ORDER BY p.polname)) AS detail
            FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT c.relrowsecurity AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            GROUP BY n.nspname, c.relname ORDER BY 1, 2"""),
    Lint("rls_enabled_no_policy", "RLS Enabled No Policy", "INFO", "SECURITY",
         "Detects cases where row level security (RLS) has been enabled on a table but no RLS policies have been created.",
         "https://supabase.com/docs/guides/database/database-linter?lint=0008_rls_enabled_no_policy",
         f"""SELECT n.nspname AS schema, c.relname AS name, 'table' AS type,
                   format('Table `%%s.%%s` has RLS enabled, but no policies exist', n.nspname, c.relname) AS detail
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND n.nspname = ANY({EXPOSED})
              AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
            ORDER BY 1, 2"""),
    Lint("function_search_path_mutable", "Function Search Path Mutable", "WARN", "SECURITY",
         "Detects functions where the search_path parameter is not set.",
         "https://supabase.com/docs/guides/database/database-linter?lint=0011_function_search_path_mutable",
         f"""SELECT n.nspname AS schema, p.proname AS name, 'function' AS type,
                   format('Function `%%s.%%s` has a role mutable search_path', n.nspname, p.proname) AS detail
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = ANY({EXPOSED})
              AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{{}}')) x WHERE x LIKE 'search_path=%%')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
            ORDER BY 1, 2"""),
    Lint("extension_in_public", "Extension in Public", "WARN", "SECURITY",
         "Detects extensions installed in the `public` schema.",
         "https://supabase.com/docs/guides/database/database-linter?lint=0014_extension_in_public",
         """SELECT n.nspname AS schema, e.extname AS name, 'extension' AS type,
                   format('Extension `%%s` is installed in the public schema. Move it to another schema.', e.extname) AS detail
            FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
            WHERE n.nspname = 'public' ORDER BY 2"""),
    Lint("auth_rls_initplan", "Auth RLS Initialization Plan", "WARN", "PERFORMANCE",
         "Detects if calls to `current_setting()` and `auth.<function>()` in RLS policies are being unnecessarily re-evaluated for each row",
         "https://supabase.com/docs/guides/database/database-linter?lint=0003_auth_rls_initplan",
         """SELECT n.nspname AS schema, c.relname AS name, 'table' AS type,
                   format('Table `%%s.%%s` has a row level security policy `%%s` that re-evaluates current_setting() or auth.<function>() for each row. This produces suboptimal query performance at scale. Resolve the issue by replacing `auth.<function>()` with `(select auth.<function>())`.',
                          n.nspname, c.relname, p.polname) AS detail
            FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
                 LATERAL (SELECT lower(coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' ' ||
                                       coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')) AS expr) e
            WHERE (e.expr ~ 'auth\\.(uid|jwt|role|email)\\(\\)' AND e.expr !~ 'select\\s+auth\\.(uid|jwt|role|email)\\(\\)')
               OR (e.expr ~ 'current_setting\\(' AND e.expr !~ 'select\\s+current_setting\\(')
            ORDER BY 1, 2, p.polname"""),
    Lint("unindexed_foreign_keys", "Unindexed foreign keys", "INFO", "PERFORMANCE",
         "Identifies foreign key constraints without a covering index, which can impact database performance.",
         "https://supabase.com/docs/guides/database/database-linter?lint=0001_unindexed_foreign_keys",
         """SELECT n.nspname AS schema, c.relname AS name, 'table' AS type, con.conname AS fkey_name,
                   con.conkey::int[] AS fkey_columns,
                   format('Table `%%s.%%s` has a foreign key `%%s` without a covering index. This can lead to suboptimal query performance.',
                          n.nspname, c.relname, con.conname) AS detail
            FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE con.contype = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = con.conrelid
                              AND (i.indkey::int2[])[0:array_length(con.conkey, 1) - 1] @> con.conkey
                              AND (i.indkey::int2[])[0:array_length(con.conkey, 1) - 1] <@ con.conkey)
            ORDER BY 1, 2, 4"""),
    Lint("no_primary_key", "No Primary Key", "INFO", "PERFORMANCE",
         "Detects if a table does not have a primary key. Tables without a primary key can be inefficient to interact with at scale.",
         "https://supabase.com/docs/guides/database/database-linter?lint=0004_no_primary_key",
         f"""SELECT n.nspname AS schema, c.relname AS name, 'table' AS type,
                   format('Table `%%s.%%s` does not have a primary key', n.nspname, c.relname) AS detail
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY({EXPOSED})
              AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
            ORDER BY 1, 2"""),
    Lint("duplicate_index", "Duplicate Index", "WARN", "PERFORMANCE",
         "Detects cases where two ore more identical indexes exist.",
         "https://supabase.com/docs/guides/database/database-linter?lint=0009_duplicate_index",
         """SELECT n.nspname AS schema, c.relname AS name, 'table' AS type,
                   format('Table `%%s.%%s` has identical indexes %%s. Drop all except one of them',
                          n.nspname, c.relname, array_agg(ic.relname ORDER BY ic.relname)) AS detail
            FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_class ic ON ic.oid = i.indexrelid
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
            GROUP BY n.nspname, c.relname, i.indkey::text, i.indclass::text, coalesce(pg_get_expr(i.indexprs, i.indrelid), ''),
                     coalesce(pg_get_expr(i.indpred, i.indrelid), '')
            HAVING count(*) > 1 ORDER BY 1, 2"""),
)


def lint_result(lint: Lint, row: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"schema": row["schema"], "name": row["name"], "type": row["type"]}
    if row.get("fkey_name"):
        metadata["fkey_name"] = row["fkey_name"]
        metadata["fkey_columns"] = list(row.get("fkey_columns") or [])
    key = f"{lint.name}_{row['schema']}_{row['name']}" + (f"_{row['fkey_name']}" if row.get("fkey_name") else "")
    return {"name": lint.name, "title": lint.title, "level": lint.level, "facing": "EXTERNAL",
            "categories": [lint.category], "description": lint.description, "detail": row["detail"],
            "remediation": lint.remediation, "metadata": metadata,
            "cache_key": key if len(key) < 200 else hashlib.sha256(key.encode()).hexdigest()}


def lints_for(category: str, lint_type: str | None = None) -> list[Lint]:
    return [lint for lint in LINTS if lint.category == category and (lint_type in (None, "", "sql"))]
