#!/usr/bin/env bash
# Make sure the local PostgreSQL and RabbitMQ (with its management plugin) run.
# Installed but stopped: start them. Missing: install them with apt-get, else say what to install.
# With --stress (make test-stress): also stress-ng, the load generator of the stress run.
set -euo pipefail

WITH_STRESS=0
for arg in "$@"; do
  case "$arg" in
    --stress) WITH_STRESS=1 ;;
    *) echo "usage: $0 [--stress]" >&2; exit 2 ;;
  esac
done

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
AMQP_HOST=${AMQP_HOST:-127.0.0.1}
AMQP_PORT=${AMQP_PORT:-5672}
MGMT_PORT=${RABBITMQ_MANAGEMENT_PORT:-15672}

say() { echo "[infra] $*"; }
port_open() { timeout 1 bash -c "</dev/tcp/$1/$2" 2>/dev/null; }
wait_port() { # host port seconds
  for _ in $(seq 1 $(( $3 * 4 ))); do port_open "$1" "$2" && return 0; sleep 0.25; done
  return 1
}
apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    say "installing $* with apt-get"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
  else
    echo "[infra] ERROR: please install: $* (no apt-get on this machine)" >&2
    exit 1
  fi
}

# --- PostgreSQL -------------------------------------------------------------
if ! port_open "$PGHOST" "$PGPORT"; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql
    FRESH_PG=1
  fi
  VER=$(ls /etc/postgresql | sort -V | tail -1)
  if [ "${FRESH_PG:-0}" = 1 ]; then
    # A fresh install authenticates by password over TCP; the platform's local
    # default is trust on loopback, as documented in docs/deployment.md.
    HBA=/etc/postgresql/$VER/main/pg_hba.conf
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$HBA"
    sed -i -E 's/^(local\s+all\s+postgres\s+)\S+/\1trust/' "$HBA"
  fi
  say "starting PostgreSQL $VER"
  pg_ctlcluster --skip-systemctl-redirect "$VER" main start || true
  wait_port "$PGHOST" "$PGPORT" 30 || { echo "[infra] ERROR: PostgreSQL did not start on $PGHOST:$PGPORT" >&2; exit 1; }
fi
say "PostgreSQL up on $PGHOST:$PGPORT"

# --- tenant logins: SCRAM, and their own database only ----------------------
# The provisioner's local driver makes every tenant login a member of the role
# supaplatform_tenants and of a group named like the tenant's database. These rules,
# first in pg_hba.conf (first match wins), make such logins prove their password with
# scram-sha-256 even though the platform's own user stays on trust, and admit them only
# to that database (`samerole`); everything else they try is rejected. Idempotent.
HBA_MARK="# supaplatform: tenant logins (scripts/ensure_infra.sh)"
HBA_FILE=$(psql -U postgres -h "$PGHOST" -p "$PGPORT" -Atc 'show hba_file' 2>/dev/null || true)
if [ -z "$HBA_FILE" ]; then
  say "WARNING: could not ask PostgreSQL for its pg_hba.conf; tenant passwords are not enforced"
elif ! grep -qF "$HBA_MARK" "$HBA_FILE" 2>/dev/null; then
  if [ "$(id -u)" = 0 ] || [ -w "$HBA_FILE" ]; then SUDO=""; else SUDO="sudo"; fi
  HBA_NEW=$(mktemp)
  {
    echo "$HBA_MARK"
    echo "local   samerole  +supaplatform_tenants                 scram-sha-256"
    echo "host    samerole  +supaplatform_tenants  127.0.0.1/32   scram-sha-256"
    echo "host    samerole  +supaplatform_tenants  ::1/128        scram-sha-256"
    echo "local   all       +supaplatform_tenants                 reject"
    echo "host    all       +supaplatform_tenants  127.0.0.1/32   reject"
    echo "host    all       +supaplatform_tenants  ::1/128        reject"
    echo "# supaplatform: end of tenant logins"
    $SUDO cat "$HBA_FILE"
  } > "$HBA_NEW"
  # cat into the file (not mv) keeps its owner and mode.
  $SUDO sh -c "cat '$HBA_NEW' > '$HBA_FILE'"
  rm -f "$HBA_NEW"
  psql -U postgres -h "$PGHOST" -p "$PGPORT" -Atqc 'select pg_reload_conf()' >/dev/null
  say "pg_hba.conf: tenant logins use scram-sha-256 on their own database only ($HBA_FILE)"
fi

# --- the platform's own role: SCRAM, whatever the machine's loopback default is ---
# The platform's processes log in as a dedicated role (PLATFORM_DB_USER, default
# supaplatform) with a generated password (services/shared/credentials.py, run below). This
# rule, first in pg_hba.conf, makes that role prove its password even though this machine's
# loopback default for everyone else stays trust (other checkouts and tools rely on it; an
# operator removes it on a production machine, docs/deployment.md). Idempotent.
PLATFORM_ROLE=${PLATFORM_DB_USER:-supaplatform}
ROLE_MARK="# supaplatform: platform role $PLATFORM_ROLE (scripts/ensure_infra.sh)"
if [ -n "$HBA_FILE" ] && ! grep -qF "$ROLE_MARK" "$HBA_FILE" 2>/dev/null; then
  if [ "$(id -u)" = 0 ] || [ -w "$HBA_FILE" ]; then SUDO=""; else SUDO="sudo"; fi
  HBA_NEW=$(mktemp)
  {
    echo "$ROLE_MARK"
    echo "local   all  $PLATFORM_ROLE                 scram-sha-256"
    echo "host    all  $PLATFORM_ROLE  127.0.0.1/32   scram-sha-256"
    echo "host    all  $PLATFORM_ROLE  ::1/128        scram-sha-256"
    echo "# supaplatform: end of platform role $PLATFORM_ROLE"
    $SUDO cat "$HBA_FILE"
  } > "$HBA_NEW"
  $SUDO sh -c "cat '$HBA_NEW' > '$HBA_FILE'"
  rm -f "$HBA_NEW"
  psql -U postgres -h "$PGHOST" -p "$PGPORT" -Atqc 'select pg_reload_conf()' >/dev/null
  say "pg_hba.conf: role $PLATFORM_ROLE uses scram-sha-256 ($HBA_FILE)"
fi

# Settings that need a restart, applied together so a fresh machine restarts PostgreSQL once:
# - max_connections: every platform process keeps a few connections, and each tenant is a
#   database with its own logins; the stock limit of 100 is too small.
# - wal_level=logical (+ slots and senders): realtime's Postgres changes decode each tenant's
#   WAL with the wal2json output plugin (services/realtime/server, docs/realtime.md).
PGVER=$(psql -U postgres -h "$PGHOST" -p "$PGPORT" -Atqc "select current_setting('server_version_num')::int / 10000")
if [ ! -e "/usr/lib/postgresql/$PGVER/lib/wal2json.so" ]; then
  apt_install "postgresql-$PGVER-wal2json"
fi
MAXCONN_WANTED=${PLATFORM_PG_MAX_CONNECTIONS:-500}
SLOTS_WANTED=${PLATFORM_PG_REPLICATION_SLOTS:-200}
pg_setting() { psql -U postgres -h "$PGHOST" -p "$PGPORT" -Atqc "show $1"; }
RESTART=""
if [ "$(pg_setting max_connections)" -lt "$MAXCONN_WANTED" ]; then
  psql -U postgres -h "$PGHOST" -p "$PGPORT" -Atqc "alter system set max_connections = $MAXCONN_WANTED" >/dev/null
  RESTART="$RESTART max_connections=$MAXCONN_WANTED"
fi
if [ "$(pg_setting wal_level)" != logical ]; then
  psql -U postgres -h "$PGHOST" -p "$PGPORT" -Atqc "alter system set wal_level = logical" >/dev/null
  RESTART="$RESTART wal_level=logical"
fi
if [ "$(pg_setting max_replication_slots)" -lt "$SLOTS_WANTED" ]; then
  psql -U postgres -h "$PGHOST" -p "$PGPORT" -Atqc "alter system set max_replication_slots = $SLOTS_WANTED" >/dev/null
  psql -U postgres -h "$PGHOST" -p "$PGPORT" -Atqc "alter system set max_wal_senders = $SLOTS_WANTED" >/dev/null
  RESTART="$RESTART max_replication_slots=$SLOTS_WANTED"
fi
if [ -n "$RESTART" ]; then
  say "PostgreSQL settings:$RESTART (one restart)"
  VER=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$VER" main restart
  wait_port "$PGHOST" "$PGPORT" 30 || { echo "[infra] ERROR: PostgreSQL did not come back after restart" >&2; exit 1; }
fi

# --- RabbitMQ ---------------------------------------------------------------
if ! port_open "$AMQP_HOST" "$AMQP_PORT"; then
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    apt_install rabbitmq-server
  fi
  say "starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port "$AMQP_HOST" "$AMQP_PORT" 60 || { echo "[infra] ERROR: RabbitMQ did not start on $AMQP_HOST:$AMQP_PORT" >&2; exit 1; }
fi
if ! port_open "$AMQP_HOST" "$MGMT_PORT"; then
  say "enabling rabbitmq_management"
  rabbitmq-plugins enable rabbitmq_management >/dev/null
  wait_port "$AMQP_HOST" "$MGMT_PORT" 60 || { echo "[infra] ERROR: RabbitMQ management API did not come up on $MGMT_PORT" >&2; exit 1; }
fi
say "RabbitMQ up on $AMQP_HOST:$AMQP_PORT (management on $MGMT_PORT)"

# --- Chromium (the dashboard's browser tests) -------------------------------
# Playwright drives Debian's chromium through its executable path: browser downloads are
# not possible here, so the package is the browser. Installed once; quiet when present.
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
  say "chromium installed for the browser tests"
fi

# --- edge function sandbox: bubblewrap ----------------------------------------
# Every Deno worker runs in its own user, pid, ipc, uts, network and mount namespaces
# (services/functions/runtime/sandbox.py). bubblewrap builds them, unprivileged.
if ! command -v bwrap >/dev/null 2>&1; then
  apt_install bubblewrap
  say "bubblewrap installed for the edge function sandbox"
fi
# iproute2: the sandbox tests build a public-style network (a veth pair) to fetch from.
if ! command -v ip >/dev/null 2>&1; then
  apt_install iproute2
fi
# A runtime started as root drops its workers to this dedicated unprivileged user.
SANDBOX_USER=${PLATFORM_FUNCTIONS_SANDBOX_USER:-sp-functions}
if [ "$(id -u)" = 0 ] && ! id -u "$SANDBOX_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SANDBOX_USER"
  say "created system user $SANDBOX_USER (edge function workers)"
fi
if ! bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
     --symlink usr/bin /bin /bin/true 2>/dev/null; then
  say "WARNING: this kernel refuses the namespaces bubblewrap needs; the functions runtime will refuse to start"
  say "         (see docs/functions.md: user namespaces must be allowed, or set PLATFORM_FUNCTIONS_INSECURE_NO_SANDBOX)"
fi

# --- stress-ng (make test-stress only) -----------------------------------------
# Keeps a core busy while the suite runs, to shake out timing races (docs/testing.md).
if [ "$WITH_STRESS" = 1 ] && ! command -v stress-ng >/dev/null 2>&1; then
  apt_install stress-ng
  say "stress-ng installed for make test-stress"
fi

# --- the platform's credentials -----------------------------------------------
# A dedicated PostgreSQL role and RabbitMQ user with generated passwords, created once with
# the machine's admin access and kept in one 0600 file per OS user (docs/deployment.md).
if [ -x .venv/bin/python ]; then
  .venv/bin/python -m services.shared.credentials
fi
