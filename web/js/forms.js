// Forms whose errors appear next to their fields: the API's `errors` map ({field: [messages]})
// is shown under the matching input; anything else goes in the form's error line.

import { h, uid } from "./dom.js";
import { ApiError } from "./api.js";

/**
 * A labelled input. spec: {name, label, type, value, help, required, options: [[value, label]],
 * autocomplete, placeholder, min, max, step, checked, readonly, rows}
 */
export function field(spec) {
  const id = uid(`f-${spec.name.replace(/\W/g, "-")}`);
  const helpId = spec.help ? `${id}-help` : null;
  const errorId = `${id}-error`;
  const describedBy = [helpId, errorId].filter(Boolean).join(" ");
  let input;
  const common = {
    id, name: spec.name, required: spec.required || null, "aria-describedby": describedBy,
    autocomplete: spec.autocomplete || null, placeholder: spec.placeholder || null, readonly: spec.readonly || null,
  };
  if (spec.type === "select") {
    input = h("select", common, (spec.options || []).map(([value, label]) =>
      h("option", { value, selected: String(spec.value ?? "") === String(value) }, label)));
  } else if (spec.type === "checkbox") {
    input = h("input", { ...common, type: "checkbox", checked: Boolean(spec.value) });
  } else if (spec.type === "textarea") {
    input = h("textarea", { ...common, rows: spec.rows || 4 }, spec.value ?? "");
  } else {
    input = h("input", {
      ...common, type: spec.type || "text", value: spec.value ?? "", min: spec.min ?? null, max: spec.max ?? null,
      step: spec.step ?? null, spellcheck: spec.type === "password" ? "false" : null,
    });
  }
  if (spec.type === "number") input.dataset.kind = "number";
  if (spec.nullable) input.dataset.nullable = "true";
  const label = h("label", { for: id }, spec.label, spec.required ? h("span", { class: "visually-hidden" }, " (required)") : null);
  const help = spec.help ? h("p", { class: "help", id: helpId }, spec.help) : null;
  const error = h("p", { class: "error", id: errorId, "data-error-for": spec.name });
  const wrap = spec.type === "checkbox"
    ? h("div", { class: "field check" }, input, h("div", {}, label, help, error))
    : h("div", { class: "field" }, label, input, spec.extra || null, help, error);
  wrap.input = input;
  return wrap;
}

/** The form's values: checkboxes as booleans, number inputs as numbers, others as strings. */
export function values(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === "checkbox") out[el.name] = el.checked;
    else if (el.dataset.kind === "number") out[el.name] = el.value === "" ? null : Number(el.value);
    else if (el.dataset.nullable && el.value === "") out[el.name] = null;
    else out[el.name] = el.value;
  }
  return out;
}

export function clearErrors(form) {
  form.querySelectorAll("[data-error-for]").forEach((p) => { p.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  const general = form.querySelector(".form-error");
  if (general) general.textContent = "";
}

/** Show an ApiError on the form: per-field messages beside their inputs, the rest on top. */
export function showErrors(form, error) {
  clearErrors(form);
  const general = form.querySelector(".form-error");
  let placed = 0;
  const fields = error instanceof ApiError ? error.errors : {};
  let first = null;
  for (const [name, messages] of Object.entries(fields || {})) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (!slot) continue;
    slot.textContent = [].concat(messages).join(" ");
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
    placed += 1;
  }
  if (!placed && general) general.textContent = error.message || String(error);
  if (first) first.focus();
  else if (general) general.focus();
}

/**
 * A form: fields, a submit button, and an error line. onSubmit(values, form) may throw an
 * ApiError; its field errors land next to the fields. Returns the <form>.
 */
export function form({ fields, submitLabel = "Save", onSubmit, extra = [], disabledReason = null, className = "" , label = null}) {
  const general = h("div", { class: "form-error", role: "alert", tabindex: "-1" });
  const submit = h("button", { type: "submit", class: "primary" }, submitLabel);
  const f = h("form", { novalidate: true, class: className || null, "aria-label": label },
    general, fields, h("div", { class: "form-actions" }, submit, extra));
  if (disabledReason) {
    for (const el of f.elements) el.disabled = true;
    submit.title = disabledReason;
    submit.dataset.disabledReason = disabledReason;
    f.append(h("p", { class: "muted small" }, disabledReason));
  }
  f.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(f);
    // Required fields left empty: say so beside them before asking the server.
    let missing = false;
    for (const el of f.elements) {
      if (el.required && el.type !== "checkbox" && !String(el.value).trim()) {
        const slot = f.querySelector(`[data-error-for="${CSS.escape(el.name)}"]`);
        if (slot) slot.textContent = "This field is required.";
        el.setAttribute("aria-invalid", "true");
        if (!missing) el.focus();
        missing = true;
      }
    }
    if (missing) return;
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    try {
      await onSubmit(values(f), f);
    } catch (e) {
      showErrors(f, e);
    } finally {
      submit.disabled = Boolean(disabledReason);
      submit.removeAttribute("aria-busy");
    }
  });
  return f;
}
