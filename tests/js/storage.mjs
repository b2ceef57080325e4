// The project's Storage API through its project URL with the real @supabase/supabase-js
// (storage-js inside it). Config as JSON on stdin, observations as one JSON line on stdout;
// tests/integration/test_project_auth_storage.py asserts on them.
// Usage: node tests/js/storage.mjs <scenario> < config.json
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";

const scenario = process.argv[2];
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const cfg = JSON.parse(Buffer.concat(chunks).toString());

function client(key, jwt) {
  return createClient(cfg.url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket },
    global: jwt ? { headers: { Authorization: `Bearer ${jwt}` } } : {},
  });
}

function err(error) {
  if (!error) return null;
  return { status: error.statusCode ?? error.status, message: error.message };
}

async function text(blob) {
  return blob ? Buffer.from(await blob.arrayBuffer()).toString() : null;
}

async function signIn(email) {
  const sb = client(cfg.anon);
  const r = await sb.auth.signInWithPassword({ email, password: cfg.password });
  if (r.error) throw new Error(JSON.stringify(r.error));
  return { sb, id: r.data.user.id };
}

async function flow() {
  const out = {};
  const service = client(cfg.service).storage;
  let r = await service.createBucket("docs", { public: false, fileSizeLimit: 1024, allowedMimeTypes: ["text/plain", "image/png"] });
  out.createDocs = err(r.error) || r.data.name;
  r = await service.createBucket("pics", { public: true });
  out.createPics = err(r.error);
  r = await service.createBucket("docs");
  out.createAgain = err(r.error);
  r = await client(cfg.anon).storage.createBucket("sneaky");
  out.anonCreate = err(r.error);
  r = await service.listBuckets();
  out.buckets = err(r.error) || r.data.map((b) => b.name).sort();
  r = await service.getBucket("docs");
  out.docs = err(r.error) || { public: r.data.public, limit: r.data.file_size_limit, types: r.data.allowed_mime_types };

  const alice = await signIn(cfg.alice);
  const bob = await signIn(cfg.bob);
  const a = alice.sb.storage.from("docs");
  const b = bob.sb.storage.from("docs");
  const mine = `${alice.id}/hello.txt`;

  r = await a.upload(mine, Buffer.from("hello from alice"), { contentType: "text/plain" });
  out.upload = err(r.error) || { path: r.data.path, fullPath: r.data.fullPath, id: typeof r.data.id };
  r = await a.upload(mine, Buffer.from("again"), { contentType: "text/plain" });
  out.duplicate = err(r.error);
  r = await a.upload(mine, new Blob(["hello again, multipart"], { type: "text/plain" }), { upsert: true });
  out.upsertMultipart = err(r.error);
  r = await a.upload(`${bob.id}/intrude.txt`, Buffer.from("nope"), { contentType: "text/plain" });
  out.rlsDenied = err(r.error);
  r = await a.upload(`${alice.id}/big.txt`, Buffer.alloc(2048, 97), { contentType: "text/plain" });
  out.tooBig = err(r.error);
  r = await a.upload(`${alice.id}/doc.pdf`, Buffer.from("%PDF"), { contentType: "application/pdf" });
  out.badType = err(r.error);

  r = await a.download(mine);
  out.download = err(r.error) || await text(r.data);
  r = await b.download(mine);
  out.bobDownload = err(r.error);
  r = await client(cfg.anon).storage.from("docs").download(mine);
  out.anonDownload = err(r.error);

  r = await a.upload(`${alice.id}/sub/deep.txt`, Buffer.from("deep"), { contentType: "text/plain" });
  r = await a.list(alice.id);
  out.list = err(r.error) || r.data.map((x) => [x.name, x.id === null ? "folder" : x.metadata.size]);
  r = await b.list(alice.id);
  out.bobList = err(r.error) || r.data.length;
  r = await a.exists(mine);
  out.exists = r.data;

  r = await a.createSignedUrl(mine, 60);
  out.signError = err(r.error);
  const signed = r.data.signedUrl;
  let res = await fetch(signed);
  out.signedGet = { status: res.status, body: await res.text() };
  res = await fetch(signed.replace(/token=[^&]+/, (t) => t.slice(0, -3) + "abc"));
  out.tampered = res.status;
  r = await b.createSignedUrl(mine, 60);
  out.bobSign = err(r.error);
  r = await a.createSignedUrls([mine, `${alice.id}/nothing.txt`], 60);
  out.batch = err(r.error) || r.data.map((x) => [x.path, x.error === null, !!x.signedUrl]);

  r = await a.move(mine, `${alice.id}/moved.txt`);
  out.move = err(r.error);
  r = await a.copy(`${alice.id}/moved.txt`, `${alice.id}/copied.txt`);
  out.copy = err(r.error);
  r = await a.download(`${alice.id}/copied.txt`);
  out.copiedBody = await text(r.data);
  r = await b.move(`${alice.id}/moved.txt`, `${bob.id}/stolen.txt`);
  out.bobMove = err(r.error);

  r = await a.createSignedUploadUrl(`${alice.id}/via-signed.txt`);
  out.signUpload = err(r.error);
  r = await client(cfg.anon).storage.from("docs").uploadToSignedUrl(`${alice.id}/via-signed.txt`, r.data.token,
    Buffer.from("signed upload"), { contentType: "text/plain" });
  out.signedUpload = err(r.error);
  r = await a.download(`${alice.id}/via-signed.txt`);
  out.signedUploadBody = await text(r.data);
  r = await b.createSignedUploadUrl(`${alice.id}/bob-signed.txt`);
  out.bobSignUpload = err(r.error);

  // Public bucket: a public URL answers without any key.
  r = await service.from("pics").upload("logo.png", Buffer.from([137, 80, 78, 71]), { contentType: "image/png" });
  out.picUpload = err(r.error);
  const pub = service.from("pics").getPublicUrl("logo.png").data.publicUrl;
  res = await fetch(pub);
  out.publicGet = { status: res.status, type: res.headers.get("content-type"), size: (await res.arrayBuffer()).byteLength };
  res = await fetch(pub.replace("/pics/", "/docs/").replace("logo.png", `${alice.id}/copied.txt`));
  out.privateViaPublic = res.status;

  r = await a.remove([`${alice.id}/moved.txt`, `${alice.id}/copied.txt`]);
  out.remove = err(r.error) || r.data.length;
  r = await b.remove([`${alice.id}/via-signed.txt`]);
  out.bobRemove = err(r.error) || r.data.length;

  r = await service.createBucket("scratch");
  await service.from("scratch").upload("a.txt", Buffer.from("a"));
  r = await service.deleteBucket("scratch");
  out.deleteNonEmpty = err(r.error);
  r = await service.emptyBucket("scratch");
  out.empty = err(r.error);
  r = await service.deleteBucket("scratch");
  out.deleteBucket = err(r.error);
  return out;
}

async function after() {
  const out = {};
  const alice = await signIn(cfg.alice);
  const r = await alice.sb.storage.from("docs").download(`${alice.id}/via-signed.txt`);
  out.download = err(r.error) || await text(r.data);
  return out;
}

const scenarios = { flow, after };
console.log(JSON.stringify(await scenarios[scenario]()));
