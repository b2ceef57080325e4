"""A private PostgreSQL cluster for tests that restart the database.

Restarting the machine's PostgreSQL would break every other test run and checkout on it, so
a test that needs a database outage starts its own cluster with the machine's PostgreSQL
binaries: `initdb` into a temporary directory, its own port on loopback, its own socket
directory, its superuser (named as the platform's role, with a generated password, SCRAM
over TCP). initdb and the server refuse to run as root, so as root they run as the system
user `postgres`. Only this cluster is ever restarted; `stop()` always halts it (immediate
shutdown) and removes its data.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import free_port


def _bin_dir() -> Path | None:
    for version in ("17", "16", "15", "14"):
        d = Path(f"/usr/lib/postgresql/{version}/bin")
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    return None


BIN = _bin_dir()


class PgCluster:
    def __init__(self, log_dir: Path, user: str = "supaplatform"):
        assert BIN is not None, "PostgreSQL's server binaries (initdb, pg_ctl) are not installed here"
        self.base = Path(tempfile.mkdtemp(prefix="sp-pg-"))
        self.data = self.base / "data"
        self.log_dir = log_dir
        self.log_file = log_dir / "postgresql.log"
        self.port = free_port()
        self.user = user
        self.password = secrets.token_urlsafe(18)
        self.as_user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        cmd = [*(["runuser", "-u", self.as_user, "--"] if self.as_user else []), *argv]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False,
                           cwd=self.base, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"})
        assert r.returncode == 0, f"{' '.join(argv)} failed: {r.stdout.decode(errors='replace')}"
        return r

    def _chown(self, path: Path) -> None:
        if self.as_user:
            pw = pwd.getpwnam(self.as_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.base)
        self.base.chmod(0o700)
        if not self.log_file.exists():
            self.log_file.touch()
        self._chown(self.log_file)
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.base}'\n"
                "max_connections = 400\nshared_buffers = 64MB\n"
                # A throwaway cluster: no crash safety needed (it is never killed, only restarted
                # with a fast shutdown, which writes everything out).
                "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                "wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\n")
        self._start()

    def _start(self) -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file), "-w", "-t", "60", "start")

    def restart(self) -> None:
        """A fast restart: every session is terminated, the server is away until it is back."""
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file), "-m", "fast", "-w",
                  "-t", "60", "restart")

    def answers(self) -> bool:
        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                 dbname="postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def settings_overrides(self) -> dict[str, Any]:
        """What a Settings needs to run the platform (and its tenants) on this cluster."""
        return dict(db_host="127.0.0.1", db_port=self.port, db_user=self.user, db_password=self.password,
                    db_admin_user=self.user, db_admin_password=self.password,
                    tenant_db_host="127.0.0.1", tenant_db_port=self.port)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                try:
                    self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
                except (AssertionError, subprocess.TimeoutExpired):
                    pid = int((self.data / "postmaster.pid").read_text().split()[0])
                    try:
                        os.killpg(os.getpgid(pid), 9)
                    except (ProcessLookupError, PermissionError):
                        pass
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
