"""Contract-test fixtures: a throwaway database (no broker) for the consumer tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from services.shared.db import bootstrap, drop_database
from services.shared.settings import Settings
from tests.conftest import make_test_settings


@pytest.fixture(scope="session")
def contract_db() -> Iterator[Settings]:
    """A throwaway database with every service schema; no RabbitMQ needed."""
    s = make_test_settings("contracts")
    bootstrap(s)
    try:
        yield s
    finally:
        drop_database(s)
