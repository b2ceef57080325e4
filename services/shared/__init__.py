"""Plumbing shared by every service: settings, contracts, event store, relay, consumers.

May import libraries only, never a service package (services import this, not the reverse),
except the relay and runner which load services by name as wiring.
"""
