"""The platform's services. Each subpackage is one process; `shared` is the common plumbing."""
