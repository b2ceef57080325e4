"""`python -m services.realtime.server`: run the realtime server."""

from .app import main

main()
