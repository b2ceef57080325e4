// The admin panel (platform admins only; the server refuses everyone else): statistics,
// every organization, every project with actions, users (disable, promote), system health.

import { h } from "../dom.js";
import { del, get, patch, post, session } from "../api.js";
import { adminNav, page } from "../layout.js";
import { onLeave, render } from "../router.js";
import { regionName } from "../constants.js";
import { METRICS } from "./usage.js";
import {
  BUSY, badge, button, busy, confirmDialog, errorNotice, fmtAgo, fmtBytes, fmtDate, fmtDay, fmtNumber, notice, statusBadge, table, toast,
} from "../ui.js";

function adminPage(opts) {
  return page({ ...opts, title: `${opts.title} · Admin`, nav: adminNav(), navLabel: "Admin",
    org: session.user && session.user.current_organization });
}

/** Admin pages for non-admins: say so (the API would answer 403 anyway). */
async function guard(title) {
  if (session.user && session.user.is_admin) return true;
  await adminPage({ title, heading: title, content: notice("The admin panel is for platform admins only.", "bad") });
  return false;
}

function stat(label, value, id) {
  return h("div", { class: "card" }, h("div", { class: "stat", id }, value), h("div", { class: "stat-label" }, label));
}

export async function overview() {
  if (!await guard("Overview")) return;
  let content;
  try {
    const s = await get("/platform/admin/overview");
    const byStatus = Object.entries(s.projects_by_status);
    content = [
      h("div", { class: "grid", id: "admin-stats" },
        stat("Organizations", fmtNumber(s.organizations), "stat-orgs"), stat("Projects", fmtNumber(s.projects), "stat-projects"),
        stat("Users", fmtNumber(s.users), "stat-users"), stat("Platform admins", fmtNumber(s.admins)),
        stat("Disabled users", fmtNumber(s.disabled_users)), stat("Pending invitations", fmtNumber(s.pending_invitations))),
      h("section", { class: "card", "aria-labelledby": "bystatus-h" }, h("h2", { id: "bystatus-h" }, "Projects by status"),
        byStatus.length ? h("ul", { class: "row", id: "projects-by-status" }, byStatus.map(([st, n]) => h("li", { class: "row" }, statusBadge(st), h("strong", {}, String(n)))))
          : h("p", { class: "muted" }, "No projects yet.")),
      h("section", { class: "card", "aria-labelledby": "usage-h", id: "admin-usage" }, h("h2", { id: "usage-h" }, "Usage this month"),
        s.usage ? table([
          { label: "Metric", cell: ([m]) => (METRICS.find(([x]) => x === m) || [m, m])[1] },
          { label: "Total", num: true, cell: ([m, v]) => (m.endsWith("_bytes") ? fmtBytes(v) : fmtNumber(v)) },
        ], Object.entries(s.usage), { caption: "Platform usage", empty: "No usage recorded this month." })
          : h("p", { class: "muted" }, "Metering did not answer; usage totals are not available right now.")),
    ];
  } catch (e) {
    content = errorNotice(e);
  }
  await adminPage({ title: "Overview", heading: "Platform overview", content });
}

export async function organizations() {
  if (!await guard("Organizations")) return;
  let content;
  try {
    const orgs = await get("/platform/admin/organizations");
    const filter = h("input", { type: "search", placeholder: "Filter by name or slug…", "aria-label": "Filter organizations" });
    const box = h("div");
    const draw = () => {
      const q = filter.value.toLowerCase();
      box.replaceChildren(table([
        { label: "Organization", cell: (o) => h("div", {}, h("strong", {}, o.name), h("div", { class: "muted small mono" }, o.slug)) },
        { label: "Owners", cell: (o) => o.owners.join(", ") || "—" },
        { label: "Members", num: true, cell: (o) => String(o.members) },
        { label: "Projects", num: true, cell: (o) => String(o.projects) },
        { label: "Created", cell: (o) => fmtDate(o.created_at) },
        { label: "History", cell: (o) => h("a", { href: `/admin/history?kind=organization&id=${encodeURIComponent(o.slug)}`, "aria-label": `History of ${o.name}` }, "Timeline") },
      ], orgs.filter((o) => !q || o.name.toLowerCase().includes(q) || o.slug.includes(q)), { empty: "No organizations.", caption: "Organizations" }));
    };
    filter.addEventListener("input", draw);
    draw();
    content = h("section", { class: "card" }, h("div", { class: "field" }, filter), box);
  } catch (e) {
    content = errorNotice(e);
  }
  await adminPage({ title: "Organizations", heading: "All organizations", content });
}

export async function projects() {
  if (!await guard("Projects")) return;
  const box = h("div", { id: "admin-projects" });
  const filter = h("input", { type: "search", placeholder: "Filter by name, ref or organization…", "aria-label": "Filter projects" });
  const showRemoved = h("input", { type: "checkbox", id: "show-removed" });
  let list = [];
  let timer = null;
  onLeave(() => clearTimeout(timer));

  function actions(p) {
    const out = [];
    if (["ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY", "PAUSE_FAILED"].includes(p.status)) {
      const b = button("Pause", () => busy(b, async () => {
        if (!await confirmDialog({ title: `Pause ${p.name}?`, body: `Project ${p.ref} of ${p.organization_slug}. Its data is kept.`, confirmLabel: "Pause" })) return;
        await post(`/platform/admin/projects/${p.ref}/pause`);
        toast(`Pausing ${p.name}`);
        await load();
      }), { small: true });
      b.setAttribute("aria-label", `Pause ${p.name}`);
      out.push(b);
    }
    if (["INACTIVE", "RESTORE_FAILED"].includes(p.status)) {
      const b = button("Restore", () => busy(b, async () => {
        await post(`/platform/admin/projects/${p.ref}/restore`);
        toast(`Restoring ${p.name}`);
        await load();
      }), { small: true });
      b.setAttribute("aria-label", `Restore ${p.name}`);
      out.push(b);
    }
    if (p.status !== "REMOVED") {
      const b = button("Delete", () => busy(b, async () => {
        if (!await confirmDialog({ title: `Delete ${p.name}?`, danger: true, typed: p.ref, confirmLabel: "Delete project",
          body: `Project ${p.ref} of ${p.organization_slug}: its database, storage and keys are removed for good.` })) return;
        await del(`/platform/admin/projects/${p.ref}`);
        toast(`Deleting ${p.name}`);
        await load();
      }), { small: true, kind: "danger", disabledReason: BUSY.has(p.status) ? "Busy: wait until it settles" : null });
      b.setAttribute("aria-label", `Delete ${p.name}`);
      out.push(b);
    }
    return h("div", { class: "row" }, out);
  }

  function draw() {
    const q = filter.value.toLowerCase();
    const rows = list.filter((p) => (showRemoved.checked || p.status !== "REMOVED")
      && (!q || p.name.toLowerCase().includes(q) || p.ref.includes(q) || p.organization_slug.includes(q)));
    box.replaceChildren(table([
      { label: "Project", cell: (p) => h("div", {}, h("strong", {}, p.name), h("div", { class: "muted small mono" }, p.ref)) },
      { label: "Organization", cell: (p) => p.organization_slug },
      { label: "Status", cell: (p) => statusBadge(p.status) },
      { label: "Region", cell: (p) => h("span", { title: regionName(p.region) }, p.region) },
      { label: "Created", cell: (p) => fmtAgo(p.created_at) },
      { label: "History", cell: (p) => h("a", { href: `/admin/history?kind=project&id=${encodeURIComponent(p.ref)}`, "aria-label": `History of ${p.name}` }, "Timeline") },
      { label: h("span", { class: "visually-hidden" }, "Actions"), cell: actions },
    ], rows, { empty: "No projects.", caption: "Projects" }));
  }

  async function load() {
    clearTimeout(timer);
    list = await get("/platform/admin/projects");
    draw();
    if (list.some((p) => BUSY.has(p.status))) timer = setTimeout(() => load().catch(() => {}), 1500);
  }
  filter.addEventListener("input", draw);
  showRemoved.addEventListener("change", draw);
  await adminPage({
    title: "Projects", heading: "All projects",
    content: h("section", { class: "card" },
      h("div", { class: "inline-form" }, h("div", { class: "field" }, filter),
        h("div", { class: "field check" }, showRemoved, h("label", { for: "show-removed" }, "Show removed projects"))),
      box),
  });
  try {
    await load();
  } catch (e) {
    box.replaceChildren(errorNotice(e));
  }
}

export async function users() {
  if (!await guard("Users")) return;
  const box = h("div", { id: "admin-users" });
  const filter = h("input", { type: "search", placeholder: "Filter by email or name…", "aria-label": "Filter users" });
  let list = [];

  async function change(u, body, message) {
    await patch(`/platform/admin/users/${u.id}`, body);
    toast(message);
    list = await get("/platform/admin/users");
    draw();
  }

  function draw() {
    const q = filter.value.toLowerCase();
    box.replaceChildren(table([
      { label: "User", cell: (u) => h("div", {}, h("strong", {}, u.email), h("div", { class: "muted small" }, u.display_name || "")) },
      { label: "Role", cell: (u) => [u.is_admin ? badge("platform admin", "ok") : badge("user"), u.disabled ? badge("disabled", "bad") : null] },
      { label: "Organizations", num: true, cell: (u) => String(u.organizations.length) },
      { label: "Joined", cell: (u) => h("span", { class: "nowrap", title: fmtDate(u.created_at) }, fmtDay(u.created_at)) },
      { label: h("span", { class: "visually-hidden" }, "Actions"), cell: (u) => {
        const self = u.id === session.user.id;
        const admin = button(u.is_admin ? "Revoke admin" : "Make admin", () => busy(admin, async () => {
          if (!await confirmDialog({ title: u.is_admin ? `Revoke admin rights of ${u.email}?` : `Make ${u.email} a platform admin?`,
            body: u.is_admin ? "They lose the admin panel." : "They see and manage every organization, project and user.",
            confirmLabel: u.is_admin ? "Revoke" : "Make admin", danger: !u.is_admin })) return;
          await change(u, { is_admin: !u.is_admin }, u.is_admin ? `${u.email} is no longer an admin` : `${u.email} is now an admin`);
        }), { small: true, disabledReason: self ? "You cannot change your own admin rights" : null });
        admin.setAttribute("aria-label", `${u.is_admin ? "Revoke admin" : "Make admin"}: ${u.email}`);
        const dis = button(u.disabled ? "Enable" : "Disable", () => busy(dis, async () => {
          if (!u.disabled && !await confirmDialog({ title: `Disable ${u.email}?`, danger: true, confirmLabel: "Disable account",
            body: "They are signed out everywhere; their sessions and access tokens stop working until enabled again." })) return;
          await change(u, { disabled: !u.disabled }, u.disabled ? `${u.email} enabled` : `${u.email} disabled`);
        }), { small: true, disabledReason: self ? "You cannot disable yourself" : null });
        dis.setAttribute("aria-label", `${u.disabled ? "Enable" : "Disable"}: ${u.email}`);
        return h("div", { class: "row" }, admin, dis);
      } },
    ], list.filter((u) => !q || u.email.includes(q) || (u.display_name || "").toLowerCase().includes(q)), { empty: "No users.", caption: "Users" }));
  }
  filter.addEventListener("input", draw);
  await adminPage({ title: "Users", heading: "Users", content: h("section", { class: "card" }, h("div", { class: "field" }, filter), box) });
  try {
    list = await get("/platform/admin/users");
    draw();
  } catch (e) {
    box.replaceChildren(errorNotice(e));
  }
}

export async function health() {
  if (!await guard("System health")) return;
  const box = h("div", { id: "health" });
  const refresh = button("Refresh", () => busy(refresh, load), { small: true });
  let timer = null;
  onLeave(() => clearTimeout(timer));

  const queueFilter = h("input", { type: "search", placeholder: "Filter queues…", "aria-label": "Filter queues" });
  const hideIdle = h("input", { type: "checkbox", id: "hide-idle", checked: true });
  const queuesBox = h("div");
  let queues = [];
  function drawQueues() {
    const q = queueFilter.value.toLowerCase();
    // Retry and dead-letter queues are normally empty; a non-empty one always shows.
    const rows = queues.filter((x) => (!q || x.name.includes(q))
      && !(hideIdle.checked && /\.(retry|dlq)$/.test(x.name) && !x.ready && !x.unacked));
    queuesBox.replaceChildren(table([
      { label: "Queue", cell: (x) => h("span", { class: "mono small" }, x.name) },
      { label: "Ready", num: true, cell: (x) => fmtNumber(x.ready) },
      { label: "Unacked", num: true, cell: (x) => fmtNumber(x.unacked) },
      { label: "Consumers", num: true, cell: (x) => fmtNumber(x.consumers) },
      { label: "Dead letters", num: true, cell: (x) => (x.dead_letters ? badge(String(x.dead_letters), "bad") : "") },
    ], rows, { caption: "Queues", empty: "No queue matches." }));
  }
  queueFilter.addEventListener("input", drawQueues);
  hideIdle.addEventListener("change", drawQueues);

  async function load() {
    clearTimeout(timer);
    let s;
    try {
      s = await get("/platform/admin/health");
    } catch (e) {
      box.replaceChildren(errorNotice(e));
      return;
    }
    box.replaceChildren(
      s.problems.length ? h("div", { class: "notice bad", role: "alert", id: "health-problems" }, h("strong", {}, "Problems: "), s.problems.join("; "))
        : h("div", { class: "notice ok", id: "health-problems" }, "All processes up, no dead letters."),
      h("div", { class: "grid-2" },
        h("section", { class: "card", "aria-labelledby": "proc-h" }, h("h2", { id: "proc-h" }, "Processes"),
          table([
            { label: "Process", cell: (p) => p.name },
            { label: "State", cell: (p) => badge(p.up ? "up" : "down", p.up ? "ok" : "bad") },
            { label: "Detail", cell: (p) => h("span", { class: "small" }, p.detail) },
          ], s.processes, { caption: "Processes" })),
        h("section", { class: "card", "aria-labelledby": "lag-h" }, h("h2", { id: "lag-h" }, "Relay lag"),
          h("p", { class: "muted small" }, "Events stored but not yet published, per producer."),
          table([
            { label: "Producer", cell: (r) => r.producer },
            { label: "Published", num: true, cell: (r) => fmtNumber(r.position) },
            { label: "Stored", num: true, cell: (r) => fmtNumber(r.newest) },
            { label: "Lag", num: true, cell: (r) => (r.lag ? badge(String(r.lag), "warn") : "0") },
          ], s.relay, { caption: "Relay lag" }))),
      h("section", { class: "card", "aria-labelledby": "q-h" }, h("h2", { id: "q-h" }, "Queues"),
        h("div", { class: "inline-form" }, h("div", { class: "field" }, queueFilter),
          h("div", { class: "field check" }, hideIdle, h("label", { for: "hide-idle" }, "Hide empty retry and dead-letter queues"))),
        queuesBox),
      h("p", { class: "muted small" }, `Checked ${new Date().toLocaleTimeString()}; refreshes every 15 seconds. The same figures as platformctl status.`));
    queues = s.queues;
    drawQueues();
    timer = setTimeout(() => load().catch(() => {}), 15000);
  }
  await adminPage({ title: "System health", heading: "System health", actions: [refresh], content: box });
  box.replaceChildren(h("p", { class: "muted" }, "Checking every process…"));
  await load();
}

/** Realtime per project: the server's live figures and each project's replication slots. */
export async function realtime() {
  if (!await guard("Realtime")) return;
  const box = h("div", { id: "admin-realtime" });
  const refresh = button("Refresh", () => busy(refresh, load), { small: true });
  let timer = null;
  onLeave(() => clearTimeout(timer));

  async function load() {
    clearTimeout(timer);
    let v;
    try {
      v = await get("/platform/admin/realtime");
    } catch (e) {
      box.replaceChildren(errorNotice(e));
      return;
    }
    const slotText = (p) => (p.slots.length
      ? p.slots.map((x) => `${x.slot_name}${x.active ? "" : " (inactive)"}: ${fmtBytes(x.lag_bytes ?? 0)} behind`).join("; ")
      : "—");
    box.replaceChildren(
      v.server_error ? notice(`${v.server_error}: live figures are missing; the slots below come from PostgreSQL.`, "warn") : null,
      h("section", { class: "card", "aria-labelledby": "rt-live-h" }, h("h2", { id: "rt-live-h" }, "Projects"),
        table([
          { label: "Project", cell: (p) => h("a", { href: `/admin/history?kind=realtime-config&id=${p.ref}`, class: "mono small" }, p.ref) },
          { label: "Clients", num: true, cell: (p) => fmtNumber(p.clients) },
          { label: "Users", num: true, cell: (p) => fmtNumber(p.users) },
          { label: "Peak", num: true, cell: (p) => fmtNumber(p.peak_clients) },
          { label: "Channels", cell: (p) => h("span", { class: "small" }, p.topics.length ? p.topics.join(", ") : "—") },
          { label: "Presence", cell: (p) => h("span", { class: "small" },
            Object.entries(p.presence).map(([t, n]) => `${t}: ${n}`).join(", ") || "—") },
          { label: "CDC subscriptions", num: true, cell: (p) => fmtNumber(p.subscriptions) },
          { label: "Replication slots", cell: (p) => h("span", { class: "small" }, slotText(p)) },
        ], v.projects, { caption: "Realtime per project", empty: "No project has realtime clients or replication slots." })),
      v.other_slots.length ? h("section", { class: "card", "aria-labelledby": "rt-slots-h" },
        h("h2", { id: "rt-slots-h" }, "Other logical slots"),
        table([
          { label: "Slot", cell: (x) => h("span", { class: "mono small" }, x.slot_name) },
          { label: "Database", cell: (x) => x.database || "—" },
          { label: "Active", cell: (x) => badge(x.active ? "active" : "inactive", x.active ? "ok" : "warn") },
          { label: "Lag", num: true, cell: (x) => fmtBytes(x.lag_bytes ?? 0) },
        ], v.other_slots, { caption: "Logical replication slots of other databases" })) : null,
      h("p", { class: "muted small" }, `Checked ${new Date().toLocaleTimeString()}; refreshes every 5 seconds.`));
    timer = setTimeout(() => load().catch(() => {}), 5000);
  }
  await adminPage({ title: "Realtime", heading: "Realtime", actions: [refresh], content: box });
  box.replaceChildren(h("p", { class: "muted" }, "Asking the realtime server…"));
  await load();
}

const HISTORY_KINDS = [["organization", "Organization (slug)"], ["project", "Project (ref)"],
  ["subscription", "Subscription (organization slug)"], ["function", "Edge function (ref/slug)"],
  ["saga", "Provisioning saga (operation id)"], ["realtime-config", "Realtime settings (ref)"]];

/** Time travel: an aggregate's timeline (who, through which request) and its state at any point. */
export async function history({ query }) {
  if (!await guard("History")) return;
  const kind = h("select", { id: "history-kind", "aria-label": "Kind" },
    HISTORY_KINDS.map(([k, label]) => h("option", { value: k }, label)));
  if (HISTORY_KINDS.some(([k]) => k === query.get("kind"))) kind.value = query.get("kind");
  const key = h("input", { id: "history-id", "aria-label": "Key", placeholder: "acme, abcdefghijklmnopqrst, …", value: query.get("id") || "" });
  const at = h("input", { id: "history-at", "aria-label": "At", placeholder: "now, an ISO time or a log position", value: query.get("at") || "" });
  const out = h("div", { id: "history-result" });

  async function show(when) {
    const params = new URLSearchParams({ id: key.value.trim() });
    if (when) params.set("at", when);
    try {
      const r = await get(`/platform/admin/history/${encodeURIComponent(kind.value)}?${params}`);
      out.replaceChildren(
        h("section", { class: "card", "aria-labelledby": "history-state-h" },
          h("h2", { id: "history-state-h" }, `State at ${r.at}: version ${r.version} of ${r.head}`),
          h("pre", { class: "mono small", id: "history-state" }, JSON.stringify(r.state, null, 2))),
        h("section", { class: "card", "aria-labelledby": "history-timeline-h" },
          h("h2", { id: "history-timeline-h" }, "Timeline"),
          table([
            { label: "Version", num: true, cell: (e) => String(e.version) },
            { label: "Position", num: true, cell: (e) => String(e.position ?? "—") },
            { label: "Time", cell: (e) => fmtDate(e.time) },
            { label: "Event", cell: (e) => h("span", { class: "mono" }, e.event) },
            { label: "Actor", cell: (e) => e.actor || "—" },
            { label: "Request", cell: (e) => h("span", { class: "mono small" }, e.correlation_id || "—") },
            { label: h("span", { class: "visually-hidden" }, "State"), cell: (e) => {
              const b = button("State here", () => { at.value = String(e.position); show(String(e.position)); }, { small: true });
              b.setAttribute("aria-label", `State at version ${e.version}`);
              return b;
            } },
          ], r.events, { caption: "Events", empty: "No events." })));
    } catch (e) {
      out.replaceChildren(errorNotice(e));
    }
  }

  const form = h("form", { class: "row", id: "history-form" }, kind, key, at, h("button", { type: "submit", class: "button" }, "Show"));
  form.addEventListener("submit", (event) => { event.preventDefault(); show(at.value.trim()); });
  await adminPage({ title: "History", heading: "History", content: [h("section", { class: "card" },
    h("p", { class: "muted" }, "Any organization, project, subscription, edge function or saga as it was at a time or log position, and who changed it through which request. Secrets show as references."),
    form), out] });
  if (key.value) await show(at.value.trim());
}
