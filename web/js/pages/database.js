// Database pages of a project: table editor (tables, rows with paging and filters, insert, edit,
// delete, new table), SQL editor with a results grid, RLS policies, migrations history and the
// TypeScript types. Every write is checked by the server (database.write); the buttons only
// say beforehand what your role allows.

import { h } from "../dom.js";
import { api, get, post, session } from "../api.js";
import { field, form } from "../forms.js";
import { navigate, onLeave, render } from "../router.js";
import { whyNot } from "../state.js";
import { projectContext, projectPage } from "./project.js";
import { studioLink } from "../layout.js";
import { badge, button, busy, confirmDialog, copyButton, errorNotice, table, toast } from "../ui.js";

const enc = encodeURIComponent;

function cellText(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "NULL");
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** A results grid: one column per key of the first row. */
export function grid(rows, { caption = "Results", extra = null } = {}) {
  if (!rows.length) return h("p", { class: "muted" }, "No rows.");
  const keys = Object.keys(rows[0]);
  const cols = keys.map((k) => ({ label: k, cell: (r) => cellText(r[k]) }));
  if (extra) cols.push(extra);
  return table(cols, rows, { caption });
}

export async function tables({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const base = `/project/${project.ref}/database`;
  const write = whyNot(perms, "database.write");
  let content;
  try {
    const list = await get(`/platform/projects/${project.ref}/database/tables`);
    const newTable = form({
      label: "New table", submitLabel: "Create table", disabledReason: write,
      fields: [field({ name: "name", label: "Table name", required: true, placeholder: "todos" }),
        field({ name: "columns", label: "Columns", type: "textarea", rows: 4, required: true,
          value: "id bigint primary key identity\ntitle text not null",
          help: "One per line: name type [primary key] [identity] [not null]. An id bigint primary key is usual." })],
      onSubmit: async (v) => {
        const columns = v.columns.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
          const [name, ...rest] = l.split(/\s+/);
          const words = rest.join(" ").toLowerCase();
          const type = words.replace(/primary key|identity|not null/g, "").trim();
          return { name, type, primary_key: words.includes("primary key"), identity: words.includes("identity"),
            nullable: !words.includes("not null") };
        });
        await post(`/platform/projects/${project.ref}/database/tables`, { name: v.name.trim(), columns });
        toast(`Table ${v.name} created`);
        await navigate(`${base}/tables/public/${enc(v.name.trim())}`);
      },
    });
    content = [
      h("section", { class: "card", "aria-labelledby": "tables-h" }, h("h2", { id: "tables-h" }, "Tables in public"),
        table([
          { label: "Table", cell: (t) => h("a", { href: `${base}/tables/${enc(t.schema)}/${enc(t.name)}` }, t.name) },
          { label: "Columns", num: true, cell: (t) => String(t.columns.length) },
          { label: "RLS", cell: (t) => (t.rls_enabled ? badge("enabled", "ok") : badge("disabled", "warn")) },
          { label: "Policies", num: true, cell: (t) => String(t.policies.length) },
        ], list, { empty: "No tables yet.", caption: "Tables" })),
      h("section", { class: "card", "aria-labelledby": "new-h" }, h("h2", { id: "new-h" }, "New table"), newTable),
    ];
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: "Table editor", heading: "Table editor", sub: "Browse and edit your data.",
    actions: [h("a", { class: "button", href: `${base}/sql` }, "SQL editor")], content });
}

export async function tableRows({ params, query }) {
  const { project, perms } = await projectContext(params.ref);
  const { schema, table: name } = params;
  const write = whyNot(perms, "database.write");
  const rowsPath = `/platform/projects/${project.ref}/database/tables/${enc(schema)}/${enc(name)}/rows`;
  const limit = 25;
  const offset = Number(query.get("offset") || 0);
  const filter = query.get("filter") || "";
  const q = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  if (filter) q.append("filter", filter);
  let content;
  try {
    const page = await get(`${rowsPath}?${q}`);
    const pk = page.primary_key;
    const here = (o, f = filter) => `/project/${project.ref}/database/tables/${enc(schema)}/${enc(name)}?${new URLSearchParams({ offset: String(o), ...(f ? { filter: f } : {}) })}`;
    const editable = page.columns.filter((c) => !c.generated && !(c.identity && c.primary_key));
    const filterForm = form({
      label: "Filter rows", submitLabel: "Filter", className: "inline-form",
      fields: [field({ name: "filter", label: "Filter", value: filter, placeholder: "column.op.value (eq, neq, gt, lt, ilike, is)" })],
      onSubmit: async (v) => navigate(here(0, v.filter.trim())),
    });
    const insertForm = form({
      label: "Insert row", submitLabel: "Insert row", disabledReason: write,
      fields: editable.map((c) => field({ name: c.name, label: `${c.name} (${c.type})`, placeholder: c.default || (c.nullable ? "NULL" : "") })),
      onSubmit: async (v) => {
        const values = Object.fromEntries(Object.entries(v).filter(([, x]) => String(x) !== ""));
        await post(rowsPath, { values });
        toast("Row inserted");
        await render();
      },
    });
    const actions = pk.length ? {
      label: h("span", { class: "visually-hidden" }, "Actions"),
      cell: (r) => {
        const match = Object.fromEntries(pk.map((k) => [k, r[k]]));
        const edit = button("Edit", () => editRow(r, match), { small: true, disabledReason: write });
        const remove = button("Delete", () => busy(remove, async () => {
          if (!await confirmDialog({ title: "Delete this row?", body: JSON.stringify(match), confirmLabel: "Delete", danger: true })) return;
          await api("DELETE", rowsPath, { match });
          toast("Row deleted");
          await render();
        }), { small: true, kind: "danger", disabledReason: write });
        edit.setAttribute("aria-label", `Edit row ${JSON.stringify(match)}`);
        remove.setAttribute("aria-label", `Delete row ${JSON.stringify(match)}`);
        return h("span", { class: "nowrap" }, edit, " ", remove);
      },
    } : null;
    const editBox = h("div", { id: "edit-row" });
    function editRow(r, match) {
      editBox.replaceChildren(h("section", { class: "card", "aria-labelledby": "edit-h" },
        h("h2", { id: "edit-h" }, `Edit row ${JSON.stringify(match)}`),
        form({
          label: "Edit row", submitLabel: "Save row",
          fields: editable.filter((c) => !c.primary_key).map((c) => field({ name: c.name, label: c.name, value: r[c.name] ?? "" })),
          onSubmit: async (v) => {
            const values = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, x === "" ? null : x]));
            await api("PATCH", rowsPath, { match, values });
            toast("Row saved");
            await render();
          },
        })));
      editBox.querySelector("input")?.focus();
    }
    const prev = offset > 0 ? h("a", { class: "button", href: here(Math.max(0, offset - limit)) }, "Previous") : null;
    const next = offset + limit < page.total ? h("a", { class: "button", href: here(offset + limit) }, "Next") : null;
    content = [
      h("section", { class: "card", "aria-labelledby": "rows-h" }, h("h2", { id: "rows-h" }, `${schema}.${name}`),
        filterForm,
        h("p", { class: "muted small", id: "rows-count" }, page.total ? `Rows ${offset + 1}–${Math.min(offset + limit, page.total)} of ${page.total}` : "No rows"),
        grid(page.rows, { caption: `Rows of ${name}`, extra: actions }),
        h("div", { class: "form-actions" }, prev, next),
        pk.length ? null : h("p", { class: "muted small" }, "This table has no primary key: change its rows with SQL.")),
      editBox,
      h("section", { class: "card", "aria-labelledby": "ins-h" }, h("h2", { id: "ins-h" }, "Insert a row"), insertForm),
    ];
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: `${name} · Table editor`, heading: name, sub: `Table ${schema}.${name}`,
    actions: [h("a", { class: "button", href: `/project/${project.ref}/database/policies` }, "RLS policies")], content });
}

const HISTORY_MAX = 20;
function historyKey(ref) { return `sp-sql-history:${ref}`; }
function loadHistory(ref) {
  try { return JSON.parse(localStorage.getItem(historyKey(ref)) || "[]"); } catch { return []; }
}

export async function sqlEditor({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const write = whyNot(perms, "database.write");
  const snippetsPath = `/platform/projects/${project.ref}/database/snippets`;
  const results = h("div", { id: "sql-results", "aria-live": "polite" });
  const snippetsBox = h("div", { id: "sql-snippets" });
  const historyBox = h("div", { id: "sql-history" });
  const editor = form({
    label: "SQL editor", submitLabel: write ? "Run (read-only)" : "Run",
    fields: [field({ name: "query", label: "SQL", type: "textarea", rows: 8, required: true, value: "select now();" })],
    extra: [button("Save as snippet", () => saveSnippet())],
    onSubmit: async (v) => {
      const path = write ? "database/query/read-only" : "database/query";
      // History stays in this browser (this user's own, per project), newest first.
      const history = [v.query, ...loadHistory(project.ref).filter((x) => x !== v.query)].slice(0, HISTORY_MAX);
      localStorage.setItem(historyKey(project.ref), JSON.stringify(history));
      drawHistory();
      try {
        const started = performance.now();
        const rows = await post(`/v1/projects/${project.ref}/${path}`, { query: v.query });
        results.replaceChildren(h("p", { class: "muted small" }, `${rows.length} row(s) in ${Math.round(performance.now() - started)} ms`),
          grid(rows));
      } catch (e) {
        results.replaceChildren(errorNotice(e));
      }
    },
  });
  const textarea = editor.querySelector("textarea[name=query]");

  async function saveSnippet() {
    const name = (textarea.value.split("\n")[0] || "snippet").slice(0, 60);
    try {
      await post(snippetsPath, { name, sql: textarea.value });
      toast("Snippet saved");
      await drawSnippets();
    } catch (e) {
      results.replaceChildren(errorNotice(e));
    }
  }
  async function drawSnippets() {
    const list = await get(snippetsPath);
    snippetsBox.replaceChildren(table([
      { label: "Snippet", cell: (sn) => {
        const b = button(sn.name, () => { textarea.value = sn.sql; textarea.focus(); }, { small: true });
        b.setAttribute("aria-label", `Open snippet ${sn.name}`);
        return b;
      } },
      { label: h("span", { class: "visually-hidden" }, "Actions"), cell: (sn) => {
        const b = button("Delete", () => busy(b, async () => {
          await api("DELETE", `${snippetsPath}/${sn.id}`);
          await drawSnippets();
        }), { small: true, kind: "danger" });
        b.setAttribute("aria-label", `Delete snippet ${sn.name}`);
        return b;
      } },
    ], list, { empty: "No saved snippets yet: they are yours alone.", caption: "Saved snippets" }));
  }
  function drawHistory() {
    historyBox.replaceChildren(table([{ label: "Recent queries", cell: (q) => {
      const b = button(q.length > 80 ? `${q.slice(0, 80)}…` : q, () => { textarea.value = q; textarea.focus(); }, { small: true });
      return b;
    } }], loadHistory(project.ref), { empty: "Queries you run show here.", caption: "History" }));
  }
  drawHistory();
  await drawSnippets().catch((e) => snippetsBox.replaceChildren(errorNotice(e)));
  await projectPage(project, { title: "SQL editor", heading: "SQL editor",
    sub: write ? "Your role runs read-only SQL: one statement, in a read-only transaction." : "Runs as your project's database owner, in one transaction.",
    content: [h("section", { class: "card" }, editor), h("section", { class: "card", "aria-label": "Results" }, results),
      h("section", { class: "card", "aria-labelledby": "snip-h" }, h("h2", { id: "snip-h" }, "Saved snippets"), snippetsBox),
      h("section", { class: "card", "aria-labelledby": "hist-h" }, h("h2", { id: "hist-h" }, "History"), historyBox)] });
}

export async function policies({ params }) {
  const { project } = await projectContext(params.ref);
  let content;
  try {
    const list = await get(`/platform/projects/${project.ref}/database/tables`);
    content = list.map((t) => h("section", { class: "card", "aria-label": `Policies of ${t.name}` },
      h("h2", {}, t.name, " ", t.rls_enabled ? badge("RLS enabled", "ok") : badge("RLS disabled", "warn")),
      table([
        { label: "Policy", cell: (p) => p.name }, { label: "Command", cell: (p) => p.command },
        { label: "Roles", cell: (p) => p.roles.join(", ") },
        { label: "Using", cell: (p) => h("code", {}, p.using || "") }, { label: "With check", cell: (p) => h("code", {}, p.check || "") },
      ], t.policies, { empty: t.rls_enabled ? "No policies: nobody but the owner and service_role sees rows." : "No policies.", caption: "Policies" })));
    if (!list.length) content = h("p", { class: "muted" }, "No tables yet.");
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: "RLS policies", heading: "Row level security", content });
}

export async function migrations({ params }) {
  const { project } = await projectContext(params.ref);
  let content;
  try {
    const list = await get(`/v1/projects/${project.ref}/database/migrations`);
    content = h("section", { class: "card" }, table([
      { label: "Version", cell: (m) => h("code", {}, m.version) }, { label: "Name", cell: (m) => m.name || "" },
    ], [...list].reverse(), { empty: "No migrations applied yet (supabase db push, or the MCP server's apply_migration).", caption: "Migrations" }));
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: "Migrations", heading: "Migrations", sub: "supabase_migrations.schema_migrations, newest first.", content });
}

export async function types({ params }) {
  const { project } = await projectContext(params.ref);
  let content;
  try {
    const { types: text } = await get(`/v1/projects/${project.ref}/types/typescript`);
    content = h("section", { class: "card" }, h("div", { class: "form-actions" }, copyButton(() => text, "Copy types")),
      h("pre", { class: "mono small", id: "ts-types" }, text));
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: "TypeScript types", heading: "TypeScript types", sub: "For supabase-js: createClient<Database>(url, key).", content });
}

/** The schema visualizer: every table of the schema as a box of its columns (primary key and
 * foreign key columns marked), with an arrow per foreign key to the table it references, and
 * the same relationships as a list (what a screen reader reads). */
export async function schemaVisualizer({ params, query }) {
  const { project } = await projectContext(params.ref);
  const schema = query.get("schema") || "public";
  let content;
  try {
    const list = await get(`/platform/projects/${project.ref}/database/tables?schema=${enc(schema)}`);
    const base = `/project/${project.ref}/database`;
    const rels = list.flatMap((t) => (t.foreign_keys || []).map((fk) => ({ from: t, fk })));
    const boxes = h("div", { class: "schema-boxes", id: "schema-boxes" }, list.map((t) => h("section", {
      class: "card schema-table", "data-table": t.name, "aria-label": `Table ${t.name}` },
    h("h3", {}, h("a", { href: `${base}/tables/${enc(t.schema)}/${enc(t.name)}` }, t.name),
      t.rls_enabled ? null : badge("RLS off", "warn")),
    h("ul", { class: "plain" }, t.columns.map((c) => {
      const fk = (t.foreign_keys || []).find((f) => f.columns.includes(c.name));
      return h("li", { "data-column": c.name }, h("span", { class: "mono" }, c.name), " ",
        h("span", { class: "muted small" }, c.type), c.primary_key ? [" ", badge("PK")] : null,
        fk ? [" ", badge(`→ ${fk.target_table}.${fk.target_columns[fk.columns.indexOf(c.name)]}`, "plain")] : null);
    })))));
    const svg = drawLinks(rels);
    content = [
      h("section", { class: "card", "aria-labelledby": "viz-h" }, h("h2", { id: "viz-h" }, `Tables in ${schema}`),
        list.length ? h("div", { class: "schema-canvas" }, svg, boxes) : h("p", { class: "muted" }, "No tables yet.")),
      h("section", { class: "card", "aria-labelledby": "rel-h" }, h("h2", { id: "rel-h" }, "Relationships"),
        rels.length ? h("ul", { id: "schema-relationships" }, rels.map(({ from, fk }) => h("li", {},
          h("span", { class: "mono" }, `${from.name}.${fk.columns.join(", ")}`), " → ",
          h("span", { class: "mono" }, `${fk.target_schema === schema ? "" : fk.target_schema + "."}${fk.target_table}.${fk.target_columns.join(", ")}`),
          h("span", { class: "muted small" }, ` (${fk.name})`))))
          : h("p", { class: "muted", id: "schema-relationships" }, "No foreign keys.")),
    ];
    // Arrows are drawn once the boxes are laid out (and again when the window changes size).
    const redraw = () => placeLinks(svg, boxes, rels);
    requestAnimationFrame(redraw);
    window.addEventListener("resize", redraw);
    onLeave(() => window.removeEventListener("resize", redraw));
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: "Schema visualizer", heading: "Schema visualizer",
    sub: "Tables and their foreign keys.", content });
}

const SVG = "http://www.w3.org/2000/svg";

function drawLinks() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "schema-links");
  svg.setAttribute("aria-hidden", "true");
  return svg;
}

function placeLinks(svg, boxes, rels) {
  while (svg.firstChild) svg.firstChild.remove();
  const origin = boxes.getBoundingClientRect();
  svg.setAttribute("width", String(boxes.scrollWidth));
  svg.setAttribute("height", String(boxes.scrollHeight));
  const at = (table, column) => {
    const box = boxes.querySelector(`[data-table="${CSS.escape(table)}"]`);
    if (!box) return null;
    const row = box.querySelector(`[data-column="${CSS.escape(column)}"]`) || box;
    const r = row.getBoundingClientRect();
    const b = box.getBoundingClientRect();
    return { left: b.left - origin.left, right: b.right - origin.left, y: r.top - origin.top + r.height / 2 };
  };
  for (const { from, fk } of rels) {
    const a = at(from.name, fk.columns[0]);
    const b = at(fk.target_table, fk.target_columns[0]);
    if (!a || !b) continue;
    const x1 = a.right <= b.left ? a.right : a.left;
    const x2 = a.right <= b.left ? b.left : b.right;
    const path = document.createElementNS(SVG, "path");
    const mid = (x1 + x2) / 2;
    path.setAttribute("d", `M${x1},${a.y} C${mid},${a.y} ${mid},${b.y} ${x2},${b.y}`);
    path.setAttribute("class", "schema-link");
    path.dataset.from = from.name;
    path.dataset.to = fk.target_table;
    svg.append(path);
  }
}

/** The project's own Supabase Studio in a frame (kubernetes driver, docs/studio.md): the frame
 * opens the dashboard's bridge, which sends it to the Studio origin with a one-time code. On the
 * local driver Studio is the database pages on the Studio origin: go there instead. */
export async function studioFrame({ params, query }) {
  const { project } = await projectContext(params.ref);
  const src = studioLink(project.ref, query.get("page") || "database");
  if (!session.studioEmbedded) return location.assign(src);
  const content = h("iframe", { class: "studio-frame", id: "studio-frame", src, title: `Studio of ${project.name}`,
    referrerpolicy: "no-referrer" });
  await projectPage(project, { title: "Studio", heading: "Studio", sub: "The project's own Supabase Studio.", content });
}
