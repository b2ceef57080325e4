"""RabbitMQ management API client (vhosts, queues, bindings): for operators and tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from .settings import Settings


class RabbitAdmin:
    def __init__(self, settings: Settings, timeout: float = 5.0):
        self.base = settings.rabbitmq_management_url.rstrip("/") + "/api"
        self.auth = (settings.amqp_user, settings.amqp_password)
        self.vhost = settings.amqp_vhost
        self.timeout = timeout

    def _url(self, *parts: str) -> str:
        return "/".join([self.base, *[quote(p, safe="") for p in parts]])

    def _get(self, *parts: str, **params: Any) -> Any:
        r = requests.get(self._url(*parts), auth=self.auth, timeout=self.timeout, params=params or None)
        r.raise_for_status()
        return r.json()

    def create_vhost(self, vhost: str) -> None:
        requests.put(self._url("vhosts", vhost), auth=self.auth, timeout=self.timeout).raise_for_status()
        requests.put(
            self._url("permissions", vhost, self.auth[0]),
            json={"configure": ".*", "write": ".*", "read": ".*"},
            auth=self.auth,
            timeout=self.timeout,
        ).raise_for_status()

    def delete_vhost(self, vhost: str) -> None:
        r = requests.delete(self._url("vhosts", vhost), auth=self.auth, timeout=self.timeout)
        if r.status_code not in (204, 404):
            r.raise_for_status()

    def queues(self) -> list[dict[str, Any]]:
        return list(self._get("queues", self.vhost, columns="name,messages,messages_ready,"
                              "messages_unacknowledged,consumers"))

    def queue(self, name: str) -> dict[str, Any] | None:
        r = requests.get(self._url("queues", self.vhost, name), auth=self.auth, timeout=self.timeout)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return dict(r.json())

    def bindings_of_exchange(self, exchange: str) -> list[dict[str, Any]]:
        r = requests.get(self._url("exchanges", self.vhost, exchange, "bindings", "source"),
                         auth=self.auth, timeout=self.timeout)
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return list(r.json())
