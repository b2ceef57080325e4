"""Benchmark: the provisioner's local driver on this machine's PostgreSQL, without the broker.

Times every operation's plan (create / pause / restore / delete) on empty tenants, with the
tenant database copied from template0 then built by DDL, or renamed from a ready spare
database (alternating, so both see the same machine load), then pause -> restore of a
tenant holding about `--mb` MB. Tenants get random refs and are deleted afterwards.

Run: .venv/bin/python bench/driver.py [--rounds 8] [--mb 100] [--storage local|s3]
Last lines: RESULT driver=template0|spare create_ms_p50=... pause_ms_p50=... restore_ms_p50=... delete_ms_p50=...
            RESULT restore_mb=... db_mb=... dump_mb=... pause_ms=... restore_ms=...
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import psycopg  # noqa: E402

from services.provisioner.drivers.base import StepContext  # noqa: E402
from services.provisioner.drivers.local import LocalDriver, owner_role  # noqa: E402
from services.provisioner.storage import LocalObjectStore, make_object_store  # noqa: E402
from services.shared.settings import Settings, load_settings  # noqa: E402

PASSWORD = "bench password 1"


def new_ref() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=20))


def run(driver: LocalDriver, operation: str, ref: str) -> float:
    ctx = StepContext(ref, f"{operation}-{time.time_ns()}", lambda: {"db_pass": PASSWORD, "jwt_secret": "-"})
    t0 = time.perf_counter()
    for step in driver.plan(operation):
        driver.run_step(operation, step, ctx)
    return (time.perf_counter() - t0) * 1000


def fill(s: Settings, ref: str, mb: int) -> float:
    """Write about `mb` MB of rows as the tenant; returns the database size in MB."""
    with psycopg.connect(host=s.tenant_db_host, port=s.tenant_db_port, dbname=ref, user=owner_role(ref),
                         password=PASSWORD, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "kind text NOT NULL, body text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
        rows = mb * 1024 * 1024 // 200  # ~200 bytes per row with its index entry
        conn.execute("INSERT INTO events (kind, body) SELECT 'kind-' || (g %% 17), "
                     "md5(g::text) || md5((g * 31)::text) || md5((g * 7)::text) "
                     "FROM generate_series(1, %s) g", (rows,))
        conn.execute("CREATE INDEX events_kind ON events (kind, at)")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return float(row[0] if row else 0) / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--storage", choices=["local", "s3"], default="local",
                        help="s3 uses the PLATFORM_S3_* settings")
    args = parser.parse_args()
    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="bench-driver-") as tmp:
        store = (LocalObjectStore(Path(tmp) / "storage") if args.storage == "local"
                 else make_object_store(settings.with_overrides(storage_backend="s3")))
        drivers = {name: LocalDriver(settings, store, spare_databases=2 if name == "spare" else 0,
                                     tmp_dir=Path(tmp) / "tmp")
                   for name in ("template0", "spare")}
        for d in drivers.values():  # warm: cluster roles, spares
            ref = new_ref()
            run(d, "create", ref)
            run(d, "delete", ref)
        times: dict[str, dict[str, list[float]]] = {n: {op: [] for op in ("create", "pause", "restore", "delete")}
                                                    for n in drivers}
        for _ in range(args.rounds):
            for name, d in drivers.items():
                d.maintain()  # spares: ready before the create, as the provisioner's timer keeps them
                ref = new_ref()
                try:
                    for op in ("create", "pause", "restore", "delete"):
                        times[name][op].append(run(d, op, ref))
                finally:
                    run(d, "delete", ref)
        for name, ops in times.items():
            print(f"{name:>8}: " + "  ".join(f"{op} p50={statistics.median(v):.0f} ms min={min(v):.0f} max={max(v):.0f}"
                                             for op, v in ops.items()), flush=True)

        d = drivers["spare"]
        ref = new_ref()
        try:
            run(d, "create", ref)
            db_mb = fill(settings, ref, args.mb)
            pause_ms = run(d, "pause", ref)
            latest = store.get_bytes(f"sp-{ref}", "_platform/backups/LATEST") or b""
            dump = store.size(f"sp-{ref}", latest.decode())
            restore_ms = run(d, "restore", ref)
        finally:
            run(d, "delete", ref)
    for name, ops in times.items():
        print(f"RESULT driver={name} " + " ".join(f"{op}_ms_p50={statistics.median(v):.0f}" for op, v in ops.items()))
    print(f"RESULT restore_mb={args.mb} db_mb={db_mb:.0f} dump_mb={(dump or 0) / 1024 / 1024:.0f} "
          f"pause_ms={pause_ms:.0f} restore_ms={restore_ms:.0f}")


if __name__ == "__main__":
    main()
