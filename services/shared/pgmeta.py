"""postgres-meta (npm `@supabase/postgres-meta`, the real one) for the platform's database
tools: one shared instance on loopback, started on demand by whichever process uses it,
stopped after `pg_meta_idle_s` without a call, and reached per tenant with the connection
string encrypted in `x-connection-encrypted`, as Supabase's dashboard does.

    meta = PgMeta(settings)
    tables = meta.request(tenant_conninfo_url, "GET", "/tables", params={"included_schemas": "public"})
    meta.close()

- The encryption key (`CRYPTO_KEY`) is random per start and known only to this process and
  its postgres-meta: nobody else on the machine can make it connect anywhere.
- Its own default connection (`PG_META_DB_URL`) points at nothing: a request without the
  header cannot reach any database.
- Process group + PR_SET_PDEATHSIG (it dies with its parent), stopped on `close()` and on idle.

`encrypt_connection` is CryptoJS.AES.encrypt(text, passphrase) (OpenSSL's salted format,
EVP_BytesToKey with MD5, AES-256-CBC, PKCS#7), which postgres-meta decrypts.

Imports the standard library, cryptography and requests.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .settings import Settings

log = logging.getLogger("platform.pgmeta")

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "node_modules" / "@supabase" / "postgres-meta" / "dist" / "server" / "server.js"


class PgMetaError(RuntimeError):
    pass


class PgMetaAnswer(PgMetaError):
    """postgres-meta ran and answered with an error (its message is about the caller's database)."""


def _evp_bytes_to_key(passphrase: bytes, salt: bytes, size: int = 48) -> bytes:
    out, block = b"", b""
    while len(out) < size:
        block = hashlib.md5(block + passphrase + salt).digest()  # noqa: S324 -- the format's KDF
        out += block
    return out[:size]


def encrypt_connection(connection: str, passphrase: str) -> str:
    salt = os.urandom(8)
    material = _evp_bytes_to_key(passphrase.encode(), salt)
    padder = padding.PKCS7(128).padder()
    data = padder.update(connection.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(material[:32]), modes.CBC(material[32:])).encryptor()
    return base64.b64encode(b"Salted__" + salt + enc.update(data) + enc.finalize()).decode()


def decrypt_connection(token: str, passphrase: str) -> str:
    raw = base64.b64decode(token)
    if raw[:8] != b"Salted__":
        raise ValueError("not an OpenSSL salted ciphertext")
    material = _evp_bytes_to_key(passphrase.encode(), raw[8:16])
    dec = Cipher(algorithms.AES(material[:32]), modes.CBC(material[32:])).decryptor()
    data = dec.update(raw[16:]) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(data) + unpadder.finalize()).decode()


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


class PgMeta:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.port = settings.pg_meta_port
        self.base = f"http://127.0.0.1:{self.port}"
        self.idle_s = settings.pg_meta_idle_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._key = ""
        self._last_used = 0.0
        self._session = requests.Session()
        self._reaper: threading.Thread | None = None
        self._closed = threading.Event()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def ensure(self, timeout: float | None = None) -> None:
        """Start postgres-meta if it is not running, and wait until it answers."""
        timeout = self.settings.pg_meta_start_timeout_s if timeout is None else timeout
        with self._lock:
            if self._closed.is_set():
                raise PgMetaError("postgres-meta: closed")
            self._last_used = time.monotonic()
            if self.running:
                return
            if not SERVER.exists():
                raise PgMetaError(f"postgres-meta is not installed ({SERVER}); run `npm ci` (make does)")
            self._key = secrets.token_urlsafe(32)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
                   "PG_META_HOST": "127.0.0.1", "PG_META_PORT": str(self.port), "CRYPTO_KEY": self._key,
                   # No database of its own: without the header it reaches nothing.
                   "PG_META_DB_URL": "postgresql://nobody@127.0.0.1:1/nothing", "NODE_ENV": "production"}
            log_path = Path(self.settings.state_dir)
            if not log_path.is_absolute():
                log_path = ROOT / log_path
            log_path = log_path / "log" / "pg-meta.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_path = log_path
            with open(log_path, "ab") as out:
                self._proc = subprocess.Popen(["node", str(SERVER)], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True, preexec_fn=_die_with_parent)
            deadline = time.monotonic() + timeout
            while True:
                if self._proc.poll() is not None:
                    tail = log_path.read_bytes()[-600:].decode(errors="replace").strip().splitlines()[-3:]
                    raise PgMetaError(f"postgres-meta exited at start ({self._proc.returncode}): {' | '.join(tail)}")
                try:
                    if self._session.get(self.base + "/health", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if self._closed.is_set():  # shutting down: never hold close() up
                    self._stop_locked()
                    raise PgMetaError("postgres-meta: closed while it was starting")
                if time.monotonic() > deadline:
                    self._stop_locked()
                    raise PgMetaError(f"postgres-meta did not answer within {timeout:.0f} s")
                time.sleep(0.05)
            self._last_used = time.monotonic()  # idle from now, not from before its start
            log.info("postgres-meta started on %s (pid %s)", self.base, self._proc.pid)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="pgmeta-idle", daemon=True)
                self._reaper.start()

    def request(self, connection: str, method: str, path: str, *, text: bool = False, **kw: Any) -> Any:
        """One postgres-meta call against `connection` (a libpq URL of the tenant's database);
        the JSON answer (or the body as text, for the generators), or PgMetaError with
        postgres-meta's message."""
        self.ensure()
        headers = dict(kw.pop("headers", {}))
        headers["x-connection-encrypted"] = encrypt_connection(connection, self._key)
        kw.setdefault("timeout", 60)
        self._last_used = time.monotonic()
        r = self._session.request(method, self.base + path, headers=headers, **kw)
        self._last_used = time.monotonic()
        if r.status_code >= 400:
            try:
                message = r.json().get("error") or r.json().get("message") or r.text
            except ValueError:
                message = r.text
            raise PgMetaAnswer(f"postgres-meta {r.status_code}: {message}")
        if text:
            return r.text
        return r.json() if r.content else None

    def typescript(self, connection: str, schemas: list[str]) -> str:
        """supabase-js types of these schemas, from postgres-meta's own generator (what
        `supabase gen types typescript` prints)."""
        return str(self.request(connection, "GET", "/generators/typescript", text=True,
                                params={"included_schemas": ",".join(schemas),
                                        "detect_one_to_one_relationships": "true"}))

    def _reap(self) -> None:
        while not self._closed.wait(1.0):
            with self._lock:
                if self.running and time.monotonic() - self._last_used > self.idle_s:
                    log.info("postgres-meta idle for %.0f s: stopping", time.monotonic() - self._last_used)
                    self._stop_locked()

    def _stop_locked(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._stop_locked()
        self._session.close()
