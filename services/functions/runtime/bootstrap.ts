// Bootstrap of one edge function worker (one Deno process per function version).
//
// Imports the function's entrypoint the way Supabase runs it: the code calls
// `Deno.serve(handler)` (or exports `default { fetch }`); we keep the handler instead of
// listening on a port, then serve it on this worker's Unix socket, where only the runtime
// connects. console output becomes structured lines (level, request id) on stdout.
//
// In the sandbox (sandbox.py) the worker's network namespace has only its own loopback; the
// bridges below, started before the function's code loads, make the runtime's egress proxy
// (HTTP_PROXY) and database forwarder (SUPABASE_DB_URL) reachable there as TCP ports,
// relaying each connection to the runtime's Unix socket for it. They give the function no
// reach of its own: every byte still passes the runtime's checks (egress.py).
//
// Args: <socket path> <entrypoint file URL> <comma-separated names of its env variables>
//       <bridges: JSON {"egress": [port, socket] | null, "db": [port, socket] | null}>

import { AsyncLocalStorage } from "node:async_hooks";

const [socketPath, entrypoint, envNames = "", bridgesJson = "{}"] = Deno.args;
const RS = "\x1e"; // marks a structured line; anything else on stdout/stderr is raw output
const encoder = new TextEncoder();
const requestId = new AsyncLocalStorage<string>();

function writeLine(text: string): void {
  const bytes = encoder.encode(text + "\n");
  let written = 0;
  while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
}

function emit(level: string, args: unknown[]): void {
  const message = args
    .map((a) => (typeof a === "string" ? a : Deno.inspect(a, { depth: 4, colors: false })))
    .join(" ");
  writeLine(RS + JSON.stringify({ l: level, r: requestId.getStore() ?? null, m: message.slice(0, 16384) }));
}

console.log = (...a: unknown[]) => emit("info", a);
console.info = (...a: unknown[]) => emit("info", a);
console.debug = (...a: unknown[]) => emit("debug", a);
console.warn = (...a: unknown[]) => emit("warn", a);
console.error = (...a: unknown[]) => emit("error", a);

// An error the function forgot to await must not take down its other requests.
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  emit("error", ["Unhandled promise rejection:", e.reason]);
});
globalThis.addEventListener("error", (e) => {
  e.preventDefault();
  emit("error", ["Uncaught error:", (e as ErrorEvent).error ?? (e as ErrorEvent).message]);
});

// Only the worker's own variables are readable (--allow-env=<them>). As on Supabase, reading
// any other variable gives undefined rather than a permission error.
const allowedEnv = new Set(envNames.split(",").filter(Boolean));
const realEnvGet = Deno.env.get.bind(Deno.env);
Deno.env.get = (key: string) => (allowedEnv.has(key) ? realEnvGet(key) : undefined);
Deno.env.has = (key: string) => allowedEnv.has(key) && realEnvGet(key) !== undefined;
Deno.env.toObject = () => {
  const out: Record<string, string> = {};
  for (const k of allowedEnv) {
    const v = realEnvGet(k);
    if (v !== undefined) out[k] = v;
  }
  return out;
};

function bridge(port: number, path: string): void {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        let upstream: Deno.UnixConn;
        try {
          upstream = await Deno.connect({ transport: "unix", path });
        } catch {
          try { conn.close(); } catch { /* already closed */ }
          return;
        }
        await Promise.allSettled([conn.readable.pipeTo(upstream.writable), upstream.readable.pipeTo(conn.writable)]);
        try { conn.close(); } catch { /* already closed */ }
        try { upstream.close(); } catch { /* already closed */ }
      })();
    }
  })();
}

const bridges = JSON.parse(bridgesJson) as Record<string, [number, string] | null>;
for (const spec of Object.values(bridges)) {
  if (spec) bridge(spec[0], spec[1]);
}

type Handler = (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>;
let handler: Handler | null = null;
const realServe = Deno.serve;

// deno-lint-ignore no-explicit-any
(Deno as any).serve = (a: any, b?: any) => {
  const h = typeof a === "function" ? a : typeof b === "function" ? b : a?.handler;
  if (typeof h === "function" && handler === null) handler = h;
  const addr = { transport: "tcp", hostname: "0.0.0.0", port: 8000 };
  // What Deno.serve returns, minus the listening: the function's code may await `finished`.
  return {
    finished: new Promise<void>(() => {}),
    addr,
    shutdown: () => Promise.resolve(),
    ref() {},
    unref() {},
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
};

try {
  const mod = await import(entrypoint);
  if (handler === null && mod?.default && typeof mod.default.fetch === "function") {
    handler = (req, info) => mod.default.fetch(req, info);
  }
} catch (e) {
  emit("error", ["Function failed to start:", e]);
  Deno.exit(70);
}
if (handler === null) {
  emit("error", ["Function failed to start: it never called Deno.serve(handler)"]);
  Deno.exit(71);
}
const serveHandler: Handler = handler;

realServe({
  path: socketPath,
  onListen() {
    writeLine(RS + JSON.stringify({ ready: true }));
  },
  onError(e: unknown) {
    emit("error", ["Uncaught error in the function:", e]);
    return errorResponse(500, "FUNCTION_ERROR", "The function threw an error; see its logs");
  },
}, (req: Request, info: Deno.ServeHandlerInfo) => {
  const u = new URL(req.url);
  if (u.pathname === "/__sb_ping") return new Response("pong");
  // The runtime sends /<slug>/<rest>; give the function the URL its caller used.
  const proto = req.headers.get("x-forwarded-proto") ?? "http";
  const host = req.headers.get("x-forwarded-host") ?? req.headers.get("host") ?? "localhost";
  const hasBody = req.method !== "GET" && req.method !== "HEAD" && req.body !== null;
  const request = new Request(`${proto}://${host}${u.pathname}${u.search}`, {
    method: req.method,
    headers: req.headers,
    body: hasBody ? req.body : undefined,
    redirect: req.redirect,
  });
  return requestId.run(req.headers.get("x-request-id") ?? "", async () => {
    try {
      return await serveHandler(request, info);
    } catch (e) {
      emit("error", ["Uncaught error in the function:", e]);
      return errorResponse(500, "FUNCTION_ERROR", "The function threw an error; see its logs");
    }
  });
});

function errorResponse(status: number, code: string, message: string): Response {
  return new Response(JSON.stringify({ code, message }), {
    status,
    headers: { "content-type": "application/json", "x-sb-runtime-error": code },
  });
}
