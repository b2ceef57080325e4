"""realtime application: one eventsourcing Application whose commands come in parts, one
mixin per part (services/realtime/usecases/): config (settings and shutdowns), operator (the
admin panel's live view), publication (which tables publish Postgres changes).

Imports its domain, its use cases, eventsourcing and services.shared; never nameko. Set by
bootstrap: `views` (the settings read model, services/realtime/config_views.py) and
`tenant_sql` (services/shared/tenantsql.py, for the publication).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from eventsourcing.application import Application

from .domain import ProjectRealtime
from .usecases.config import ConfigCommands
from .usecases.operator import OperatorViews
from .usecases.publication import PublicationCommands


class RealtimeApplication(ConfigCommands, OperatorViews, PublicationCommands, Application):
    name = "realtime"

    views: Any = None
    tenant_sql: Any = None
    clock: Callable[[], float] = staticmethod(time.time)

    def close(self) -> None:
        super().close()

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Every save also writes the saved projects' settings rows: in the events'
        transaction on PostgreSQL (with their NOTIFY), right after it in memory."""
        rows = [self.config_view_row(o) for o in objs if isinstance(o, ProjectRealtime)] if self.views else []
        if rows and self.views.in_transaction:
            kwargs["config_views"] = rows
        recordings = super().save(*objs, **kwargs)
        if rows and not self.views.in_transaction:
            self.views.apply(rows)
        return recordings
