"""realtime domain: each part in its own module (config: a project's realtime settings and
shutdowns). Imports eventsourcing.domain and the standard library only."""

from .config import NAMESPACE, ProjectRealtime, RuleViolation

__all__ = ["NAMESPACE", "ProjectRealtime", "RuleViolation"]
