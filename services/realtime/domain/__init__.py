"""realtime domain: each part in its own module (config: a project's realtime settings and
shutdowns; publication: which tables publish Postgres changes). Imports eventsourcing.domain
and the standard library only."""

from .config import NAMESPACE, ProjectRealtime, RuleViolation
from .publication import ProjectPublication

__all__ = ["NAMESPACE", "ProjectPublication", "ProjectRealtime", "RuleViolation"]
