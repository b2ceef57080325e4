// Password strength, judged in the browser before anything is sent: length, variety of
// characters, and the obvious patterns (repeats, sequences, common words). Score 0..4.

import { h, uid } from "./dom.js";

const COMMON = ["password", "123456", "qwerty", "letmein", "welcome", "admin", "supabase", "postgres", "iloveyou", "monkey", "dragon"];
const LABELS = ["Too weak", "Weak", "Fair", "Good", "Strong"];

export function strength(pw) {
  if (!pw) return { score: 0, label: LABELS[0], hints: ["Use at least 12 characters."] };
  const hints = [];
  let bits = 0;
  let pool = 0;
  if (/[a-z]/.test(pw)) pool += 26;
  if (/[A-Z]/.test(pw)) pool += 26;
  if (/[0-9]/.test(pw)) pool += 10;
  if (/[^A-Za-z0-9]/.test(pw)) pool += 33;
  bits = pw.length * Math.log2(Math.max(pool, 1));
  const lower = pw.toLowerCase();
  if (COMMON.some((w) => lower.includes(w))) { bits -= 30; hints.push("Avoid common words like “password”."); }
  if (/(.)\1{2,}/.test(pw)) { bits -= 15; hints.push("Avoid repeated characters."); }
  if (/(0123|1234|2345|3456|4567|5678|6789|abcd|bcde|cdef|qwer|asdf)/i.test(pw)) { bits -= 15; hints.push("Avoid sequences like 1234 or abcd."); }
  if (pw.length < 12) hints.push("Use at least 12 characters.");
  if (pool < 50) hints.push("Mix upper and lower case, digits and symbols.");
  const score = pw.length < 8 ? 0 : bits < 40 ? 1 : bits < 60 ? 2 : bits < 80 ? 3 : 4;
  return { score, label: LABELS[score], hints };
}

/** A random password that scores "Strong" (crypto.getRandomValues, 24 characters). */
export function generatePassword(length = 24) {
  const chars = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.~!";
  const values = new Uint32Array(length);
  crypto.getRandomValues(values);
  return Array.from(values, (v) => chars[v % chars.length]).join("");
}

/** A meter that follows an input: a bar plus a live text ("Strength: Good"). */
export function strengthMeter(input) {
  const bar = h("div", { class: "strength", "data-score": "0", "aria-hidden": "true" }, h("span"));
  const textId = uid("strength");
  const text = h("p", { class: "help", id: textId, "aria-live": "polite" }, "Strength: —");
  const update = () => {
    const r = strength(input.value);
    bar.dataset.score = String(r.score);
    text.textContent = input.value ? `Strength: ${r.label}${r.hints.length && r.score < 4 ? ` — ${r.hints[0]}` : ""}` : "Strength: —";
    text.dataset.score = String(r.score);
  };
  input.addEventListener("input", update);
  input.setAttribute("aria-describedby", `${input.getAttribute("aria-describedby") || ""} ${textId}`.trim());
  const wrap = h("div", { class: "strength-wrap" }, bar, text);
  wrap.update = update;
  return wrap;
}
