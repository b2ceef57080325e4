"""The passwords of a tenant's service logins (`supabase_auth_admin.<ref>`,
`supabase_storage_admin.<ref>`, `supabase_realtime_admin.<ref>`), kept encrypted (SecretBox, AES-GCM with the platform's master
key, context `<ref>:<role>`) as the role's own comment on the cluster: created and dropped with
the role in the same transaction, needing no other store. PostgreSQL keeps the SCRAM verifier;
only holders of the master key can read the comment's ciphertext. The project's API runtimes
fetch a password over RPC (`provisioner.get_tenant_login`).

Imports psycopg, the standard library and shared crypto.
"""

from __future__ import annotations

import secrets

import psycopg
from psycopg import sql

from services.shared.crypto import SecretBox

# realtime: the realtime server's Postgres changes (a logical replication slot in the
# tenant's database, and the RLS checks as the subscriber's role), see docs/realtime-changes.md.
SERVICES = {"auth": "supabase_auth_admin", "storage": "supabase_storage_admin", "realtime": "supabase_realtime_admin"}
MARK = "supaplatform-login "


def login_role(service: str, ref: str) -> str:
    return f"{SERVICES[service]}.{ref}"


def ensure_password(conn: psycopg.Connection, box: SecretBox, ref: str, role: str) -> str:
    """The login's password: the stored one, or a new one stored now. The role must exist;
    run inside the transaction that created it (a per-tenant advisory lock serialises)."""
    found = read_password(conn, box, ref, role)
    if found is not None:
        return found
    password = secrets.token_urlsafe(32)
    conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(
        sql.Identifier(role), sql.Literal(MARK + box.encrypt(password, f"{ref}:{role}"))))
    return password


def read_password(conn: psycopg.Connection, box: SecretBox, ref: str, role: str) -> str | None:
    row = conn.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
                       (role,)).fetchone()
    text = row[0] if row else None
    if not isinstance(text, str) or not text.startswith(MARK):
        return None
    return box.decrypt(text[len(MARK):], f"{ref}:{role}")
