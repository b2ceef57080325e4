"""Imports flow one way (conventions, habit 1), checked by parsing the source: nothing is imported.

- A domain module (services/<svc>/domain.py or a domain/ package) imports only the standard
  library, typing helpers and eventsourcing.domain.
- Only a service's entrypoint (services/<svc>/service.py), gateway/service.py and
  services/shared/nameko_ext.py import nameko.
- Only adapters (an adapters/ or drivers/ package, adapters.py, drivers.py, *_adapter.py,
  *_driver.py) import kubernetes, stripe or boto.
- No service package imports another one (the gateway counts as one); all may import
  services.shared.
- services/shared imports no service package. Only the wiring that loads services by name
  (relay, runner, platformctl, history) may even spell a service module's name, for importlib.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE_ROOTS = ("services", "gateway")

SERVICE_PACKAGES = sorted(p.parent.name for p in (ROOT / "services").glob("*/__init__.py") if p.parent.name != "shared")
# What a "service package" is, as an importable name: services.<svc> and the gateway.
SERVICE_MODULE = re.compile(r"^(?:services\.(?P<svc>[A-Za-z_]\w*)|(?P<gw>gateway))(?:\.|$)")

NAMEKO_ALLOWED = re.compile(r"^(services/[^/]+/service\.py|gateway/service\.py|services/shared/nameko_ext\.py)$")
VENDOR_SDKS = {"kubernetes", "stripe", "boto3", "botocore", "boto"}
ADAPTER_PATH = re.compile(r"(^|/)(adapters|drivers)(/|\.py$)|_(adapter|driver)\.py$")
DOMAIN_PATH = re.compile(r"^services/[^/]+/(domain\.py|domain/.+\.py)$")
LOADS_SERVICES_BY_NAME = re.compile(r"^services/shared/(relay\.py|runner\.py|history\.py|platformctl(\.py|/.+\.py))$")
TYPING_HELPERS = {"typing_extensions", "mypy_extensions"}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # absolute dotted name of what the statement imports from
    names: tuple[str, ...] = ()  # for `from module import a, b`


def module_name(rel: str) -> str:
    parts = rel.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(rel: str, source: str) -> list[Import]:
    """Every import statement in the file, anywhere (functions and TYPE_CHECKING blocks too)."""
    package = module_name(rel) if rel.endswith("__init__.py") else module_name(rel).rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename=rel)):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append(Import(node.lineno, module, tuple(a.name for a in node.names)))
    return sorted(found, key=lambda i: i.line)


def targets(imp: Import) -> list[str]:
    """The modules an import may bring in: `from a import b` may mean module a.b."""
    return [imp.module, *(f"{imp.module}.{n}" for n in imp.names if n != "*")]


def service_of(module: str) -> str | None:
    m = SERVICE_MODULE.match(module)
    if not m:
        return None
    svc = m.group("svc")
    if m.group("gw"):
        return "gateway"
    return svc if svc in SERVICE_PACKAGES else None


def owner_of(rel: str) -> str | None:
    """The service package a file belongs to (None for services/shared and top-level files)."""
    parts = rel.split("/")
    if parts[0] == "gateway":
        return "gateway"
    if parts[0] == "services" and len(parts) > 2 and parts[1] != "shared":
        return parts[1]
    return None


# -- the rules: each returns "path:line: what is wrong" for every violation -------------------

def domain_violations(rel: str, source: str) -> list[str]:
    if not DOMAIN_PATH.match(rel):
        return []
    own_domain = module_name(rel) if rel.endswith("/domain.py") else module_name(rel).split(".domain")[0] + ".domain"
    bad = []
    for imp in imports_of(rel, source):
        top = imp.module.split(".")[0]
        ok = (
            top in STDLIB
            or top in TYPING_HELPERS
            or imp.module == "eventsourcing.domain"
            or imp.module.startswith("eventsourcing.domain.")
            or (imp.module == "eventsourcing" and set(imp.names) <= {"domain"})
            or imp.module == own_domain
            or imp.module.startswith(own_domain + ".")
        )
        if not ok:
            bad.append(f"{rel}:{imp.line}: domain code imports {imp.module} "
                       "(only the standard library, typing helpers and eventsourcing.domain)")
    return bad


def nameko_violations(rel: str, source: str) -> list[str]:
    if NAMEKO_ALLOWED.match(rel):
        return []
    return [f"{rel}:{imp.line}: imports {imp.module} (only service.py entrypoints, gateway/service.py "
            "and services/shared/nameko_ext.py may import nameko)"
            for imp in imports_of(rel, source) if imp.module.split(".")[0] == "nameko"]


def vendor_sdk_violations(rel: str, source: str) -> list[str]:
    if ADAPTER_PATH.search(rel):
        return []
    return [f"{rel}:{imp.line}: imports {imp.module} (vendor SDKs belong in adapters)"
            for imp in imports_of(rel, source) if imp.module.split(".")[0] in VENDOR_SDKS]


def cross_service_violations(rel: str, source: str) -> list[str]:
    owner = owner_of(rel)
    if owner is None:
        return []
    bad = []
    for imp in imports_of(rel, source):
        others = {s for t in targets(imp) if (s := service_of(t)) is not None and s != owner}
        if others:
            bad.append(f"{rel}:{imp.line}: {owner} imports {imp.module} ({', '.join(sorted(others))} is another "
                       "service: share a contract in services.shared instead)")
    return bad


def shared_violations(rel: str, source: str) -> list[str]:
    if not rel.startswith("services/shared/"):
        return []
    bad = []
    for imp in imports_of(rel, source):
        svcs = {s for t in targets(imp) if (s := service_of(t)) is not None}
        if svcs:
            bad.append(f"{rel}:{imp.line}: shared code imports {imp.module} (services.shared must not depend "
                       f"on {', '.join(sorted(svcs))})")
    if not LOADS_SERVICES_BY_NAME.match(rel):
        for node in ast.walk(ast.parse(source, filename=rel)):
            # A bare "gateway" is also the gateway's process and producer name (as "orgs" is
            # the orgs service's, which is no module path either): only gateway.<module> counts.
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value != "gateway" and \
                    re.fullmatch(r"[\w.]+", node.value) and service_of(node.value):
                bad.append(f"{rel}:{node.lineno}: names service module {node.value!r} (only relay, runner, "
                           "history and platformctl load services by name)")
    return bad


RULES = {
    "domain": domain_violations,
    "nameko": nameko_violations,
    "vendor-sdks": vendor_sdk_violations,
    "cross-service": cross_service_violations,
    "shared": shared_violations,
}


def code_files() -> Iterator[tuple[str, str]]:
    for top in CODE_ROOTS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sources() -> list[tuple[str, str]]:
    return list(code_files())


@pytest.mark.parametrize("rule", list(RULES))
def test_imports_flow_one_way(rule: str, sources: list[tuple[str, str]]) -> None:
    violations = [v for rel, src in sources for v in RULES[rule](rel, src)]
    assert not violations, "\n" + "\n".join(violations)


def test_the_rules_see_the_code() -> None:
    # Guard against a vacuous pass (wrong root, renamed folders).
    files = dict(code_files())
    assert "services/orgs/domain.py" in files and "services/shared/nameko_ext.py" in files
    assert {"orgs", "billing"} <= set(SERVICE_PACKAGES)


# -- the checker itself catches what it should (synthetic sources) ----------------------------

@pytest.mark.parametrize("rule,rel,source", [
    ("domain", "services/orgs/domain.py", "from eventsourcing.application import Application"),
    ("domain", "services/orgs/domain.py", "import psycopg"),
    ("domain", "services/orgs/domain.py", "from services.shared.errors import NotFound"),
    ("domain", "services/orgs/domain.py", "from .application import OrgsApplication"),
    ("domain", "services/orgs/domain.py", "def f():\n    import requests\n"),
    ("nameko", "services/orgs/application.py", "from nameko.rpc import rpc"),
    ("nameko", "services/shared/platformctl.py", "def rpc():\n    import nameko.standalone.rpc\n"),
    ("vendor-sdks", "services/billing/application.py", "import stripe"),
    ("vendor-sdks", "services/provisioner/saga.py", "from kubernetes import client"),
    ("cross-service", "services/billing/subscriptions.py", "from services.orgs.domain import Organization"),
    ("cross-service", "services/billing/subscriptions.py", "from services import orgs"),
    ("cross-service", "gateway/app.py", "import services.billing.subscriptions"),
    ("cross-service", "services/orgs/service.py", "from gateway import app"),
    ("shared", "services/shared/consuming.py", "from services.billing.subscriptions import claim"),
    ("shared", "services/shared/consuming.py", "import importlib\nimportlib.import_module('services.orgs.outbox')"),
])
def test_rule_catches_violation(rule: str, rel: str, source: str) -> None:
    assert RULES[rule](rel, source), f"{rule} missed: {source!r} in {rel}"


@pytest.mark.parametrize("rule,rel,source", [
    ("domain", "services/orgs/domain.py",
     "from __future__ import annotations\nimport uuid\nfrom typing import Any\nfrom eventsourcing.domain import Aggregate"),
    ("domain", "services/orgs/domain/org.py", "from .user import User\nfrom services.orgs.domain.ids import ns"),
    ("nameko", "services/orgs/service.py", "from nameko.rpc import rpc"),
    ("vendor-sdks", "services/billing/adapters.py", "import stripe"),
    ("vendor-sdks", "services/provisioner/drivers/kubernetes.py", "from kubernetes import client"),
    ("cross-service", "services/billing/service.py", "from services.shared.nameko_ext import reliable_handler"),
    ("cross-service", "services/billing/service.py", "from .subscriptions import Subscriptions"),
    ("shared", "services/shared/relay.py", "PRODUCERS = {'orgs': 'services.orgs.outbox'}"),
    ("shared", "services/shared/contracts/__init__.py", "from . import orgs, probe"),
])
def test_rule_allows_what_it_should(rule: str, rel: str, source: str) -> None:
    assert RULES[rule](rel, source) == []
