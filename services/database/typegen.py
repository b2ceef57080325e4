"""TypeScript types for supabase-js from a tenant's catalog, in the shape of postgres-meta's
generator (`Database` with Tables/Views/Functions/Enums/CompositeTypes and the Tables<>,
TablesInsert<>, TablesUpdate<>, Enums<> helpers). Pure: `render(catalog)` takes the rows of
CATALOG_SQL. Imports the standard library only."""

from __future__ import annotations

import json
from typing import Any

CATALOG_SQL = """
WITH rels AS (
  SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
)
SELECT 'column' AS kind, r.schema, r.name AS rel, r.relkind::text AS relkind, a.attname AS name,
       a.attnum AS position, t.typname AS type, tn.nspname AS type_schema, t.typtype::text AS typtype,
       et.typname AS elem_type, et.typtype::text AS elem_typtype, a.attnotnull AS not_null,
       (ad.adbin IS NOT NULL OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default,
       a.attidentity = 'a' AS identity_always, a.attgenerated <> '' AS generated,
       NULL::text AS target_schema, NULL::text AS target_rel, NULL::text[] AS cols, NULL::text[] AS target_cols,
       NULL::text AS constraint_name, NULL::text[] AS labels, NULL::text AS args, NULL::text AS returns,
       NULL::bool AS returns_set
FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
UNION ALL
SELECT 'fkey', r.schema, r.name, r.relkind::text, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       tn.nspname, tc.relname,
       ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = con.conrelid AND attnum = ANY(con.conkey) ORDER BY array_position(con.conkey, attnum)),
       ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = con.confrelid AND attnum = ANY(con.confkey) ORDER BY array_position(con.confkey, attnum)),
       con.conname, NULL, NULL, NULL, NULL
FROM rels r JOIN pg_constraint con ON con.conrelid = r.oid AND con.contype = 'f'
JOIN pg_class tc ON tc.oid = con.confrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
UNION ALL
SELECT 'enum', n.nspname, t.typname, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL,
       ARRAY(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = t.oid ORDER BY enumsortorder), NULL, NULL, NULL
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typtype = 'e' AND n.nspname = ANY(%(schemas)s)
UNION ALL
SELECT 'function', n.nspname, p.proname, NULL, NULL, 0, rt.typname, NULL, rt.typtype::text, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.proretset
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_type rt ON rt.oid = p.prorettype
WHERE n.nspname = ANY(%(schemas)s) AND p.prokind = 'f'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1, 2, 3, 6
"""

SCALARS = {
    "bool": "boolean", "int2": "number", "int4": "number", "int8": "number", "float4": "number",
    "float8": "number", "numeric": "number", "oid": "number", "money": "string",
    "json": "Json", "jsonb": "Json", "void": "undefined", "record": "Record<string, unknown>",
}


def ts_type(name: str | None, typtype: str | None, schema: str | None = None, elem: str | None = None,
            elem_typtype: str | None = None, enum_schemas: dict[str, str] | None = None) -> str:
    if elem is not None:
        return f"{ts_type(elem, elem_typtype, schema, enum_schemas=enum_schemas)}[]"
    if name is None:
        return "unknown"
    if typtype == "e" and enum_schemas and name in enum_schemas:
        return f'Database["{enum_schemas[name]}"]["Enums"]["{name}"]'
    return SCALARS.get(name, "string")


def _q(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name)


def render(rows: list[dict[str, Any]], schemas: list[str]) -> str:
    enums: dict[str, dict[str, list[str]]] = {s: {} for s in schemas}
    enum_schema: dict[str, str] = {}
    rels: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in schemas}
    funcs: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in schemas}
    for r in rows:
        if r["kind"] == "enum":
            enums[r["schema"]][r["rel"]] = r["labels"] or []
            enum_schema[r["rel"]] = r["schema"]
    for r in rows:
        if r["kind"] == "column":
            rel = rels[r["schema"]].setdefault(r["rel"], {"relkind": r["relkind"], "columns": [], "fkeys": []})
            rel["columns"].append(r)
        elif r["kind"] == "fkey":
            rel = rels[r["schema"]].setdefault(r["rel"], {"relkind": r["relkind"], "columns": [], "fkeys": []})
            rel["fkeys"].append(r)
        elif r["kind"] == "function":
            funcs[r["schema"]][r["rel"]] = r
    out = ["export type Json =", "  | string", "  | number", "  | boolean", "  | null",
           "  | { [key: string]: Json | undefined }", "  | Json[]", "", "export type Database = {"]
    for schema in schemas:
        out.append(f"  {_q(schema)}: {{")
        for section, kinds in (("Tables", ("r", "p", "f")), ("Views", ("v", "m"))):
            out.append(f"    {section}: {{")
            items = {n: v for n, v in sorted(rels[schema].items()) if v["relkind"] in kinds}
            if not items:
                out.append("      [_ in never]: never")
            for name, rel in items.items():
                out.append(f"      {_q(name)}: {{")
                out.extend(_row_types(rel, section == "Views", enum_schema))
                out.append("        Relationships: [")
                for fk in sorted(rel["fkeys"], key=lambda f: f["constraint_name"]):
                    out += ["          {", f"            foreignKeyName: {json.dumps(fk['constraint_name'])}",
                            f"            columns: {json.dumps(fk['cols'])}", "            isOneToOne: false",
                            f"            referencedRelation: {json.dumps(fk['target_rel'])}",
                            f"            referencedColumns: {json.dumps(fk['target_cols'])}", "          },"]
                out += ["        ]", "      }"]
            out.append("    }")
        out.append("    Functions: {")
        if not funcs[schema]:
            out.append("      [_ in never]: never")
        for name, fn in sorted(funcs[schema].items()):
            out.append(f"      {_q(name)}: {{")
            args = _args(fn["args"] or "")
            out.append("        Args: " + ("{ " + "; ".join(f"{_q(a.rstrip('?'))}{'?' if a.endswith('?') else ''}: {t}" for a, t in args) + " }"
                                            if args else "never"))
            ret = ts_type(fn["type"], fn["typtype"], enum_schemas=enum_schema)
            out.append(f"        Returns: {ret}{'[]' if fn['returns_set'] else ''}")
            out.append("      }")
        out.append("    }")
        out.append("    Enums: {")
        if not enums[schema]:
            out.append("      [_ in never]: never")
        for name, labels in sorted(enums[schema].items()):
            out.append(f"      {_q(name)}: {' | '.join(json.dumps(x) for x in labels) or 'never'}")
        out += ["    }", "    CompositeTypes: {", "      [_ in never]: never", "    }", "  }"]
    out += ["}", "", HELPERS.replace("__SCHEMA__", json.dumps(schemas[0] if schemas else "public"))]
    return "\n".join(out)


def _row_types(rel: dict[str, Any], view: bool, enum_schema: dict[str, str]) -> list[str]:
    out: list[str] = []
    cols = sorted(rel["columns"], key=lambda c: c["name"])
    for part in ("Row", "Insert", "Update"):
        out.append(f"        {part}: {{")
        for c in cols:
            t = ts_type(c["type"], c["typtype"], c["type_schema"], c["elem_type"], c["elem_typtype"], enum_schema)
            nullable = view or not c["not_null"]
            typ = f"{t} | null" if nullable else t
            if part == "Row":
                out.append(f"          {_q(c['name'])}: {typ}")
            elif c["generated"] or c["identity_always"]:
                out.append(f"          {_q(c['name'])}?: never")
            else:
                optional = part == "Update" or nullable or c["has_default"]
                out.append(f"          {_q(c['name'])}{'?' if optional else ''}: {typ}")
        out.append("        }")
    return out


def _args(text: str) -> list[tuple[str, str]]:
    """`a integer, b text DEFAULT 'x'` → [(a, number), (b, string)]; unnamed or OUT args skipped."""
    out = []
    depth, cur, parts = 0, "", []
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    for p in parts:
        words = p.strip().split()
        if words and words[0].upper() in ("IN", "INOUT", "VARIADIC"):
            words = words[1:]
        if len(words) < 2 or words[0].upper() == "OUT":
            continue
        name, typ = words[0], words[1].lower()
        typ = typ.removesuffix("[]")
        base = {"integer": "int4", "bigint": "int8", "smallint": "int2", "boolean": "bool", "real": "float4",
                "double": "float8"}.get(typ, typ)
        optional = "DEFAULT" in p.upper()
        out.append((name + ("?" if optional else ""), SCALARS.get(base, "string") + ("[]" if "[]" in p else "")))
    return out


HELPERS = """type DefaultSchema = Database[Extract<keyof Database, __SCHEMA__>]

export type Tables<
  TableName extends keyof (DefaultSchema["Tables"] & DefaultSchema["Views"]),
> = (DefaultSchema["Tables"] & DefaultSchema["Views"])[TableName] extends { Row: infer R } ? R : never

export type TablesInsert<TableName extends keyof DefaultSchema["Tables"]> =
  DefaultSchema["Tables"][TableName] extends { Insert: infer I } ? I : never

export type TablesUpdate<TableName extends keyof DefaultSchema["Tables"]> =
  DefaultSchema["Tables"][TableName] extends { Update: infer U } ? U : never

export type Enums<EnumName extends keyof DefaultSchema["Enums"]> = DefaultSchema["Enums"][EnumName]
"""
