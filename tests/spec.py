"""Validates Management API v1 responses against Supabase's public OpenAPI document
(../shared/reference), using openapi-core. Every /v1 response the suite's HTTP client
receives goes through `check_v1_response`."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import requests

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "reference" / "supabase-management-api-v1.json"
CHECKED: list[str] = []


@lru_cache(maxsize=1)
def _openapi() -> Any:
    from openapi_core import Config, OpenAPI

    spec = json.loads(SPEC_PATH.read_text())
    # Match any host: the contract is about paths and shapes, not where the server lives.
    spec["servers"] = [{"url": "/"}]
    # The published document carries vendor keys (e.g. hideDefinitions) that a strict 3.0
    # validator rejects; it is the reference as published, so skip validating it.
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


def check_v1_response(response: requests.Response) -> None:
    """Raise if a /v1 response breaks the spec.

    Success responses must be declared and match their schema. The published spec leaves
    out many error statuses (no 400 on create, no 404 on reads) that the real API sends;
    an error status the spec does not declare must still carry our error shape
    {"message": "..."}, which is what Supabase's API answers with.
    """
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
    from openapi_core.templating.paths.exceptions import PathNotFound
    from openapi_core.templating.responses.exceptions import ResponseNotFound

    try:
        _openapi().validate_response(RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response))
    except PathNotFound:
        # Not a v1 path at all: we must answer 404 with our error shape.
        assert response.status_code == 404, f"{response.request.path_url} is not in the spec"
        assert isinstance(response.json().get("message"), str)
    except ResponseNotFound:
        if response.status_code < 400:
            raise
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], body
    CHECKED.append(f"{response.request.method} {response.request.path_url} {response.status_code}")
