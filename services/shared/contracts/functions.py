"""Contracts published by the functions service (exchange `functions.events`): deploys and
deletions of edge functions, and one usage event per invocation for metering."""

from marshmallow import Schema, fields, validate

from .registry import contract

REF = validate.Regexp(r"^[a-z]{20}$")
SLUG = validate.Regexp(r"^[A-Za-z0-9_-]{1,128}$")


@contract("function_deployed", 1, "functions", "A new version of an edge function was deployed (and is live unless `active` is false).")
class FunctionDeployedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    slug = fields.String(required=True, validate=SLUG)
    version = fields.Integer(required=True, validate=validate.Range(min=1))
    active = fields.Boolean(required=True, metadata={"description": "false for a bundle-only deploy, activated later"})
    bundle_sha256 = fields.String(required=True, metadata={"description": "Digest of the deployed source bundle"})
    size_bytes = fields.Integer(required=True, validate=validate.Range(min=0))


@contract("function_deleted", 1, "functions", "An edge function was deleted; it no longer answers.")
class FunctionDeletedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    slug = fields.String(required=True, validate=SLUG)


@contract("function_invoked", 1, "functions", "One invocation of an edge function (a usage event: metering counts these).")
class FunctionInvokedV1(Schema):
    slug = fields.String(required=True, validate=SLUG)
    version = fields.Integer(required=True, allow_none=True, metadata={"description": "Version that answered; null when none ran (e.g. refused with 401)"})
    status = fields.Integer(required=True, validate=validate.Range(min=100, max=599), metadata={"description": "HTTP status the caller got"})
    duration_ms = fields.Float(required=True, validate=validate.Range(min=0), metadata={"description": "From the runtime receiving the request to the end of the response"})
    request_id = fields.String(required=True, metadata={"description": "The gateway's request id (X-Request-Id)"})
    at = fields.AwareDateTime(required=True, format="iso", metadata={"description": "When the invocation started (UTC)"})
