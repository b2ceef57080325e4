"""Benchmark: edge functions through the project edge, on real processes and real Deno.

Starts the processes invocations need (orgs, projects, billing, functions, the functions
runtime, the gateway, the project edge, the relay) on a throwaway database and vhost, signs
a user up, creates a project, then measures:

- cold start: deploy (multipart, through the gateway) -> first 200 from the new function,
  for several fresh functions (each a new worker: sandbox, egress proxy, Deno);
- warm latency of a hello-world function, one request at a time, through the project edge
  (`<edge>/<ref>/functions/v1/hello` with the anon key: JWT check, recording, two proxy
  hops) and directly to the same Deno worker on its Unix socket, interleaved in the same
  run, so `added_p99_ms` is what the platform adds;
- warm throughput through the edge with several concurrent clients.

`--unsandboxed` runs the same with functions_insecure_no_sandbox (workers straight under
Deno's permissions, as before the sandbox): run both to see what the sandbox costs.

Run: .venv/bin/python bench/functions.py [--cold 5] [--requests 2000] [--concurrency 8] [--unsandboxed]
Last line: RESULT sandbox=... cold_start_ms_p50=... cold_start_ms_max=... warm_p50_ms=... warm_p99_ms=...
           runtime_p50_ms=... runtime_p99_ms=... direct_p50_ms=... direct_p99_ms=... added_p99_ms=... warm_rps=...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import requests  # noqa: E402

from bench.common import PlatformBench, UnixHTTP, pct, throwaway_settings  # noqa: E402

PROCESSES = ["orgs", "projects", "billing", "functions", "functions-runtime", "gateway", "edge", "relay"]
HELLO = "Deno.serve(() => new Response('Hello, world!'))"


class Bench(PlatformBench):
    processes = PROCESSES

    def setup_project(self) -> None:
        self.sign_up()
        self.ref = self.create_project()
        self.anon = self.api_keys(self.ref)["anon"]

    def deploy(self, slug: str, source: str) -> None:
        files = [("metadata", (None, json.dumps({"entrypoint_path": "index.ts", "name": slug}), "application/json")),
                 ("file", ("index.ts", source.encode(), "application/typescript"))]
        r = self.http.post(f"{self.base}/v1/projects/{self.ref}/functions/deploy?slug={slug}", headers=self.auth,
                           files=files)
        r.raise_for_status()

    def invoke_url(self, slug: str) -> str:
        return f"{self.s.project_api_url(self.ref)}/functions/v1/{slug}"

    # -- cold --------------------------------------------------------------------------------
    def cold_starts(self, n: int) -> list[float]:
        out = []
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.anon}"}
        for i in range(n):
            slug = f"cold{i}"
            t0 = time.perf_counter()
            self.deploy(slug, HELLO.replace("world", f"world {i}"))
            while True:
                r = session.post(self.invoke_url(slug), headers=headers, timeout=30)
                if r.status_code == 200:
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"{slug} never answered: {r.status_code} {r.text}")
            out.append((time.perf_counter() - t0) * 1000)
        return out

    # -- warm --------------------------------------------------------------------------------
    def worker_socket(self, slug: str) -> str:
        status = requests.get(f"http://{self.s.functions_runtime_host}:{self.s.functions_runtime_port}/status",
                              timeout=5).json()
        return next(w["socket"] for w in status["workers"] if w["slug"] == slug)

    def warm_latency(self, n: int) -> tuple[list[float], list[float], list[float]]:
        slug = "hello"
        self.deploy(slug, HELLO)
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.anon}"}
        for _ in range(50):  # warm up the worker, the connection pools and the caches
            session.post(self.invoke_url(slug), headers=headers, timeout=30).raise_for_status()
        direct = UnixHTTP(self.worker_socket(slug), "worker")
        # What the runtime sends the worker, so Deno does the same work on both paths.
        direct_headers = {"Authorization": f"Bearer {self.anon}", "X-Request-Id": "bench",
                          "X-Forwarded-Host": "127.0.0.1", "X-Forwarded-Proto": "http", "Content-Length": "0"}
        via, raw, runtime = [], [], []
        runtime_url = (f"http://{self.s.functions_runtime_host}:{self.s.functions_runtime_port}"
                       f"/invoke/{self.ref}/{slug}")
        for _ in range(n):
            t = time.perf_counter()
            r = session.post(self.invoke_url(slug), headers=headers, timeout=30)
            via.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            # The runtime alone (what the edge adds is the difference).
            t = time.perf_counter()
            r = session.post(runtime_url, headers=headers, timeout=30)
            runtime.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            t = time.perf_counter()
            direct.request("POST", f"/{slug}", headers=direct_headers)
            resp = direct.getresponse()
            resp.read()
            raw.append((time.perf_counter() - t) * 1000)
            assert resp.status == 200
        return via, raw, runtime

    def throughput(self, n: int, concurrency: int) -> float:
        headers = {"Authorization": f"Bearer {self.anon}"}
        per = max(n // concurrency, 1)
        errors: list[str] = []

        def client() -> None:
            s = requests.Session()
            for _ in range(per):
                r = s.post(self.invoke_url("hello"), headers=headers, timeout=30)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:100]}")

        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - t0
        if errors:
            raise RuntimeError(f"{len(errors)} failed invocations, e.g. {errors[0]}")
        return per * concurrency / took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--unsandboxed", action="store_true", help="workers without the OS sandbox (insecure baseline)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-functions-"))
    os.chmod(workdir, 0o711)  # the sandboxed workers' user must traverse to its folders
    settings = throwaway_settings("fnbench", workdir, edge=True, functions_insecure_no_sandbox=args.unsandboxed)
    bench = Bench(settings, workdir)
    try:
        bench.start()
        bench.setup_project()
        cold = bench.cold_starts(args.cold)
        print(f"cold start (deploy -> first 200), ms: {', '.join(f'{c:.0f}' for c in cold)}", flush=True)
        via, raw, runtime = bench.warm_latency(args.requests)
        print(f"sandbox: {'NONE (insecure baseline)' if args.unsandboxed else 'bwrap'}", flush=True)
        print(f"warm, one at a time, {len(via)} each: through the edge p50 {statistics.median(via):.2f} ms "
              f"p99 {pct(via, 99):.2f} ms; the runtime directly p50 {statistics.median(runtime):.2f} ms "
              f"p99 {pct(runtime, 99):.2f} ms; Deno directly p50 {statistics.median(raw):.2f} ms p99 {pct(raw, 99):.2f} ms",
              flush=True)
        rps = bench.throughput(args.requests, args.concurrency)
        print(f"warm throughput through the edge, {args.concurrency} clients: {rps:.0f} invocations/s", flush=True)
        print(f"RESULT sandbox={'none' if args.unsandboxed else 'bwrap'} cold_start_ms_p50={statistics.median(cold):.0f} cold_start_ms_max={max(cold):.0f} "
              f"warm_p50_ms={statistics.median(via):.2f} warm_p99_ms={pct(via, 99):.2f} "
              f"runtime_p50_ms={statistics.median(runtime):.2f} runtime_p99_ms={pct(runtime, 99):.2f} "
              f"direct_p50_ms={statistics.median(raw):.2f} direct_p99_ms={pct(raw, 99):.2f} "
              f"added_p99_ms={pct(via, 99) - pct(raw, 99):.2f} warm_rps={rps:.0f}")
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
