// The project's Auth API through its project URL with the real @supabase/supabase-js (Node 20,
// realtime over `ws`). Reads its config as JSON on stdin, prints what it observed as one JSON
// line; tests/integration/test_project_auth_storage.py asserts on it.
// Usage: node tests/js/auth.mjs <scenario> < config.json
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";

const scenario = process.argv[2];
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const cfg = JSON.parse(Buffer.concat(chunks).toString());

function client(key) {
  return createClient(cfg.url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket },
  });
}

function err(error) {
  return error ? { status: error.status, code: error.code, message: error.message, name: error.name } : null;
}

function claims(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());
}

async function flow() {
  const out = {};
  const sb = client(cfg.anon);
  const email = cfg.email;

  let r = await sb.auth.signUp({ email, password: "short" });
  out.weak = err(r.error);
  r = await sb.auth.signUp({ email, password: cfg.password, options: { data: { nick: "ada" } } });
  out.signUpError = err(r.error);
  out.signUpHasSession = !!r.data.session;
  out.signUpUser = r.data.user && { email: r.data.user.email, nick: r.data.user.user_metadata.nick };
  r = await sb.auth.signUp({ email, password: cfg.password });
  out.again = err(r.error);

  r = await sb.auth.signInWithPassword({ email, password: "wrong password" });
  out.wrongPassword = err(r.error);
  r = await sb.auth.signInWithPassword({ email, password: cfg.password });
  out.signInError = err(r.error);
  const session = r.data.session;
  if (!session) return out;
  const c = claims(session.access_token);
  out.claims = { sub: c.sub === r.data.user.id, role: c.role, aud: c.aud, email: c.email, aal: c.aal,
                 session: typeof c.session_id, expIn: c.exp - c.iat };

  r = await sb.auth.getUser();
  out.getUser = r.data.user && r.data.user.email;
  r = await sb.auth.updateUser({ data: { nick: "countess" } });
  out.updated = err(r.error) || r.data.user.user_metadata.nick;

  // The token carries the user to PostgREST: auth.uid() under RLS.
  r = await sb.from("profiles").insert({ bio: "mine" }).select("owner, bio");
  out.restInsert = err(r.error) || r.data.map((x) => ({ owner: x.owner === session.user.id, bio: x.bio }));

  // Rotation: a refresh gives a new refresh token; the old one, replayed past the reuse
  // interval, is refused and ends the session.
  const oldRefresh = session.refresh_token;
  r = await sb.auth.refreshSession();
  out.refreshError = err(r.error);
  out.rotated = r.data.session && r.data.session.refresh_token !== oldRefresh;
  const newRefresh = r.data.session.refresh_token;
  await new Promise((res) => setTimeout(res, (cfg.reuseInterval + 1) * 1000));
  const other = client(cfg.anon);
  r = await other.auth.refreshSession({ refresh_token: oldRefresh });
  out.reuse = err(r.error);
  r = await other.auth.refreshSession({ refresh_token: newRefresh });
  out.afterReuse = err(r.error);

  // Sign in again and sign out: the refresh token dies with the session.
  r = await sb.auth.signInWithPassword({ email, password: cfg.password });
  const second = r.data.session;
  r = await sb.auth.signOut();
  out.signOut = err(r.error);
  r = await other.auth.refreshSession({ refresh_token: second.refresh_token });
  out.refreshAfterSignOut = err(r.error);

  // Admin API with the service_role key; refused with the anon key.
  const admin = client(cfg.service).auth.admin;
  r = await client(cfg.anon).auth.admin.listUsers();
  out.anonAdmin = err(r.error);
  r = await admin.createUser({ email: cfg.adminEmail, password: cfg.password, email_confirm: true,
                               user_metadata: { made: "by admin" } });
  out.adminCreate = err(r.error) || r.data.user.email;
  const madeId = r.data.user.id;
  r = await admin.listUsers();
  out.adminList = err(r.error) || r.data.users.map((u) => u.email).sort();
  r = await admin.getUserById(madeId);
  out.adminGet = err(r.error) || r.data.user.user_metadata.made;
  r = await admin.updateUserById(madeId, { user_metadata: { made: "changed" } });
  out.adminUpdate = err(r.error) || r.data.user.user_metadata.made;
  r = await client(cfg.anon).auth.signInWithPassword({ email: cfg.adminEmail, password: cfg.password });
  out.adminMadeSignIn = err(r.error) || "ok";
  r = await admin.deleteUser(madeId);
  out.adminDelete = err(r.error);
  r = await admin.getUserById(madeId);
  out.adminGone = err(r.error);

  r = await client(cfg.anon).auth.signInWithOtp({ email });
  out.otp = err(r.error);
  return out;
}

async function confirm() {
  const out = {};
  const sb = client(cfg.anon);
  let r = await sb.auth.signUp({ email: cfg.email, password: cfg.password });
  out.signUpError = err(r.error);
  out.signUpHasSession = !!(r.data && r.data.session);
  out.confirmedAt = r.data && r.data.user && r.data.user.email_confirmed_at;
  r = await sb.auth.signInWithPassword({ email: cfg.email, password: cfg.password });
  out.beforeConfirm = err(r.error);
  return out;
}

async function signin() {
  const sb = client(cfg.anon);
  const r = await sb.auth.signInWithPassword({ email: cfg.email, password: cfg.password });
  return { error: err(r.error), user: r.data.user && r.data.user.email };
}

async function disabled() {
  const r = await client(cfg.anon).auth.signUp({ email: cfg.email, password: cfg.password });
  return { error: err(r.error) };
}

const scenarios = { flow, confirm, signin, disabled };
console.log(JSON.stringify(await scenarios[scenario]()));
