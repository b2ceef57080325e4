// Edge functions of a project: the list, one function (versions with rollback, logs with
// filters), and the project's secrets (names and digests; values are write-only).

import { h } from "../dom.js";
import { api, get, post } from "../api.js";
import { field, form } from "../forms.js";
import { onLeave } from "../router.js";
import { whyNot } from "../state.js";
import { projectContext, projectPage } from "./project.js";
import {
  badge, button, busy, confirmDialog, copyButton, errorNotice, fmtAgo, fmtBytes, fmtDate, notice, table, toast,
} from "../ui.js";

const FN_STATUS = { ACTIVE: "ok", THROTTLED: "warn", REMOVED: "plain" };

function invokeUrl(project, slug) {
  // On the project edge (the project's own origin, never this dashboard's).
  return project.connection?.api_url ? `${project.connection.api_url}/functions/v1/${slug}` : "(shown once the project is up)";
}

export async function list({ params }) {
  const { project } = await projectContext(params.ref);
  let content;
  try {
    const fns = await get(`/v1/projects/${project.ref}/functions`);
    content = [
      h("section", { class: "card", "aria-labelledby": "fn-h" }, h("h2", { id: "fn-h" }, "Functions"),
        fns.length ? table([
          { label: "Name", cell: (f) => h("a", { href: `/project/${project.ref}/functions/${f.slug}` }, f.name) },
          { label: "Slug", cell: (f) => h("code", {}, f.slug) },
          { label: "Status", cell: (f) => badge(f.status.toLowerCase(), FN_STATUS[f.status]) },
          { label: "Version", num: true, cell: (f) => String(f.version) },
          { label: "Updated", cell: (f) => h("span", { title: fmtDate(new Date(f.updated_at).toISOString()) }, fmtAgo(new Date(f.updated_at).toISOString())) },
          { label: "JWT", cell: (f) => (f.verify_jwt ? "required" : "not required") },
        ], fns, { caption: "Edge functions" }) : [
          h("p", {}, "No functions deployed yet. Deploy one with the Supabase CLI:"),
          h("pre", { class: "card mono small" }, `supabase functions new hello-world\nsupabase functions deploy hello-world --project-ref ${project.ref}`),
          h("p", { class: "muted small" }, "Point the CLI at this platform with a personal access token (Account → Access tokens)."),
        ]),
      h("section", { class: "card", "aria-labelledby": "inv-h" }, h("h2", { id: "inv-h" }, "Invoking"),
        h("p", {}, "Each function answers at:"),
        h("p", {}, h("code", {}, invokeUrl(project, "<slug>"))),
        h("p", { class: "muted small" }, "Send the anon key (or a user's JWT) as Authorization: Bearer … when the function requires a JWT.")),
    ];
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, {
    title: "Edge functions", heading: "Edge functions", sub: "Deno functions that run close to your database.",
    actions: [h("a", { class: "button", href: `/project/${project.ref}/functions/secrets` }, "Secrets")], content,
  });
}

export async function detail({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const slug = params.slug;
  const fn = await get(`/v1/projects/${project.ref}/functions/${encodeURIComponent(slug)}`);
  const manage = whyNot(perms, "projects.manage");
  const versionsBox = h("div");
  const logsBox = h("div", { id: "logs", "aria-live": "polite" });

  async function drawVersions() {
    const versions = await get(`/platform/projects/${project.ref}/functions/${slug}/versions`);
    versionsBox.replaceChildren(table([
      { label: "Version", num: true, cell: (v) => String(v.version) },
      { label: "State", cell: (v) => (v.active ? badge("live", "ok") : "") },
      { label: "Deployed", cell: (v) => fmtDate(new Date(v.deployed_at_ms).toISOString()) },
      { label: "Size", num: true, cell: (v) => fmtBytes(v.size_bytes) },
      { label: "Bundle", cell: (v) => h("code", { title: v.bundle_sha256 }, v.bundle_sha256.slice(0, 12)) },
      { label: h("span", { class: "visually-hidden" }, "Actions"), cell: (v) => {
        if (v.active) return "";
        const b = button("Make live", () => busy(b, async () => {
          if (!await confirmDialog({ title: `Make version ${v.version} live?`, body: "New invocations run this version at once.", confirmLabel: "Roll back" })) return;
          await post(`/platform/projects/${project.ref}/functions/${slug}/rollback`, { version: v.version });
          toast(`Version ${v.version} is live`);
          await drawVersions();
        }), { small: true, disabledReason: manage });
        b.setAttribute("aria-label", `Make version ${v.version} live`);
        return b;
      } },
    ], versions, { caption: "Versions" }));
  }

  // Logs viewer with filters; newest first.
  const level = field({ name: "level", label: "Level", type: "select", value: "", options: [["", "All levels"], ["debug", "Debug and up"], ["info", "Info and up"], ["warn", "Warnings and errors"], ["error", "Errors"]] });
  const kind = field({ name: "kind", label: "Kind", type: "select", value: "", options: [["", "Everything"], ["log", "Console output"], ["invocation", "Invocations"]] });
  const since = field({ name: "since", label: "Since", type: "select", value: "3600000", options: [["900000", "Last 15 minutes"], ["3600000", "Last hour"], ["86400000", "Last 24 hours"], ["604800000", "Last 7 days"]] });
  const requestId = field({ name: "request_id", label: "Request id", placeholder: "one invocation" });
  const follow = h("input", { type: "checkbox", id: "logs-follow" });
  let timer = null;
  onLeave(() => clearTimeout(timer));

  async function drawLogs() {
    clearTimeout(timer);
    const q = new URLSearchParams({ limit: "200", since: String(Date.now() - Number(since.input.value)) });
    if (level.input.value) q.set("level", level.input.value);
    if (kind.input.value) q.set("kind", kind.input.value);
    if (requestId.input.value.trim()) q.set("request_id", requestId.input.value.trim());
    try {
      const lines = await get(`/platform/projects/${project.ref}/functions/${slug}/logs?${q}`);
      logsBox.replaceChildren(table([
        { label: "Time", cell: (l) => h("span", { class: "nowrap small" }, new Date(l.timestamp).toLocaleTimeString()) },
        { label: "Level", cell: (l) => badge(l.level, { error: "bad", warn: "warn", info: "busy", debug: "plain" }[l.level]) },
        { label: "Kind", cell: (l) => (l.kind === "invocation" ? "invocation" : "console") },
        { label: "Message", cell: (l) => h("span", { class: "mono small" }, l.message) },
        { label: "Request", cell: (l) => {
          if (!l.request_id) return "";
          const b = button(l.request_id.slice(0, 8), () => { requestId.input.value = l.request_id; drawLogs(); }, { small: true });
          b.setAttribute("aria-label", `Only the lines of request ${l.request_id}`);
          return b;
        } },
      ], lines, { empty: "No log lines match these filters.", caption: "Function logs" }));
    } catch (e) {
      logsBox.replaceChildren(errorNotice(e));
    }
    if (follow.checked) timer = setTimeout(drawLogs, 3000);
  }
  const filters = h("form", { class: "inline-form", "aria-label": "Log filters", onSubmit: (e) => { e.preventDefault(); drawLogs(); } },
    level, kind, since, requestId, h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary" }, "Apply")));
  [level, kind, since].forEach((f) => f.input.addEventListener("change", drawLogs));
  follow.addEventListener("change", drawLogs);

  const url = invokeUrl(project, fn.slug);
  await projectPage(project, {
    title: `${fn.name} · Edge functions`, heading: fn.name, sub: `Edge function ${fn.slug}`,
    actions: [h("a", { class: "button", href: `/project/${project.ref}/functions` }, "All functions")],
    content: [
      h("section", { class: "card", "aria-labelledby": "about-h" }, h("h2", { id: "about-h" }, "Details"),
        h("dl", { class: "facts" },
          h("dt", {}, "Status"), h("dd", {}, badge(fn.status.toLowerCase(), FN_STATUS[fn.status])),
          h("dt", {}, "Live version"), h("dd", {}, String(fn.version)),
          h("dt", {}, "URL"), h("dd", {}, h("code", {}, url), " ", copyButton(url, "Copy URL")),
          h("dt", {}, "Entrypoint"), h("dd", {}, h("code", {}, fn.entrypoint_path || "—")),
          h("dt", {}, "JWT"), h("dd", {}, fn.verify_jwt ? "required" : "not required"),
          h("dt", {}, "Updated"), h("dd", {}, fmtDate(new Date(fn.updated_at).toISOString())))),
      h("section", { class: "card", "aria-labelledby": "ver-h" }, h("h2", { id: "ver-h" }, "Versions"), versionsBox),
      h("section", { class: "card", "aria-labelledby": "logs-h" }, h("h2", { id: "logs-h" }, "Logs"), filters,
        h("div", { class: "field check" }, follow, h("label", { for: "logs-follow" }, "Follow (refresh every 3 seconds)")), logsBox),
    ],
  });
  await Promise.all([drawVersions(), drawLogs()]);
}

export async function secrets({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const manage = whyNot(perms, "projects.manage");
  const box = h("div");
  async function draw() {
    try {
      const list = await get(`/v1/projects/${project.ref}/secrets`);
      box.replaceChildren(table([
        { label: "Name", cell: (s) => h("code", {}, s.name) },
        { label: "Digest (SHA-256)", cell: (s) => h("code", { class: "small", title: s.value }, `${s.value.slice(0, 16)}…`) },
        { label: "Updated", cell: (s) => (s.updated_at ? fmtAgo(s.updated_at) : "—") },
        { label: h("span", { class: "visually-hidden" }, "Actions"), cell: (s) => {
          if (s.name.startsWith("SUPABASE_")) return h("span", { class: "muted small" }, "built in");
          const b = button("Delete", () => busy(b, async () => {
            if (!await confirmDialog({ title: `Delete ${s.name}?`, body: "Functions no longer see it from their next invocation.", confirmLabel: "Delete secret", danger: true })) return;
            await api("DELETE", `/v1/projects/${project.ref}/secrets`, [s.name]);
            toast(`${s.name} deleted`);
            await draw();
          }), { small: true, disabledReason: manage });
          b.setAttribute("aria-label", `Delete secret ${s.name}`);
          return b;
        } },
      ], list, { empty: "No secrets yet.", caption: "Secrets" }));
    } catch (e) {
      box.replaceChildren(errorNotice(e));
    }
  }
  const f = form({
    label: "Add a secret", className: "inline-form",
    fields: [
      field({ name: "name", label: "Name", required: true, placeholder: "STRIPE_KEY", autocomplete: "off" }),
      field({ name: "value", label: "Value", type: "password", required: true, autocomplete: "off" }),
    ],
    submitLabel: "Save secret",
    disabledReason: manage,
    onSubmit: async (v, theForm) => {
      try {
        await post(`/v1/projects/${project.ref}/secrets`, [v]);
      } catch (e) {
        // The bulk API names fields by position ("0.name"): show them beside this form's fields.
        if (e.errors) e.errors = Object.fromEntries(Object.entries(e.errors).map(([k, m]) => [k.replace(/^0\./, ""), m]));
        throw e;
      }
      theForm.reset();
      toast(`${v.name} saved`);
      await draw();
    },
  });
  await projectPage(project, {
    title: "Function secrets", heading: "Secrets", sub: "Environment variables for your edge functions. Values are never shown again.",
    actions: [h("a", { class: "button", href: `/project/${project.ref}/functions` }, "All functions")],
    content: [
      h("section", { class: "card", "aria-labelledby": "add-h" }, h("h2", { id: "add-h" }, "Add or replace a secret"), f),
      h("section", { class: "card", "aria-labelledby": "list-h" }, h("h2", { id: "list-h" }, "Secrets"), box),
      notice("Functions read them with Deno.env.get(NAME).", ""),
    ],
  });
  await draw();
}
