// The gateway's HTTP API as the dashboard calls it: session cookie, CSRF header on writes,
// errors as ApiError {status, message, errors: {field: [messages]}}.

export class ApiError extends Error {
  constructor(status, message, errors) {
    super(message || `request failed (${status})`);
    this.status = status;
    this.errors = errors || {};
  }
}

// studio: {ref, dashboard_url} on a project's Studio origin (docs/studio.md), else null.
export const session = { user: null, csrf: null, studio: null, studioEmbedded: false };

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export async function api(method, path, body, { idempotencyKey } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (UNSAFE.has(method) && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "the platform did not answer; check your connection and try again");
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : await response.text();
  if (!response.ok) {
    const message = data && typeof data === "object" ? data.message : `request failed (${response.status})`;
    const error = new ApiError(response.status, message, data && data.errors);
    if (response.status === 401 && session.user) {
      // The session ended (signed out elsewhere, expired, account disabled): start over.
      session.user = null;
      window.dispatchEvent(new CustomEvent("session-ended"));
    }
    throw error;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body, opts) => api("POST", path, body === undefined ? {} : body, opts);
export const put = (path, body) => api("PUT", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

/** Who is signed in (null if nobody): sets session.user and session.csrf. */
export async function loadSession() {
  try {
    const info = await get("/platform/auth/session");
    session.user = info.user;
    session.csrf = info.csrf_token || null;
    session.studio = info.studio || null;
    session.studioEmbedded = Boolean(info.studio_embedded);
  } catch (e) {
    if (e.status !== 401) throw e;
    session.user = null;
    session.csrf = null;
  }
  return session.user;
}

export function startSession(info) {
  session.user = info.user;
  session.csrf = info.csrf_token;
}

/** A value that answers "not there yet" as null instead of failing (optional features). */
export async function optional(promise) {
  try {
    return await promise;
  } catch (e) {
    if (e.status === 404 || e.status === 501 || e.status === 405) return null;
    throw e;
  }
}
