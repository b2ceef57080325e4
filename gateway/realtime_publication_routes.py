"""Postgres changes configuration routes of the gateway, declared with `@endpoint`: which
tables of a project publish changes to realtime (its `supabase_realtime` publication), which
actions, and each table's replica identity. The Management API v1 has no such route; these
are the platform's, for the dashboard (Database > Publications) and scripts.

Membership is checked by the gateway before any input is read (scope "project"); the realtime
service checks the role (database.read to see, database.write to change) and applies the
change in the project's database.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from .realtime_routes import StrictBoolean
from .routing import Call, endpoint
from .schemas import Strict

ACTIONS = ("insert", "update", "delete", "truncate")
NAME = validate.Length(min=1, max=63)


class PublicationActions(Strict):
    insert = StrictBoolean()
    update = StrictBoolean()
    delete = StrictBoolean()
    truncate = StrictBoolean()


class PublicationTableChange(Strict):
    schema = fields.String(required=True, validate=NAME)
    name = fields.String(required=True, validate=NAME)
    published = StrictBoolean(metadata={"description": "In the supabase_realtime publication (its changes reach "
                                                       "postgres_changes subscribers)"})
    replica_identity_full = StrictBoolean(metadata={"description": "REPLICA IDENTITY FULL: updates and deletes "
                                                                   "carry the whole old row (`old` in callbacks)"})


class UpdatePublicationBody(Strict):
    actions = fields.Nested(PublicationActions, metadata={"description": "Which actions the publication publishes"})
    tables = fields.List(fields.Nested(PublicationTableChange), validate=validate.Length(max=500),
                         metadata={"description": "Tables to change; tables not listed stay as they are"})


class PublicationTable(Schema):
    schema = fields.String(required=True)
    name = fields.String(required=True)
    published = fields.Boolean(required=True)
    replica_identity_full = fields.Boolean(required=True)
    rls_enabled = fields.Boolean(required=True)
    has_primary_key = fields.Boolean(required=True, metadata={"description": "Without one, changes reach "
                                                                             "subscribers as an error"})


class PublicationChanged(Schema):
    added = fields.List(fields.String())
    removed = fields.List(fields.String())
    replica_identity = fields.Dict(keys=fields.String(), values=fields.List(fields.Boolean()))
    actions = fields.Dict(keys=fields.String(), values=fields.List(fields.Boolean()))


class PublicationResponse(Schema):
    publication = fields.String(required=True)
    exists = fields.Boolean(required=True)
    all_tables = fields.Boolean(required=True)
    actions = fields.Dict(keys=fields.String(), values=fields.Boolean(), required=True)
    tables = fields.List(fields.Nested(PublicationTable), required=True)
    can_change = fields.Boolean(required=True, metadata={"description": "Whether the caller may change it"})
    changed = fields.Nested(PublicationChanged, metadata={"description": "What this request changed (PUT)"})


@endpoint("GET", "/platform/projects/<ref>/realtime/publication",
          summary="Which tables publish Postgres changes to realtime (the supabase_realtime publication)",
          tag="realtime", response=PublicationResponse, scope="project")
def get_publication(call: Call) -> Any:
    return call.services.realtime.get_publication(call.me.id, call.args["ref"])


@endpoint("PUT", "/platform/projects/<ref>/realtime/publication",
          summary="Change which tables and actions publish Postgres changes, and tables' replica identity",
          tag="realtime", body=UpdatePublicationBody, response=PublicationResponse, scope="project")
def update_publication(call: Call) -> Any:
    return call.services.realtime.update_publication(call.me.id, call.args["ref"], call.body, call.ctx)
