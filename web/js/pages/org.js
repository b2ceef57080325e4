// The organization area: projects, team (members, roles, invitations), settings, audit log.

import { h } from "../dom.js";
import { del, get, patch, post, session } from "../api.js";
import { REGIONS, ROLES, regionName } from "../constants.js";
import { field, form } from "../forms.js";
import { orgNav, page } from "../layout.js";
import { navigate, onLeave, render } from "../router.js";
import { can, forgetOrgs, permissions, selectOrg, whyNot } from "../state.js";
import {
  BUSY, badge, button, busy, confirmDialog, errorNotice, fmtAgo, fmtDate, notice, statusBadge, table, toast,
} from "../ui.js";

/** The organization and what your role allows in it; switches the current organization to it. */
export async function orgContext(slug) {
  const [org, perms] = await Promise.all([get(`/platform/organizations/${encodeURIComponent(slug)}`), permissions(slug)]);
  selectOrg(slug).catch(() => {});
  return { org, perms };
}

export async function projects({ params }) {
  const { org, perms } = await orgContext(params.slug);
  const grid = h("div", { class: "grid", id: "projects" });
  const newBtn = can(perms, "projects.create")
    ? h("a", { class: "button primary", href: `/org/${org.slug}/new-project` }, "New project")
    : button("New project", null, { kind: "primary", disabledReason: whyNot(perms, "projects.create") });
  await page({
    title: `Projects · ${org.name}`, heading: "Projects", sub: org.name, org: org.slug, nav: orgNav(org.slug),
    navLabel: "Organization", actions: [newBtn], content: grid,
  });
  let timer = null;
  async function draw() {
    const all = (await get("/v1/projects")).filter((p) => p.organization_slug === org.slug);
    if (!all.length) {
      grid.replaceChildren(h("div", { class: "card" }, h("h2", {}, "No projects yet"),
        h("p", { class: "muted" }, can(perms, "projects.create")
          ? "Create a project to get a Postgres database, APIs, auth and storage."
          : "Owners and admins of this organization can create projects.")));
    } else {
      grid.replaceChildren(...all.map((p) => h("a", { class: "card project-card", href: `/project/${p.ref}` },
        h("h3", {}, h("span", {}, p.name), statusBadge(p.status)),
        h("p", { class: "muted small" }, regionName(p.region)),
        h("p", { class: "muted small mono" }, p.ref))));
    }
    // Keep badges moving while something is starting, pausing or restoring.
    if (all.some((p) => BUSY.has(p.status))) timer = setTimeout(draw, 1500);
  }
  onLeave(() => clearTimeout(timer));
  await draw();
}

export async function team({ params }) {
  const { org, perms } = await orgContext(params.slug);
  const membersBox = h("div");
  const invitesBox = h("div");
  const isOwner = perms.role === "owner";
  const roleChoices = ROLES.filter(([r]) => r !== "owner" || isOwner);

  async function drawMembers() {
    const members = await get(`/platform/organizations/${org.slug}/members`);
    membersBox.replaceChildren(table([
      { label: "Member", cell: (m) => h("div", {}, h("div", {}, m.display_name || m.email), h("div", { class: "muted small" }, m.email)) },
      { label: "Role", cell: (m) => {
        const touchesOwner = m.role === "owner";
        const reason = whyNot(perms, "members.change_role") || (touchesOwner && !isOwner ? "Only owners can change an owner's role" : null);
        const select = h("select", { "aria-label": `Role of ${m.email}`, disabled: Boolean(reason) || m.user_id === session.user.id, title: reason },
          roleChoices.concat(touchesOwner && !isOwner ? [["owner", "Owner"]] : []).map(([v, l]) => h("option", { value: v, selected: v === m.role }, l)));
        select.addEventListener("change", async () => {
          try {
            await patch(`/platform/organizations/${org.slug}/members/${m.user_id}`, { role: select.value });
            toast(`${m.email} is now ${select.value}`);
          } catch (e) {
            toast(e.message, "bad");
          }
          await drawMembers();
        });
        return select;
      } },
      { label: h("span", { class: "visually-hidden" }, "Actions"), cell: (m) => {
        if (m.user_id === session.user.id) {
          const b = button("Leave", () => busy(b, async () => {
            if (!await confirmDialog({ title: `Leave ${org.name}?`, body: "You lose access to its projects until someone invites you again.", confirmLabel: "Leave organization", danger: true })) return;
            await post(`/platform/organizations/${org.slug}/leave`);
            forgetOrgs();
            await navigate("/");
          }), { small: true });
          return b;
        }
        const reason = whyNot(perms, "members.remove") || (m.role === "owner" && !isOwner ? "Only owners can remove an owner" : null);
        const b = button("Remove", () => busy(b, async () => {
          if (!await confirmDialog({ title: `Remove ${m.email}?`, body: `They lose access to ${org.name} and its projects.`, confirmLabel: "Remove member", danger: true })) return;
          await del(`/platform/organizations/${org.slug}/members/${m.user_id}`);
          toast(`${m.email} removed`);
          await drawMembers();
        }), { small: true, disabledReason: reason });
        b.setAttribute("aria-label", `Remove ${m.email}`);
        return b;
      } },
    ], members, { caption: "Members" }));
  }

  async function drawInvites() {
    if (!can(perms, "invitations.read")) {
      invitesBox.replaceChildren(h("p", { class: "muted" }, "Owners and admins see and manage invitations."));
      return;
    }
    const invitations = await get(`/platform/organizations/${org.slug}/invitations`);
    const manageWhy = whyNot(perms, "invitations.manage");
    invitesBox.replaceChildren(table([
      { label: "Email", cell: (i) => i.email },
      { label: "Role", cell: (i) => i.role },
      { label: "Status", cell: (i) => badge(i.status, { pending: "busy", accepted: "ok", revoked: "plain", expired: "warn" }[i.status]) },
      { label: "Expires", cell: (i) => (i.status === "pending" ? fmtDate(i.expires_at) : "—") },
      { label: h("span", { class: "visually-hidden" }, "Actions"), cell: (i) => {
        if (i.status !== "pending" && i.status !== "expired") return "";
        const resend = button("Resend", () => busy(resend, async () => {
          await post(`/platform/organizations/${org.slug}/invitations/${i.id}/resend`);
          toast(`Invitation to ${i.email} sent again (the old link no longer works)`);
          await drawInvites();
        }), { small: true, disabledReason: manageWhy });
        resend.setAttribute("aria-label", `Resend invitation to ${i.email}`);
        const revoke = button("Revoke", () => busy(revoke, async () => {
          if (!await confirmDialog({ title: `Revoke the invitation to ${i.email}?`, body: "The link in their mail stops working.", confirmLabel: "Revoke invitation", danger: true })) return;
          await del(`/platform/organizations/${org.slug}/invitations/${i.id}`);
          toast("Invitation revoked");
          await drawInvites();
        }), { small: true, disabledReason: manageWhy });
        revoke.setAttribute("aria-label", `Revoke invitation to ${i.email}`);
        return h("div", { class: "row" }, i.status === "pending" ? resend : null, i.status === "pending" ? revoke : null);
      } },
    ], invitations, { empty: "No invitations sent yet.", caption: "Invitations" }));
  }

  const inviteForm = form({
    label: "Invite a member", className: "inline-form",
    fields: [
      field({ name: "email", label: "Email address", type: "email", required: true, autocomplete: "off" }),
      field({ name: "role", label: "Role", type: "select", value: "member", options: roleChoices }),
    ],
    submitLabel: "Send invitation",
    disabledReason: whyNot(perms, "members.invite"),
    onSubmit: async (v, f) => {
      await post(`/platform/organizations/${org.slug}/invitations`, v);
      f.reset();
      toast(`Invitation sent to ${v.email}`);
      await drawInvites();
    },
  });

  await page({
    title: `Team · ${org.name}`, heading: "Team", sub: `Your role: ${perms.role}`, org: org.slug, nav: orgNav(org.slug), navLabel: "Organization",
    content: [
      h("section", { class: "card", "aria-labelledby": "invite-h" }, h("h2", { id: "invite-h" }, "Invite a member"), inviteForm),
      h("section", { class: "card", "aria-labelledby": "members-h" }, h("h2", { id: "members-h" }, "Members"), membersBox),
      h("section", { class: "card", "aria-labelledby": "inv-h" }, h("h2", { id: "inv-h" }, "Invitations"), invitesBox),
    ],
  });
  await Promise.all([drawMembers(), drawInvites()]);
}

export async function settings({ params }) {
  const { org, perms } = await orgContext(params.slug);
  const f = form({
    label: "Organization settings",
    fields: [
      field({ name: "name", label: "Name", value: org.name, required: true }),
      field({ name: "billing_email", label: "Billing email", type: "email", value: org.billing_email || "", nullable: true,
        help: "Invoices and payment notices go here. Leave empty to use the owners' addresses." }),
      field({ name: "default_region", label: "Default region for new projects", type: "select", nullable: true,
        value: org.default_region || "", options: [["", "No default"], ...REGIONS] }),
    ],
    disabledReason: whyNot(perms, "org.update"),
    onSubmit: async (v) => {
      await patch(`/platform/organizations/${org.slug}`, v);
      forgetOrgs();
      toast("Settings saved");
      await render();
    },
  });
  const deleteWhy = whyNot(perms, "org.delete");
  const del_ = button("Delete organization", () => busy(del_, async () => {
    const ok = await confirmDialog({
      title: `Delete ${org.name}?`, danger: true, typed: org.slug, confirmLabel: "Delete organization",
      body: ["This cannot be undone. Members lose access at once. Projects must be deleted first."],
    });
    if (!ok) return;
    await del(`/platform/organizations/${org.slug}`);
    forgetOrgs();
    toast(`${org.name} deleted`);
    await navigate("/");
  }), { kind: "danger", disabledReason: deleteWhy });
  await page({
    title: `Settings · ${org.name}`, heading: "Organization settings", sub: `Slug: ${org.slug}`, org: org.slug, nav: orgNav(org.slug), navLabel: "Organization",
    content: [
      h("section", { class: "card", "aria-labelledby": "general-h" }, h("h2", { id: "general-h" }, "General"), f),
      h("section", { class: "card danger", "aria-labelledby": "danger-h" }, h("h2", { id: "danger-h" }, "Danger zone"),
        h("p", {}, "Deleting the organization removes it for every member. It must have no projects left."), del_),
    ],
  });
}

export async function audit({ params }) {
  const { org, perms } = await orgContext(params.slug);
  let content;
  if (!can(perms, "audit.read")) {
    content = notice("Only owners and admins can read the audit log.", "warn");
  } else {
    try {
      const entries = await get(`/platform/organizations/${org.slug}/audit?limit=200`);
      content = h("div", { class: "card" }, table([
        { label: "When", cell: (e) => h("span", { class: "nowrap", title: fmtDate(e.at) }, fmtAgo(e.at)) },
        { label: "What", cell: (e) => h("code", {}, e.action) },
        { label: "Who", cell: (e) => e.actor_email || e.actor_id || "system" },
        { label: "Details", cell: (e) => h("span", { class: "small mono" }, describe(e.details)) },
      ], entries, { empty: "Nothing recorded yet.", caption: "Audit log" }));
    } catch (e) {
      content = errorNotice(e);
    }
  }
  await page({
    title: `Audit log · ${org.name}`, heading: "Audit log", sub: "Every change to the organization, newest first. It is the event history itself.",
    org: org.slug, nav: orgNav(org.slug), navLabel: "Organization", content,
  });
}

function describe(details) {
  return Object.entries(details || {})
    .filter(([k]) => !["slug", "owner_user_id"].includes(k) || Object.keys(details).length < 3)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}
