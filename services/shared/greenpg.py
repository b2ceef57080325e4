"""Import first in every eventlet process: makes psycopg wait cooperatively.

psycopg 3's default wait function blocks eventlet's hub, so concurrent queries in one
process would run one after another. `wait_select` uses select(), which eventlet greens.
The variable must be set before psycopg is first imported; if psycopg got imported earlier
with another wait function, fail loudly rather than serialise every query.
"""

import os
import sys

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
if "psycopg" in sys.modules:  # pragma: no cover -- a wiring mistake
    import psycopg.waiting

    if psycopg.waiting.wait is not psycopg.waiting.wait_select:
        raise RuntimeError("psycopg was imported before services.shared.greenpg; queries would block eventlet")
