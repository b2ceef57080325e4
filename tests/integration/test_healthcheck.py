"""The container health check (services.shared.healthcheck) against the running platform:
it says ready for each process `platform-run` would consider ready, and refuses bad names."""

from __future__ import annotations

from typing import Any

import pytest

from services.shared import healthcheck
from services.shared.runner import ProcessSpec, process_specs
from services.shared.settings import Settings


def test_every_running_process_is_ready(settings: Settings, platform: Any) -> None:
    for spec in process_specs(settings):
        assert healthcheck.is_ready(spec, settings), spec.name


def test_a_service_without_a_consumer_is_not_ready(settings: Settings, platform: Any) -> None:
    assert not healthcheck.is_ready(ProcessSpec("ghost", [], rpc_queue="rpc-ghost"), settings)


@pytest.mark.parametrize("argv", [[], ["nosuch"], ["orgs", "billing"]])
def test_usage_error_is_exit_2(argv: list[str]) -> None:
    assert healthcheck.main(argv) == 2
