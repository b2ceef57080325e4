"""The operating-system sandbox of an edge function worker (bubblewrap).

Each Deno worker runs in new user, pid, ipc, uts, cgroup, network and mount namespaces, as an
unprivileged uid inside and outside (a runtime started as root first drops to
`functions_sandbox_user`; a runtime started as an ordinary user runs its workers as itself,
in a user namespace where that uid has no capability over anything on the host), with no
capabilities, no further user namespaces (`--disable-userns`), its own session, and
`--die-with-parent`. Its filesystem is built from read-only binds of exactly what it needs:

    /sandbox/deno         the Deno binary          (and the shared libraries it links, at their paths)
    /sandbox/bootstrap.ts the worker's bootstrap
    /sandbox/code         this function version's unpacked bundle
    /sandbox/run          this worker's folder (rw): its request socket, egress and database sockets
    /sandbox/deno-dir     this project's own Deno cache (rw): npm/remote modules, compiled code
    /sandbox/ca-certificates.pem  the machine's CA bundle (SSL_CERT_FILE or Debian's), as DENO_CERT
    /proc                 a fresh procfs of its pid namespace (Deno is pid 1: no other process)
    /dev                  a minimal /dev (null, zero, random, urandom, tty)

Nothing else exists there: not the repository, the state folder, the master key, the
credentials file, other tenants' code or caches, nor the platform's sockets. The network
namespace has only its own loopback; egress.py says how traffic leaves.

bwrap runs as the unprivileged user and resolves the bound paths as that user: every folder
above them needs search (x) permission for it (the runtime makes its own folders 0711; a
state folder under a 0700 home does not work, and the start-up check says so). bwrap's
options go through a pipe (`--args`): `ps` shows no paths or names.

Where bubblewrap is missing or the kernel refuses the namespaces, `Sandbox.create` raises
SandboxUnavailable and the runtime refuses to start, unless the operator sets
`functions_insecure_no_sandbox` (then `create` returns None and logs a warning).

Imports the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from services.shared import procs

log = logging.getLogger("functions.sandbox")

INSIDE = Path("/sandbox")
DENO = INSIDE / "deno"
BOOTSTRAP = INSIDE / "bootstrap.ts"
CODE = INSIDE / "code"
RUN = INSIDE / "run"
DENO_DIR = INSIDE / "deno-dir"
CA_FILE = INSIDE / "ca-certificates.pem"
EGRESS_PORT = 3128
DB_PORT = 5432


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be built here; the message says why and what to do."""


def needed_libraries(binary: str) -> list[str]:
    """The shared libraries (and loader) `binary` links, as real paths, from ldd."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"cannot list the libraries of {binary} (ldd: {exc})") from None
    libs: list[str] = []
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m and m.group(1) not in libs:
            libs.append(m.group(1))
    return libs


@dataclass
class Launch:
    """How to start one sandboxed worker: argv, the fds to pass, what to run in the child."""

    argv: list[str]
    pass_fds: tuple[int, ...]
    preexec: Callable[[], None]
    info_fd: int | None = None  # read end: bwrap writes {"child-pid": …} there
    _close: list[int] = field(default_factory=list)

    def close_parent_fds(self) -> None:
        """After the child started: the parent's copies are not needed any more."""
        for fd in self._close:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._close.clear()


@dataclass
class Sandbox:
    bwrap: str
    deno: str
    bootstrap: Path
    libs: list[str]
    uid: int | None = None  # drop to this uid/gid first (the runtime runs as root)
    gid: int | None = None
    ca_file: str | None = None  # the certificate authorities this machine trusts (bound read-only)

    @classmethod
    def create(cls, *, deno: str, bootstrap: Path, user: str, insecure: bool,
               state: Path | None = None) -> "Sandbox | None":
        if insecure:
            log.warning("*** INSECURE: functions_insecure_no_sandbox is set: edge function workers run WITHOUT "
                        "the operating-system sandbox and can reach everything this runtime can (its database, "
                        "broker, keys, other tenants). Never on a machine with real tenants. ***")
            return None
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed; it isolates each edge function worker. Install it "
                "(`make infra` does: apt-get install bubblewrap), or, for development only, set "
                "PLATFORM_FUNCTIONS_INSECURE_NO_SANDBOX=true")
        uid = gid = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise SandboxUnavailable(
                    f"the runtime runs as root and drops its workers to the system user {user!r}, which does not "
                    f"exist (`make infra` creates it; or set PLATFORM_FUNCTIONS_SANDBOX_USER)") from None
            if entry.pw_uid == 0:
                raise SandboxUnavailable(f"functions_sandbox_user {user!r} is root: workers must never run as root")
            uid, gid = entry.pw_uid, entry.pw_gid
        sandbox = cls(bwrap=bwrap, deno=os.path.realpath(deno), bootstrap=bootstrap, libs=needed_libraries(deno),
                      uid=uid, gid=gid, ca_file=machine_ca_file())
        sandbox.check(state)
        return sandbox

    # -- building ------------------------------------------------------------------------------
    def _options(self, *, code_dir: Path, run_dir: Path, cache_dir: Path) -> tuple[list[str], list[int]]:
        opts = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                "--as-pid-1", "--cap-drop", "ALL", "--hostname", "edge-function", "--proc", "/proc",
                "--dev", "/dev"]
        fds: list[int] = []

        def bind(src: str | Path, dest: str | Path, *, rw: bool = False) -> None:
            opts.extend(["--bind" if rw else "--ro-bind", str(src), str(dest)])

        bind(self.deno, DENO)
        for lib in self.libs:
            bind(os.path.realpath(lib), lib)
        bind(self.bootstrap, BOOTSTRAP)
        if self.ca_file:
            bind(self.ca_file, CA_FILE)
        bind(code_dir, CODE)
        bind(run_dir, RUN, rw=True)
        bind(cache_dir, DENO_DIR, rw=True)
        opts.extend(["--chdir", str(CODE)])
        return opts, fds

    def prepare_dir(self, path: Path) -> None:
        """A folder the worker writes in (its run folder, its project's cache): owned by the
        worker's user, 0700."""
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.uid is not None:
            os.chown(path, self.uid, self.gid if self.gid is not None else -1)
        os.chmod(path, 0o700)

    def launch(self, deno_args: list[str], *, code_dir: Path, run_dir: Path, cache_dir: Path,
               limits: Callable[[], None]) -> Launch:
        opts, fds = self._options(code_dir=code_dir, run_dir=run_dir, cache_dir=cache_dir)
        args_r, args_w = os.pipe()
        info_r, info_w = os.pipe()
        try:
            payload = b"".join(a.encode() + b"\0" for a in opts)
            # The options fit a pipe's buffer many times over (a few hundred bytes).
            os.write(args_w, payload)
        finally:
            os.close(args_w)
        os.set_inheritable(info_r, False)
        uid, gid = self.uid, self.gid
        parent = procs.prepare()

        def preexec() -> None:  # in the child, before exec
            limits()
            if uid is not None:
                os.setgroups([])
                os.setgid(gid if gid is not None else uid)
                os.setuid(uid)
            procs.die_with_parent(parent)  # after setuid, which clears it

        argv = [self.bwrap, "--args", str(args_r), "--info-fd", str(info_w), "--", str(DENO), *deno_args]
        return Launch(argv=argv, pass_fds=(args_r, info_w, *fds), preexec=preexec, info_fd=info_r,
                      _close=[args_r, info_w, *fds])

    # -- checking ------------------------------------------------------------------------------
    def check(self, where: Path | None = None) -> None:
        """Start `deno --version` in the sandbox, once, with its folders under `where` (the
        runtime's state folder): the kernel must allow every namespace, and the worker's
        user must reach the folders."""
        import tempfile

        if where is not None:
            where.mkdir(parents=True, exist_ok=True, mode=0o711)
        with tempfile.TemporaryDirectory(prefix="sandbox-check-", dir=where) as tmp:
            base = Path(tmp)
            code, run, cache = base / "code", base / "run", base / "cache"
            code.mkdir()
            os.chmod(base, 0o711)
            self.prepare_dir(run)
            self.prepare_dir(cache)
            launch = self.launch(["--version"], code_dir=code, run_dir=run, cache_dir=cache, limits=lambda: None)
            try:
                done = subprocess.run(launch.argv, pass_fds=launch.pass_fds, preexec_fn=launch.preexec, cwd="/",
                                      capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
                                      check=False)
            except subprocess.TimeoutExpired:
                raise SandboxUnavailable("the sandbox check (deno --version under bwrap) did not finish in 30 s") from None
            finally:
                launch.close_parent_fds()
                if launch.info_fd is not None:
                    os.close(launch.info_fd)
            if done.returncode != 0 and "Can't find source path" in done.stderr:
                raise SandboxUnavailable(
                    f"the sandbox cannot bind its files: {done.stderr.strip()[:300]}. The user workers run as "
                    f"(uid {os.getuid() if self.uid is None else self.uid}) needs search (x) permission on every "
                    f"folder above {base} and above the Deno binary {self.deno}")
            if done.returncode != 0 or "deno" not in done.stdout:
                raise SandboxUnavailable(
                    "this kernel refuses the namespaces the edge function sandbox needs (bubblewrap said: "
                    f"{(done.stderr or done.stdout).strip()[:300] or done.returncode}). Allow unprivileged user "
                    "namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0; in a "
                    "container: a seccomp profile that permits them), or, for development only, set "
                    "PLATFORM_FUNCTIONS_INSECURE_NO_SANDBOX=true")


def machine_ca_file() -> str | None:
    """The CA bundle this machine's clients trust (a TLS-inspecting network adds its own
    there): workers trust the same, as any process of the platform does."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and os.path.isfile(candidate):
            return os.path.realpath(candidate)
    return None


async def read_child_pid(info_fd: int, timeout: float = 10.0) -> int | None:
    """The host pid of the sandboxed process (Deno), from bwrap's --info-fd."""
    loop = asyncio.get_running_loop()

    def read() -> bytes:
        chunks = []
        while True:
            data = os.read(info_fd, 4096)
            if not data:
                break
            chunks.append(data)
            with contextlib.suppress(ValueError):
                json.loads(b"".join(chunks))
                break
        return b"".join(chunks)

    try:
        raw = await asyncio.wait_for(loop.run_in_executor(None, read), timeout)
        info: dict[str, Any] = json.loads(raw or b"{}")
        pid = info.get("child-pid")
        return int(pid) if pid else None
    except (asyncio.TimeoutError, ValueError, OSError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(info_fd)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # Fields after the command name (which may contain spaces) start after the last ')'.
    rest = raw[raw.rfind(")") + 2:].split()
    try:
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError):
        return None
