// Postgres changes through a project's URL with the real @supabase/supabase-js / realtime-js
// (Node 20, transport `ws`). Config as JSON on stdin; prints JSON lines: {"ready": true} once
// every channel is SUBSCRIBED (the test then changes rows), {"rejoined": true} in the
// reconnect scenario, and last what each channel's callback got.
// tests/integration/test_realtime_changes.py drives it.
// Usage: node tests/js/realtime_changes.mjs <scenario> < config.json
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";

const scenario = process.argv[2];
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const cfg = JSON.parse(Buffer.concat(chunks).toString());

function client(key, extra = {}) {
  return createClient(cfg.url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    // On a loaded 2-core machine a first join (project lookup, login, slot) can take seconds:
    // a longer join timeout than realtime-js's 10 s, and its default 25 s heartbeat (a
    // heartbeat timeout mid-join drops the socket, and realtime-js 2.90 then resends the join
    // with its old timer still running, under an empty ref no reply can match).
    realtime: { transport: WebSocket, vsn: cfg.vsn, timeout: 30000, ...extra },
  });
}

function until(what, fn, ms = 30000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      let v;
      try { v = fn(); } catch (e) { return reject(e); }
      if (v) return resolve(v);
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

function listen(c, name, bindings) {
  // One channel with one or more postgres_changes bindings; every callback payload kept,
  // with the time it arrived (for the latency the benchmark reports).
  const got = [];
  const statuses = [];
  let ch = c.channel(name);
  for (const b of bindings) ch = ch.on("postgres_changes", b, (p) => got.push({ ...p, _at: Date.now() }));
  ch.subscribe((s, err) => statuses.push(err ? `${s}: ${err.message}` : s));
  trace.push(() => `${name}: ${ch.state} ${statuses.join(",")}`);
  return { ch, got, statuses };
}

const trace = [];
const log = [];
const isSentinel = (p) => (p.new && p.new.id === 999);

async function changes() {
  const anon = client(cfg.anon);
  const all = listen(anon, "all", [{ event: "*", schema: "public" }]);
  const todos = listen(anon, "todos", [{ event: "*", schema: "public", table: "todos" }]);
  const filtered = listen(anon, "filtered", [{ event: "*", schema: "public", table: "todos", filter: "id=eq.2" }]);
  const inserts = listen(anon, "inserts", [{ event: "INSERT", schema: "public", table: "todos" },
                                           { event: "INSERT", schema: "public", table: "marks" }]);
  const gt = listen(anon, "gt", [{ event: "UPDATE", schema: "public", table: "todos", filter: "id=in.(1,3)" }]);
  const alice = client(cfg.anon);
  alice.realtime.setAuth(cfg.alice);
  const a = listen(alice, "secrets", [{ event: "*", schema: "public", table: "secrets" }]);
  const bob = client(cfg.anon);
  bob.realtime.setAuth(cfg.bob);
  const b = listen(bob, "secrets", [{ event: "*", schema: "public", table: "secrets" }]);
  const bad = listen(client(cfg.anon), "bad", [{ event: "*", schema: "public", table: "todos", filter: "id=like.1" }]);
  const chans = { all, todos, filtered, inserts, gt, a, b };
  await until("subscribed", () => Object.values(chans).every((x) => x.statuses.includes("SUBSCRIBED")));
  await until("the bad filter refused", () => bad.statuses.length > 0);
  console.log(JSON.stringify({ ready: true }));
  // The test changes rows now, and last commits the sentinel (id 999 in marks and secrets).
  // Each channel the sentinel reaches; changes come in commit order on each socket, so the
  // others' last changes came before it.
  await until("the sentinel", () => [all, inserts, a, b].every((x) => x.got.some(isSentinel)), 60000);
  const out = { bad: bad.statuses };
  for (const [k, v] of Object.entries(chans)) out[k] = v.got;
  return out;
}

async function reconnect() {
  const c = client(cfg.anon, { reconnectAfterMs: () => 300,
                               logger: (kind, msg, data) => log.push(`${Date.now()} ${kind} ${msg} ${String(JSON.stringify(data)).slice(0, 200)}`) });
  const ch = listen(c, "rc", [{ event: "*", schema: "public", table: "todos" }]);
  await until("subscribed", () => ch.statuses.includes("SUBSCRIBED"));
  console.log(JSON.stringify({ ready: true }));
  // The test kills the realtime server now; realtime-js reconnects and rejoins by itself.
  await until("the socket dropping", () => !c.realtime.isConnected() || ch.ch.state !== "joined", 60000);
  let current = ch;
  let resubscribed = false;
  try {
    await until("joined again", () => c.realtime.isConnected() && ch.ch.state === "joined", 30000);
  } catch (e) {
    // realtime-js 2.90 can wedge a channel whose join was in flight when its socket dropped
    // (Push.resend keeps the old timeout timer, so the join goes out with an empty ref that no
    // reply matches). The application's remedy: a new client and channel.
    c.realtime.disconnect();
    const fresh = client(cfg.anon);
    current = listen(fresh, "rc", [{ event: "*", schema: "public", table: "todos" }]);
    resubscribed = true;
    await until("subscribed again", () => current.statuses.includes("SUBSCRIBED"), 60000);
  }
  console.log(JSON.stringify({ rejoined: true }));
  await until("the sentinel", () => current.got.some(isSentinel), 60000);
  return { got: current.got, statuses: ch.statuses, resubscribed };
}

async function latency() {
  // The benchmark: a subscriber on the table; the driver inserts rows carrying their send
  // time (ms since epoch); the callback's arrival time minus it is the latency.
  const c = client(cfg.anon);
  const ch = listen(c, "bench", [{ event: "INSERT", schema: "public", table: cfg.table }]);
  await until("subscribed", () => ch.statuses.includes("SUBSCRIBED"));
  console.log(JSON.stringify({ ready: true }));
  await until("all rows", () => ch.got.length >= cfg.count, 300000);
  return { ms: ch.got.map((p) => p._at - Number(p.new.sent_ms)) };
}

const scenarios = { changes, reconnect, latency };
try {
  const out = await scenarios[scenario]();
  console.log(JSON.stringify(out));
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.stack || e), log: log.filter((l) => !l.includes("heartbeat") && !l.includes("transport [object") && !l.includes("channel error") && !l.includes("transport close")).slice(-14), trace: trace.map((f) => f()) }));
  process.exit(1);
}
