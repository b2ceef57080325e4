// Charts drawn as SVG by hand (no library): bars per period with a readable axis, an optional
// limit line, a tooltip per bar, and the same numbers as a table for screen readers.

import { h, s } from "./dom.js";

const W = 520;
const H = 210;
const PAD = { top: 14, right: 10, bottom: 28, left: 70 };

function niceMax(v) {
  if (v <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp;
  return 10 * exp;
}

export function periodLabel(iso, granularity, short = false) {
  const d = new Date(iso);
  if (granularity === "month") return d.toLocaleDateString(undefined, { month: short ? "short" : "long", year: short ? undefined : "numeric", timeZone: "UTC" });
  if (granularity === "hour") return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", timeZone: "UTC" });
  const day = d.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
  return granularity === "week" && !short ? `Week of ${day}` : day;
}

/**
 * A bar chart. opts: {title, periods: [{period_start, quantity}], granularity, format(n) -> text,
 * limit (number|null), limitLabel}
 */
export function barChart({ title, periods, granularity, format, axisFormat = format, limit = null, limitLabel = "limit", minTop = 0 }) {
  const values = periods.map((p) => p.quantity);
  // A floor for the axis keeps ticks meaningful when there is little or nothing to show
  // (0..4 for counts, 0..1 KB for bytes): no "0.25 requests" or "0.5 B".
  const top = Math.max(niceMax(Math.max(...values, limit || 0, 0)), minTop);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const slot = plotW / Math.max(periods.length, 1);
  const barW = Math.max(Math.min(slot * 0.7, 40), 1);
  const total = values.reduce((a, b) => a + b, 0);
  const peak = Math.max(...values, 0);

  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = top * f;
    return [
      s("line", { class: "grid-line", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      s("text", { x: PAD.left - 8, y: y(v) + 4, "text-anchor": "end" }, axisFormat(v)),
    ];
  });
  const every = Math.ceil(periods.length / 6);
  const bars = periods.map((p, i) => {
    const x = PAD.left + i * slot + (slot - barW) / 2;
    const hgt = Math.max(p.quantity > 0 ? 1.5 : 0, (p.quantity / top) * plotH);
    return [
      s("rect", { class: "bar", x, y: PAD.top + plotH - hgt, width: barW, height: hgt, rx: 2 },
        s("title", {}, `${periodLabel(p.period_start, granularity)}: ${format(p.quantity)}`)),
      i % every === 0 ? s("text", { x: PAD.left + i * slot + slot / 2, y: H - 8, "text-anchor": "middle" },
        periodLabel(p.period_start, granularity, true)) : null,
    ];
  });
  const limitLine = limit ? [
    s("line", { class: "limit-line", x1: PAD.left, x2: W - PAD.right, y1: y(limit), y2: y(limit) }),
    s("text", { x: W - PAD.right - 4, y: y(limit) - 4, "text-anchor": "end" }, `${limitLabel} ${axisFormat(limit)}`),
  ] : null;
  const summary = `${title}: ${periods.length} periods, highest ${format(peak)}${limit ? `, limit ${format(limit)}` : ""}.`;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, preserveAspectRatio: "xMidYMid meet" },
    grid, bars, limitLine);
  const data = h("details", { class: "data" }, h("summary", {}, "Show the numbers"),
    h("table", {}, h("caption", { class: "visually-hidden" }, title),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Period"), h("th", { scope: "col", class: "num" }, "Value"))),
      h("tbody", {}, periods.map((p) => h("tr", {}, h("td", {}, periodLabel(p.period_start, granularity)), h("td", { class: "num" }, format(p.quantity)))))));
  const wrap = h("div", { class: "chart-wrap" }, svg, data);
  wrap.total = total;
  wrap.peak = peak;
  return wrap;
}

/** Short numbers for axes: 2M, 500K. */
export function compact(n) {
  return Number(n).toLocaleString(undefined, { notation: "compact", maximumFractionDigits: 1 });
}

/** "used of included" with a bar that turns amber at 80 % and red at 100 %. */
export function quotaBar({ label, used, included, format, hard = false }) {
  const pct = included ? (used / included) * 100 : 0;
  const kind = !included ? "" : pct >= 100 ? "bad" : pct >= 80 ? "warn" : "";
  const bar = h("span", {});
  bar.style.width = `${Math.min(pct, 100)}%`;
  return h("div", { class: "quota" },
    h("div", { class: "row" }, h("strong", {}, label),
      h("span", { class: "muted" }, included === null ? `${format(used)} (unlimited)` : `${format(used)} of ${format(included)} (${Math.round(pct)}%)${hard ? " · hard limit" : ""}`)),
    h("div", { class: `progress ${kind}`, role: "progressbar", "aria-label": `${label} used`, "aria-valuemin": "0",
      "aria-valuemax": "100", "aria-valuenow": String(Math.round(Math.min(pct, 100))) }, bar));
}
