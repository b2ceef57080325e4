"""Who consumes which contract, read from the source (importing the services would load
eventlet's wiring): the "consumed by" column of docs/events.md, and `platformctl upgrade
check`'s table of consumer versions.

A consumer declares what it reads in one of two ways, and both are found here:
- a nameko entrypoint method decorated `@reliable_handler("<producer>", "<event_type>",
  versions=[...])` (services/<svc>/service.py; consumer name `<svc>.<method>`);
- a module-level literal `ACCEPTS = (("<producer>", "<event_type>", <version>), ...)` (a
  standalone consumer process or a broadcast handler; consumer name is the module, e.g.
  `metering.consumer`).

Standard library only.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SOURCE_ROOTS = ("services", "gateway")


@dataclass(frozen=True)
class Consumer:
    consumer: str
    producer: str
    event_type: str
    versions: tuple[int, ...]


def _module_label(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[0] == "services":
        parts = parts[1:]
    if parts[-1] in ("service", "__init__") and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _from_source(rel: Path, source: str) -> list[Consumer]:
    found: list[Consumer] = []
    tree = ast.parse(source, filename=str(rel))
    label = _module_label(rel)
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "ACCEPTS" for t in targets) and node.value is not None:
                for producer, event_type, version in ast.literal_eval(node.value):
                    found.append(Consumer(label, producer, event_type, (int(version),)))
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for d in node.decorator_list:
            if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "reliable_handler" and len(d.args) >= 2:
                versions: tuple[int, ...] = (1,)
                for kw in d.keywords:
                    if kw.arg == "versions":
                        versions = tuple(ast.literal_eval(kw.value))
                found.append(Consumer(f"{label}.{node.name}", ast.literal_eval(d.args[0]),
                                      ast.literal_eval(d.args[1]), versions))
    return found


def declared_consumers(root: Path = ROOT) -> list[Consumer]:
    """Every declared consumer of a contract, sorted by consumer name."""
    found: list[Consumer] = []
    for top in SOURCE_ROOTS:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            source = path.read_text(encoding="utf-8")
            if "ACCEPTS" in source or "reliable_handler(" in source:
                found += _from_source(rel, source)
    return sorted(found, key=lambda c: (c.consumer, c.producer, c.event_type))


def consumers_of(producer: str, event_type: str, root: Path = ROOT) -> list[str]:
    return sorted({c.consumer for c in declared_consumers(root) if (c.producer, c.event_type) == (producer, event_type)})
