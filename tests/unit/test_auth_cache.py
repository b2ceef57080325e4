"""The gateway's authentication cache: entries expire after the TTL, and orgs' events (or a
change made through this gateway) drop them at once."""

from __future__ import annotations

from gateway.authcache import AuthCache, token_key, user_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl_and_keys_never_hold_the_token() -> None:
    clock = Clock()
    cache = AuthCache(ttl=10, clock=clock)
    key = token_key("sbp_" + "a" * 40)
    assert "sbp_" not in key and "a" * 40 not in key
    cache.put(key, {"id": "u1", "organizations": []})
    clock.now += 9.9
    assert cache.get(key) == {"id": "u1", "organizations": []}
    clock.now += 0.2
    assert cache.get(key) is None


def test_events_drop_the_users_entries_only() -> None:
    cache = AuthCache(ttl=60)
    cache.put(token_key("t1"), {"id": "u1", "organizations": ["acme"]})
    cache.put(user_key("u1"), {"id": "u1", "organizations": ["acme"]})
    cache.put(token_key("t2"), {"id": "u2", "organizations": ["other"]})
    cache.on_event({"event_type": "token_revoked", "payload": {"user_id": "u1", "token_id": "x"}})
    assert cache.get(token_key("t1")) is None and cache.get(user_key("u1")) is None
    assert cache.get(token_key("t2")) is not None
    cache.on_event({"event_type": "organization_deleted", "payload": {"slug": "other"}})
    assert cache.get(token_key("t2")) is None


def test_a_zero_ttl_caches_nothing() -> None:
    cache = AuthCache(ttl=0)
    cache.put(token_key("t"), {"id": "u"})
    assert cache.get(token_key("t")) is None


def test_an_organization_list_goes_when_one_of_its_organizations_changes() -> None:
    from gateway.authcache import orgs_key

    cache = AuthCache(ttl=60)
    cache.put(orgs_key("u1"), {"id": "u1", "organizations": ["acme"], "body": "[]"})
    cache.on_event({"event_type": "organization_updated", "payload": {"slug": "other", "changes": {}}})
    assert cache.get(orgs_key("u1")) is not None
    cache.on_event({"event_type": "organization_updated", "payload": {"slug": "acme", "changes": {"name": "A"}}})
    assert cache.get(orgs_key("u1")) is None
