// Usage: charts per metric (day / week / month) for an organization or one project, quota
// bars against the plan, usage alerts, and per-project budgets.

import { h } from "../dom.js";
import { del, get, optional, put } from "../api.js";
import { barChart, compact, quotaBar } from "../charts.js";
import { field, form } from "../forms.js";
import { orgNav, page } from "../layout.js";
import { can, whyNot } from "../state.js";
import { orgContext } from "./org.js";
import { projectContext, projectPage } from "./project.js";
import { badge, button, busy, errorNotice, fmtAgo, fmtBytes, fmtDate, fmtNumber, notice, table, toast } from "../ui.js";

export const METRICS = [
  ["api_requests", "API requests", fmtNumber],
  ["egress_bytes", "Egress", fmtBytes],
  ["db_size_bytes", "Database size", fmtBytes],
  ["storage_bytes", "Storage size", fmtBytes],
  ["function_invocations", "Function invocations", fmtNumber],
  ["realtime_messages", "Realtime messages", fmtNumber],
  ["realtime_peak_connections", "Realtime peak connections", fmtNumber],
];
const GAUGES = new Set(["db_size_bytes", "storage_bytes", "realtime_peak_connections"]);
const RANGES = { day: "This month, per day", week: "Last 12 weeks, per week", month: "Last 6 months, per month" };

function range(granularity) {
  const now = new Date();
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  if (granularity === "month") return [new Date(Date.UTC(y, m - 5, 1)), new Date(Date.UTC(y, m + 1, 1))];
  if (granularity === "week") {
    const today = Date.UTC(y, m, now.getUTCDate());
    const monday = today - ((now.getUTCDay() + 6) % 7) * 86400000;
    return [new Date(monday - 11 * 7 * 86400000), new Date(monday + 7 * 86400000)];
  }
  return [new Date(Date.UTC(y, m, 1)), new Date(Date.UTC(y, m + 1, 1))];
}

async function series(slug, ref, metric, granularity) {
  const [start, end] = range(granularity);
  const q = new URLSearchParams({ metric, granularity, start: start.toISOString(), end: end.toISOString() });
  if (ref) q.set("project_ref", ref);
  return get(`/platform/organizations/${slug}/usage?${q}`);
}

/** This month's figure per metric (sum, or peak for sizes). */
async function thisMonth(slug, ref) {
  const out = {};
  await Promise.all(METRICS.map(async ([metric]) => {
    const q = new URLSearchParams({ metric, granularity: "month" });
    if (ref) q.set("project_ref", ref);
    const r = await get(`/platform/organizations/${slug}/usage?${q}`);
    out[metric] = r.periods.reduce((a, p) => (GAUGES.has(metric) ? Math.max(a, p.quantity) : a + p.quantity), 0);
  }));
  return out;
}

/** The charts block with its Day/Week/Month switch; redraws in place. */
function chartsBlock(slug, ref, entitlements) {
  const box = h("div", { class: "grid-2", id: "usage-charts" });
  let granularity = "day";
  const buttons = ["day", "week", "month"].map((g) => {
    const b = h("button", { type: "button", "aria-pressed": String(g === granularity), "data-granularity": g }, g.charAt(0).toUpperCase() + g.slice(1));
    b.addEventListener("click", () => {
      granularity = g;
      buttons.forEach((x) => x.setAttribute("aria-pressed", String(x === b)));
      caption.textContent = RANGES[g];
      draw();
    });
    return b;
  });
  const caption = h("span", { class: "muted small", "aria-live": "polite" }, RANGES[granularity]);
  async function draw() {
    box.setAttribute("aria-busy", "true");
    try {
      const results = await Promise.all(METRICS.map(([metric]) => series(slug, ref, metric, granularity)));
      box.replaceChildren(...results.map((r, i) => {
        const [metric, label, format] = METRICS[i];
        const quota = entitlements && entitlements.quotas ? entitlements.quotas[metric] : null;
        // A monthly quota compares with monthly bars; a size limit holds at every moment.
        const limit = quota && quota.included !== null && (GAUGES.has(metric) || granularity === "month") && !ref ? quota.included : null;
        const chart = barChart({ title: label, periods: r.periods, granularity, format, limit, limitLabel: "included", minTop: r.unit === "count" ? 4 : 1000, axisFormat: r.unit === "count" ? compact : format });
        const headline = GAUGES.has(metric) ? `peak ${format(chart.peak)}` : `total ${format(chart.total)}`;
        return h("section", { class: "card chart-card", "data-metric": metric, "aria-label": `${label} chart` },
          h("h3", {}, h("span", {}, label), h("span", { class: "muted small" }, headline)), chart);
      }));
    } catch (e) {
      box.replaceChildren(errorNotice(e));
    }
    box.removeAttribute("aria-busy");
  }
  const controls = h("div", { class: "row", role: "group", "aria-label": "Granularity" }, h("div", { class: "segmented" }, buttons), caption);
  return { controls, box, draw };
}

function alertsTable(alerts) {
  return table([
    { label: "When", cell: (a) => h("span", { title: fmtDate(a.triggered_at) }, fmtAgo(a.triggered_at)) },
    { label: "Kind", cell: (a) => badge(a.kind, a.kind === "budget" ? "busy" : "warn") },
    { label: "Metric", cell: (a) => (METRICS.find(([m]) => m === a.metric) || [a.metric, a.metric])[1] },
    { label: "Threshold", cell: (a) => badge(`${a.threshold_percent}%`, a.threshold_percent >= 100 ? "bad" : "warn") },
    { label: "Usage", num: true, cell: (a) => { const f = (METRICS.find(([m]) => m === a.metric) || [0, 0, fmtNumber])[2]; return `${f(a.quantity)} of ${f(a.limit)}`; } },
    { label: "Project", cell: (a) => (a.project_ref ? h("a", { href: `/project/${a.project_ref}/usage` }, a.project_ref) : "organization") },
  ], alerts, { empty: "No alerts: usage is below every threshold.", caption: "Usage alerts" });
}

export async function orgUsage({ params }) {
  const { org } = await orgContext(params.slug);
  const subscription = await optional(get(`/platform/organizations/${org.slug}/billing/subscription`)).catch(() => null);
  const entitlements = subscription ? subscription.entitlements : null;
  const charts = chartsBlock(org.slug, null, entitlements);
  const quotaBox = h("div", { id: "quotas" });
  const alertsBox = h("div");
  await page({
    title: `Usage · ${org.name}`, heading: "Usage", sub: `${org.name}${entitlements ? ` · ${entitlements.plan} plan` : ""}`,
    org: org.slug, nav: orgNav(org.slug), navLabel: "Organization",
    content: [
      h("section", { class: "card", "aria-labelledby": "quota-h" }, h("h2", { id: "quota-h" }, "This month against your plan"), quotaBox),
      h("div", { class: "page-head" }, h("h2", {}, "Usage over time"), charts.controls),
      charts.box,
      h("section", { class: "card", "aria-labelledby": "alerts-h" }, h("h2", { id: "alerts-h" }, "Alerts"),
        h("p", { class: "muted small" }, "Raised at 50, 80 and 100 % of a quota or a project budget."), alertsBox),
    ],
  });
  const month = thisMonth(org.slug, null).catch((e) => e);
  await charts.draw();
  const used = await month;
  if (used instanceof Error) quotaBox.replaceChildren(errorNotice(used));
  else {
    quotaBox.replaceChildren(...METRICS.map(([metric, label, format]) => {
      const q = entitlements && entitlements.quotas[metric];
      return quotaBar({ label, used: used[metric] || 0, included: q ? q.included : null, format, hard: q && q.limit === "hard" });
    }));
  }
  try {
    alertsBox.replaceChildren(alertsTable(await get(`/platform/organizations/${org.slug}/usage/alerts?limit=50`)));
  } catch (e) {
    alertsBox.replaceChildren(errorNotice(e));
  }
}

export async function projectUsage({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const slug = project.organization_slug;
  const charts = chartsBlock(slug, project.ref, null);
  const budgetsBox = h("div", { id: "budgets" });
  const manage = whyNot(perms, "usage.budgets");
  const monthUsed = thisMonth(slug, project.ref).catch(() => ({}));

  async function drawBudgets() {
    let budgets;
    try {
      budgets = await get(`/platform/projects/${project.ref}/budgets`);
    } catch (e) {
      budgetsBox.replaceChildren(errorNotice(e));
      return;
    }
    const used = await monthUsed;
    const bars = budgets.map((b) => {
      const [, label, format] = METRICS.find(([m]) => m === b.metric) || [b.metric, b.metric, fmtNumber];
      const remove = button("Remove", () => busy(remove, async () => {
        await del(`/platform/projects/${project.ref}/budgets/${b.metric}`);
        toast(`Budget for ${label} removed`);
        await drawBudgets();
      }), { small: true, disabledReason: manage });
      remove.setAttribute("aria-label", `Remove the ${label} budget`);
      return h("div", { class: "row" }, h("div", { class: "spacer" }, quotaBar({ label, used: used[b.metric] || 0, included: b.limit, format })), remove);
    });
    const f = form({
      label: "Set a budget", className: "inline-form",
      fields: [
        field({ name: "metric", label: "Metric", type: "select", value: "api_requests", options: METRICS.map(([m, l]) => [m, l]) }),
        field({ name: "limit", label: "Monthly budget", type: "number", required: true, min: 1,
          help: "In the metric's unit: a count, or bytes (1 GB = 1000000000)." }),
      ],
      submitLabel: "Set budget",
      disabledReason: manage,
      onSubmit: async (v) => {
        await put(`/platform/projects/${project.ref}/budgets/${v.metric}`, { limit: v.limit });
        toast("Budget saved");
        await drawBudgets();
      },
    });
    budgetsBox.replaceChildren(bars.length ? h("div", {}, bars) : h("p", { class: "muted" }, "No budgets set."), f);
  }

  await projectPage(project, {
    title: "Usage", heading: "Usage", sub: "This project's share of the organization's usage.",
    content: [
      h("section", { class: "card", "aria-labelledby": "budget-h" }, h("h2", { id: "budget-h" }, "Budgets"),
        h("p", { class: "muted small" }, "A monthly budget per metric; you get alerts at 50, 80 and 100 %."), budgetsBox),
      h("div", { class: "page-head" }, h("h2", {}, "Usage over time"), charts.controls),
      charts.box,
      can(perms, "usage.read") ? null : notice("Your role cannot see usage.", "warn"),
    ],
  });
  await Promise.all([charts.draw(), drawBudgets()]);
}
