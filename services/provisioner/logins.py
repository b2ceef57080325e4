"""The passwords of a tenant's service logins (`supabase_auth_admin.<ref>`,
`supabase_storage_admin.<ref>`), kept encrypted (SecretBox, context `<ref>:<role>`) in the
provisioner's table `tenant_logins`. The database keeps only their SCRAM verifiers; the
project's API runtimes fetch a password over RPC (`provisioner.get_tenant_login`).

Imports psycopg, the standard library and shared crypto.
"""

from __future__ import annotations

import secrets

import psycopg

from services.shared.crypto import SecretBox

SERVICES = {"auth": "supabase_auth_admin", "storage": "supabase_storage_admin"}

DDL = """
CREATE SCHEMA IF NOT EXISTS provisioner;
CREATE TABLE IF NOT EXISTS provisioner.tenant_logins (
  ref text NOT NULL,
  role text NOT NULL,
  password_enc text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (ref, role)
);
"""


def login_role(service: str, ref: str) -> str:
    return f"{SERVICES[service]}.{ref}"


def ensure_password(conn: psycopg.Connection, box: SecretBox, ref: str, role: str) -> str:
    """The login's password: the stored one, or a new one stored now (first writer wins)."""
    conn.execute(DDL)
    candidate = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO provisioner.tenant_logins (ref, role, password_enc) VALUES (%s, %s, %s) "
                 "ON CONFLICT (ref, role) DO NOTHING", (ref, role, box.encrypt(candidate, f"{ref}:{role}")))
    found = read_password(conn, box, ref, role)
    assert found is not None
    return found


def read_password(conn: psycopg.Connection, box: SecretBox, ref: str, role: str) -> str | None:
    row = conn.execute("SELECT password_enc FROM provisioner.tenant_logins WHERE ref = %s AND role = %s",
                       (ref, role)).fetchone()
    return box.decrypt(row[0], f"{ref}:{role}") if row else None


def forget(conn: psycopg.Connection, ref: str) -> None:
    conn.execute(DDL)
    conn.execute("DELETE FROM provisioner.tenant_logins WHERE ref = %s", (ref,))
