// Signing in and up, accepting an invitation, creating an organization, and the home redirect.

import { h } from "../dom.js";
import { get, post, session, startSession } from "../api.js";
import { field, form } from "../forms.js";
import { bare, page } from "../layout.js";
import { strengthMeter } from "../password.js";
import { navigate } from "../router.js";
import { forgetOrgs, myOrgs, selectOrg } from "../state.js";
import { badge, button, busy, errorNotice, fmtDate, loading, notice } from "../ui.js";

function safeNext(query) {
  const next = query.get("next");
  // Only paths on this site: an open redirect would let a link send people elsewhere.
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

export async function home() {
  if (!session.user) return navigate("/sign-in", { replace: true });
  const orgs = await myOrgs();
  const current = session.user.current_organization;
  if (current && orgs.some((o) => o.slug === current)) return navigate(`/org/${current}`, { replace: true });
  if (orgs.length) return navigate(`/org/${orgs[0].slug}`, { replace: true });
  return navigate("/new-org", { replace: true });
}

export async function signIn({ query }) {
  if (session.user) return navigate(safeNext(query), { replace: true });
  const next = safeNext(query);
  const f = form({
    label: "Sign in",
    fields: [
      field({ name: "email", label: "Email", type: "email", required: true, autocomplete: "username", value: query.get("email") || "" }),
      field({ name: "password", label: "Password", type: "password", required: true, autocomplete: "current-password" }),
    ],
    submitLabel: "Sign in",
    onSubmit: async (v) => {
      startSession(await post("/platform/auth/signin", v));
      forgetOrgs();
      await navigate(next);
    },
  });
  const signUpHref = `/sign-up?${new URLSearchParams({ next, ...(query.get("email") ? { email: query.get("email") } : {}) })}`;
  bare("Sign in",
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Welcome back. Sign in to your account."),
    query.get("reason") === "ended" ? notice("Your session ended; sign in again.", "warn") : null,
    f,
    h("p", { class: "muted small" }, "New here? ", h("a", { href: signUpHref }, "Create an account")));
  return undefined;
}

export async function signUp({ query }) {
  if (session.user) return navigate(safeNext(query), { replace: true });
  const next = safeNext(query);
  const pw = field({ name: "password", label: "Password", type: "password", required: true, autocomplete: "new-password",
    help: "At least 8 characters; longer is better." });
  pw.insertBefore(strengthMeter(pw.input), pw.querySelector(".help"));
  const f = form({
    label: "Sign up",
    fields: [
      field({ name: "email", label: "Email", type: "email", required: true, autocomplete: "email", value: query.get("email") || "" }),
      field({ name: "display_name", label: "Your name", autocomplete: "name", help: "Shown to your teammates." }),
      pw,
    ],
    submitLabel: "Create account",
    onSubmit: async (v) => {
      // The same answer whether or not the address has an account: the mailed link goes on.
      const sent = await post("/platform/auth/signup", { ...v, next: next === "/" ? null : next });
      bare("Check your mail",
        h("h1", {}, "Check your mail"),
        notice(sent.message, "ok"),
        h("p", { class: "muted" }, "The link confirms your address and signs you in. It works once, for 24 hours."),
        h("p", { class: "muted small" }, "Nothing came? Check the address and ", h("a", { href: `/sign-up?${new URLSearchParams({ next })}` }, "sign up again"), "."));
    },
  });
  bare("Sign up",
    h("h1", {}, "Create your account"),
    h("p", { class: "muted" }, "Organizations, projects and everything else start here."),
    f,
    h("p", { class: "muted small" }, "Already have an account? ", h("a", { href: `/sign-in?${new URLSearchParams({ next })}` }, "Sign in")));
  return undefined;
}

export async function verifyEmail({ query }) {
  const token = query.get("token") || "";
  const next = safeNext(query);
  bare("Confirm your address", h("h1", {}, "Confirm your address"), loading("Confirming…"));
  let info;
  try {
    info = await post("/platform/auth/verify-email", { token });
  } catch (e) {
    bare("Confirm your address", h("h1", {}, "Confirm your address"), errorNotice(e),
      h("p", {}, h("a", { href: "/sign-in" }, "Sign in"), " or ", h("a", { href: "/sign-up" }, "sign up again"), "."));
    return undefined;
  }
  startSession(info);
  forgetOrgs();
  return navigate(next, { replace: true });
}

export async function newOrg() {
  if (!session.user) return navigate(`/sign-in?next=${encodeURIComponent("/new-org")}`, { replace: true });
  const f = form({
    label: "New organization",
    fields: [field({ name: "name", label: "Organization name", required: true, help: "Your company or team. You can rename it later." })],
    submitLabel: "Create organization",
    onSubmit: async (v) => {
      const org = await post("/v1/organizations", v);
      forgetOrgs();
      await selectOrg(org.slug);
      await navigate(`/org/${org.slug}`);
    },
  });
  const orgs = await myOrgs();
  await page({
    title: "New organization", heading: "Create an organization",
    sub: orgs.length ? "A separate space with its own members, projects and billing." : "You need an organization before your first project.",
    nav: [], content: h("div", { class: "card" }, f),
  });
  return undefined;
}

export async function acceptInvitation({ query }) {
  const token = query.get("token") || "";
  bare("Invitation", h("h1", {}, "Invitation"), loading());
  let inv;
  try {
    inv = await get(`/platform/invitations/${encodeURIComponent(token)}`);
  } catch (e) {
    bare("Invitation", h("h1", {}, "Invitation"), errorNotice(e),
      h("p", {}, "Ask whoever invited you to send a new invitation."), h("p", {}, h("a", { href: "/" }, "Go to the dashboard")));
    return;
  }
  const here = `/invitations/accept?token=${encodeURIComponent(token)}`;
  const what = h("p", {}, "You are invited to join ", h("strong", {}, inv.organization.name), " as ", h("strong", {}, inv.role), ".");
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "Sent to"), h("dd", {}, inv.email),
    h("dt", {}, "Status"), h("dd", {}, badge(inv.status, inv.status === "pending" ? "busy" : "plain")),
    h("dt", {}, "Valid until"), h("dd", {}, fmtDate(inv.expires_at)));
  let action;
  if (inv.status !== "pending") {
    action = notice(`This invitation is ${inv.status}; it can no longer be accepted.`, "warn");
  } else if (!session.user) {
    action = h("div", { class: "form-actions" },
      h("a", { class: "button primary", href: `/sign-in?${new URLSearchParams({ next: here, email: inv.email })}` }, "Sign in to accept"),
      h("a", { class: "button", href: `/sign-up?${new URLSearchParams({ next: here, email: inv.email })}` }, `Sign up as ${inv.email}`));
  } else if (session.user.email !== inv.email) {
    action = notice(`You are signed in as ${session.user.email}, but this invitation was sent to ${inv.email}. Sign out and sign in with that address.`, "warn");
  } else if (!session.user.email_verified) {
    const status = h("div", { "aria-live": "polite" });
    const btn = button("Send me a confirmation link", () => busy(btn, async () => {
      const r = await post("/platform/profile/verify-email", { next: here });
      status.replaceChildren(notice(`We sent a link to ${r.email}. Open it, then accept the invitation.`, "ok"));
    }), { kind: "primary" });
    action = h("div", { class: "stack" },
      notice(`Confirm ${inv.email} is yours before accepting: invitations go only to confirmed addresses.`, "warn"),
      h("div", { class: "form-actions" }, btn), status);
  } else {
    const btn = button("Accept invitation", () => busy(btn, async () => {
      const org = await post("/platform/invitations/accept", { token });
      forgetOrgs();
      await selectOrg(org.slug);
      await navigate(`/org/${org.slug}`);
    }), { kind: "primary" });
    action = h("div", { class: "form-actions" }, btn, h("a", { class: "button", href: "/" }, "Not now"));
  }
  bare(`Join ${inv.organization.name}`, h("h1", {}, `Join ${inv.organization.name}`), what, facts, h("div", { class: "stack" }, h("span"), action));
}
