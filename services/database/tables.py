"""The table editor's statements: list tables with columns and policies, browse rows with
paging and filters, insert, update and delete rows by primary key, create tables. Every
identifier is checked against the catalog and quoted by psycopg.sql; every value is a
parameter. Imports psycopg.sql and the standard library."""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql

TABLES_SQL = """
SELECT n.nspname AS schema, c.relname AS name, c.relrowsecurity AS rls_enabled, c.reltuples::bigint AS rows_estimate,
  coalesce((SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                   'nullable', NOT a.attnotnull, 'default', pg_get_expr(d.adbin, d.adrelid),
                   'identity', a.attidentity <> '', 'generated', a.attgenerated <> '',
                   'primary_key', coalesce(a.attnum = ANY(pk.conkey), false)) ORDER BY a.attnum)
            FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns,
  coalesce((SELECT json_agg(json_build_object('name', p.polname, 'command',
                   CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                 WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                   'permissive', p.polpermissive,
                   'roles', ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END FROM unnest(p.polroles) r),
                   'using', pg_get_expr(p.polqual, p.polrelid), 'check', pg_get_expr(p.polwithcheck, p.polrelid))
                   ORDER BY p.polname)
            FROM pg_policy p WHERE p.polrelid = c.oid), '[]') AS policies,
  coalesce((SELECT json_agg(json_build_object('name', f.conname, 'target_schema', tn.nspname, 'target_table', tc.relname,
                   'columns', ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = f.conrelid AND attnum = ANY(f.conkey)
                                    ORDER BY array_position(f.conkey, attnum)),
                   'target_columns', ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = f.confrelid
                                           AND attnum = ANY(f.confkey) ORDER BY array_position(f.confkey, attnum)))
                   ORDER BY f.conname)
            FROM pg_constraint f JOIN pg_class tc ON tc.oid = f.confrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
            WHERE f.conrelid = c.oid AND f.contype = 'f'), '[]') AS foreign_keys
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_constraint pk ON pk.conrelid = c.oid AND pk.contype = 'p'
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%(schemas)s)
ORDER BY 1, 2
"""

OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE", "ilike": "ILIKE"}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
TYPES = ("bigint", "integer", "smallint", "text", "varchar", "boolean", "numeric", "real", "double precision",
         "uuid", "date", "timestamptz", "timestamp", "time", "jsonb", "json", "bytea")


class TableError(ValueError):
    pass


def ident(schema: str, table: str) -> sql.Composed:
    return sql.Identifier(schema, table)


def browse(schema: str, table: str, columns: list[str], filters: list[tuple[str, str, str]], order: str | None,
           limit: int, offset: int) -> tuple[sql.Composed, list[Any]]:
    where, args = _where(columns, filters)
    order_sql = sql.SQL(" ORDER BY {} ").format(sql.Identifier(order)) if order else sql.SQL(" ")
    q = sql.SQL("SELECT *, count(*) OVER () AS __total FROM {}{}{}LIMIT %s OFFSET %s").format(
        ident(schema, table), where, order_sql)
    return q, [*args, limit, offset]


def _where(columns: list[str], filters: list[tuple[str, str, str]]) -> tuple[sql.Composable, list[Any]]:
    parts, args = [], []
    for col, op, value in filters:
        if col not in columns:
            raise TableError(f"filter: no column {col!r}")
        if op == "is":
            if value not in ("null", "not_null"):
                raise TableError("filter: is takes null or not_null")
            parts.append(sql.SQL("{} IS {}NULL").format(sql.Identifier(col), sql.SQL("NOT " if value == "not_null" else "")))
            continue
        if op not in OPS:
            raise TableError(f"filter: operator one of {', '.join([*OPS, 'is'])}")
        # Compare as text for LIKE; otherwise let PostgreSQL cast the parameter to the column's type.
        left = sql.SQL("{}::text").format(sql.Identifier(col)) if op in ("like", "ilike") else sql.Identifier(col)
        parts.append(sql.SQL("{} {} %s").format(left, sql.SQL(OPS[op])))
        args.append(value)
    if not parts:
        return sql.SQL(""), []
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), args


def insert(schema: str, table: str, columns: list[str], values: dict[str, Any]) -> tuple[sql.Composed, list[Any]]:
    _known(columns, values)
    if not values:
        return sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING *").format(ident(schema, table)), []
    names = list(values)
    q = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
        ident(schema, table), sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)))
    return q, [values[n] for n in names]


def update(schema: str, table: str, columns: list[str], pk: list[str], match: dict[str, Any],
           values: dict[str, Any]) -> tuple[sql.Composed, list[Any]]:
    _known(columns, values)
    if not values:
        raise TableError("values: at least one column to change")
    where, wargs = _match(pk, match)
    names = list(values)
    sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names)
    return (sql.SQL("UPDATE {} SET {}{} RETURNING *").format(ident(schema, table), sets, where),
            [values[n] for n in names] + wargs)


def delete(schema: str, table: str, pk: list[str], match: dict[str, Any]) -> tuple[sql.Composed, list[Any]]:
    where, args = _match(pk, match)
    return sql.SQL("DELETE FROM {}{} RETURNING *").format(ident(schema, table), where), args


def create(schema: str, name: str, columns: list[dict[str, Any]]) -> sql.Composed:
    if not NAME.match(name):
        raise TableError("name: letters, digits and _ (up to 63), not starting with a digit")
    if not columns:
        raise TableError("columns: at least one")
    defs, pks = [], []
    for i, c in enumerate(columns):
        cname, ctype = str(c.get("name", "")), str(c.get("type", "")).lower()
        if not NAME.match(cname):
            raise TableError(f"columns.{i}.name: letters, digits and _ (up to 63)")
        if ctype not in TYPES:
            raise TableError(f"columns.{i}.type: one of {', '.join(TYPES)}")
        d = sql.SQL("{} {}").format(sql.Identifier(cname), sql.SQL(ctype))
        if c.get("identity") and ctype in ("bigint", "integer", "smallint"):
            d += sql.SQL(" GENERATED BY DEFAULT AS IDENTITY")
        if not c.get("nullable", True) or c.get("primary_key"):
            d += sql.SQL(" NOT NULL")
        defs.append(d)
        if c.get("primary_key"):
            pks.append(sql.Identifier(cname))
    if pks:
        defs.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(pks)))
    return sql.SQL("CREATE TABLE {} ({})").format(ident(schema, name), sql.SQL(", ").join(defs))


def _known(columns: list[str], values: dict[str, Any]) -> None:
    for k in values:
        if k not in columns:
            raise TableError(f"values: no column {k!r}")


def _match(pk: list[str], match: dict[str, Any]) -> tuple[sql.Composable, list[Any]]:
    if not pk:
        raise TableError("this table has no primary key: rows can be changed with SQL only")
    if sorted(match) != sorted(pk):
        raise TableError(f"match: give the primary key ({', '.join(pk)}) and nothing else")
    return (sql.SQL(" WHERE ") + sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in pk),
            [match[k] for k in pk])
