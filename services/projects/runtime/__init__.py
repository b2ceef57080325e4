"""The project's Auth and Storage APIs, run by the project edge (gateway/edge) as upstreams
of its own process: see docs/project-apis-auth-storage.md."""
