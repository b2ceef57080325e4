// Shared pieces of the dashboard: badges, buttons that explain why they are disabled,
// confirmation dialogs (with typed confirmation), copy buttons, tables, toasts, formatting.

import { h, uid } from "./dom.js";

// ---- status badges ------------------------------------------------------------------------------
const STATUS = {
  ACTIVE_HEALTHY: ["Active", "ok"], ACTIVE_UNHEALTHY: ["Unhealthy", "warn"], COMING_UP: ["Coming up", "busy"],
  PAUSING: ["Pausing", "busy"], RESTORING: ["Restoring", "busy"], GOING_DOWN: ["Deleting", "busy"],
  INACTIVE: ["Paused", "plain"], INIT_FAILED: ["Failed to start", "bad"], RESTORE_FAILED: ["Restore failed", "bad"],
  PAUSE_FAILED: ["Pause failed", "bad"], REMOVED: ["Removed", "plain"], UNKNOWN: ["Unknown", "warn"],
  UPGRADING: ["Upgrading", "busy"], RESTARTING: ["Restarting", "busy"], RESIZING: ["Resizing", "busy"],
};
export const BUSY = new Set(["COMING_UP", "PAUSING", "RESTORING", "GOING_DOWN", "UPGRADING", "RESTARTING", "RESIZING"]);

export function statusBadge(status) {
  const [label, kind] = STATUS[status] || [status, "plain"];
  return h("span", { class: `badge ${kind}`, title: status, "data-status": status }, label);
}

export function badge(text, kind = "plain") {
  return h("span", { class: `badge ${kind}` }, text);
}

// ---- buttons ------------------------------------------------------------------------------------
/** A button; when `disabledReason` is set it is disabled and says why (title and screen readers). */
export function button(label, onClick, { kind = "", disabledReason = null, type = "button", small = false, name } = {}) {
  const btn = h("button", { type, class: [kind, small && "small"].filter(Boolean).join(" ") || null, name }, label);
  if (onClick) btn.addEventListener("click", onClick);
  if (disabledReason) disable(btn, disabledReason);
  return btn;
}

export function disable(btn, reason) {
  btn.disabled = true;
  btn.title = reason;
  btn.dataset.disabledReason = reason;
  const hint = h("span", { class: "visually-hidden", id: uid("why") }, ` (${reason})`);
  btn.append(hint);
  return btn;
}

/** Run an async action from a button: disables it meanwhile, reports failure as a toast. */
export async function busy(btn, fn) {
  const was = btn.disabled;
  btn.disabled = true;
  btn.setAttribute("aria-busy", "true");
  try {
    return await fn();
  } catch (e) {
    toast(e.message || String(e), "bad");
    return undefined;
  } finally {
    btn.disabled = was;
    btn.removeAttribute("aria-busy");
  }
}

// ---- dialogs ------------------------------------------------------------------------------------
/** Ask before doing something; with `typed`, the user must type that text to confirm. */
export function confirmDialog({ title, body, confirmLabel = "Confirm", danger = false, typed = null }) {
  return new Promise((resolve) => {
    const inputId = uid("confirm");
    const input = typed ? h("input", { type: "text", id: inputId, autocomplete: "off", spellcheck: "false" }) : null;
    const ok = h("button", { type: "submit", class: danger ? "danger" : "primary", value: "ok" }, confirmLabel);
    const cancel = h("button", { type: "button" }, "Cancel");
    const titleId = uid("dlg");
    const dialog = h("dialog", { "aria-labelledby": titleId },
      h("form", { method: "dialog" },
        h("h2", { id: titleId }, title),
        ...(Array.isArray(body) ? body : [body]).map((b) => (typeof b === "string" ? h("p", {}, b) : b)),
        typed ? h("div", { class: "field" },
          h("label", { for: inputId }, "Type ", h("code", {}, typed), " to confirm"), input) : null,
        h("div", { class: "form-actions" }, ok, cancel)));
    if (typed) {
      ok.disabled = true;
      input.addEventListener("input", () => { ok.disabled = input.value !== typed; });
    }
    let answer = false;
    ok.addEventListener("click", () => { answer = true; });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    (input || cancel).focus();
  });
}

// ---- copy ---------------------------------------------------------------------------------------
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    // No clipboard permission (or not a secure context): the classic way.
    const area = h("textarea", { class: "visually-hidden", readonly: true }, text);
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

/** A "Copy" button; `label` is its accessible name ("Copy anon key"), shown on wide screens too. */
export function copyButton(getText, label = "Copy") {
  const text = h("span", {}, "Copy");
  const btn = h("button", { type: "button", class: "small", "aria-label": label, title: label }, text);
  btn.addEventListener("click", async () => {
    const ok = await copyText(typeof getText === "function" ? getText() : getText);
    text.textContent = ok ? "Copied" : "Copy failed";
    toast(ok ? "Copied to the clipboard" : "Could not copy; select the text and copy it yourself", ok ? "" : "bad");
    setTimeout(() => { text.textContent = "Copy"; }, 1500);
  });
  return btn;
}

// ---- toasts, notices, loading -------------------------------------------------------------------
export function toast(message, kind = "") {
  const region = document.getElementById("toasts");
  if (!region) return;
  const t = h("div", { class: `toast ${kind}` }, message);
  region.append(t);
  setTimeout(() => t.remove(), 4000);
}

export function notice(text, kind = "") {
  return h("div", { class: `notice ${kind}`, role: kind === "bad" ? "alert" : null }, text);
}

export function loading(text = "Loading…") {
  return h("p", { class: "muted", "aria-busy": "true" }, text);
}

export function errorNotice(e) {
  return notice(e && e.message ? e.message : String(e), "bad");
}

// ---- tables -------------------------------------------------------------------------------------
/** columns: [{label, cell(row) -> node|string, num?}] */
export function table(columns, rows, { empty = "Nothing here yet.", caption = null } = {}) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r))))))));
}

// ---- formatting ---------------------------------------------------------------------------------
export function fmtDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtDay(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleDateString(undefined, { dateStyle: "medium" });
}

export function fmtAgo(iso) {
  if (!iso) return "never";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return "just now";
  const units = [["day", 86400], ["hour", 3600], ["minute", 60]];
  for (const [unit, size] of units) {
    if (seconds >= size) {
      const n = Math.floor(seconds / size);
      return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
    }
  }
  return "just now";
}

export function fmtNumber(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: 2 });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${v.toLocaleString(undefined, { maximumFractionDigits: v < 10 && i ? 2 : 1 })} ${units[i]}`;
}

export function fmtMoney(amount, currency = "usd", { precise = false } = {}) {
  if (amount === null || amount === undefined) return "—";
  // Unit prices can have fractions of a cent ($0.125 per GB): show them as they are.
  return Number(amount).toLocaleString(undefined, { style: "currency", currency: currency.toUpperCase(),
    minimumFractionDigits: 2, maximumFractionDigits: precise ? 4 : 2 });
}

export function progressBar(value, max, { label, kind = "" } = {}) {
  const pct = max ? Math.max(0, Math.min(100, (value / max) * 100)) : 0;
  const bar = h("span", {});
  bar.style.width = `${pct}%`;
  return h("div", {
    class: `progress ${kind}`, role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(max || 100),
    "aria-valuenow": String(value), "aria-label": label || null,
  }, bar);
}
