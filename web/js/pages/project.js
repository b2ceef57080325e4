// The project area: creation wizard, overview with live progress, API keys and JWT secret,
// settings (general with pause/restore/delete, API, auth) and the settings history.

import { h } from "../dom.js";
import { ApiError, del, get, optional, patch, post } from "../api.js";
import { REGIONS, regionName } from "../constants.js";
import { field, form } from "../forms.js";
import { orgNav, page, projectNav } from "../layout.js";
import { generatePassword, strength, strengthMeter } from "../password.js";
import { navigate, onLeave, render } from "../router.js";
import { can, permissions, whyNot } from "../state.js";
import { orgContext } from "./org.js";
import {
  BUSY, button, busy, confirmDialog, copyButton, errorNotice, fmtAgo, fmtBytes, fmtDate, fmtNumber, notice,
  progressBar, statusBadge, table, toast,
} from "../ui.js";

const OPERATION = { create: "Setting up your project", pause: "Pausing the project", restore: "Restoring the project",
  delete: "Deleting the project" };
const FAILED = { INIT_FAILED: "create", PAUSE_FAILED: "pause", RESTORE_FAILED: "restore" };

export function humanStep(step) {
  if (!step) return "";
  const s = String(step).replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** The project, its organization and what your role allows there. */
export async function projectContext(ref) {
  const project = await get(`/platform/projects/${encodeURIComponent(ref)}`);
  const perms = await permissions(project.organization_slug);
  return { project, perms };
}

export function projectPage(project, opts) {
  return page({
    ...opts, title: `${opts.title} · ${project.name}`, org: project.organization_slug,
    project: { ref: project.ref, name: project.name }, nav: projectNav(project.ref, project.organization_slug), navLabel: "Project",
  });
}

// ---- creation wizard ----------------------------------------------------------------------------
const QUOTA_LABELS = {
  db_size_bytes: ["Database size", fmtBytes], storage_bytes: ["File storage", fmtBytes], egress_bytes: ["Egress", fmtBytes],
  api_requests: ["API requests", fmtNumber], function_invocations: ["Function invocations", fmtNumber],
  realtime_messages: ["Realtime messages", fmtNumber],
  realtime_peak_connections: ["Realtime peak connections", fmtNumber],
};

export function quotaText(metric, q) {
  const [label, fmt] = QUOTA_LABELS[metric] || [metric, fmtNumber];
  return `${label}: ${q.included === null ? "unlimited" : fmt(q.included)}${q.limit === "hard" ? " (hard limit)" : ""}`;
}

export async function newProject({ params }) {
  const { org, perms } = await orgContext(params.slug);
  const [subscription, all] = await Promise.all([
    optional(get(`/platform/organizations/${org.slug}/billing/subscription`)).catch(() => null),
    get("/v1/projects"),
  ]);
  const active = all.filter((p) => p.organization_slug === org.slug && !["INACTIVE", "REMOVED"].includes(p.status)).length;

  // Plan limits, up front: what this organization's plan allows, and how much is used.
  let limits;
  let atLimit = false;
  if (subscription) {
    const e = subscription.entitlements;
    atLimit = e.max_projects !== null && active >= e.max_projects;
    limits = h("section", { class: "card", "aria-labelledby": "plan-h", id: "plan-limits" },
      h("h2", { id: "plan-h" }, `Plan limits: ${e.plan.charAt(0).toUpperCase()}${e.plan.slice(1)}`),
      h("p", {}, e.max_projects === null ? `No limit on active projects (${active} active).`
        : `${active} of ${e.max_projects} active projects used.`),
      atLimit ? notice(`The ${e.plan} plan allows ${e.max_projects} active projects. Pause or delete one, or upgrade the plan.`, "warn") : null,
      h("ul", { class: "small" }, Object.entries(e.quotas || {}).map(([m, q]) => h("li", {}, quotaText(m, q)))),
      h("p", { class: "small" }, h("a", { href: `/org/${org.slug}/billing` }, "Compare plans")));
  } else {
    limits = h("section", { class: "card", id: "plan-limits" }, h("h2", {}, "Plan limits"),
      h("p", { class: "muted" }, `${active} active projects. The plan's limits could not be loaded; the server checks them when you create the project.`));
  }

  const pw = field({ name: "db_pass", label: "Database password", type: "password", required: true, autocomplete: "new-password",
    help: "The password of the postgres user of your database. Keep it somewhere safe: it is not shown again." });
  const meter = strengthMeter(pw.input);
  const show = button("Show", () => {
    const hidden = pw.input.type === "password";
    pw.input.type = hidden ? "text" : "password";
    show.textContent = hidden ? "Hide" : "Show";
    show.setAttribute("aria-pressed", String(hidden));
  }, { small: true });
  show.setAttribute("aria-pressed", "false");
  show.setAttribute("aria-label", "Show password");
  const gen = button("Generate a password", () => {
    pw.input.value = generatePassword();
    pw.input.type = "text";
    show.textContent = "Hide";
    meter.update();
  }, { small: true });
  pw.insertBefore(h("div", {}, meter, h("div", { class: "row" }, gen, show)), pw.querySelector(".help"));

  const f = form({
    label: "New project",
    fields: [
      field({ name: "name", label: "Project name", required: true, autocomplete: "off" }),
      field({ name: "region", label: "Region", type: "select", value: org.default_region || "us-east-1", options: REGIONS,
        help: "Where the database lives. Pick the one closest to your users." }),
      pw,
    ],
    submitLabel: "Create project",
    disabledReason: whyNot(perms, "projects.create"),
    onSubmit: async (v, theForm) => {
      const s = strength(v.db_pass);
      if (v.db_pass && s.score < 2) {
        throw new ApiError(400, "password too weak", { db_pass: [`${s.label}: ${s.hints[0] || "choose a longer password"}`] });
      }
      // One key per attempt: a retry after a timeout cannot create a second project.
      theForm.dataset.key = theForm.dataset.key || crypto.randomUUID();
      const project = await post("/v1/projects", { ...v, organization_slug: org.slug }, { idempotencyKey: theForm.dataset.key });
      await navigate(`/project/${project.ref}`);
    },
  });
  await page({
    title: `New project · ${org.name}`, heading: "Create a new project", sub: org.name, org: org.slug,
    nav: orgNav(org.slug), navLabel: "Organization",
    content: h("div", { class: "grid-2" }, h("section", { class: "card", "aria-label": "Project details" }, f), limits),
  });
}

// ---- overview -----------------------------------------------------------------------------------
export async function overview({ params, stale }) {
  let { project, perms } = await projectContext(params.ref);
  const progressBox = h("div", { id: "progress" });
  const detailsBox = h("div", { id: "details" });
  const activityBox = h("div");
  const actionsBox = h("div", { class: "actions" });
  const statusBox = h("span", { id: "project-status" });
  const seen = [];
  let seenFor = null;
  await projectPage(project, {
    title: "Overview", heading: project.name, sub: `${regionName(project.region)} · ${project.ref}`,
    actions: [statusBox, actionsBox],
    content: [progressBox, detailsBox, h("section", { class: "card", "aria-labelledby": "act-h" },
      h("h2", { id: "act-h" }, "Recent activity"), activityBox)],
  });
  let timer = null;
  onLeave(() => clearTimeout(timer));

  function drawActions() {
    const manage = whyNot(perms, "projects.manage");
    const out = [];
    if (["ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY", "PAUSE_FAILED"].includes(project.status)) {
      const b = button("Pause project", () => busy(b, async () => {
        const ok = await confirmDialog({ title: `Pause ${project.name}?`, confirmLabel: "Pause project",
          body: "The database is backed up and stopped; its data is kept. APIs stop answering until you restore it." });
        if (!ok) return;
        project = await post(`/v1/projects/${project.ref}/pause`) || project;
        toast("Pausing…");
        await poll();
      }), { disabledReason: manage, name: "pause" });
      out.push(b);
    }
    if (["INACTIVE", "RESTORE_FAILED"].includes(project.status)) {
      const b = button("Restore project", () => busy(b, async () => {
        await post(`/v1/projects/${project.ref}/restore`);
        toast("Restoring…");
        await poll();
      }), { kind: "primary", disabledReason: manage, name: "restore" });
      out.push(b);
    }
    actionsBox.replaceChildren(...out);
    statusBox.replaceChildren(statusBadge(project.status));
  }

  function drawProgress() {
    const p = project.progress || {};
    // The steps seen belong to one operation: start over when another one begins.
    if (!BUSY.has(project.status) || p.operation !== seenFor) { seen.length = 0; seenFor = p.operation; }
    if (BUSY.has(project.status) && p.step && !seen.includes(p.step) && p.step !== "queued") seen.push(p.step);
    const failedOp = FAILED[project.status];
    if (BUSY.has(project.status)) {
      const total = p.total_steps || 0;
      const label = total ? `Step ${p.step_index} of ${total}: ${humanStep(p.step)}` : "Queued: waiting for the provisioner";
      progressBox.replaceChildren(h("section", { class: "card", "aria-labelledby": "prog-h", "aria-live": "polite" },
        h("h2", { id: "prog-h" }, OPERATION[p.operation] || "Working"),
        progressBar(total ? Math.max(p.step_index - 0.5, 0.2) : 0.2, total || 1, { label: "Progress" }),
        h("p", { class: "muted", id: "progress-step" }, label),
        h("ol", { class: "steps" }, seen.map((step) => h("li", { class: step === p.step ? "current" : "done" }, humanStep(step))))));
    } else if (failedOp || (project.status === "GOING_DOWN" && p.reason)) {
      progressBox.replaceChildren(h("section", { class: "card danger", role: "alert" },
        h("h2", {}, `Could not ${failedOp || p.operation || "finish"}`),
        h("p", {}, `Failed at step “${humanStep(p.step)}”: ${p.reason || "no reason given"}`),
        progressBar(Math.max((p.step_index || 1) - 1, 0), p.total_steps || 1, { kind: "bad", label: "Progress" })));
    } else {
      progressBox.replaceChildren();
    }
  }

  function drawDetails() {
    const c = project.connection;
    if (project.status === "REMOVED") {
      detailsBox.replaceChildren(notice("This project was deleted.", "warn"));
      return;
    }
    if (!c) {
      detailsBox.replaceChildren(BUSY.has(project.status) ? "" : notice("Connection details appear once the project is up.", ""));
      return;
    }
    const conn = `postgresql://${c.db_user}:[YOUR-PASSWORD]@${c.db_host}:${c.db_port}/${c.db_name}`;
    // The project's own URL, on the project edge (another origin than this dashboard):
    // its APIs, edge functions among them, answer under it.
    const url = c.api_url;
    const copyRow = (label, id, value, copyLabel, help) => h("div", { class: "field wide" },
      h("label", { for: id }, label),
      h("div", { class: "secret" }, h("input", { type: "text", readonly: true, id, value, class: "mono" }), copyButton(value, copyLabel)),
      help ? h("p", { class: "help" }, help) : null);
    detailsBox.replaceChildren(...[
      ["INACTIVE", "RESTORE_FAILED"].includes(project.status)
        ? notice("The project is paused: its data is kept, but nothing answers until you restore it.", "warn") : null,
      h("section", { class: "card", "aria-labelledby": "conn-h" }, h("h2", { id: "conn-h" }, "Connect"),
        copyRow("Project URL", "project-url", url, "Copy project URL", "Edge functions answer at /functions/v1/<name> under it."),
        copyRow("Database connection string", "connection-string", conn, "Copy connection string",
          "Replace [YOUR-PASSWORD] with the database password you chose when creating the project."),
        copyRow("Management API", "management-url", `${location.origin}/v1/projects/${project.ref}`, "Copy Management API URL")),
      h("section", { class: "card", "aria-labelledby": "proj-h" }, h("h2", { id: "proj-h" }, "Project"),
        h("dl", { class: "facts" },
          h("dt", {}, "Status"), h("dd", {}, statusBadge(project.status)),
          h("dt", {}, "Reference"), h("dd", {}, h("code", {}, project.ref)),
          h("dt", {}, "Region"), h("dd", {}, regionName(project.region)),
          h("dt", {}, "Database host"), h("dd", {}, h("code", {}, `${c.db_host}:${c.db_port}`)),
          h("dt", {}, "Postgres"), h("dd", {}, project.database.version),
          h("dt", {}, "Storage bucket"), h("dd", {}, h("code", {}, c.bucket)),
          h("dt", {}, "Created"), h("dd", {}, fmtDate(project.created_at))),
        h("p", { class: "row actions-row" }, h("a", { class: "button small", href: `/project/${project.ref}/api-keys` }, "API keys"),
          h("a", { class: "button small", href: `/project/${project.ref}/settings` }, "Settings"))),
      tryIt].filter(Boolean));
    fillTryIt(url);
  }

  // "Try it": a supabase-js snippet with this project's URL and anon key (public by design).
  const tryIt = h("section", { class: "card", "aria-labelledby": "try-h" }, h("h2", { id: "try-h" }, "Try it"));
  let tryItFor = null;
  async function fillTryIt(url) {
    if (tryItFor === url) return;
    tryItFor = url;
    const keys = await get(`/v1/projects/${project.ref}/api-keys`).catch(() => []);
    const anon = (keys.find((k) => k.name === "anon") || {}).api_key || "<anon key from API keys>";
    const code = `import { createClient } from "@supabase/supabase-js";\n\n` +
      `const supabase = createClient("${url}", "${anon}");\n` +
      `const { data, error } = await supabase.from("your_table").select("*").limit(10);`;
    tryIt.replaceChildren(h("h2", { id: "try-h" }, "Try it"),
      h("p", { class: "help" }, "REST, Auth, Storage and edge functions all answer under the project URL."),
      h("pre", { class: "mono snippet", id: "try-it-snippet" }, code), copyButton(code, "Copy snippet"));
  }

  async function drawActivity() {
    const history = await get(`/platform/projects/${project.ref}/settings/history`).catch(() => []);
    const items = history.slice(0, 5);
    activityBox.replaceChildren(items.length
      ? h("ul", {}, items.map((c) => h("li", {}, `${c.setting} changed `, h("span", { class: "muted", title: fmtDate(c.at) }, fmtAgo(c.at)),
        c.changes ? h("span", { class: "small mono muted" }, ` ${Object.keys(c.changes).join(", ")}`) : null)))
      : h("p", { class: "muted" }, `Created ${fmtAgo(project.created_at)}. No settings changed since.`));
  }

  async function poll() {
    clearTimeout(timer);
    if (stale()) return;
    project = await get(`/platform/projects/${project.ref}`);
    drawActions();
    drawProgress();
    drawDetails();
    // Follow the saga while it runs; stop once the project has settled.
    if (BUSY.has(project.status) && !stale()) timer = setTimeout(() => poll().catch(() => {}), 700);
  }

  drawActions();
  drawProgress();
  drawDetails();
  await drawActivity();
  if (BUSY.has(project.status)) timer = setTimeout(() => poll().catch(() => {}), 500);
}

// ---- API keys and JWT secret -------------------------------------------------------------------
export async function apiKeys({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const box = h("div");
  const secretsWhy = whyNot(perms, "projects.secrets");

  async function draw() {
    let keys;
    try {
      keys = await get(`/v1/projects/${project.ref}/api-keys`);
    } catch (e) {
      box.replaceChildren(errorNotice(e));
      return;
    }
    const byName = Object.fromEntries(keys.map((k) => [k.name, k.api_key]));
    const anonInput = h("input", { type: "text", readonly: true, value: byName.anon || "", id: "anon-key", "aria-label": "anon key", class: "mono" });
    const anon = h("div", { class: "field wide" }, h("label", { for: "anon-key" }, "anon ", h("span", { class: "badge plain" }, "public")),
      h("div", { class: "secret" }, anonInput, copyButton(() => anonInput.value, "Copy anon key")),
      h("p", { class: "help" }, "Safe to use in a browser when Row Level Security is on."));

    const serviceInput = h("input", { type: "password", readonly: true, id: "service-key", "aria-label": "service_role key", class: "mono",
      value: byName.service_role ? "•".repeat(40) : "", placeholder: byName.service_role ? null : "Hidden: owners and admins only" });
    const reveal = button("Reveal", () => {
      const hidden = serviceInput.type === "password";
      serviceInput.type = hidden ? "text" : "password";
      serviceInput.value = hidden ? byName.service_role : "•".repeat(40);
      reveal.firstChild.textContent = hidden ? "Hide" : "Reveal";
      reveal.setAttribute("aria-pressed", String(hidden));
    }, { small: true, disabledReason: byName.service_role ? null : secretsWhy || "Not available", name: "reveal" });
    reveal.setAttribute("aria-pressed", "false");
    const copyService = byName.service_role ? copyButton(() => byName.service_role, "Copy service_role key")
      : button("Copy service_role key", null, { small: true, disabledReason: secretsWhy || "Not available" });
    const service = h("div", { class: "field wide" }, h("label", { for: "service-key" }, "service_role ", h("span", { class: "badge bad" }, "secret")),
      h("div", { class: "secret" }, serviceInput, reveal, copyService),
      h("p", { class: "help" }, byName.service_role
        ? "Bypasses Row Level Security. Never put it in a browser or share it."
        : "Only owners and admins of the organization see the service_role key."));
    box.replaceChildren(anon, service);
  }

  const rotate = button("Generate a new JWT secret", () => busy(rotate, async () => {
    const ok = await confirmDialog({
      title: "Rotate the JWT secret?", danger: true, confirmLabel: "Rotate secret", typed: project.ref,
      body: ["New anon and service_role keys are issued at once. The current keys, and every token signed with the old secret, stop working.",
        "Update every app and server that uses them."],
    });
    if (!ok) return;
    await post(`/platform/projects/${project.ref}/jwt-secret/rotate`);
    toast("JWT secret rotated: new keys below");
    await draw();
  }), { kind: "danger", disabledReason: secretsWhy, name: "rotate" });

  await projectPage(project, {
    title: "API keys", heading: "API keys", sub: "Your project's keys for the Supabase client libraries and REST API.",
    content: [
      h("section", { class: "card", "aria-labelledby": "keys-h" }, h("h2", { id: "keys-h" }, "Project API keys"), box),
      h("section", { class: "card danger", "aria-labelledby": "jwt-h" }, h("h2", { id: "jwt-h" }, "JWT secret"),
        h("p", {}, "The keys are JWTs signed with the project's secret. Rotate it if a key leaked."), rotate),
    ],
  });
  await draw();
}

// ---- settings: general --------------------------------------------------------------------------
export async function settingsGeneral({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const manage = whyNot(perms, "projects.manage");
  const lifecycle = [];
  if (["ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY", "PAUSE_FAILED"].includes(project.status)) {
    const b = button("Pause project", () => busy(b, async () => {
      if (!await confirmDialog({ title: `Pause ${project.name}?`, confirmLabel: "Pause project", body: "Its data is kept; restore it any time." })) return;
      await post(`/v1/projects/${project.ref}/pause`);
      await navigate(`/project/${project.ref}`);
    }), { disabledReason: manage, name: "pause" });
    lifecycle.push(b);
  } else if (["INACTIVE", "RESTORE_FAILED"].includes(project.status)) {
    const b = button("Restore project", () => busy(b, async () => {
      await post(`/v1/projects/${project.ref}/restore`);
      await navigate(`/project/${project.ref}`);
    }), { kind: "primary", disabledReason: manage, name: "restore" });
    lifecycle.push(b);
  } else {
    lifecycle.push(h("p", { class: "muted" }, `Nothing to do while the project is ${project.status}.`));
  }
  const deleteWhy = whyNot(perms, "projects.delete");
  const delBtn = button("Delete project", () => busy(delBtn, async () => {
    const ok = await confirmDialog({
      title: `Delete ${project.name}?`, danger: true, typed: project.name, confirmLabel: "Delete project",
      body: ["The database, its backups, storage bucket and keys are removed. This cannot be undone."],
    });
    if (!ok) return;
    await del(`/v1/projects/${project.ref}`);
    toast(`Deleting ${project.name}…`);
    await navigate(`/project/${project.ref}`);
  }), { kind: "danger", disabledReason: deleteWhy || (project.status === "REMOVED" ? "Already deleted" : null), name: "delete" });
  await projectPage(project, {
    title: "General settings", heading: "General settings",
    content: [
      h("section", { class: "card", "aria-labelledby": "gen-h" }, h("h2", { id: "gen-h" }, "Project"),
        h("dl", { class: "facts" },
          h("dt", {}, "Name"), h("dd", {}, project.name),
          h("dt", {}, "Reference"), h("dd", {}, h("code", {}, project.ref)),
          h("dt", {}, "Organization"), h("dd", {}, h("a", { href: `/org/${project.organization_slug}` }, project.organization_slug)),
          h("dt", {}, "Region"), h("dd", {}, regionName(project.region)),
          h("dt", {}, "Status"), h("dd", {}, statusBadge(project.status)))),
      h("section", { class: "card", "aria-labelledby": "life-h" }, h("h2", { id: "life-h" }, "Pause or restore"),
        h("p", {}, "A paused project keeps its data and costs nothing to run; it does not count against the plan's active projects."),
        h("div", { class: "row" }, lifecycle)),
      h("section", { class: "card danger", "aria-labelledby": "del-h" }, h("h2", { id: "del-h" }, "Delete project"),
        h("p", {}, "Removes the database, storage and keys for good."), delBtn),
    ],
  });
}

// ---- settings: API (PostgREST) ------------------------------------------------------------------
export async function settingsApi({ params }) {
  const { project, perms } = await projectContext(params.ref);
  let content;
  try {
    const cfg = await get(`/v1/projects/${project.ref}/postgrest`);
    content = h("section", { class: "card", "aria-labelledby": "pg-h" }, h("h2", { id: "pg-h" }, "Data API (PostgREST)"),
      form({
        label: "API settings",
        fields: [
          field({ name: "db_schema", label: "Exposed schemas", value: cfg.db_schema, help: "Comma separated; the API serves these schemas." }),
          field({ name: "db_extra_search_path", label: "Extra search path", value: cfg.db_extra_search_path }),
          field({ name: "max_rows", label: "Max rows", type: "number", value: cfg.max_rows, min: 0, help: "The most rows one request returns." }),
          field({ name: "db_pool", label: "Pool size", type: "number", value: cfg.db_pool ?? "", min: 0, help: "Empty: chosen by the platform." }),
        ],
        disabledReason: whyNot(perms, "projects.manage"),
        onSubmit: async (v) => {
          if (v.db_pool === null) delete v.db_pool;
          await patch(`/v1/projects/${project.ref}/postgrest`, v);
          toast("API settings saved");
        },
      }));
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: "API settings", heading: "API settings", content });
}

// ---- settings: auth -------------------------------------------------------------------------------
const AUTH_COMMON = [
  ["site_url", "Site URL", "Where links in auth emails send people back to."],
  ["uri_allow_list", "Redirect URLs", "Comma separated; allowed redirects after sign-in."],
  ["disable_signup", "Disable sign-ups", "Only existing users can sign in."],
  ["external_email_enabled", "Email sign-in", null],
  ["mailer_autoconfirm", "Confirm emails automatically", "Users can sign in without confirming their address."],
  ["external_phone_enabled", "Phone sign-in", null],
  ["jwt_exp", "JWT expiry (seconds)", "How long an access token is valid."],
  ["password_min_length", "Minimum password length", null],
  ["mailer_otp_exp", "Email OTP expiry (seconds)", null],
];

function authField(name, label, help, value) {
  if (typeof value === "boolean") return field({ name, label, type: "checkbox", value, help });
  if (typeof value === "number") return field({ name, label, type: "number", value, help });
  return field({ name, label, value: value ?? "", help, nullable: value === null });
}

export async function settingsAuth({ params }) {
  const { project, perms } = await projectContext(params.ref);
  let content;
  try {
    const cfg = await get(`/v1/projects/${project.ref}/config/auth`);
    const original = { ...cfg };
    const why = whyNot(perms, "projects.manage");
    const save = async (v) => {
      const changes = Object.fromEntries(Object.entries(v).filter(([k, val]) => original[k] !== val && !(original[k] === null && val === "")));
      if (!Object.keys(changes).length) { toast("Nothing changed"); return; }
      const saved = await patch(`/v1/projects/${project.ref}/config/auth`, changes);
      Object.assign(original, saved);
      toast(`Saved ${Object.keys(changes).length} setting(s)`);
    };
    const common = AUTH_COMMON.filter(([k]) => k in cfg).map(([k, l, help]) => authField(k, l, help, cfg[k]));
    const filter = h("input", { type: "search", id: "auth-filter", placeholder: "Filter settings…", "aria-label": "Filter settings" });
    const allFields = Object.keys(cfg).sort().filter((k) => !AUTH_COMMON.some(([c]) => c === k))
      .map((k) => { const f = authField(k, k, null, cfg[k]); f.dataset.key = k; return f; });
    filter.addEventListener("input", () => {
      const q = filter.value.toLowerCase();
      allFields.forEach((f) => { f.hidden = q && !f.dataset.key.includes(q); });
    });
    content = [
      h("section", { class: "card", "aria-labelledby": "auth-h" }, h("h2", { id: "auth-h" }, "Common settings"),
        form({ label: "Common auth settings", fields: common, disabledReason: why, onSubmit: save })),
      h("section", { class: "card", "aria-labelledby": "auth-all-h" }, h("h2", { id: "auth-all-h" }, "All settings"),
        h("details", {}, h("summary", {}, `Show all ${allFields.length} other settings`),
          h("div", { class: "field" }, filter),
          form({ label: "All auth settings", fields: allFields, disabledReason: why, onSubmit: save }))),
    ];
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: "Auth settings", heading: "Authentication", sub: "GoTrue settings for your project's users.", content });
}

// ---- settings history ----------------------------------------------------------------------------
export async function settingsHistory({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const manageWhy = whyNot(perms, "projects.manage");
  let content;
  try {
    const [history, members] = await Promise.all([get(`/platform/projects/${project.ref}/settings/history`),
      get(`/platform/organizations/${project.organization_slug}/members`).catch(() => [])]);
    const who = Object.fromEntries(members.map((m) => [m.user_id, m.email]));
    content = h("section", { class: "card" }, table([
      { label: "When", cell: (c) => h("span", { title: fmtDate(c.at) }, fmtAgo(c.at)) },
      { label: "Setting", cell: (c) => h("code", {}, c.setting) },
      { label: "Changes", cell: (c) => h("span", { class: "small mono" }, Object.entries(c.changes || {})
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")) },
      { label: "By", cell: (c) => (c.actor_id ? who[c.actor_id] || h("span", { class: "mono small", title: c.actor_id }, `${c.actor_id.slice(0, 8)}…`) : "system") },
      { label: "Version", cell: (c) => (c.restores_version ? `${c.version} (restores ${c.restores_version})` : String(c.version)), num: true },
      { label: h("span", { class: "visually-hidden" }, "Restore"), cell: (c) => {
        if (c.setting === "jwt_secret" || c === history[0]) return null;  // the newest is the current state
        const b = button("Restore", () => busy(b, async () => {
          if (!await confirmDialog({ title: `Restore settings of version ${c.version}?`, confirmLabel: "Restore",
            body: "PostgREST and auth settings go back to what they were after this change. The rollback is recorded as a new change; secrets are restored from storage and never shown." })) return;
          const r = await post(`/platform/projects/${project.ref}/settings/rollback`, { version: c.version });
          toast(`Restored the settings of version ${r.restored_version}`);
          await render();
        }), { small: true, disabledReason: manageWhy });
        b.setAttribute("aria-label", `Restore the settings of version ${c.version}`);
        return b;
      } },
    ], history, { empty: "No settings changed yet.", caption: "Settings history" }));
  } catch (e) {
    content = errorNotice(e);
  }
  await projectPage(project, { title: "Settings history", heading: "Settings history", sub: "Every change, newest first: from the project's event history.", content });
}
