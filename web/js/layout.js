// The page frame: top bar (brand, organization selector, project, admin link, account,
// sign out), a sidebar for the current area, and the main region. Narrow screens get the
// sidebar as a drawer behind a menu button.

import { h, mount } from "./dom.js";
import { get, post, session } from "./api.js";
import { myOrgs, selectOrg } from "./state.js";
import { navigate } from "./router.js";
import { toast } from "./ui.js";

let firstRender = true;

export function orgNav(slug) {
  const base = `/org/${encodeURIComponent(slug)}`;
  return [{ heading: "Organization", links: [
    ["Projects", base], ["Team", `${base}/team`], ["Usage", `${base}/usage`], ["Billing", `${base}/billing`],
    ["Settings", `${base}/settings`], ["Audit log", `${base}/audit`],
  ] }];
}

export function projectNav(ref, slug) {
  // On a Studio origin the database pages are here and every other page is the dashboard's.
  const dash = session.studio ? session.studio.dashboard_url : "";
  const base = `/project/${encodeURIComponent(ref)}`;
  const out = `${dash}${base}`;
  return [
    { heading: "Project", links: [["Overview", out], ["API keys", `${out}/api-keys`],
      ["Authentication", `${out}/auth/users`], ["Storage", `${out}/storage`],
      ["Edge functions", `${out}/functions`], ["Realtime", `${out}/realtime/inspector`], ["Usage", `${out}/usage`]] },
    { heading: "Database", links: [["Table editor", `${base}/database`], ["SQL editor", `${base}/database/sql`],
      ["Schema visualizer", `${base}/database/schema`],
      ["RLS policies", `${base}/database/policies`], ["Migrations", `${base}/database/migrations`],
      ["TypeScript types", `${base}/database/types`], ["Publications", `${base}/database/publications`],
      ...(session.studio ? [] : [["Open in Studio", openStudioLink(ref, "database")]])] },
    { heading: "Settings", links: [["General", `${out}/settings`], ["API", `${out}/settings/api`],
      ["Authentication", `${out}/settings/auth`], ["Realtime", `${out}/realtime`], ["History", `${out}/settings/history`]] },
    slug ? { heading: "Organization", links: [["All projects", `${dash}/org/${encodeURIComponent(slug)}`]] } : null,
  ].filter(Boolean);
}

/** The page of `ref` you are on, as the part after /project/<ref>/ ("" for the overview). */
function projectPagePath(ref) {
  const prefix = `/project/${ref}`;
  return location.pathname.startsWith(prefix) ? location.pathname.slice(prefix.length).replace(/^\//, "") : "";
}

/** A database page to open in Studio (a table's page becomes the table editor: the other
 * project may not have that table). */
function studioPage(page) {
  if (!page.startsWith("database")) return "database";
  return page.startsWith("database/tables/") ? "database" : page;
}

/** The dashboard's Studio bridge for a project and page (docs/studio.md). */
export function studioLink(ref, page) {
  const dash = session.studio ? session.studio.dashboard_url : "";
  return `${dash}/platform/projects/${encodeURIComponent(ref)}/studio?${new URLSearchParams({ page: studioPage(page) })}`;
}

/** Where "Open in Studio" goes: the dashboard's Studio page, which embeds the project's own
 * Supabase Studio (kubernetes driver), or else the bridge to the Studio origin's database pages. */
export function openStudioLink(ref, page) {
  if (!session.studioEmbedded || session.studio) return studioLink(ref, page);
  return `/project/${encodeURIComponent(ref)}/studio?${new URLSearchParams({ page: studioPage(page) })}`;
}

/** The project picker: the organization's other projects, and the same page in the one you pick.
 * Drawn at once with the current project; the others are filled in when /v1/projects answers
 * (the page never waits for the list). */
function projectSelector(project, org) {
  const select = h("select", { id: "project-select", name: "project" },
    h("option", { value: project.ref, selected: true }, project.name));
  get("/v1/projects").then((all) => {
    const others = all.filter((p) => p.organization_slug === org && p.ref !== project.ref && p.status !== "REMOVED");
    select.append(...others.map((p) => h("option", { value: p.ref }, p.name)));
    select.dataset.loaded = "true";
  }).catch(() => { select.dataset.loaded = "true"; });
  select.addEventListener("change", () => {
    const other = select.value;
    if (!other || other === project.ref) return undefined;
    const rest = projectPagePath(project.ref);
    // On a Studio origin the other project has its own cookie: through the dashboard's bridge.
    if (session.studio) return location.assign(studioLink(other, rest));
    return navigate(`/project/${encodeURIComponent(other)}${rest ? `/${rest}` : ""}${location.search}`);
  });
  return h("div", { class: "project-select" },
    h("label", { for: "project-select", class: "visually-hidden" }, "Project"), select);
}

export function accountNav() {
  return [{ heading: "Account", links: [["Profile", "/account"], ["Access tokens", "/account/tokens"]] }];
}

export function adminNav() {
  return [{ heading: "Admin", links: [["Overview", "/admin"], ["Organizations", "/admin/organizations"],
    ["Projects", "/admin/projects"], ["Users", "/admin/users"], ["Realtime", "/admin/realtime"], ["System health", "/admin/health"],
    ["History", "/admin/history"]] }];
}

async function orgSelector(currentSlug) {
  const orgs = await myOrgs();
  const select = h("select", { id: "org-select", name: "organization" },
    orgs.length ? null : h("option", { value: "" }, "No organization"),
    orgs.map((o) => h("option", { value: o.slug, selected: o.slug === currentSlug }, o.name)),
    h("option", { value: "__new__" }, "+ New organization"));
  if (currentSlug && !orgs.some((o) => o.slug === currentSlug)) select.prepend(h("option", { value: "", selected: true }, "—"));
  select.addEventListener("change", async () => {
    const slug = select.value;
    if (slug === "__new__") return navigate("/new-org");
    if (!slug) return undefined;
    try {
      await selectOrg(slug);
      return navigate(`/org/${encodeURIComponent(slug)}`);
    } catch (e) {
      toast(e.message, "bad");
      return undefined;
    }
  });
  return h("div", { class: "org-select" },
    h("label", { for: "org-select", class: "visually-hidden" }, "Organization"), select);
}

async function signOut() {
  try {
    await post("/platform/auth/signout");
  } catch (e) {
    // Already ended on the server: signing out here is all that is left to do.
  }
  if (session.studio) {
    // The Studio session is over; the dashboard's is the dashboard's to end.
    location.assign(`${session.studio.dashboard_url}/project/${session.studio.ref}`);
    return;
  }
  session.user = null;
  session.csrf = null;
  navigate("/sign-in");
}

/**
 * Draw a page. opts: {title, heading, sub, actions, nav, org (slug), project ({ref, name}),
 * content (nodes)}. Sets the document title and moves focus to the heading after navigation.
 */
export async function page(opts) {
  const user = session.user;
  const shell = h("div", { class: "shell" });
  const toggle = h("button", {
    type: "button", class: "menu-toggle", "aria-expanded": "false", "aria-controls": "sidebar",
    onClick: () => {
      const open = !shell.classList.contains("nav-open");
      shell.classList.toggle("nav-open", open);
      toggle.setAttribute("aria-expanded", String(open));
    },
  }, "Menu");
  const studio = session.studio;
  const dash = studio ? studio.dashboard_url : "";
  const crumbs = h("div", { class: "crumbs" });
  if (user && !studio) crumbs.append(await orgSelector(opts.org));
  if (studio) crumbs.append(h("span", { class: "studio-mark", id: "studio-mark" }, "Studio"));
  if (opts.project) {
    crumbs.append(h("span", { class: "sep", "aria-hidden": "true" }, "/"),
      h("a", { class: "crumb-project", href: `${dash}/project/${opts.project.ref}` }, opts.project.name));
    if (user && opts.org) crumbs.append(projectSelector(opts.project, opts.org));
  }
  const onDatabasePage = opts.project && projectPagePath(opts.project.ref).startsWith("database");
  const right = h("div", { class: "right" },
    opts.project && !studio ? h("a", { class: "button small", id: "open-studio",
      href: openStudioLink(opts.project.ref, onDatabasePage ? projectPagePath(opts.project.ref) : "database") }, "Open in Studio") : null,
    studio && opts.project ? h("a", { class: "button small", id: "back-to-dashboard",
      href: `${dash}/project/${opts.project.ref}` }, "Dashboard") : null,
    user && user.is_admin && !studio ? h("a", { class: "button small", href: "/admin" }, "Admin") : null,
    user ? h("a", { class: "user-chip", href: `${dash}/account`, title: "Your account" }, user.display_name || user.email) : null,
    user ? h("button", { type: "button", class: "small", onClick: signOut }, studio ? "Leave Studio" : "Sign out") : null);
  const topbar = h("header", { class: "topbar" }, toggle,
    h("a", { class: "brand", href: studio ? `${dash}/project/${studio.ref}` : "/" },
      h("img", { src: "/assets/favicon.svg", alt: "" }), h("span", {}, "Supaplatform")),
    crumbs, right);

  const here = location.pathname.replace(/\/$/, "") || "/";
  const sidebar = h("nav", { class: "sidebar", id: "sidebar", "aria-label": opts.navLabel || "Sections" },
    (opts.nav || []).map((section) => [
      h("h2", {}, section.heading),
      h("ul", {}, section.links.map(([label, href]) =>
        h("li", {}, h("a", { href, "aria-current": href === here ? "page" : null }, label)))),
    ]));
  sidebar.addEventListener("click", (e) => {
    if (e.target.closest("a")) shell.classList.remove("nav-open");
  });

  const heading = h("h1", { tabindex: "-1", id: "page-title" }, opts.heading || opts.title);
  const head = h("div", { class: "page-head" },
    h("div", {}, heading, opts.sub ? h("p", { class: "sub" }, opts.sub) : null),
    opts.actions ? h("div", { class: "actions" }, opts.actions) : null);
  const main = h("main", { id: "main", tabindex: "-1" }, head, opts.content);
  shell.append(topbar, sidebar, main);
  mount(document.getElementById("app"), shell);
  setTitle(opts.title);
  if (!firstRender) heading.focus();
  firstRender = false;
  return main;
}

/** A page without the frame (sign in, sign up, invitations). */
export function bare(title, ...content) {
  mount(document.getElementById("app"),
    h("main", { id: "main", class: "auth", tabindex: "-1" },
      h("div", { class: "card" }, h("a", { class: "brand", href: "/" },
        h("img", { src: "/assets/favicon.svg", alt: "" }), h("span", {}, "Supaplatform")), ...content)));
  setTitle(title);
  const heading = document.querySelector("main h1");
  if (heading && !firstRender) { heading.tabIndex = -1; heading.focus(); }
  firstRender = false;
}

export function setTitle(title) {
  document.title = title ? `${title} · Supaplatform` : "Supaplatform";
}
