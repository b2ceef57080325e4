"""A private RabbitMQ node for tests that stop and start the broker.

Stopping the machine's RabbitMQ would break every other test run on it (and every other
checkout's platform), so a test that needs a broker outage starts its own node: its own node
name, AMQP and distribution ports (free ones, loopback only), data and log directories, Erlang
cookie (HOME is the node's own directory), config file and an empty plugin list (no
management API). The user and vhost the test logs in with are the node's defaults, created at
its first boot. Only that node is ever stopped; `stop()` always halts it (SIGKILL as a last
resort) and removes its data.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import amqp

from tests.conftest import free_port
from tests.support import wait_for


def _scripts_dir() -> Path | None:
    """Where RabbitMQ's own scripts live. Debian's /usr/sbin wrappers `su` to the rabbitmq
    user, which would swap our HOME (and so our cookie) for the system node's."""
    debian = Path("/usr/lib/rabbitmq/bin")
    if (debian / "rabbitmq-server").exists():
        return debian
    found = shutil.which("rabbitmq-server")
    return Path(found).resolve().parent if found else None


SCRIPTS = _scripts_dir()


class BrokerNode:
    """One RabbitMQ node of our own; `start()`, then `ctl("stop_app")` / `ctl("start_app")`."""

    def __init__(self, log_dir: Path, vhost: str = "/", *, management: bool = False):
        assert SCRIPTS is not None, "RabbitMQ's server scripts are not installed here"
        self.base = Path(tempfile.mkdtemp(prefix="sp-rmq-"))
        self.log_dir = log_dir
        self.name = f"sp-test-{os.getpid()}-{secrets.token_hex(3)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.user = "sp_test"
        self.password = secrets.token_urlsafe(18)
        self.vhost = vhost
        # The management plugin, on a free loopback port: for a whole platform (platform-run
        # waits for RPC consumers through it, platformctl status reads queues through it).
        self.management_port = free_port() if management else None
        self.proc: subprocess.Popen[bytes] | None = None

    # -- environment -----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        b = self.base
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(b),  # the Erlang cookie is $HOME/.erlang.cookie, for the node and the CLI
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(b / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.log_dir),
            RABBITMQ_PID_FILE=str(b / "node.pid"),
            RABBITMQ_CONFIG_FILE=str(b / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(b / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(b / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(b / "rabbitmq-env.conf"),  # not the machine's
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _write_files(self) -> None:
        b = self.base
        cookie = b / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        (b / "enabled_plugins").write_text("[rabbitmq_management].\n" if self.management_port else "[].\n")
        (b / "rabbitmq-env.conf").write_text("")
        conf = b / "rabbitmq.conf"
        conf.touch(mode=0o600)
        conf.write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            f"default_vhost = {self.vhost}\n"
            "default_user_tags.administrator = true\n"
            "default_permissions.configure = .*\n"
            "default_permissions.read = .*\n"
            "default_permissions.write = .*\n"
            + (f"management.tcp.port = {self.management_port}\nmanagement.tcp.ip = 127.0.0.1\n"
               if self.management_port else "")
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def settings_overrides(self) -> dict[str, Any]:
        """What a Settings needs to use this node. Without the management plugin its URL points
        at a closed port, so anything that tried it would fail loudly, not reach the system's."""
        return dict(amqp_host="127.0.0.1", amqp_port=self.port, amqp_user=self.user,
                    amqp_password=self.password, amqp_vhost=self.vhost,
                    rabbitmq_admin_user=self.user, rabbitmq_admin_password=self.password,
                    rabbitmq_management_url=f"http://127.0.0.1:{self.management_port or free_port()}")

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> None:
        self._write_files()
        with open(self.log_dir / "node.stdout.log", "ab") as out:
            self.proc = subprocess.Popen([str(SCRIPTS / "rabbitmq-server")], cwd=self.base, env=self.env(),
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        # The node registers with epmd a moment after boot begins; until then the CLI says
        # "not running". await_startup then waits for the boot itself.
        def booted() -> bool:
            try:
                return self.ctl("await_startup", "--timeout", "30", check=False, timeout=45).returncode == 0
            except Exception as e:  # noqa: BLE001 -- TimeoutExpired (eventlet's or the stdlib's): ask again
                if "TimeoutExpired" not in type(e).__name__:
                    raise
                return False

        wait_for(f"RabbitMQ node {self.name} to boot",
                 lambda: booted() or self.proc is None or self.proc.poll() is not None,
                 timeout=timeout, interval=0.5)
        assert self.proc.poll() is None, f"RabbitMQ node {self.name} exited:\n{self.log_tail()}"

    def ctl(self, *args: str, check: bool = True, timeout: float = 90.0) -> subprocess.CompletedProcess[bytes]:
        """rabbitmqctl against this node only (never the machine's)."""
        r = subprocess.run([str(SCRIPTS / "rabbitmqctl"), "-n", self.name, *args], env=self.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        if check:
            assert r.returncode == 0, f"rabbitmqctl {' '.join(args)} failed: {r.stdout.decode(errors='replace')}"
        return r

    def ctl_background(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(SCRIPTS / "rabbitmqctl"), "-n", self.name, *args], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def answers(self) -> bool:
        """The AMQP port takes a login to our vhost."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            conn = amqp.Connection(host=f"127.0.0.1:{self.port}", userid=self.user, password=self.password,
                                   virtual_host=self.vhost, connect_timeout=2)
            try:
                conn.connect()
            finally:
                conn.close()
            return True
        except (OSError, amqp.exceptions.AMQPError):
            return False

    def stop(self) -> None:
        """Halt the node whatever state it is in, and remove its data."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.ctl("stop", check=False, timeout=60)
                except subprocess.TimeoutExpired:
                    pass
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
                if self.proc.poll() is None:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
            if self.proc is not None:
                # Its own session: nothing of the node outlives it (epmd is the machine's).
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, n: int = 3000) -> str:
        parts = []
        for p in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}")
        return "\n".join(parts)
