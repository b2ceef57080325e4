#!/usr/bin/env bash
# Make sure the local PostgreSQL and RabbitMQ (with its management plugin) run.
# Installed but stopped: start them. Missing: install them with apt-get, else say what to install.
set -euo pipefail

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
