"""A project's Auth and Storage APIs through its project URL only, driven by the real
`@supabase/supabase-js` on Node (tests/js/auth.mjs, tests/js/storage.mjs) against the real
platform: sign-up, sign-in, refresh-token rotation and reuse detection, sign-out, the admin
users API, the project's auth settings taking effect (confirmation mail with a working /verify
link, disable_signup), users reaching PostgREST with their access token under RLS; storage
buckets, uploads (raw and multipart), downloads, listing, signed URLs and signed uploads,
public URLs, limits and RLS denial; and pause/restore keeping users and objects."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests

from services.shared.mail import outbox_dir
from services.shared.settings import Settings
from tests.integration.test_project_lifecycle import wait_status
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
DB_PASS = "tenant-password-2"
PASSWORD = "a good long password"

SCHEMA = """
CREATE TABLE public.profiles (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner uuid NOT NULL DEFAULT auth.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  bio text
);
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON public.profiles FOR ALL TO authenticated USING (owner = auth.uid()) WITH CHECK (owner = auth.uid());
-- Storage policies written the Supabase way: each user owns the folder named after their id.
CREATE POLICY "own folder read" ON storage.objects FOR SELECT TO authenticated
  USING (bucket_id = 'docs' AND (storage.foldername(name))[1] = auth.uid()::text);
CREATE POLICY "own folder write" ON storage.objects FOR INSERT TO authenticated
  WITH CHECK (bucket_id = 'docs' AND (storage.foldername(name))[1] = auth.uid()::text);
CREATE POLICY "own folder update" ON storage.objects FOR UPDATE TO authenticated
  USING (bucket_id = 'docs' AND (storage.foldername(name))[1] = auth.uid()::text);
CREATE POLICY "own folder delete" ON storage.objects FOR DELETE TO authenticated
  USING (bucket_id = 'docs' AND (storage.foldername(name))[1] = auth.uid()::text);
"""


def run_js(script: str, scenario: str, config: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    done = subprocess.run(["node", str(ROOT / "tests" / "js" / script), scenario], input=json.dumps(config).encode(),
                          cwd=ROOT, capture_output=True, timeout=timeout, check=False)
    assert done.returncode == 0, (done.stdout.decode()[-3000:], done.stderr.decode()[-3000:])
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def tenant_sql(settings: Settings, ref: str, statements: str) -> list[tuple[Any, ...]]:
    """As the project's own database login (postgres.<ref>, the user's db_pass)."""
    with psycopg.connect(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=ref,
                         user=f"postgres.{ref}", password=DB_PASS, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(statements)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def project(http: Any, user_token: dict[str, str]) -> dict[str, Any]:
    tok = user_token["token"]
    org = http.post("/v1/organizations", token=tok, json={"name": "Auth Org"}).json()["slug"]
    r = http.post("/v1/projects", token=tok, json={"name": "auth-app", "organization_slug": org,
                                                   "db_pass": DB_PASS, "region": "us-east-1"})
    assert r.status_code == 201, r.text
    ref = r.json()["id"]
    assert wait_status(http, tok, ref, {"ACTIVE_HEALTHY", "INIT_FAILED"})["status"] == "ACTIVE_HEALTHY"
    keys = {k["name"]: k["api_key"] for k in http.get(f"/v1/projects/{ref}/api-keys", token=tok).json()}
    return {"ref": ref, "token": tok, "anon": keys["anon"], "service": keys["service_role"]}


def set_auth(http: Any, project: dict[str, Any], **changes: Any) -> None:
    r = http.request("PATCH", f"/v1/projects/{project['ref']}/config/auth", token=project["token"], json=changes)
    assert r.status_code == 200, r.text


def test_auth_and_storage_through_the_project_url(http: Any, edge_url: str, settings: Settings,
                                                   project: dict[str, Any]) -> None:
    ref, anon, service = project["ref"], project["anon"], project["service"]
    base = f"{edge_url}/{ref}"
    tenant_sql(settings, ref, SCHEMA)
    set_auth(http, project, mailer_autoconfirm=True, password_min_length=8, security_refresh_token_reuse_interval=1)

    # The settings reach the edge within its cache time.
    wait_for("auth settings at the edge", lambda: requests.get(f"{base}/auth/v1/settings", headers={"apikey": anon},
                                                              timeout=10).json().get("mailer_autoconfirm"), timeout=20)
    r = requests.get(f"{base}/auth/v1/health", timeout=10)
    assert r.status_code == 200 and r.json()["name"] == "GoTrue", r.text

    email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
    admin_email = f"made-{uuid.uuid4().hex[:6]}@example.com"
    out = run_js("auth.mjs", "flow", {"url": base, "anon": anon, "service": service, "email": email,
                                       "adminEmail": admin_email, "password": PASSWORD, "reuseInterval": 1})
    assert out["weak"]["code"] == "weak_password" and out["weak"]["status"] == 422
    assert "at least 8" in out["weak"]["message"]
    assert out["signUpError"] is None and out["signUpHasSession"] is True
    assert out["signUpUser"] == {"email": email, "nick": "ada"}
    assert out["again"]["code"] == "user_already_exists"
    assert out["wrongPassword"] == {"status": 400, "code": "invalid_credentials", "message": "Invalid login credentials",
                                    "name": "AuthApiError"}
    assert out["signInError"] is None
    assert out["claims"] == {"sub": True, "role": "authenticated", "aud": "authenticated", "email": email,
                             "aal": "aal1", "session": "string", "expIn": 3600}
    assert out["getUser"] == email
    assert out["updated"] == "countess"
    assert out["restInsert"] == [{"owner": True, "bio": "mine"}]
    assert out["refreshError"] is None and out["rotated"] is True
    assert out["reuse"]["code"] == "refresh_token_already_used"
    assert out["afterReuse"]["code"] == "refresh_token_not_found"  # reuse ended the whole session
    assert out["signOut"] is None
    assert out["refreshAfterSignOut"]["code"] == "refresh_token_not_found"
    assert out["anonAdmin"]["status"] == 403
    assert out["adminCreate"] == admin_email
    assert out["adminList"] == sorted([email, admin_email])
    assert out["adminGet"] == "by admin" and out["adminUpdate"] == "changed"
    assert out["adminMadeSignIn"] == "ok"
    assert out["adminDelete"] is None
    assert out["adminGone"]["status"] == 404
    assert out["otp"]["status"] == 501 and "OTP" in out["otp"]["message"]

    # What is not built says so.
    r = requests.get(f"{base}/auth/v1/authorize?provider=github", headers={"apikey": anon}, timeout=10)
    assert r.status_code == 501 and "OAuth" in r.json()["msg"]
    r = requests.post(f"{base}/auth/v1/factors", headers={"apikey": anon}, timeout=10)
    assert r.status_code == 501 and "MFA" in r.json()["msg"]

    # Supabase's tables, bcrypt hashes, refresh tokens stored hashed.
    rows = tenant_sql(settings, ref, f"SELECT u.encrypted_password, i.provider, i.email FROM auth.users u "
                                     f"JOIN auth.identities i ON i.user_id = u.id WHERE u.email = '{email}'")
    assert len(rows) == 1 and rows[0][0].startswith("$2") and rows[0][1:] == ("email", email)
    r = requests.post(f"{base}/auth/v1/token?grant_type=password", headers={"apikey": anon}, timeout=10,
                      json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    refresh = r.json()["refresh_token"]
    tokens = [t[0] for t in tenant_sql(settings, ref, "SELECT token FROM auth.refresh_tokens")]
    assert len(tokens) == 1 and refresh not in tokens and len(tokens[0]) == 64  # a SHA-256, not the token

    # Another project's key is refused at the edge; a forged user token is refused by Auth.
    r = requests.get(f"{base}/auth/v1/user", headers={"apikey": anon, "Authorization": "Bearer forged.jwt.token"},
                     timeout=10)
    assert r.status_code == 403 and r.json()["error_code"] == "bad_jwt"

    # Without autoconfirm: a confirmation mail with a working /verify link.
    set_auth(http, project, mailer_autoconfirm=False, site_url="http://app.example/welcome")
    wait_for("autoconfirm off at the edge", lambda: requests.get(f"{base}/auth/v1/settings", headers={"apikey": anon},
                                                                timeout=10).json().get("mailer_autoconfirm") is False,
             timeout=20)
    later = f"bo-{uuid.uuid4().hex[:6]}@example.com"
    out = run_js("auth.mjs", "confirm", {"url": base, "anon": anon, "email": later, "password": PASSWORD})
    assert out["signUpError"] is None and out["signUpHasSession"] is False and out["confirmedAt"] is None
    assert out["beforeConfirm"]["code"] == "email_not_confirmed"

    def mail_to(address: str) -> dict[str, Any] | None:
        for path in sorted(outbox_dir(settings).glob("*.json")):
            mail = json.loads(path.read_text())
            if mail["to"] == address:
                return dict(mail)
        return None

    mail = wait_for("the confirmation mail", lambda: mail_to(later), timeout=10)
    link = next(w for w in mail["body"].split() if w.startswith("http"))
    assert link.startswith(f"{base}/auth/v1/verify?")
    r = requests.get(link, allow_redirects=False, timeout=10)  # a browser: no apikey
    assert r.status_code == 303, r.text
    target = urlsplit(r.headers["Location"])
    assert target.netloc == "app.example" and "access_token" in parse_qs(target.fragment)
    assert requests.get(link, allow_redirects=False, timeout=10).headers["Location"].count("otp_expired") == 1
    out = run_js("auth.mjs", "signin", {"url": base, "anon": anon, "email": later, "password": PASSWORD})
    assert out == {"error": None, "user": later}

    set_auth(http, project, disable_signup=True)
    wait_for("signups off", lambda: requests.get(f"{base}/auth/v1/settings", headers={"apikey": anon},
                                                 timeout=10).json().get("disable_signup"), timeout=20)
    out = run_js("auth.mjs", "disabled", {"url": base, "anon": anon, "email": "x" + later, "password": PASSWORD})
    assert out["error"]["code"] == "signup_disabled"

    # Storage, as two signed-in users and the service role.
    set_auth(http, project, disable_signup=False, mailer_autoconfirm=True)
    bob = f"bob-{uuid.uuid4().hex[:6]}@example.com"
    r = requests.post(f"{base}/auth/v1/admin/users", timeout=10, headers={"apikey": service, "Authorization": f"Bearer {service}"},
                      json={"email": bob, "password": PASSWORD, "email_confirm": True})
    assert r.status_code == 200, r.text
    cfg = {"url": base, "anon": anon, "service": service, "alice": email, "bob": bob, "password": PASSWORD}
    out = run_js("storage.mjs", "flow", cfg)
    assert out["createDocs"] == "docs" and out["createPics"] is None
    assert out["createAgain"]["status"] in (409, "409")
    assert out["anonCreate"]["status"] in (403, "403")  # RLS on storage.buckets: no policy, no bucket
    assert out["buckets"] == ["docs", "pics"]
    assert out["docs"] == {"public": False, "limit": 1024, "types": ["text/plain", "image/png"]}
    assert out["upload"]["path"].endswith("/hello.txt") and out["upload"]["fullPath"].startswith("docs/")
    assert out["duplicate"]["status"] in (409, "409")
    assert out["upsertMultipart"] is None
    assert out["rlsDenied"]["status"] in (403, "403")
    assert out["tooBig"]["status"] in (413, "413")
    assert out["badType"]["status"] in (415, "415")
    assert out["download"] == "hello again, multipart"
    assert out["bobDownload"] is not None and out["anonDownload"] is not None
    assert out["list"] == [["hello.txt", 22], ["sub", "folder"]]
    assert out["bobList"] == 0
    assert out["exists"] is True
    assert out["signError"] is None
    assert out["signedGet"] == {"status": 200, "body": "hello again, multipart"}
    assert out["tampered"] == 400
    assert out["bobSign"] is not None
    assert out["batch"] == [[out["upload"]["path"], True, True], [out["upload"]["path"].replace("hello", "nothing"),
                                                                   False, False]]
    assert out["move"] is None and out["copy"] is None and out["copiedBody"] == "hello again, multipart"
    assert out["bobMove"] is not None
    assert out["signUpload"] is None and out["signedUpload"] is None
    assert out["signedUploadBody"] == "signed upload"
    assert out["bobSignUpload"]["status"] in (403, "403")
    assert out["picUpload"] is None
    assert out["publicGet"] == {"status": 200, "type": "image/png", "size": 4}
    assert out["privateViaPublic"] in (400, 404)
    assert out["remove"] == 2 and out["bobRemove"] == 0
    assert out["deleteNonEmpty"] is not None and out["empty"] is None and out["deleteBucket"] is None

    # The rows are Supabase's, and the bytes are in the project's bucket store.
    rows = tenant_sql(settings, ref, "SELECT name, metadata->>'mimetype', (metadata->>'size')::int FROM storage.objects "
                                     "WHERE bucket_id = 'docs' ORDER BY name")
    assert [(n.split("/", 1)[1], m, s) for n, m, s in rows] == [("sub/deep.txt", "text/plain", 4),
                                                                ("via-signed.txt", "text/plain", 13)]

    # Pause and restore: users and objects come back.
    tok = project["token"]
    assert http.post(f"/v1/projects/{ref}/pause", token=tok).status_code == 200
    assert wait_status(http, tok, ref, {"INACTIVE", "PAUSE_FAILED"})["status"] == "INACTIVE"
    def paused_answer() -> bool:
        try:
            return requests.post(f"{base}/auth/v1/token?grant_type=password", headers={"apikey": anon}, timeout=15,
                                 json={"email": email, "password": PASSWORD}).status_code == 503
        except requests.Timeout:
            return False

    wait_for("the paused project's Auth to say so", paused_answer, timeout=40)
    assert http.post(f"/v1/projects/{ref}/restore", token=tok).status_code == 200
    assert wait_status(http, tok, ref, {"ACTIVE_HEALTHY", "RESTORE_FAILED"})["status"] == "ACTIVE_HEALTHY"

    def after() -> dict[str, Any] | None:
        try:
            got = run_js("storage.mjs", "after", cfg)
        except AssertionError:
            return None
        return got if isinstance(got.get("download"), str) else None

    assert wait_for("auth and storage after restore", after, timeout=30) == {"download": "signed upload"}


def test_dashboard_routes_manage_users_and_files_for_members_only(http: Any, rpc: Any, project: dict[str, Any]) -> None:
    ref, tok = project["ref"], project["token"]
    users = f"/platform/projects/{ref}/auth/users"

    # Someone outside the organization sees nothing of the project.
    email = f"outsider-{uuid.uuid4().hex[:6]}@example.com"
    rpc.orgs.register_user(email, "correct horse battery")
    outsider = rpc.orgs.issue_token(email, "tests")["token"]
    assert http.get(users, token=outsider).status_code in (403, 404)
    assert http.get(f"/platform/projects/{ref}/storage/buckets", token=outsider).status_code in (403, 404)

    # The owner: create, list and delete users of the project's Auth.
    assert http.get(users, token=tok).json() == {"users": [], "total": 0}
    r = http.post(users, token=tok, json={"email": "dash@example.com", "password": PASSWORD})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["email"] == "dash@example.com" and made["email_confirmed_at"]
    r = http.post(users, token=tok, json={"email": "dash@example.com", "password": PASSWORD})
    assert r.status_code == 422 and "already" in r.json()["message"]
    r = http.post(users, token=tok, json={"email": "not an email"})
    assert r.status_code == 400
    listed = http.get(users, token=tok).json()
    assert listed["total"] == 1 and [u["email"] for u in listed["users"]] == ["dash@example.com"]
    assert http.request("DELETE", f"{users}/{made['id']}", token=tok).status_code == 204
    assert http.get(users, token=tok).json()["total"] == 0

    # Storage: a bucket, an upload, the listing and the download.
    buckets = f"/platform/projects/{ref}/storage/buckets"
    r = http.post(buckets, token=tok, json={"name": "files", "public": False})
    assert r.status_code == 201, r.text
    assert [b["name"] for b in http.get(buckets, token=tok).json()] == ["files"]
    r = http.request("PUT", f"{buckets}/files/object?name=docs/report.txt", token=tok, data=b"quarterly numbers",
                     headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert [o["name"] for o in http.get(f"{buckets}/files/objects", token=tok).json()] == ["docs"]
    listing = http.get(f"{buckets}/files/objects?prefix=docs", token=tok).json()
    assert [(o["name"], o["metadata"]["size"]) for o in listing] == [("report.txt", 17)]
    r = http.get(f"{buckets}/files/object?name=docs/report.txt", token=tok)
    assert r.status_code == 200 and r.content == b"quarterly numbers"
    assert "attachment" in r.headers["Content-Disposition"]
    assert http.get(f"{buckets}/files/object?name=docs/missing.txt", token=tok).status_code == 404
