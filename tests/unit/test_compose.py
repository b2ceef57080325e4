"""docker-compose.yml, checked without Docker: it is a valid Compose file (the Compose
Specification's JSON schema, as shipped by the check-jsonschema package), and it runs exactly
the processes `make run` starts, with the same commands and environment as the runner."""

from __future__ import annotations

import json
import os
import re
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from services.shared import runner
from services.shared.runner import NAMEKO_CONFIG, ROOT, ProcessSpec, child_env, process_specs
from services.shared.settings import Settings, load_settings

COMPOSE_FILE = ROOT / "docker-compose.yml"
# The compose-spec schema, vendored (with its licence) by check-jsonschema, pinned in requirements.lock.
SCHEMA = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
PLATFORM_IMAGE = "supaplatform"
INFRA = ("postgres", "rabbitmq")
# Set by the image (Dockerfile), not by the compose file: the runner points it at the checkout.
IMAGE_ENV = ("PYTHONPATH",)

_VAR = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?-)([^}]*))?\}|(\w+))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution (`$$`, `$V`, `${V}`, `${V-d}`, `${V:-d}`)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, default = m.group(3), m.group(4)
        if op == ":-" and not env.get(name):
            return default
        if op == "-" and name not in env:
            return default
        if name not in env:
            raise KeyError(f"${{{name}}} has no default: `docker compose up` would need it set")
        return env[name]

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    # As `docker compose` sees it on a machine with no variables set: every default applies.
    return interpolate(raw, {})


@pytest.fixture(scope="module")
def platform_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items()
            if str(svc.get("image", "")).split(":")[0] == PLATFORM_IMAGE}


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def settings_of(svc: dict[str, Any]) -> Settings:
    return load_settings(environment(svc))


def specs() -> list[ProcessSpec]:
    return process_specs(load_settings({}))


def container_argv(spec: ProcessSpec) -> list[str]:
    """The runner's argv as it reads inside the image: `python`, paths relative to /app."""
    argv = ["python" if a == sys.executable else a for a in spec.argv]
    return [str(NAMEKO_CONFIG.relative_to(ROOT)) if a == str(NAMEKO_CONFIG) else a for a in argv]


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    assert "Compose" in schema.get("title", ""), "check-jsonschema no longer ships the compose-spec schema"
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in validator.iter_errors(compose)]
    assert not errors, "docker-compose.yml breaks the Compose Specification:\n" + "\n".join(errors)


def test_every_variable_has_a_default(raw: dict[str, Any]) -> None:
    # interpolate() raises on a variable without a default; this names the test that says so.
    interpolate(raw, {})


def test_platform_services_are_exactly_the_processes_make_run_starts(compose: dict[str, Any],
                                                                      platform_services: dict[str, Any]) -> None:
    assert sorted(platform_services) == sorted(s.name for s in specs())
    others = set(compose["services"]) - set(platform_services)
    assert others == set(INFRA), f"services that are neither a platform process nor infrastructure: {others - set(INFRA)}"


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_command_is_the_runners(platform_services: dict[str, Any], spec: ProcessSpec) -> None:
    assert platform_services[spec.name]["command"] == container_argv(spec)


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_environment_is_what_the_runner_gives_its_children(
    platform_services: dict[str, Any], spec: ProcessSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(platform_services[spec.name])
    # child_env starts from the parent's environment; start it from nothing to see only what it adds.
    monkeypatch.setattr(os, "environ", {})
    expected = {k: v for k, v in runner.child_env(load_settings(env)).items() if k not in IMAGE_ENV}
    missing = sorted(set(expected) - set(env))
    unknown = sorted(set(env) - set(expected))
    assert not missing, f"{spec.name}: set these in x-platform-env (see services/shared/settings.py): {missing}"
    assert not unknown, f"{spec.name}: not read by the platform: {unknown}"
    wrong = {k: (env[k], v) for k, v in expected.items() if env[k] != v}
    assert not wrong, f"{spec.name}: (compose value, value the runner derives): {wrong}"


def test_settings_point_at_the_compose_infrastructure(compose: dict[str, Any],
                                                       platform_services: dict[str, Any]) -> None:
    pg = environment(compose["services"]["postgres"])
    mq = environment(compose["services"]["rabbitmq"])
    assert "management" in compose["services"]["rabbitmq"]["image"], "platformctl and health checks need the management API"
    for name, svc in platform_services.items():
        s = settings_of(svc)
        assert (s.db_host, s.amqp_host) == ("postgres", "rabbitmq"), name
        assert s.rabbitmq_management_url.startswith("http://rabbitmq:"), name
        # The image creates the platform database and user the processes log in with.
        assert (pg["POSTGRES_DB"], pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"]) == (s.db_name, s.db_user, s.db_password), name
        assert (mq["RABBITMQ_DEFAULT_USER"], mq["RABBITMQ_DEFAULT_PASS"]) == (s.amqp_user, s.amqp_password), name


def test_start_order_follows_the_runner(compose: dict[str, Any], platform_services: dict[str, Any]) -> None:
    services = compose["services"]
    for name in INFRA:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} needs a health check"
    for name, svc in platform_services.items():
        deps = svc.get("depends_on") or {}
        for infra in INFRA:
            assert deps.get(infra, {}).get("condition") == "service_healthy", f"{name} must wait for {infra}"
    # The relay starts once every other process is ready, as in runner.Platform.start: a
    # message published before its consumers' queues are bound would be routed nowhere.
    relay_deps = platform_services["relay"]["depends_on"]
    for name in set(platform_services) - {"relay"}:
        assert relay_deps.get(name, {}).get("condition") == "service_healthy", f"relay must wait for {name}"
        assert platform_services[name]["healthcheck"]["test"] == [
            "CMD", "python", "-m", "services.shared.healthcheck", name]


def test_gateway_port_is_published(platform_services: dict[str, Any]) -> None:
    gateway = platform_services["gateway"]
    s = settings_of(gateway)
    assert s.gateway_host == "0.0.0.0", "inside its container the gateway must listen on every interface"
    targets = [int(str(p).rsplit(":", 1)[-1]) if not isinstance(p, dict) else int(p["target"])
               for p in gateway.get("ports", [])]
    assert s.gateway_port in targets


def test_one_image_built_from_the_lock(platform_services: dict[str, Any]) -> None:
    images = {svc["image"] for svc in platform_services.values()}
    assert len(images) == 1, f"every platform process runs the one image: {images}"
    builds = {json.dumps(svc.get("build"), sort_keys=True) for svc in platform_services.values()}
    assert len(builds) == 1
    build = next(iter(platform_services.values()))["build"]
    dockerfile = Path(ROOT, build["context"], build.get("dockerfile", "Dockerfile"))
    text = dockerfile.read_text()
    assert re.search(r"^COPY requirements\.lock ", text, re.M)
    assert re.search(r"^RUN pip install -r requirements\.lock$", text, re.M)
    # The commands above are relative to /app and import from it.
    assert re.search(r"^WORKDIR /app$", text, re.M) and "PYTHONPATH=/app" in text
