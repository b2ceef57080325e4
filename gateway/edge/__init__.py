"""The project edge: the origin of every project's APIs (`python -m gateway.edge`).

A plain asyncio process (aiohttp, no eventlet, no nameko entrypoint) on its own listener
(`edge_host`:`edge_port`), separate from the dashboard and Management API: tenant code and
tenant traffic never share an origin with a user's dashboard session. See docs/edge.md.
"""
