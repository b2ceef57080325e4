// A project's Realtime: its settings (every field of the Management API's realtime config,
// with the plan's ceilings and messages next to each field), a shutdown of every connection,
// and the Inspector: join any channel of the project as anon, an authenticated user or the
// service role, watch the last 100 messages with their time and latency, send broadcasts.
// The inspector connects to the project's own URL on the project edge (not this origin),
// with the project's keys, as any client of the project would.

import { h } from "../dom.js";
import { ApiError, get, patch, post } from "../api.js";
import { field, form } from "../forms.js";
import { onLeave } from "../router.js";
import { whyNot } from "../state.js";
import { PhoenixSocket } from "../phoenix.js";
import { projectContext, projectPage } from "./project.js";
import { badge, button, busy, confirmDialog, errorNotice, fmtNumber, notice, toast } from "../ui.js";

const MAX_MESSAGES = 100;

const FIELDS = [
  ["max_concurrent_users", "Max concurrent clients", "Clients connected to the project at once; one more is refused."],
  ["max_events_per_second", "Max events per second", "Messages per second the project may send and receive."],
  ["max_bytes_per_second", "Max bytes per second", "Bytes per second the project may send and receive."],
  ["max_channels_per_client", "Max channels per client", "Channels one client may join."],
  ["max_joins_per_second", "Max joins per second", "Channel joins per second, for the whole project."],
  ["max_presence_events_per_second", "Max presence events per second", "Presence track and untrack per second."],
  ["max_payload_size_in_kb", "Max payload size (KB)", "The largest message a client may send."],
  ["connection_pool", "Authorization pool size", "Database connections used to authorize private channels."],
];
const FLAGS = [
  ["private_only", "Private channels only", "Refuse public channels: every join is authorized by RLS on realtime.messages."],
  ["presence_enabled", "Presence enabled", "Clients may track presence on their channels."],
  ["suspend", "Suspend Realtime", "Refuse every connection to this project's Realtime until switched off again."],
];

/** Client-side check against the API's bounds and the plan's ceilings (both from the server). */
export function checkSettings(values, page) {
  const errors = {};
  for (const [name] of FIELDS) {
    const v = values[name];
    const [lo, hi] = page.bounds[name];
    const ceiling = page.ceilings[name];
    if (v === null || !Number.isInteger(v)) errors[name] = ["Enter a whole number."];
    else if (v < lo || v > hi) errors[name] = [`From ${fmtNumber(lo)} to ${fmtNumber(hi)}.`];
    else if (ceiling !== undefined && v > ceiling) {
      errors[name] = [`The ${page.plan} plan allows at most ${fmtNumber(ceiling)}; upgrade the plan for more.`];
    }
  }
  return errors;
}

/** An API refusal that names its field in the message ("field: why") shown beside that field. */
function fieldError(e, names) {
  if (e instanceof ApiError && !Object.keys(e.errors || {}).length) {
    const m = /^(\w+): (.*)$/.exec(e.message || "");
    if (m && names.includes(m[1])) return new ApiError(e.status, e.message, { [m[1]]: [m[2]] });
  }
  return e;
}

export async function settings({ params }) {
  const { project, perms } = await projectContext(params.ref);
  const box = h("div");
  const manage = whyNot(perms, "projects.manage");

  async function draw() {
    let pageData;
    try {
      pageData = await get(`/platform/projects/${project.ref}/realtime/settings`);
    } catch (e) {
      box.replaceChildren(errorNotice(e));
      return;
    }
    const cur = pageData.settings;
    const numbers = FIELDS.map(([name, label, help]) => {
      const [lo, hi] = pageData.bounds[name];
      const ceiling = pageData.ceilings[name];
      const planNote = ceiling !== undefined && ceiling < hi ? ` Plan ceiling: ${fmtNumber(ceiling)} (${pageData.plan}).` : "";
      return field({ name, label, type: "number", value: cur[name], min: lo, max: Math.min(hi, ceiling ?? hi), step: 1,
        help: `${help}${planNote}` });
    });
    const flags = FLAGS.map(([name, label, help]) => field({ name, label, type: "checkbox", value: cur[name], help }));
    const names = [...FIELDS, ...FLAGS].map(([n]) => n);
    const f = form({
      label: "Realtime settings",
      fields: [h("div", { class: "grid" }, numbers), flags],
      disabledReason: manage,
      onSubmit: async (v) => {
        const errors = checkSettings(v, pageData);
        if (Object.keys(errors).length) throw new ApiError(400, "Check the highlighted settings.", errors);
        const changes = Object.fromEntries(names.filter((n) => v[n] !== cur[n]).map((n) => [n, v[n]]));
        if (!Object.keys(changes).length) {
          toast("Nothing changed");
          return;
        }
        try {
          await patch(`/v1/projects/${project.ref}/config/realtime`, changes);
        } catch (e) {
          throw fieldError(e, names);
        }
        toast("Realtime settings saved");
        await draw();
      },
    });
    f.id = "realtime-settings";
    const shutdown = button("Disconnect all clients", () => busy(shutdown, async () => {
      const ok = await confirmDialog({
        title: "Disconnect every realtime client?",
        body: "Every client of this project is disconnected now. Clients like realtime-js connect again by themselves.",
        confirmLabel: "Disconnect all", danger: true,
      });
      if (!ok) return;
      try {
        await post(`/v1/projects/${project.ref}/config/realtime/shutdown`);
        toast("Every realtime client was disconnected");
      } catch (e) {
        toast(e.message, "bad");
      }
    }), { kind: "danger", disabledReason: manage, name: "shutdown" });
    box.replaceChildren(
      h("section", { class: "card", "aria-labelledby": "rt-set-h" }, h("h2", { id: "rt-set-h" }, "Settings"),
        h("p", { class: "muted small" }, `Plan: ${pageData.plan}. Changes reach the running server within a second.`), f),
      h("section", { class: "card danger", "aria-labelledby": "rt-shut-h" }, h("h2", { id: "rt-shut-h" }, "Shut down connections"),
        h("p", {}, "Disconnect every client connected to this project's Realtime (for example after rotating keys)."),
        shutdown));
  }

  await draw();
  await projectPage(project, {
    title: "Realtime settings", heading: "Realtime settings", sub: "Limits and switches of the project's Realtime.",
    actions: [h("a", { class: "button", href: `/project/${project.ref}/realtime/inspector` }, "Inspector")], content: box,
  });
}

// ---- inspector ----------------------------------------------------------------------------------

function clock(ms) {
  const d = new Date(ms);
  return `${d.toISOString().slice(11, 23)}`;
}

function kindOf(frame) {
  if (frame.event === "broadcast") return "broadcast";
  if (frame.event === "presence_state" || frame.event === "presence_diff") return "presence";
  if (frame.event === "postgres_changes") return "postgres_changes";
  if (frame.event === "system") return "system";
  if (frame.event === "phx_reply") return "reply";
  if (frame.event === "phx_close" || frame.event === "phx_error") return "channel";
  return frame.event;
}

export async function inspector({ params }) {
  const { project } = await projectContext(params.ref);
  const apiUrl = project.connection?.api_url;
  let keys = [];
  try {
    keys = await get(`/v1/projects/${project.ref}/api-keys`);
  } catch (e) {
    keys = [];
  }
  const byName = Object.fromEntries(keys.map((k) => [k.name, k.api_key]));
  let socket = null;
  let channel = null;
  const messages = [];
  onLeave(() => { if (socket) socket.close(); });

  const status = h("p", { id: "rt-status", role: "status", "aria-live": "polite" }, "Not connected.");
  const tbody = h("tbody", { id: "rt-messages" });
  const count = h("span", { id: "rt-count", class: "muted small" }, "0 messages");

  function record(frame, extra = {}) {
    const now = Date.now();
    const payload = frame.payload || {};
    const inner = frame.event === "broadcast" ? payload.payload : payload;
    const sentAt = inner && typeof inner === "object" ? Number(inner.sent_at) : NaN;
    messages.unshift({
      at: now, kind: kindOf(frame), event: frame.event === "broadcast" ? payload.event : frame.event,
      payload: frame.event === "broadcast" ? payload.payload : payload,
      latency: extra.latency ?? (Number.isFinite(sentAt) ? Math.max(0, now - sentAt) : null),
    });
    messages.splice(MAX_MESSAGES);
    tbody.replaceChildren(...messages.map((m) => h("tr", { "data-kind": m.kind },
      h("td", { class: "mono small" }, clock(m.at)), h("td", {}, badge(m.kind, m.kind === "system" ? "warn" : "plain")),
      h("td", { class: "mono small" }, m.event || ""),
      h("td", { class: "mono small rt-payload" }, JSON.stringify(m.payload)),
      h("td", { class: "num small" }, m.latency === null ? "—" : `${Math.round(m.latency)} ms`))));
    count.textContent = `${messages.length} message${messages.length === 1 ? "" : "s"} (the last ${MAX_MESSAGES} are kept)`;
  }

  // Who joins: anon, an authenticated user (a pasted JWT or a test user signed in), the service role.
  const role = field({ name: "role", label: "Join as", type: "select", value: "anon", options: [
    ["anon", "anon (the anon key)"], ["authenticated", "authenticated (a user's JWT)"],
    ...(byName.service_role ? [["service_role", "service_role (bypasses RLS)"]] : [])],
    help: byName.service_role ? null : "The service role is for the organization's owners and admins." });
  const jwtField = field({ name: "jwt", label: "User JWT", type: "textarea", rows: 3,
    help: "Paste an access token of one of the project's users, or sign one in below." });
  const email = field({ name: "email", label: "Test user email", autocomplete: "off" });
  const password = field({ name: "password", label: "Password", type: "password", autocomplete: "off" });
  const signIn = button("Sign in test user", () => busy(signIn, async () => {
    const r = await fetch(`${apiUrl}/auth/v1/token?grant_type=password`, {
      method: "POST", headers: { apikey: byName.anon, "Content-Type": "application/json" },
      body: JSON.stringify({ email: email.input.value, password: password.input.value }),
    }).catch(() => null);
    const data = r ? await r.json().catch(() => ({})) : {};
    if (!r || !r.ok || !data.access_token) {
      toast(data.msg || data.error_description || data.message || "The project's Auth refused the sign-in", "bad");
      return;
    }
    jwtField.input.value = data.access_token;
    toast(`Signed in as ${data.user?.email || "the user"}`);
  }), { small: true, name: "sign-in-test-user" });
  const authBox = h("div", { id: "rt-auth", hidden: true }, jwtField, h("div", { class: "inline-form" }, email, password, signIn));
  role.input.addEventListener("change", () => { authBox.hidden = role.input.value !== "authenticated"; });

  const topic = field({ name: "channel", label: "Channel", value: "room-1", required: true, help: "Any channel name of the project." });
  const isPrivate = field({ name: "private", label: "Private channel", type: "checkbox", value: false,
    help: "Authorized by the project's RLS policies on realtime.messages." });
  const selfEcho = field({ name: "self", label: "Receive my own broadcasts", type: "checkbox", value: true });

  const join = button("Join", () => busy(join, async () => {
    if (!apiUrl) {
      toast("The project has no API URL yet", "bad");
      return;
    }
    if (socket) {
      socket.onClose = () => {};
      socket.close();
    }
    const key = role.input.value === "service_role" ? byName.service_role : byName.anon;
    let token = null;
    if (role.input.value === "authenticated") {
      token = jwtField.input.value.trim();
      if (!token) {
        toast("Paste a user's JWT or sign in a test user first", "bad");
        return;
      }
    }
    socket = new PhoenixSocket(`${apiUrl}/realtime/v1/websocket`, key);
    socket.onClose = (e) => {
      status.textContent = `Disconnected${e.reason ? `: ${e.reason}` : ""} (code ${e.code}).`;
      leave.disabled = true;
      send.disabled = true;
    };
    try {
      await socket.connect();
    } catch (e) {
      status.textContent = e.message;
      return;
    }
    const name = topic.input.value.trim();
    channel = socket.channel(name, { accessToken: token, config: {
      broadcast: { self: selfEcho.input.checked, ack: true }, presence: { key: "" }, postgres_changes: [],
      private: isPrivate.input.checked } });
    // Replies answer this inspector's own pushes: the join's shows in the status line, a
    // broadcast's ack is listed with its round trip where it was sent.
    channel.on((frame) => { if (frame.event !== "phx_reply") record(frame); });
    const reply = await channel.join();
    if (reply.status === "ok") {
      status.textContent = `Joined ${name} as ${role.input.value}${isPrivate.input.checked ? " (private)" : ""}.`;
      leave.disabled = false;
      send.disabled = false;
    } else {
      status.textContent = `Refused: ${reply.response?.reason || "the server refused the join"}`;
    }
  }), { kind: "primary", name: "join" });
  const leave = button("Leave", async () => {
    if (channel) await channel.leave();
    if (socket) {
      socket.onClose = () => {};
      socket.close();
    }
    leave.disabled = true;
    send.disabled = true;
    status.textContent = "Left the channel.";
  }, { name: "leave" });
  leave.disabled = true;

  const eventName = field({ name: "event", label: "Event", value: "message", required: true });
  const payload = field({ name: "payload", label: "Payload (JSON)", type: "textarea", rows: 3, value: '{"text": "hello"}',
    help: "Sent with sent_at (your clock, ms) so receivers can show the latency." });
  const send = button("Send broadcast", async () => {
    const slot = payload.querySelector("[data-error-for]");
    slot.textContent = "";
    let body;
    try {
      body = JSON.parse(payload.input.value || "{}");
    } catch (e) {
      slot.textContent = "Not valid JSON.";
      payload.input.setAttribute("aria-invalid", "true");
      return;
    }
    payload.input.removeAttribute("aria-invalid");
    if (!body || typeof body !== "object" || Array.isArray(body)) body = { value: body };
    const reply = await channel.broadcast(eventName.input.value, { ...body, sent_at: Date.now() });
    if (reply.status === "ok") record({ event: "phx_reply", payload: { status: "ok", ack: eventName.input.value } }, { latency: reply.ms });
    else toast(reply.response?.reason || "not sent", "bad");
  }, { name: "send" });
  send.disabled = true;

  const content = [
    apiUrl ? null : notice("The project has no API URL yet: the inspector works once it is up.", "warn"),
    h("section", { class: "card", "aria-labelledby": "rt-join-h" }, h("h2", { id: "rt-join-h" }, "Channel"),
      h("p", { class: "muted small" }, "Connects to ", h("code", {}, apiUrl ? `${apiUrl}/realtime/v1` : "—"),
        " with the project's keys, as any client of the project does."),
      h("div", { class: "grid" }, role, topic), authBox, isPrivate, selfEcho,
      h("div", { class: "row" }, join, leave), status),
    h("section", { class: "card", "aria-labelledby": "rt-send-h" }, h("h2", { id: "rt-send-h" }, "Broadcast"),
      h("div", { class: "grid" }, eventName, payload), send),
    h("section", { class: "card", "aria-labelledby": "rt-msg-h" }, h("h2", { id: "rt-msg-h" }, "Messages"), count,
      h("div", { class: "table-wrap" }, h("table", { class: "rt-messages" },
        h("caption", { class: "visually-hidden" }, "Messages on the channel, newest first"),
        h("thead", {}, h("tr", {}, ["Time (UTC)", "Kind", "Event", "Payload", "Latency"].map((t) => h("th", { scope: "col" }, t)))),
        tbody))),
  ];
  await projectPage(project, {
    title: "Realtime inspector", heading: "Realtime inspector", sub: "Join a channel, watch its messages, send broadcasts.",
    actions: [h("a", { class: "button", href: `/project/${project.ref}/realtime` }, "Settings")], content,
  });
}
