// Billing: the current plan, plans compared, upgrade or downgrade after a dry run that shows
// what would change and which limits would break, the spend cap, and invoices.

import { h, uid } from "../dom.js";
import { api, get, post } from "../api.js";
import { orgNav, page } from "../layout.js";
import { can, whyNot } from "../state.js";
import { orgContext } from "./org.js";
import { badge, button, busy, errorNotice, fmtBytes, fmtDay, fmtMoney, fmtNumber, notice, table, toast } from "../ui.js";

const ORDER = ["free", "pro", "team", "enterprise"];
const title = (p) => p.charAt(0).toUpperCase() + p.slice(1);

const METRIC_NAMES = {
  db_size_bytes: ["Database size", fmtBytes], storage_bytes: ["File storage", fmtBytes], egress_bytes: ["Egress", fmtBytes],
  api_requests: ["API requests", fmtNumber], function_invocations: ["Function invocations", fmtNumber],
  realtime_messages: ["Realtime messages", fmtNumber],
  realtime_peak_connections: ["Realtime peak connections", fmtNumber],
};

function price(p) {
  // A paid tier priced at 0 in the plans file is sold on a contract, not by the month.
  return Number(p.price_monthly) === 0 && p.plan !== "free" ? "Custom" : fmtMoney(p.price_monthly, p.currency);
}

function quotaSummary(q, metric, currency) {
  if (!q) return "—";
  const [, fmt] = METRIC_NAMES[metric] || [metric, fmtNumber];
  const unitName = q.unit >= 1e9 ? "GB" : q.unit >= 1e6 ? "million" : String(q.unit);
  const base = q.included === null ? "unlimited" : fmt(q.included);
  if (q.overage_price !== null && q.overage_price !== undefined) return `${base}, then ${fmtMoney(q.overage_price, currency, { precise: true })} per ${unitName}`;
  return q.limit === "hard" && q.included !== null ? `${base} (hard limit)` : base;
}

/** The dry run's entitlement changes, one row per thing a person cares about. */
function changeRows(preview, from, to) {
  const rows = [];
  const touched = new Set(preview.changes.map((c) => c.entitlement.split(".").slice(0, 2).join(".")));
  if (touched.has("price_monthly")) rows.push(["Price per month", price(from), price(to)]);
  if (touched.has("max_projects")) {
    const n = (v) => (v === null ? "unlimited" : String(v));
    rows.push(["Active projects", n(from.max_projects), n(to.max_projects)]);
  }
  for (const [metric, [label]] of Object.entries(METRIC_NAMES)) {
    if (!touched.has(`quotas.${metric}`)) continue;
    rows.push([label, quotaSummary(from.quotas[metric], metric, from.currency), quotaSummary(to.quotas[metric], metric, to.currency)]);
  }
  return rows;
}

/** Show a plan change's dry run; resolves true when the user confirms it. */
function previewDialog(preview, from, to) {
  return new Promise((resolve) => {
    const titleId = uid("pv");
    const ok = h("button", { type: "submit", class: preview.change === "downgrade" ? "danger" : "primary", disabled: !preview.allowed },
      preview.change === "spend_cap" ? "Change spend cap" : `${title(preview.change)} to ${title(preview.plan)}`);
    const cancel = h("button", { type: "button" }, "Cancel");
    const amount = Number(preview.proration.amount);
    const dialog = h("dialog", { "aria-labelledby": titleId, id: "plan-preview" },
      h("form", { method: "dialog" },
        h("h2", { id: titleId }, preview.change === "spend_cap" ? "Change the spend cap" : `${title(preview.change)}: ${title(preview.current_plan)} → ${title(preview.plan)}`),
        h("p", {}, `${amount < 0 ? "Credit" : "Charge"} now: `, h("strong", {}, fmtMoney(Math.abs(amount), preview.proration.currency)),
          h("span", { class: "muted small" }, ` — ${preview.proration.description}`)),
        preview.changes.length ? h("div", {}, h("h3", {}, "What changes"), table([
          { label: "", cell: (r) => h("strong", {}, r[0]) },
          { label: "Now", cell: (r) => r[1] },
          { label: "After", cell: (r) => r[2] },
        ], changeRows(preview, from, to), { caption: "What changes" })) : null,
        preview.broken_limits.length ? h("div", {}, h("h3", {}, "Limits this would break"),
          h("ul", { id: "broken-limits" }, preview.broken_limits.map((b) => h("li", {}, badge(b.effect, b.effect === "refused" ? "bad" : "warn"), " ", b.message))))
          : h("p", { class: "notice ok" }, "Nothing you use today goes over the new plan's limits."),
        preview.note ? h("p", { class: "muted small" }, preview.note) : null,
        preview.allowed ? null : notice("This change is refused until the limits above are fixed.", "bad"),
        h("div", { class: "form-actions" }, ok, cancel)));
    let answer = false;
    ok.addEventListener("click", () => { answer = true; });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

async function changePlan(slug, body, plans) {
  const preview = await post(`/platform/organizations/${slug}/billing/subscription/preview`, body);
  const find = (name) => plans.find((p) => p.plan === name);
  if (!await previewDialog(preview, find(preview.current_plan), find(preview.plan))) return null;
  // The same key for a retried click: a plan change is applied once.
  const key = crypto.randomUUID();
  return api("PUT", `/platform/organizations/${slug}/billing/subscription`, body, { idempotencyKey: key });
}

export async function billing({ params }) {
  const { org, perms } = await orgContext(params.slug);
  const manage = whyNot(perms, "billing.manage");
  const currentBox = h("div");
  const plansBox = h("div", { id: "plans" });
  const invoicesBox = h("div", { id: "invoices" });
  const invoiceDetail = h("div", { "aria-live": "polite" });

  async function draw() {
    let sub;
    let plans;
    try {
      [sub, plans] = await Promise.all([get(`/platform/organizations/${org.slug}/billing/subscription`), get("/platform/billing/plans")]);
    } catch (e) {
      currentBox.replaceChildren(errorNotice(e));
      return;
    }
    const current = sub.plan;
    const capToggle = sub.spend_cap_adjustable ? button(sub.spend_cap ? "Turn the spend cap off" : "Turn the spend cap on", () => busy(capToggle, async () => {
      const done = await changePlan(org.slug, { plan: current, spend_cap: !sub.spend_cap }, plans);
      if (done) { toast("Spend cap changed"); await draw(); }
    }), { small: true, disabledReason: manage }) : null;
    currentBox.replaceChildren(h("dl", { class: "facts" },
      h("dt", {}, "Plan"), h("dd", { id: "current-plan" }, h("strong", {}, title(current))),
      h("dt", {}, "Spend cap"), h("dd", {}, sub.spend_cap ? "on: usage past the quotas is restricted, never billed" : "off: usage past the quotas is billed", " ", capToggle),
      h("dt", {}, "Current period"), h("dd", {}, `${fmtDay(sub.current_period.start)} – ${fmtDay(sub.current_period.end)}`),
      h("dt", {}, "Since"), h("dd", {}, fmtDay(sub.started_at))));

    const sorted = [...plans].sort((a, b) => ORDER.indexOf(a.plan) - ORDER.indexOf(b.plan));
    plansBox.replaceChildren(h("div", { class: "grid plans" }, sorted.map((p) => {
      const rank = ORDER.indexOf(p.plan) - ORDER.indexOf(current);
      let action;
      if (p.plan === current) action = h("p", {}, badge("Current plan", "ok"));
      else {
        const label = rank > 0 ? `Upgrade to ${title(p.plan)}` : `Downgrade to ${title(p.plan)}`;
        action = button(label, () => busy(action, async () => {
          const done = await changePlan(org.slug, { plan: p.plan }, plans);
          if (done) { toast(`You are on the ${title(p.plan)} plan`); await draw(); }
        }), { kind: rank > 0 ? "primary" : "", disabledReason: manage, name: `plan-${p.plan}` });
      }
      return h("section", { class: "card", "aria-labelledby": `plan-${p.plan}-h`, "data-plan": p.plan },
        h("h3", { id: `plan-${p.plan}-h` }, title(p.plan)),
        h("p", {}, h("span", { class: "stat" }, price(p)), price(p) === "Custom" ? null : h("span", { class: "muted" }, " / month")),
        h("p", {}, p.max_projects === null ? "Unlimited active projects" : `${p.max_projects} active projects`),
        h("ul", { class: "small" }, Object.entries(METRIC_NAMES).filter(([m]) => p.quotas[m]).map(([m, [label]]) =>
          h("li", {}, `${label}: `, quotaSummary(p.quotas[m], m, p.currency)))),
        h("p", { class: "small muted" }, p.spend_cap ? "Spend cap on by default" : "No spend cap"),
        action);
    })));
  }

  async function drawInvoices() {
    if (!can(perms, "billing.invoices")) {
      invoicesBox.replaceChildren(h("p", { class: "muted" }, "Owners and admins see the invoices."));
      return;
    }
    try {
      const invoices = await get(`/platform/organizations/${org.slug}/billing/invoices`);
      invoicesBox.replaceChildren(table([
        { label: "Period", cell: (i) => i.period },
        { label: "Plan", cell: (i) => title(i.rated_plan) },
        { label: "Total", num: true, cell: (i) => fmtMoney(i.total, i.currency) },
        { label: "Status", cell: (i) => badge(i.status.replace("_", " "), { paid: "ok", open: "busy", payment_failed: "bad", uncollectible: "bad", void: "plain" }[i.status]) },
        { label: h("span", { class: "visually-hidden" }, "Actions"), cell: (i) => {
          const b = button("View", () => busy(b, async () => {
            const d = await get(`/platform/organizations/${org.slug}/billing/invoices/${i.id}`);
            invoiceDetail.replaceChildren(h("section", { class: "card", "aria-label": `Invoice ${d.period}` },
              h("h3", {}, `Invoice ${d.period} · ${fmtMoney(d.total, d.currency)}`),
              table([
                { label: "#", num: true, cell: (l) => String(l.line) },
                { label: "Description", cell: (l) => l.description },
                { label: "Quantity", num: true, cell: (l) => (l.quantity === null ? "" : l.quantity.toLocaleString()) },
                { label: "Amount", num: true, cell: (l) => fmtMoney(l.amount, d.currency) },
              ], d.lines, { caption: "Invoice lines" })));
          }), { small: true });
          b.setAttribute("aria-label", `View invoice ${i.period}`);
          return b;
        } },
      ], invoices, { empty: "No invoices yet: the first one comes when this month closes.", caption: "Invoices" }));
    } catch (e) {
      invoicesBox.replaceChildren(errorNotice(e));
    }
  }

  await page({
    title: `Billing · ${org.name}`, heading: "Billing", sub: org.name, org: org.slug, nav: orgNav(org.slug), navLabel: "Organization",
    content: [
      h("section", { class: "card", "aria-labelledby": "cur-h" }, h("h2", { id: "cur-h" }, "Your plan"), currentBox,
        manage ? h("p", { class: "muted small" }, "Only owners change the plan.") : null),
      h("section", { "aria-labelledby": "plans-h" }, h("h2", { id: "plans-h" }, "Plans"),
        h("p", { class: "muted small" }, "Every change shows a dry run first: the amount, what changes, and any limit it would break."), plansBox),
      h("section", { class: "card", "aria-labelledby": "inv-h" }, h("h2", { id: "inv-h" }, "Invoices"), invoicesBox, invoiceDetail),
    ],
  });
  await Promise.all([draw(), drawInvoices()]);
}
