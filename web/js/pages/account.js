// Your account: profile (name, email), password, and personal access tokens for the API.

import { h } from "../dom.js";
import { del, get, patch, post, session } from "../api.js";
import { field, form } from "../forms.js";
import { accountNav, page } from "../layout.js";
import { strengthMeter } from "../password.js";
import { render } from "../router.js";
import { button, busy, confirmDialog, copyButton, fmtAgo, fmtDate, notice, table, toast } from "../ui.js";

export async function profile() {
  const user = await get("/platform/profile");
  const profileForm = form({
    label: "Profile",
    fields: [
      field({ name: "display_name", label: "Display name", value: user.display_name, autocomplete: "name" }),
      field({ name: "email", label: "Email", type: "email", value: user.email, autocomplete: "email",
        help: "You sign in with it, and invitations are matched to it." }),
    ],
    onSubmit: async (v) => {
      session.user = await patch("/platform/profile", v);
      toast("Profile saved");
      await render();
    },
  });
  const newPw = field({ name: "new_password", label: "New password", type: "password", required: true, autocomplete: "new-password" });
  newPw.insertBefore(strengthMeter(newPw.input), newPw.querySelector(".error"));
  const passwordForm = form({
    label: "Change password",
    fields: [
      field({ name: "current_password", label: "Current password", type: "password", required: true, autocomplete: "current-password" }),
      newPw,
      field({ name: "revoke_tokens", label: "Also revoke my access tokens", type: "checkbox",
        help: "Your other sessions end either way; with this, every personal access token stops working too." }),
    ],
    submitLabel: "Change password",
    onSubmit: async (v, f) => {
      await post("/platform/profile/password", v);
      f.reset();
      toast(v.revoke_tokens ? "Password changed; your access tokens are revoked" : "Password changed");
    },
  });
  const verifyStatus = h("div", { "aria-live": "polite" });
  const verifyButton = button("Send a confirmation link", () => busy(verifyButton, async () => {
    const r = await post("/platform/profile/verify-email", {});
    verifyStatus.replaceChildren(notice(`We sent a link to ${r.email}.`, "ok"));
  }));
  await page({
    title: "Profile", heading: "Your profile", nav: accountNav(), navLabel: "Account", org: user.current_organization,
    content: [
      h("section", { class: "card", "aria-labelledby": "profile-h" }, h("h2", { id: "profile-h" }, "Profile"), profileForm),
      user.email_verified ? null : h("section", { class: "card", "aria-labelledby": "verify-h" },
        h("h2", { id: "verify-h" }, "Confirm your email address"),
        h("p", {}, `${user.email} is not confirmed yet. Invitations can be accepted only by a confirmed address.`),
        verifyStatus, verifyButton),
      h("section", { class: "card", "aria-labelledby": "pw-h" }, h("h2", { id: "pw-h" }, "Password"), passwordForm),
      user.is_admin ? notice("You are a platform admin: the Admin link in the top bar opens the admin panel.", "ok") : null,
    ],
  });
}

export async function tokens() {
  const list = await get("/platform/profile/tokens");
  const created = h("div", { "aria-live": "polite" });
  const createForm = form({
    label: "New access token", className: "inline-form",
    fields: [field({ name: "name", label: "Token name", required: true, placeholder: "e.g. CI deploys" }),
      field({ name: "expires_in_days", label: "Expires after (days)", type: "number", min: 1, max: 3650, nullable: true,
        help: "Empty: until you revoke it." })],
    submitLabel: "Generate token",
    onSubmit: async (v, f) => {
      const t = await post("/platform/profile/tokens", v);
      f.reset();
      const input = h("input", { type: "text", readonly: true, value: t.token, "aria-label": "New token", class: "mono" });
      created.replaceChildren(h("div", { class: "notice ok" },
        h("p", {}, h("strong", {}, `Token “${t.name}” created.`), " Copy it now: it is shown once and never again."),
        h("div", { class: "secret" }, input, copyButton(t.token, "Copy token"))));
      await refresh();
    },
  });
  const listBox = h("div");
  async function refresh() {
    const rows = await get("/platform/profile/tokens");
    listBox.replaceChildren(table([
      { label: "Name", cell: (t) => t.name },
      { label: "Token", cell: (t) => h("code", {}, `${t.prefix}…`) },
      { label: "Created", cell: (t) => fmtDate(t.created_at) },
      { label: "Last used", cell: (t) => (t.last_used_at ? fmtAgo(t.last_used_at) : "never") },
      { label: "Expires", cell: (t) => (t.expires_at ? fmtDate(t.expires_at) : "never") },
      { label: h("span", { class: "visually-hidden" }, "Actions"), cell: (t) => {
        const b = button("Revoke", () => busy(b, async () => {
          const ok = await confirmDialog({ title: `Revoke “${t.name}”?`, body: "Anything using this token stops working at once.", confirmLabel: "Revoke token", danger: true });
          if (!ok) return;
          await del(`/platform/profile/tokens/${t.id}`);
          toast("Token revoked");
          await refresh();
        }), { small: true });
        b.setAttribute("aria-label", `Revoke token ${t.name}`);
        return b;
      } },
    ], rows, { empty: "No tokens yet.", caption: "Your access tokens" }));
  }
  listBox.replaceChildren();
  await page({
    title: "Access tokens", heading: "Access tokens", nav: accountNav(), navLabel: "Account", org: session.user.current_organization,
    sub: "Personal access tokens work with the Management API (Authorization: Bearer sbp_…) and the Supabase CLI.",
    content: [
      h("section", { class: "card", "aria-labelledby": "new-token-h" }, h("h2", { id: "new-token-h" }, "Generate a token"), createForm, created),
      h("section", { class: "card", "aria-labelledby": "tokens-h" }, h("h2", { id: "tokens-h" }, "Your tokens"), listBox),
    ],
  });
  if (list) await refresh();
}
