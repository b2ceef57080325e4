"""docs/api/gateway-openapi.json is what gateway/openapi.py generates from the route table
(the fuzz in tests/integration/test_fuzz.py runs from that file)."""

from gateway import openapi


def test_gateway_openapi_document_is_current() -> None:
    assert openapi.main(["--check"]) == 0, "run: python -m gateway.openapi"
