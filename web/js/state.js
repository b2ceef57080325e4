// What several pages need: the signed-in user's organizations and what their role allows.

import { get, put, session } from "./api.js";

const cache = { orgs: null };

/** The user's organizations [{id, slug, name}], fetched once and kept until changed. */
export async function myOrgs(force = false) {
  if (force || !cache.orgs) cache.orgs = await get("/v1/organizations");
  return cache.orgs;
}

export function forgetOrgs() {
  cache.orgs = null;
}

/** {role, actions} in an organization: the server's own answer from the role matrix. */
export async function permissions(slug) {
  return get(`/platform/organizations/${encodeURIComponent(slug)}/permissions`);
}

export function can(perms, action) {
  return Boolean(perms && perms.actions.includes(action));
}

/** Why a button is disabled, or null when the role allows the action. */
export function whyNot(perms, action) {
  if (can(perms, action)) return null;
  const role = perms ? perms.role : "none";
  return `Your role (${role}) does not allow this`;
}

/** Make `slug` the current organization (remembered on the server, per user). */
export async function selectOrg(slug) {
  if (session.user && session.user.current_organization === slug) return;
  session.user = await put("/platform/profile/current-organization", { slug });
}
