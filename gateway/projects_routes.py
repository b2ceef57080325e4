"""Project routes of the gateway (Management API v1 and the platform's own), declared with
`@endpoint`: each states its scope and schemas, and its handler turns a `Call` into data.

On every `<ref>` route the gateway has already read the project as the caller may see it
(`call.project`, from projects' read model: 404 for anyone outside its organization), so
reads answer from it without another call.
"""

from __future__ import annotations

import zlib
from typing import Any

from werkzeug.wrappers import Response

from . import schemas as s
from .errors import HttpError
from .routing import Call, endpoint

HEALTH_SERVICES = ["auth", "db", "db_postgres_user", "pooler", "realtime", "rest", "storage", "pg_bouncer"]


# ---- v1 ---------------------------------------------------------------------------------------

@endpoint("POST", "/v1/projects", summary="Create a project (returns at once, COMING_UP)", tag="v1",
          body=s.V1CreateProjectBody, response=s.V1ProjectResponse, status=201)
def v1_create_project(call: Call) -> Any:
    data = call.body or {}
    if not data.get("organization_slug") and not data.get("organization_id"):
        raise HttpError.invalid({"organization_slug": ["Missing data for required field."]})
    key = call.request.headers.get("Idempotency-Key")
    return call.services.projects.create_project(call.me.id, data, key, call.ctx)


@endpoint("GET", "/v1/projects", summary="List all projects", tag="v1", response=s.V1ProjectWithDatabaseResponse,
          many=True)
def v1_list_projects(call: Call) -> Any:
    # The read model's rows are this schema's fields already: its JSON text goes out as it is.
    return Response(call.services.projects.list_projects_json(call.me.org_slugs), mimetype="application/json")


@endpoint("GET", "/v1/projects/<ref>", summary="Gets a specific project", tag="v1",
          response=s.V1ProjectWithDatabaseResponse, scope="project")
def v1_get_project(call: Call) -> Any:
    return call.project


@endpoint("DELETE", "/v1/projects/<ref>", summary="Deletes the given project", tag="v1",
          response=s.V1ProjectRefResponse, scope="project")
def v1_delete_project(call: Call) -> Any:
    project = call.services.projects.delete_project(call.me.id, call.args["ref"], call.ctx)
    return {"id": zlib.crc32(project["ref"].encode()), "ref": project["ref"], "name": project["name"]}


@endpoint("POST", "/v1/projects/<ref>/pause", summary="Pauses the given project", tag="v1", scope="project")
def v1_pause_project(call: Call) -> Any:
    call.services.projects.pause_project(call.me.id, call.args["ref"], call.ctx)
    return Response(status=200)


@endpoint("POST", "/v1/projects/<ref>/restore", summary="Restores the given project", tag="v1", scope="project")
def v1_restore_project(call: Call) -> Any:
    call.services.projects.restore_project(call.me.id, call.args["ref"], call.ctx)
    return Response(status=200)


@endpoint("GET", "/v1/projects/<ref>/health", summary="Gets project's service health status", tag="v1",
          response=s.V1ServiceHealthResponse, many=True, scope="project",
          query={"services": "comma separated or repeated: auth, db, db_postgres_user, pooler, realtime, rest, storage, pg_bouncer"})
def v1_project_health(call: Call) -> Any:
    wanted = [x for v in call.query.getlist("services") for x in v.split(",") if x]
    bad = [x for x in wanted if x not in HEALTH_SERVICES]
    if not wanted or bad:
        raise HttpError.invalid({"services": [f"give one or more of {', '.join(HEALTH_SERVICES)}"]})
    return call.services.projects.project_health(call.me.id, call.args["ref"], wanted)


@endpoint("GET", "/v1/projects/<ref>/api-keys", summary="Get project api keys", tag="v1",
          response=s.ApiKeyResponse, many=True, scope="project")
def v1_api_keys(call: Call) -> Any:
    return call.services.projects.api_keys(call.me.id, call.args["ref"])


@endpoint("GET", "/v1/projects/<ref>/postgrest", summary="Gets project's postgrest config", tag="v1",
          response=s.PostgrestConfigWithJWTSecretResponse, scope="project")
def v1_get_postgrest(call: Call) -> Any:
    return call.services.projects.get_postgrest(call.me.id, call.args["ref"])


@endpoint("PATCH", "/v1/projects/<ref>/postgrest", summary="Updates project's postgrest config", tag="v1",
          body=s.V1UpdatePostgrestConfigBody, response=s.V1PostgrestConfigResponse, scope="project")
def v1_update_postgrest(call: Call) -> Any:
    return call.services.projects.update_postgrest(call.me.id, call.args["ref"], call.body, call.ctx)


@endpoint("GET", "/v1/projects/<ref>/config/auth", summary="Gets project's auth config", tag="v1",
          response=s.AuthConfig, scope="project")
def v1_get_auth_config(call: Call) -> Any:
    # The projects service gives every field of the spec's schema: answered as it is.
    from .app import json_response

    return json_response(call.services.projects.get_auth_config(call.me.id, call.args["ref"]))


@endpoint("PATCH", "/v1/projects/<ref>/config/auth", summary="Updates a project's auth config", tag="v1",
          body=s.AuthConfig, response=s.AuthConfig, scope="project")
def v1_update_auth_config(call: Call) -> Any:
    from .app import json_response

    # each field is checked by the projects service
    return json_response(call.services.projects.update_auth_config(call.me.id, call.args["ref"], call.body, call.ctx))


@endpoint("GET", "/v1/projects/<ref>/config/database/pooler", summary="Gets project's supavisor config", tag="v1",
          response=s.SupavisorConfigResponse, many=True, scope="project")
def v1_pooler_config(call: Call) -> Any:
    """Where clients connect to the project's database. There is no Supavisor in front of it on
    the local driver: the answer is the tenant database itself, in session mode, with the
    login Supavisor would take (`postgres.<ref>`). The password is never in it, as on Supabase."""
    conn = (call.project or {}).get("connection")
    if not conn:
        raise HttpError(409, f"project {call.args['ref']} has no database yet ({(call.project or {}).get('status')})")
    from urllib.parse import quote

    url = (f"postgresql://{quote(conn['db_user'], safe='.')}:[YOUR-PASSWORD]@{conn['db_host']}:{conn['db_port']}/"
           f"{quote(conn['db_name'], safe='')}")
    return [{"identifier": call.args["ref"], "database_type": "PRIMARY", "is_using_scram_auth": True,
             "db_user": conn["db_user"], "db_host": conn["db_host"], "db_port": int(conn["db_port"]),
             "db_name": conn["db_name"], "connection_string": url, "connectionString": url,
             "default_pool_size": None, "max_client_conn": None, "pool_mode": "session"}]


# ---- platform ---------------------------------------------------------------------------------

@endpoint("GET", "/platform/projects/<ref>", summary="A project with its progress and connection details",
          tag="projects", response=s.ProjectDetail, scope="project")
def get_project_detail(call: Call) -> Any:
    project = dict(call.project or {})
    if project.get("connection"):
        # Project APIs are served by the project edge, on an origin apart from this one.
        project["connection"] = {**project["connection"], "api_url": call.settings.project_api_url(project["ref"])}
    return project


@endpoint("POST", "/platform/projects/<ref>/jwt-secret/rotate",
          summary="Rotate the JWT secret: new anon and service_role keys, the old ones stop verifying",
          tag="projects", response=s.ApiKeyResponse, many=True, scope="project")
def rotate_jwt_secret(call: Call) -> Any:
    return call.services.projects.rotate_jwt_secret(call.me.id, call.args["ref"], call.ctx)


@endpoint("GET", "/platform/projects/<ref>/settings/history", summary="Every settings change, newest first",
          tag="projects", response=s.SettingChange, many=True, scope="project")
def settings_history(call: Call) -> Any:
    return call.services.projects.settings_history(call.me.id, call.args["ref"])


@endpoint("POST", "/platform/projects/<ref>/settings/rollback", summary="Restore PostgREST and auth settings to an "
          "earlier version from the settings history (a new change naming it)", tag="projects",
          body=s.SettingsRollback, response=s.SettingsRolledBack, scope="project")
def rollback_settings(call: Call) -> Any:
    return call.services.projects.rollback_settings(call.me.id, call.args["ref"], call.body["version"], call.ctx)
