// Database > Publications: which tables publish Postgres changes to realtime (the project's
// supabase_realtime publication), which actions, and each table's replica identity. Every
// toggle is one PUT; the server checks database.write and applies it in the project's database.

import { h } from "../dom.js";
import { get, put } from "../api.js";
import { whyNot } from "../state.js";
import { projectContext, projectPage } from "./project.js";
import { badge, errorNotice, table, toast } from "../ui.js";

const ACTIONS = ["insert", "update", "delete", "truncate"];

function toggle(label, checked, disabledReason, onChange) {
  const input = h("input", { type: "checkbox", "aria-label": label });
  input.checked = !!checked;
  if (disabledReason) {
    input.disabled = true;
    input.title = disabledReason;
  }
  input.addEventListener("change", async () => {
    input.disabled = true;
    try {
      await onChange(input.checked);
    } catch (e) {
      input.checked = !input.checked;
      toast(e.message || String(e), "error");
    } finally {
      input.disabled = !!disabledReason;
    }
  });
  return input;
}

export async function publications({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const path = `/platform/projects/${project.ref}/realtime/publication`;
  const root = h("div", {});
  const draw = (st) => {
    const why = st.can_change ? whyNot(perms, "database.write") : "Your role may not change the publication";
    const change = async (body, what) => {
      draw(await put(path, body));
      toast(what);
    };
    root.replaceChildren(
      h("section", { class: "card", "aria-labelledby": "pub-actions-h" },
        h("h2", { id: "pub-actions-h" }, "Actions"),
        h("p", { class: "muted" }, "Which changes supabase_realtime publishes, for every table in it."),
        h("div", { class: "form-actions" }, ...ACTIONS.map((a) => h("label", {},
          toggle(`Publish ${a}`, st.actions[a], why, (on) => change({ actions: { [a]: on } }, `${a}: ${on ? "on" : "off"}`)),
          " ", a)))),
      h("section", { class: "card", "aria-labelledby": "pub-tables-h" },
        h("h2", { id: "pub-tables-h" }, "Tables"),
        st.all_tables ? h("p", {}, badge("FOR ALL TABLES", "warn"), " every table publishes changes.") : null,
        table([
          { label: "Table", cell: (t) => `${t.schema}.${t.name}` },
          { label: "Realtime", cell: (t) => toggle(`Publish changes of ${t.schema}.${t.name}`, t.published, why,
            (on) => change({ tables: [{ schema: t.schema, name: t.name, published: on }] },
              `${t.schema}.${t.name} ${on ? "publishes" : "no longer publishes"} changes`)) },
          { label: "Replica identity full", cell: (t) => toggle(`Replica identity full for ${t.schema}.${t.name}`,
            t.replica_identity_full, why,
            (on) => change({ tables: [{ schema: t.schema, name: t.name, replica_identity_full: on }] },
              `${t.schema}.${t.name}: replica identity ${on ? "full" : "default"}`)) },
          { label: "RLS", cell: (t) => (t.rls_enabled ? badge("enabled", "ok") : badge("disabled", "warn")) },
          { label: "Primary key", cell: (t) => (t.has_primary_key ? "yes" : badge("none: changes arrive as errors", "warn")) },
        ], st.tables, { empty: "No tables yet.", caption: "Tables and their realtime changes" })));
  };
  let content = root;
  try {
    draw(await get(path));
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: "Publications", heading: "Realtime publications",
    sub: "Tables whose changes reach postgres_changes subscribers (supabase_realtime).", content });
}
