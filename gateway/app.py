"""The gateway's HTTP application: routing, authentication, validation, error mapping.

Framework-free apart from werkzeug: `Gateway(services, sessions, settings).handle(request)`
returns a Response. `services` has `.orgs`, `.billing` … whose methods are the services'
RPC methods (nameko proxies in production). Handlers translate only: check input, call one
service method, shape the output. Membership and roles are checked by the services.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from typing import Any, Callable

from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Request, Response

from services.shared.settings import Settings

from . import schemas as s
from .errors import HttpError, from_remote
from .authcache import AuthCache, orgs_key, token_key, user_key
from .routing import ROUTES, route, url_map
from .sessions import Session, SessionStore

log = logging.getLogger("gateway")

MAX_BODY = 1024 * 1024
SESSION_COOKIE = "sp_session"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PROJECT_PATHS = ("/v1/projects", "/platform/projects/")  # writes there change no identity


def json_response(data: Any, status: int = 200) -> Response:
    if status == 204:
        return Response(status=204)
    return Response(json.dumps(data), status=status, mimetype="application/json")


def error_response(status: int, message: str, field_errors: dict[str, list[str]] | None = None) -> Response:
    body: dict[str, Any] = {"message": message}
    if field_errors:
        body["errors"] = field_errors
    return json_response(body, status)


class Caller:
    """Who is calling: the user, and how they authenticated."""

    def __init__(self, user: dict[str, Any], session: Session | None = None, session_token: str | None = None):
        self.user = user
        self.id: str = user["id"]
        self.session = session
        self.session_token = session_token
        # The caller's organizations, as orgs said when authenticating (passed to reads so
        # the services need not ask orgs again; they check the project's organization is one).
        self.org_slugs: list[str] = list(user.get("organizations") or [])
        self.studio_ref: str | None = None  # set on the Studio origin: the one project its cookie is for


# Route modules beside this one register more handlers (plain functions taking the gateway
# as first argument); import them here so every process has the same table.
ROUTE_MODULES: tuple[str, ...] = ("gateway.billing_routes", "gateway.web_routes", "gateway.admin_routes", "gateway.functions_routes",
                                  "gateway.metering_routes", "gateway.database_routes", "gateway.project_apis_routes",
                                  "gateway.history_routes")
# Routes declared with @endpoint (gateway/routing.py): handlers are (call) -> data.
ROUTE_MODULES += ("gateway.projects_routes", "gateway.realtime_routes", "gateway.realtime_publication_routes",
                  "gateway.studio_routes")
HANDLERS: dict[str, Callable[..., Response]] = {}
SCOPED: dict[str, str] = {}  # endpoint -> "org" or "project": membership checked before the handler runs
ADMIN: set[str] = set()  # endpoints for platform admins only: checked before the handler runs


def _load_routes() -> None:
    import importlib

    for name in ROUTE_MODULES:
        importlib.import_module(name)
    HANDLERS.update({r.endpoint: r.handler for r in ROUTES if r.handler is not None})
    SCOPED.update((r.endpoint, r.scope) for r in ROUTES if r.scope is not None)
    ADMIN.update(r.endpoint for r in ROUTES if r.who == "admin")


class Gateway:
    _map = None

    def __init__(self, services: Any, sessions: SessionStore, settings: Settings, auth_cache: AuthCache | None = None,
                 limiter: Any = None):
        self.services = services
        self.sessions = sessions
        self.settings = settings
        self.auth_cache = auth_cache
        self.limiter = limiter  # gateway.ratelimit.RateLimiter (None: no abuse limits, unit tests)
        from .studio import StudioStore

        pool = getattr(sessions, "pool", None)
        self.studio = StudioStore(pool) if pool is not None else None  # the Studio bridge (gateway/studio.py)
        if Gateway._map is None:
            _load_routes()
            Gateway._map = url_map()

    # ===== plumbing ============================================================================
    def handle(self, request: Request) -> Response:
        request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
        adapter = Gateway._map.bind_to_environ(request.environ)  # type: ignore[union-attr]
        try:
            self._studio_gate(request)
            ctx = {"correlation_id": request_id, "causation_id": request_id}
            if request.environ.get("sp.studio_proxy"):
                from .studio_proxy import forward

                response = forward(self, request, ctx)  # the project's own Studio (kubernetes driver)
            else:
                endpoint, args = adapter.match()
                request.environ["sp.endpoint"] = endpoint
                handler: Callable[..., Response] = HANDLERS[endpoint]
                if endpoint in ADMIN:
                    self.require_admin(request, ctx)
                elif endpoint in SCOPED:
                    self.require_membership(request, ctx, args, SCOPED[endpoint])
                response = handler(self, request, ctx, **args)
        except HttpError as e:
            response = error_response(e.status, e.message, e.fields)
            response.headers.update(getattr(e, "headers", None) or {})
        except MethodNotAllowed:
            response = error_response(405, f"method {request.method} not allowed on {request.path}")
        except NotFound:
            response = error_response(404, f"no route for {request.path}")
        except HTTPException as e:
            response = error_response(e.code or 500, e.description or "error")
        except Exception as e:  # noqa: BLE001 -- remote service errors and faults
            message = getattr(e, "value", None) or str(e)
            mapped = from_remote(getattr(e, "exc_type", None), message)
            from .outages import headers as outage_headers, outage_reason

            down = outage_reason(e) if mapped is None else None
            if down is not None:
                log.warning("dependency down on %s %s: %r", request.method, request.path, e)
                response = error_response(503, down)
                response.headers.update(outage_headers())
            elif mapped is None:
                log.exception("unhandled error on %s %s", request.method, request.path)
                response = error_response(500, "internal error")
            else:
                response = error_response(mapped.status, mapped.message, mapped.fields)
        if self.auth_cache and request.method in UNSAFE and response.status_code < 400 \
                and not request.path.startswith(PROJECT_PATHS) and not request.environ.get("sp.studio_proxy"):
            # Tokens, users, memberships or organizations may have changed: forget every
            # identity this process remembers (orgs' events tell the other gateways).
            self.auth_cache.clear()
        response.headers["X-Request-Id"] = request_id
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _studio_gate(self, request: Request) -> None:
        """The Studio origin answers its own short list of routes, for its cookie's project only;
        the dashboard origin never answers the Studio's (gateway/studio.py)."""
        from . import studio, studio_proxy

        if studio.is_studio_request(request, self.settings):
            request.environ["sp.studio"] = True
            found = self.studio_session(request)
            page = studio.page_ref(request)
            if page is not None and (found is None or found[1].ref != page[0]):
                # A Studio page without this project's cookie: through the dashboard's bridge,
                # which checks membership and issues a code, and back.
                e = HttpError(303, "open Studio from the dashboard")
                e.headers = {"Location": studio.bridge_url(self.settings, *page)}  # type: ignore[attr-defined]
                raise e
            if studio_proxy.enabled(self.settings):
                if page is not None:  # a bridge link's page: where it is in Supabase Studio
                    e = HttpError(303, "to this page in Studio")
                    e.headers = {"Location": studio_proxy.landing(request.path)}  # type: ignore[attr-defined]
                    raise e
                if request.path != "/studio/auth":
                    request.environ["sp.studio_proxy"] = True  # checked and forwarded (gateway/studio_proxy.py)
                return
            studio.check_route(request, found[1].ref if found else None)
        elif request.path.startswith("/studio/"):
            raise HttpError(404, f"no route for {request.path}")

    def studio_session(self, request: Request) -> tuple[str, Any] | None:
        """(cookie token, StudioSession) of a Studio-origin request, or None."""
        from .studio import STUDIO_COOKIE

        if "sp.studio_session" not in request.environ:
            token = request.cookies.get(STUDIO_COOKIE)
            found = self.studio.get(token) if token and self.studio is not None else None
            request.environ["sp.studio_session"] = (token, found) if found else None
        return request.environ["sp.studio_session"]  # type: ignore[no-any-return]

    def body(self, request: Request, schema: type[Schema]) -> dict[str, Any]:
        from .limits import limit_for, parse_json_object

        data = parse_json_object(request, limit_for(request))
        try:
            return dict(schema().load(data))
        except ValidationError as e:
            raise HttpError.invalid(e.messages) from None

    def require_membership(self, request: Request, ctx: dict[str, Any], args: dict[str, Any], scope: str) -> None:
        """Before reading any input of an organization- or project-scoped route, make sure the
        caller belongs there: strangers get the same 404 whatever they send. (The services
        check the role for the action itself.)"""
        me = self.caller(request, ctx)
        if scope == "project":
            # The project as the caller may see it: handlers that show it use this one.
            request.environ["sp.project"] = self.services.projects.get_project(me.id, args["ref"], me.org_slugs)
        elif scope == "org":
            self.services.orgs.authorize(me.id, args["slug"], "org.read")

    def scoped_project(self, request: Request, ctx: dict[str, Any], ref: str) -> dict[str, Any]:
        """The project of a project-scoped route, as the membership check read it."""
        known = request.environ.get("sp.project")
        if known is not None and known.get("ref") == ref:
            return known  # type: ignore[no-any-return]
        me = self.caller(request, ctx)
        return self.services.projects.get_project(me.id, ref, me.org_slugs)  # type: ignore[no-any-return]

    def require_admin(self, request: Request, ctx: dict[str, Any]) -> Caller:
        """Platform-admin routes: the caller is an enabled platform admin (orgs decides), or 403;
        asked once per request (the handler and the services may ask again)."""
        me = self.caller(request, ctx)
        if not request.environ.get("sp.admin"):
            self.services.orgs.require_admin(me.id)
            request.environ["sp.admin"] = True
        return me

    def caller(self, request: Request, ctx: dict[str, Any]) -> Caller:
        """Authenticate by bearer token or session cookie; cookie writes need the CSRF header."""
        known = request.environ.get("sp.caller")
        if known is not None:
            ctx["actor"] = known.id
            return known  # type: ignore[no-any-return]
        if request.environ.get("sp.studio"):
            caller = self._studio_caller(request)
            ctx["actor"] = caller.id
            request.environ["sp.caller"] = caller
            return caller
        auth = request.headers.get("Authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise HttpError(401, "Authorization must be 'Bearer <access token>'")
            token = token.strip()
            key = token_key(token)
            user = self.auth_cache.get(key) if self.auth_cache else None
            if user is None:
                user = self.authenticate_token(request, token)
                if self.auth_cache:
                    self.auth_cache.put(key, user)
            caller = Caller(user)
        else:
            token = request.cookies.get(SESSION_COOKIE)
            session = self.sessions.get(token) if token else None
            if session is None:
                raise HttpError(401, "sign in, or send a bearer access token (Authorization: Bearer sbp_...)")
            if request.method in UNSAFE and not hmac.compare_digest(
                    request.headers.get("X-CSRF-Token", "").encode(), session.csrf_token.encode()):
                raise HttpError(403, "missing or wrong X-CSRF-Token header for this session")
            key = user_key(session.user_id)
            user = self.auth_cache.get(key) if self.auth_cache else None
            if user is None:
                user = self.services.orgs.get_user(session.user_id)
                if self.auth_cache and not user.get("disabled"):
                    self.auth_cache.put(key, user)
            caller = Caller(user, session, token)
            if caller.user.get("disabled"):
                # Disabling an account ends its sessions too (tokens are refused by orgs itself).
                self.sessions.delete(token)
                raise HttpError(401, "account disabled")
        ctx["actor"] = caller.id
        request.environ["sp.caller"] = caller
        return caller

    def _studio_caller(self, request: Request) -> Caller:
        """On the Studio origin only its own cookie counts: no bearer token, no dashboard session."""
        from .studio import csrf_ok

        found = self.studio_session(request)
        if found is None:
            raise HttpError(401, "open Studio from the dashboard (your Studio session ended or never started)")
        token, st = found
        if request.environ.get("sp.studio_proxy"):
            from .studio_proxy import same_origin

            if request.method not in ("GET", "HEAD") and not same_origin(request, self.settings):
                raise HttpError(403, "writes on the Studio origin must come from its own pages (Origin header)")
        elif request.method in UNSAFE and not csrf_ok(request, st):
            raise HttpError(403, "missing or wrong X-CSRF-Token header for this Studio session")
        user = self.services.orgs.get_user(st.user_id)  # every request: a disabled account is out at once
        if user.get("disabled"):
            self.studio.delete(token)  # type: ignore[union-attr]
            raise HttpError(401, "account disabled")
        caller = Caller(user, Session(st.user_id, st.csrf_token, st.expires_at), token)
        caller.studio_ref = st.ref
        return caller

    def limit(self, action: str, request: Request, account: str | None = None) -> None:
        """Count an attempt at a limited action (gateway/ratelimit.py); 429 past a limit."""
        if self.limiter is not None:
            self.limiter.hit(action, self.limiter.client_ip(request), account)

    def authenticate_token(self, request: Request, token: str) -> dict[str, Any]:
        if self.limiter is None:
            return self.services.orgs.authenticate_token(token)  # type: ignore[no-any-return]
        ip = self.limiter.client_ip(request)
        self.limiter.blocked("token", ip)  # an IP over its limit costs no RPC at all
        try:
            return self.services.orgs.authenticate_token(token)  # type: ignore[no-any-return]
        except Exception as e:
            if getattr(e, "exc_type", None) == "Unauthorized":
                self.limiter.hit("token", ip)  # failures count
            raise

    def start_session(self, user: dict[str, Any], status: int, request: Request | None = None) -> Response:
        old = request.cookies.get(SESSION_COOKIE) if request is not None else None
        if old:
            self.sessions.delete(old)  # signing in again replaces the session, never adds one
        token, session = self.sessions.create(user["id"])
        response = json_response(s.SessionInfo().dump({"user": user, "csrf_token": session.csrf_token}), status)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", path="/",
                            secure=self.settings.cookie_secure or self.settings.public_url.startswith("https://"),
                            max_age=self.settings.session_ttl_hours * 3600)
        return response

    # ===== health ==============================================================================
    @route("GET", "/health", summary="Gateway liveness", tag="platform", auth=False)
    def health(self, request: Request, ctx: dict[str, Any]) -> Response:
        return json_response({"status": "ok"})

    @route("GET", "/platform/openapi.json", summary="This API's OpenAPI document", tag="platform", auth=False)
    def openapi(self, request: Request, ctx: dict[str, Any]) -> Response:
        from .openapi import document

        return json_response(document())

    # ===== v1: organizations ===================================================================
    @route("GET", "/v1/organizations", summary="List all organizations", tag="v1",
           response=s.OrganizationResponseV1, many=True)
    def v1_list_organizations(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        # Remembered with the caller's identity (same TTL, dropped by the same events, and by
        # organization_updated): the answer changes only when an organization or membership does.
        key = orgs_key(me.id)
        known = self.auth_cache.get(key) if self.auth_cache else None
        if known is None:
            orgs = self.services.orgs.list_organizations(me.id)
            known = {"id": me.id, "organizations": [o["slug"] for o in orgs],
                     "body": json.dumps(s.OrganizationResponseV1(many=True).dump(orgs))}
            if self.auth_cache:
                self.auth_cache.put(key, known)
        return Response(known["body"], mimetype="application/json")

    @route("POST", "/v1/organizations", summary="Create an organization", tag="v1",
           body=s.CreateOrganizationV1, response=s.OrganizationResponseV1, status=201)
    def v1_create_organization(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.CreateOrganizationV1)
        org = self.services.orgs.create_organization(me.id, data["name"], ctx)
        return json_response(s.OrganizationResponseV1().dump(org), 201)

    @route("GET", "/v1/organizations/<slug>", summary="Gets information about the organization", tag="v1",
           response=s.V1OrganizationSlugResponse)
    def v1_get_organization(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        org = self.services.orgs.get_organization(me.id, slug)
        out: dict[str, Any] = {"id": org["slug"], "name": org["name"], "opt_in_tags": [],
                               "allowed_release_channels": ["ga"]}
        try:
            out["plan"] = self.services.billing.get_subscription(slug)["plan"]
        except Exception as e:  # noqa: BLE001 -- billing may not have seen the org yet
            if getattr(e, "exc_type", None) != "NotFound":
                raise
        return json_response(s.V1OrganizationSlugResponse().dump(out))

    @route("GET", "/v1/organizations/<slug>/members", summary="List members of an organization", tag="v1",
           response=s.V1OrganizationMemberResponse, many=True)
    def v1_list_members(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        members = self.services.orgs.list_members(me.id, slug)
        out = [{"user_id": m["user_id"], "user_name": m["display_name"] or m["email"], "email": m["email"],
                "role_name": m["role"], "mfa_enabled": False} for m in members]
        return json_response(s.V1OrganizationMemberResponse(many=True).dump(out))

    # ===== platform: auth ======================================================================
    @route("POST", "/platform/auth/signup",
           summary="Sign up with email and password: we mail a link that confirms the address and signs you in "
                   "(the same answer whether or not the address has an account)",
           tag="auth", body=s.SignUp, response=s.SignUpAccepted, status=202, auth=False)
    def signup(self, request: Request, ctx: dict[str, Any]) -> Response:
        data = self.body(request, s.SignUp)
        email = str(data["email"]).strip().lower()
        self.limit("signup", request, email)
        self.services.orgs.sign_up(email, data["password"], ctx, data["display_name"], data["next"])
        return json_response(s.SignUpAccepted().dump({
            "email": email, "message": f"Check your mail: we sent a link to {email}. Open it to finish signing up."}), 202)

    @route("POST", "/platform/auth/verify-email",
           summary="Confirm an email address with the mailed link's token (once); starts a session",
           tag="auth", body=s.VerifyEmail, response=s.SessionInfo, auth=False)
    def verify_email(self, request: Request, ctx: dict[str, Any]) -> Response:
        data = self.body(request, s.VerifyEmail)
        self.limit("verify", request)
        user = self.services.orgs.verify_email(data["token"], ctx)
        return self.start_session(user, 200, request)

    @route("POST", "/platform/auth/signin", summary="Sign in; starts a session (cookie)", tag="auth",
           body=s.SignIn, response=s.SessionInfo, auth=False)
    def signin(self, request: Request, ctx: dict[str, Any]) -> Response:
        data = self.body(request, s.SignIn)
        self.limit("signin", request, str(data["email"]))
        user = self.services.orgs.authenticate_password(data["email"], data["password"])
        return self.start_session(user, 200, request)

    @route("POST", "/platform/auth/signout", summary="Sign out: ends this session", tag="auth", status=204)
    def signout(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        if request.environ.get("sp.studio"):
            from .studio import STUDIO_COOKIE

            self.studio.delete(me.session_token)  # type: ignore[union-attr,arg-type]
            response = json_response(None, 204)
            response.delete_cookie(STUDIO_COOKIE, path="/")
            return response
        if me.session_token:
            self.sessions.delete(me.session_token)
        if self.studio is not None:
            self.studio.delete_user(me.id)  # signing out of the dashboard ends the user's Studio sessions
        response = json_response(None, 204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @route("GET", "/platform/auth/session", summary="Who is signed in, and the session's CSRF token",
           tag="auth", response=s.SessionInfo)
    def session(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        info: dict[str, Any] = {"user": me.user}
        if me.session:
            info["csrf_token"] = me.session.csrf_token
        from .studio_proxy import enabled

        info["studio_embedded"] = enabled(self.settings)
        if getattr(me, "studio_ref", None):
            info["studio"] = {"ref": me.studio_ref, "dashboard_url": self.settings.public_url.rstrip("/")}
        return json_response(s.SessionInfo().dump(info))

    # ===== platform: profile and tokens ========================================================
    @route("GET", "/platform/profile", summary="Your profile", tag="profile", response=s.User)
    def get_profile(self, request: Request, ctx: dict[str, Any]) -> Response:
        return json_response(s.User().dump(self.caller(request, ctx).user))

    @route("PATCH", "/platform/profile", summary="Change display name or email", tag="profile",
           body=s.ProfileUpdate, response=s.User)
    def update_profile(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.ProfileUpdate)
        return json_response(s.User().dump(self.services.orgs.update_profile(me.id, data, ctx)))

    @route("POST", "/platform/profile/password",
           summary="Change your password: your other sessions end; revoke_tokens also revokes your access tokens", tag="profile",
           body=s.PasswordChange, status=204)
    def change_password(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.PasswordChange)
        self.limit("password", request, me.id)
        self.services.orgs.change_password(me.id, data["current_password"], data["new_password"], ctx,
                                           data["revoke_tokens"])
        self.sessions.delete_others(me.id, me.session_token)  # every other session ends
        if self.studio is not None:
            self.studio.delete_user(me.id)  # and every Studio session
        return json_response(None, 204)

    @route("POST", "/platform/profile/verify-email", summary="Mail a link that confirms your email address",
           tag="profile", body=s.VerificationRequest, response=s.VerificationSent, status=202)
    def request_email_verification(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.VerificationRequest)
        self.limit("verify", request, me.id)
        out = self.services.orgs.request_email_verification(me.id, ctx, data["next"])
        return json_response(s.VerificationSent().dump(out), 202)

    @route("PUT", "/platform/profile/current-organization", summary="Switch your current organization",
           tag="profile", body=s.SelectOrganization, response=s.User)
    def select_organization(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.SelectOrganization)
        return json_response(s.User().dump(self.services.orgs.select_organization(me.id, data["slug"], ctx)))

    @route("GET", "/platform/profile/tokens", summary="Your personal access tokens", tag="profile",
           response=s.Token, many=True)
    def list_tokens(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        return json_response(s.Token(many=True).dump(self.services.orgs.list_tokens(me.id)))

    @route("POST", "/platform/profile/tokens", summary="Create a personal access token (shown once)",
           tag="profile", body=s.TokenCreate, response=s.TokenCreated, status=201)
    def create_token(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.TokenCreate)
        token = self.services.orgs.create_token(me.id, data["name"], ctx, data.get("expires_in_days"))
        return json_response(s.TokenCreated().dump(token), 201)

    @route("DELETE", "/platform/profile/tokens/<token_id>", summary="Revoke a token (stops working at once)",
           tag="profile", status=204)
    def revoke_token(self, request: Request, ctx: dict[str, Any], token_id: str) -> Response:
        me = self.caller(request, ctx)
        self.services.orgs.revoke_token(me.id, token_id, ctx)
        return json_response(None, 204)

    # ===== platform: organizations =============================================================
    @route("GET", "/platform/organizations/<slug>", summary="An organization with its settings and your role",
           tag="organizations", response=s.Organization)
    def get_organization(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        return json_response(s.Organization().dump(self.services.orgs.get_organization(me.id, slug)))

    @route("PATCH", "/platform/organizations/<slug>", summary="Rename or change settings (owner, admin)",
           tag="organizations", body=s.OrganizationUpdate, response=s.Organization)
    def update_organization(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.OrganizationUpdate)
        return json_response(s.Organization().dump(self.services.orgs.update_organization(me.id, slug, data, ctx)))

    @route("DELETE", "/platform/organizations/<slug>", summary="Delete (owner; refused while it has projects)",
           tag="organizations", status=204)
    def delete_organization(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        self.services.orgs.delete_organization(me.id, slug, ctx)
        return json_response(None, 204)

    @route("GET", "/platform/organizations/<slug>/members", summary="Members and roles", tag="organizations",
           response=s.Member, many=True)
    def list_members(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        return json_response(s.Member(many=True).dump(self.services.orgs.list_members(me.id, slug)))

    @route("PATCH", "/platform/organizations/<slug>/members/<member_id>", summary="Change a member's role",
           tag="organizations", body=s.RoleChange)
    def change_member_role(self, request: Request, ctx: dict[str, Any], slug: str, member_id: str) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.RoleChange)
        return json_response(self.services.orgs.change_member_role(me.id, slug, member_id, data["role"], ctx))

    @route("DELETE", "/platform/organizations/<slug>/members/<member_id>", summary="Remove a member",
           tag="organizations", status=204)
    def remove_member(self, request: Request, ctx: dict[str, Any], slug: str, member_id: str) -> Response:
        me = self.caller(request, ctx)
        self.services.orgs.remove_member(me.id, slug, member_id, ctx)
        return json_response(None, 204)

    @route("POST", "/platform/organizations/<slug>/leave", summary="Leave the organization", tag="organizations",
           status=204)
    def leave_organization(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        self.services.orgs.leave_organization(me.id, slug, ctx)
        return json_response(None, 204)

    @route("POST", "/platform/organizations/<slug>/transfer-ownership",
           summary="Make a member owner; you become admin", tag="organizations", body=s.TransferOwnership,
           status=204)
    def transfer_ownership(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.TransferOwnership)
        self.services.orgs.transfer_ownership(me.id, slug, data["user_id"], ctx)
        return json_response(None, 204)

    @route("GET", "/platform/organizations/<slug>/invitations", summary="Invitations", tag="organizations",
           response=s.Invitation, many=True)
    def list_invitations(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        return json_response(s.Invitation(many=True).dump(self.services.orgs.list_invitations(me.id, slug)))

    @route("POST", "/platform/organizations/<slug>/invitations", summary="Invite someone by email",
           tag="organizations", body=s.InvitationCreate, response=s.Invitation, status=201)
    def invite_member(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.InvitationCreate)
        self.limit("invite", request, me.id)
        inv = self.services.orgs.invite_member(me.id, slug, data["email"], data["role"], ctx)
        return json_response(s.Invitation().dump(inv), 201)

    @route("POST", "/platform/organizations/<slug>/invitations/<invitation_id>/resend",
           summary="Resend (new link, new 24 h; the old link stops working)", tag="organizations",
           response=s.Invitation)
    def resend_invitation(self, request: Request, ctx: dict[str, Any], slug: str, invitation_id: str) -> Response:
        me = self.caller(request, ctx)
        self.limit("invite", request, me.id)
        inv = self.services.orgs.resend_invitation(me.id, slug, invitation_id, ctx)
        return json_response(s.Invitation().dump(inv))

    @route("DELETE", "/platform/organizations/<slug>/invitations/<invitation_id>", summary="Revoke an invitation",
           tag="organizations", status=204)
    def revoke_invitation(self, request: Request, ctx: dict[str, Any], slug: str, invitation_id: str) -> Response:
        me = self.caller(request, ctx)
        self.services.orgs.revoke_invitation(me.id, slug, invitation_id, ctx)
        return json_response(None, 204)

    @route("GET", "/platform/invitations/<token>", summary="What an invitation is for (before accepting)",
           tag="organizations", response=s.InvitationPreview, auth=False)
    def get_invitation(self, request: Request, ctx: dict[str, Any], token: str) -> Response:
        return json_response(s.InvitationPreview().dump(self.services.orgs.get_invitation(token)))

    @route("POST", "/platform/invitations/accept", summary="Accept an invitation (email must match yours)",
           tag="organizations", body=s.InvitationAccept, response=s.Organization)
    def accept_invitation(self, request: Request, ctx: dict[str, Any]) -> Response:
        me = self.caller(request, ctx)
        data = self.body(request, s.InvitationAccept)
        return json_response(s.Organization().dump(self.services.orgs.accept_invitation(me.id, data["token"], ctx)))

    @route("GET", "/platform/organizations/<slug>/audit", summary="Who did what when (owner, admin)",
           tag="organizations", response=s.AuditEntry, many=True, query={"limit": "at most this many entries (1-1000)"})
    def audit_log(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        me = self.caller(request, ctx)
        raw = request.args.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise HttpError.invalid({"limit": ["must be an integer from 1 to 1000"]})
        entries = self.services.orgs.audit_log(me.id, slug, int(raw))
        return json_response(s.AuditEntry(many=True).dump(entries))
