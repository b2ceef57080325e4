"""realtime nameko entrypoint. The process runs and answers health checks; its features come
with their own issues (see docs/architecture.md)."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import rpc

from services.shared.nameko_ext import ApplicationProvider, make_pool


class RealtimeService:
    name = "realtime"

    db = ApplicationProvider(lambda s: make_pool(s, "realtime", max_size=2))

    @rpc
    def health(self) -> dict[str, Any]:
        with self.db.connection() as conn:
            conn.execute("SELECT 1")
        return {"service": self.name, "status": "ok"}
