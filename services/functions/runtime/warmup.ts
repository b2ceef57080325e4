// Started once when the runtime starts, so Deno's cache (DENO_DIR) already holds the compiled
// bootstrap before the first real function is invoked.
Deno.serve(() => new Response("warm"));
