// The project's Realtime through its project URL with the real @supabase/supabase-js /
// realtime-js (Node 20, transport `ws`). Reads its config as JSON on stdin, prints what it
// observed as one JSON line; tests/integration/test_realtime.py asserts on it.
// Usage: node tests/js/realtime.mjs <scenario> < config.json
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";

const scenario = process.argv[2];
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const cfg = JSON.parse(Buffer.concat(chunks).toString());

// Frames as they cross the wire, to tell binary (vsn 2 broadcasts) from text.
const wire = { binaryIn: 0, textIn: 0, binaryOut: 0, textOut: 0 };
class RecordingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on("message", (_data, isBinary) => { if (isBinary) wire.binaryIn++; else wire.textIn++; });
  }
  send(data, ...rest) {
    if (typeof data === "string") wire.textOut++; else wire.binaryOut++;
    return super.send(data, ...rest);
  }
}

function client(key, extra = {}) {
  return createClient(cfg.url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: RecordingWebSocket, vsn: cfg.vsn, heartbeatIntervalMs: 5000, ...extra },
  });
}

function until(what, fn, ms = 15000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      let v;
      try { v = fn(); } catch (e) { return reject(e); }
      if (v) return resolve(v);
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

function subscribed(channel, ms = 15000) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ status: "NO_ANSWER" }), ms);
    channel.subscribe((status, err) => {
      if (status === "SUBSCRIBED" || status === "CHANNEL_ERROR" || status === "TIMED_OUT" || status === "CLOSED") {
        clearTimeout(timer);
        resolve({ status, error: err ? String(err.message || err) : null });
      }
    });
  });
}

function names(state) {
  return Object.keys(state).sort();
}

async function basics() {
  const out = { vsn: cfg.vsn };
  const a = client(cfg.anon);
  const b = client(cfg.anon);
  const room = `room-${cfg.tag}`;
  const gotA = [], gotB = [];
  const ca = a.channel(room, { config: { broadcast: { self: true, ack: true }, presence: { key: "alice" } } });
  const cb = b.channel(room, { config: { broadcast: { self: false }, presence: { key: "bob" } } });
  const presenceA = { joins: [], leaves: [], syncs: 0 };
  ca.on("broadcast", { event: "*" }, (m) => gotA.push({ event: m.event, payload: m.payload }))
    .on("presence", { event: "sync" }, () => { presenceA.syncs++; })
    .on("presence", { event: "join" }, ({ key }) => presenceA.joins.push(key))
    .on("presence", { event: "leave" }, ({ key }) => presenceA.leaves.push(key));
  cb.on("broadcast", { event: "*" }, (m) => gotB.push({ event: m.event, payload: m.payload }))
    .on("presence", { event: "sync" }, () => {});
  out.subscribeA = await subscribed(ca);
  out.subscribeB = await subscribed(cb);

  // Broadcast with ack and self: the sender hears itself, the other client too.
  out.ack = await ca.send({ type: "broadcast", event: "hello", payload: { n: 1, text: "héllo" } });
  await until("hello at A and B", () => gotA.length >= 1 && gotB.length >= 1);
  out.gotAHello = gotA[0];
  out.gotBHello = gotB[0];
  // self false: B's own message reaches A only.
  out.sendB = await cb.send({ type: "broadcast", event: "from-b", payload: { n: 2 } });
  await until("from-b at A", () => gotA.some((m) => m.event === "from-b"));
  // REST broadcast (the other API of Realtime), through the project URL.
  const r = await fetch(`${cfg.url}/realtime/v1/api/broadcast`, {
    method: "POST", headers: { apikey: cfg.anon, "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ topic: room, event: "rest", payload: { n: 3 } }] }),
  });
  out.restStatus = r.status;
  await until("rest at A and B", () => gotA.some((m) => m.event === "rest") && gotB.some((m) => m.event === "rest"));
  // httpSend: realtime-js's own REST path.
  out.httpSend = await ca.httpSend("http", { n: 4 }).then((x) => x.success ?? x, (e) => String(e));
  await until("http at B", () => gotB.some((m) => m.event === "http"));
  out.gotB = gotB.map((m) => m.event);
  out.gotA = gotA.map((m) => m.event);

  // Presence across the two clients: both see both, then B leaves.
  out.trackA = await ca.track({ name: "Alice", online_at: 1 });
  out.trackB = await cb.track({ name: "Bob" });
  await until("both present at A and B", () => names(ca.presenceState()).length === 2 && names(cb.presenceState()).length === 2);
  out.stateA = names(ca.presenceState());
  out.metaAtB = cb.presenceState()["alice"].map((m) => ({ name: m.name, online_at: m.online_at, ref: typeof m.presence_ref }));
  out.untrackB = await cb.untrack();
  await until("bob gone at A", () => names(ca.presenceState()).length === 1);
  out.stateAfterLeave = names(ca.presenceState());
  out.presenceA = { joins: [...new Set(presenceA.joins)].sort(), leaves: [...new Set(presenceA.leaves)], synced: presenceA.syncs > 0 };
  await b.removeAllChannels();
  await a.removeAllChannels();
  out.wire = wire;
  return out;
}

async function refused() {
  // Another project's key at this project's URL.
  const c = client(cfg.otherAnon, { reconnectAfterMs: () => 60000 });
  const ch = c.channel(`room-${cfg.tag}`);
  const r = await subscribed(ch, 6000);
  await c.removeAllChannels();
  return { subscribe: r.status };
}

async function tokens() {
  const out = {};
  // A token that expires while joined: the channel is closed with Supabase's system message.
  const c1 = client(cfg.anon);
  c1.realtime.setAuth(cfg.shortToken);
  const ch1 = c1.channel(`exp-${cfg.tag}`);
  const system1 = [];
  ch1.on("system", {}, (m) => system1.push(m));
  const statuses = [];
  const joined = await new Promise((resolve) => {
    ch1.subscribe((status, err) => {
      statuses.push(status);
      if (status === "SUBSCRIBED") resolve(status);
      if (status === "CHANNEL_ERROR") resolve(`${status}: ${err && err.message}`);
    });
  });
  out.joinShort = joined;
  // A second client refreshes its token before expiry and keeps its channel.
  const c2 = client(cfg.anon);
  c2.realtime.setAuth(cfg.shortToken);
  const ch2 = c2.channel(`exp-${cfg.tag}`, { config: { broadcast: { self: true } } });
  const got2 = [];
  ch2.on("broadcast", { event: "*" }, (m) => got2.push(m.event));
  out.joinRefreshing = (await subscribed(ch2)).status;
  await c2.realtime.setAuth(cfg.longToken);
  await until("closed after expiry", () => statuses.includes("CLOSED"), 30000);
  out.system = system1.map((m) => ({ extension: m.extension, status: m.status, message: m.message.replace(/\d+/, "N"), channel: m.channel }));
  out.statuses = statuses;
  // Past the short token's expiry, the refreshed channel still sends and receives.
  await until("past the short token's exp", () => Date.now() / 1000 > cfg.shortExp + 1, 30000);
  await ch2.send({ type: "broadcast", event: "still-here", payload: {} });
  await until("still-here", () => got2.includes("still-here"));
  out.refreshedAlive = true;
  // An expired token cannot join at all.
  const c3 = client(cfg.anon);
  c3.realtime.setAuth(cfg.expiredToken);
  const r3 = await subscribed(c3.channel(`exp2-${cfg.tag}`), 8000);
  out.joinExpired = r3;
  await Promise.all([c1.removeAllChannels(), c2.removeAllChannels(), c3.removeAllChannels()]);
  return out;
}

async function limit() {
  // max_concurrent_users: the next socket's join is refused with Supabase's text.
  const out = { joins: [] };
  const clients = [];
  for (let i = 0; i < cfg.users + 1; i++) {
    const c = client(cfg.anon, { reconnectAfterMs: () => 60000 });
    clients.push(c);
    const r = await subscribed(c.channel(`lim-${cfg.tag}-${i}`), 8000);
    out.joins.push(r);
  }
  await Promise.all(clients.map((c) => c.removeAllChannels()));
  return out;
}

async function privateChannels() {
  const out = {};
  const allowed = client(cfg.anon);
  allowed.realtime.setAuth(cfg.userToken);
  const got = [];
  const ch = allowed.channel(cfg.allowedTopic, { config: { private: true, broadcast: { self: true, ack: true } } });
  ch.on("broadcast", { event: "*" }, (m) => got.push(m.event));
  out.allowed = await subscribed(ch);
  out.send = await ch.send({ type: "broadcast", event: "secret", payload: { n: 1 } });
  await until("secret", () => got.includes("secret"));
  out.got = got;
  const denied = client(cfg.anon, { reconnectAfterMs: () => 60000 });
  denied.realtime.setAuth(cfg.userToken);
  out.denied = await subscribed(denied.channel(cfg.deniedTopic, { config: { private: true } }), 8000);
  const anonCh = client(cfg.anon, { reconnectAfterMs: () => 60000 });
  out.anonDenied = await subscribed(anonCh.channel(cfg.allowedTopic, { config: { private: true } }), 8000);
  // A public channel of the same name is another channel: it does not hear the private one.
  await Promise.all([allowed.removeAllChannels(), denied.removeAllChannels(), anonCh.removeAllChannels()]);
  return out;
}

async function reconnect() {
  // Subscribed, then (the test kills the server with SIGKILL) subscribed again by itself.
  const c = client(cfg.anon, { reconnectAfterMs: () => 300 });
  const ch = c.channel(`rc-${cfg.tag}`, { config: { broadcast: { self: true } } });
  const statuses = [];
  const got = [];
  ch.on("broadcast", { event: "*" }, (m) => got.push(m.payload.n));
  ch.subscribe((s) => statuses.push(s));
  await until("subscribed", () => statuses.includes("SUBSCRIBED"));
  await ch.send({ type: "broadcast", event: "n", payload: { n: 1 } });
  await until("first message", () => got.includes(1));
  console.log(JSON.stringify({ ready: true }));
  // The test kills the server now and tells us (a line on stdin would be simpler, but stdin is the config).
  await until("the socket dropping", () => !c.realtime.isConnected() || ch.state !== "joined", 60000);
  await until("joined again", () => c.realtime.isConnected() && ch.state === "joined", 60000);
  await ch.send({ type: "broadcast", event: "n", payload: { n: 2 } });
  await until("message after reconnect", () => got.includes(2));
  await c.removeAllChannels();
  return { got, statuses };
}

const scenarios = { basics, refused, tokens, limit, private: privateChannels, reconnect };
try {
  const out = await scenarios[scenario]();
  console.log(JSON.stringify(out));
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.stack || e) }));
  process.exit(1);
}
