// The dashboard's entry: find out who is signed in, register every page, start the router.
// Pages that need a session send visitors to sign in first and bring them back after.

import { h } from "./dom.js";
import { loadSession, session } from "./api.js";
import { bare, page } from "./layout.js";
import { navigate, render, route, setNotFound, start } from "./router.js";
import { errorNotice } from "./ui.js";
import * as auth from "./pages/auth.js";
import * as account from "./pages/account.js";
import * as org from "./pages/org.js";
import * as project from "./pages/project.js";
import * as functions from "./pages/functions.js";
import * as apis from "./pages/apis.js";
import * as database from "./pages/database.js";
import * as publications from "./pages/publications.js";
import * as usage from "./pages/usage.js";
import * as billing from "./pages/billing.js";
import * as admin from "./pages/admin.js";
import * as realtime from "./pages/realtime.js";

/** Wrap a page that needs a signed-in user; show load failures in the page, not a blank screen.
 * On a Studio origin only the database pages are here: every other page is the dashboard's. */
function signedIn(fn) {
  return async (ctx) => {
    if (session.studio && !/^\/project\/[a-z]{20}\/database(\/|$)/.test(ctx.path)) {
      location.assign(session.studio.dashboard_url + ctx.path + location.search);
      return undefined;
    }
    if (!session.user) {
      const next = location.pathname + location.search;
      return navigate(`/sign-in?${new URLSearchParams({ next })}`, { replace: true });
    }
    try {
      return await fn(ctx);
    } catch (e) {
      if (ctx.stale()) return undefined;
      if (e.status === 401) return navigate(`/sign-in?reason=ended&next=${encodeURIComponent(location.pathname)}`, { replace: true });
      return page({ title: e.status === 404 ? "Not found" : "Error", heading: e.status === 404 ? "Not found" : "Something went wrong",
        nav: [], content: [errorNotice(e), h("p", {}, h("a", { href: "/" }, "Back to the dashboard"))] });
    }
  };
}

route("/", signedIn(auth.home));
route("/sign-in", auth.signIn);
route("/sign-up", auth.signUp);
route("/verify-email", auth.verifyEmail);
route("/invitations/accept", auth.acceptInvitation);
route("/new-org", signedIn(auth.newOrg));
route("/account", signedIn(account.profile));
route("/account/tokens", signedIn(account.tokens));

route("/org/:slug", signedIn(org.projects));
route("/org/:slug/team", signedIn(org.team));
route("/org/:slug/settings", signedIn(org.settings));
route("/org/:slug/audit", signedIn(org.audit));
route("/org/:slug/usage", signedIn(usage.orgUsage));
route("/org/:slug/billing", signedIn(billing.billing));
route("/org/:slug/new-project", signedIn(project.newProject));

route("/project/:ref", signedIn(project.overview));
route("/project/:ref/api-keys", signedIn(project.apiKeys));
route("/project/:ref/settings", signedIn(project.settingsGeneral));
route("/project/:ref/settings/api", signedIn(project.settingsApi));
route("/project/:ref/settings/auth", signedIn(project.settingsAuth));
route("/project/:ref/settings/history", signedIn(project.settingsHistory));
route("/project/:ref/functions", signedIn(functions.list));
route("/project/:ref/auth/users", signedIn(apis.authUsers));
route("/project/:ref/storage", signedIn(apis.storage));
route("/project/:ref/functions/secrets", signedIn(functions.secrets));
route("/project/:ref/functions/:slug", signedIn(functions.detail));
route("/project/:ref/usage", signedIn(usage.projectUsage));
route("/project/:ref/realtime", signedIn(realtime.settings));
route("/project/:ref/realtime/inspector", signedIn(realtime.inspector));
route("/project/:ref/database", signedIn(database.tables));
route("/project/:ref/database/tables/:schema/:table", signedIn(database.tableRows));
route("/project/:ref/database/sql", signedIn(database.sqlEditor));
route("/project/:ref/database/policies", signedIn(database.policies));
route("/project/:ref/database/migrations", signedIn(database.migrations));
route("/project/:ref/database/types", signedIn(database.types));
route("/project/:ref/database/publications", signedIn(publications.publications));
route("/project/:ref/database/schema", signedIn(database.schemaVisualizer));
route("/project/:ref/studio", signedIn(database.studioFrame));

route("/admin", signedIn(admin.overview));
route("/admin/organizations", signedIn(admin.organizations));
route("/admin/projects", signedIn(admin.projects));
route("/admin/users", signedIn(admin.users));
route("/admin/health", signedIn(admin.health));
route("/admin/realtime", signedIn(admin.realtime));
route("/admin/history", signedIn(admin.history));

setNotFound(async () => {
  const content = [h("p", {}, "There is no page at this address."), h("p", {}, h("a", { href: "/" }, "Go to the dashboard"))];
  if (session.user) await page({ title: "Not found", heading: "Page not found", nav: [], content });
  else bare("Not found", h("h1", {}, "Page not found"), ...content);
});

window.addEventListener("session-ended", () => {
  // On a Studio origin the server sends a page without its cookie through the dashboard's bridge.
  if (studioMode) return location.reload();
  return navigate(`/sign-in?reason=ended&next=${encodeURIComponent(location.pathname)}`, { replace: true });
});

let studioMode = false;

async function boot() {
  try {
    await loadSession();
    studioMode = Boolean(session.studio);
  } catch (e) {
    bare("Unavailable", h("h1", {}, "The platform is not answering"), errorNotice(e));
    return;
  }
  await start();
}

boot();
export { render };
