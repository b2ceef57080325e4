// Drives a project through its project URL with the real @supabase/supabase-js (Node 20,
// realtime over the `ws` package). Reads its config as JSON on stdin, prints what it observed
// as one JSON line; tests/integration/test_project_apis.py asserts on it.
// Usage: node tests/js/project_apis.mjs rest < config.json
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";

const scenario = process.argv[2];
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const cfg = JSON.parse(Buffer.concat(chunks).toString());

function client(url, key, jwt) {
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket },
    global: jwt ? { headers: { Authorization: `Bearer ${jwt}` } } : {},
  });
}

function must({ data, error }) {
  if (error) throw new Error(JSON.stringify(error));
  return data;
}

async function rest() {
  const out = {};
  const alice = client(cfg.url, cfg.anon, cfg.alice);
  const bob = client(cfg.url, cfg.anon, cfg.bob);
  const anon = client(cfg.url, cfg.anon);

  let rows = must(await alice.from("todos").insert([
    { title: "a1", rank: 1 }, { title: "a2", rank: 2 }, { title: "a3", rank: 3 },
  ]).select());
  out.aliceInsert = { count: rows.length, owners: [...new Set(rows.map((r) => r.owner))] };
  rows = must(await bob.from("todos").insert([{ title: "b1", rank: 5 }, { title: "b2", rank: 6 }]).select());
  out.bobInsert = { count: rows.length, owners: [...new Set(rows.map((r) => r.owner))] };

  out.aliceSees = must(await alice.from("todos").select("title").order("title")).map((r) => r.title);
  out.bobSees = must(await bob.from("todos").select("title").order("title")).map((r) => r.title);
  out.anonSees = must(await anon.from("todos").select("title"));
  out.filtered = must(await alice.from("todos").select("title").gte("rank", 2).order("rank", { ascending: false }))
    .map((r) => r.title);
  out.ranged = must(await alice.from("todos").select("title").order("rank").range(1, 1)).map((r) => r.title);
  const counted = await alice.from("todos").select("*", { count: "exact", head: true });
  if (counted.error) throw new Error(JSON.stringify(counted.error));
  out.count = counted.count;

  out.bobUpdatesAlices = must(await bob.from("todos").update({ done: true }).eq("title", "a1").select());
  out.aliceUpdated = must(await alice.from("todos").update({ done: true }).eq("title", "a1").select("title, done"));
  out.rpcOpen = { alice: must(await alice.rpc("my_open_count")), bob: must(await bob.rpc("my_open_count")) };
  out.rpcAdd = must(await anon.rpc("add", { a: 2, b: 3 }));

  const forged = await bob.from("todos").insert({ title: "forged", owner: "00000000-0000-0000-0000-000000000001" });
  out.bobForgedOwner = { code: forged.error?.code ?? null };

  // Another project's anon key against this project's URL: refused by the edge.
  const other = client(cfg.url, cfg.otherAnon);
  const refused = await other.from("todos").select("*");
  out.otherKey = { status: refused.status, message: refused.error?.message ?? null };
  // A user JWT signed by another project's secret, with this project's key: PostgREST refuses it.
  const stranger = client(cfg.url, cfg.anon, cfg.bobForOther);
  const res = await stranger.from("todos").select("*");
  out.otherProjectJwt = { status: res.status, message: res.error?.message ?? null };

  const inv = await alice.functions.invoke("echo", { body: { hello: "edge" } });
  if (inv.error) {
    const ctx = inv.error.context;
    const body = ctx && typeof ctx.text === "function" ? await ctx.text() : "";
    throw new Error(`functions.invoke: ${inv.error.message} ${ctx?.status ?? ""} ${body}`);
  }
  out.invoke = inv.data;

  for (const c of [alice, bob, anon, other, stranger]) c.removeAllChannels();
  return out;
}

const scenarios = { rest };
if (!scenarios[scenario]) {
  console.error(`unknown scenario ${scenario}`);
  process.exit(2);
}
const result = await scenarios[scenario]();
console.log(JSON.stringify(result));
process.exit(0);
