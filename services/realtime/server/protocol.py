"""Phoenix channel frames as `@supabase/realtime-js` 2.x sends and reads them.

- `vsn=1.0.0`: every frame is a JSON object `{"join_ref", "ref", "topic", "event", "payload"}`.
- `vsn=2.0.0`: JSON arrays `[join_ref, ref, topic, event, payload]`, except user broadcasts,
  which are binary both ways (realtime-js's lib/serializer.js):
    client -> server, kind 3 (user broadcast push):
      u8 kind, u8 len(join_ref), u8 len(ref), u8 len(topic), u8 len(event), u8 len(meta),
      u8 encoding (0 binary, 1 JSON), join_ref, ref, topic, event, meta (JSON), payload
    server -> client, kind 4 (user broadcast):
      u8 kind, u8 len(topic), u8 len(event), u8 len(meta), u8 encoding, topic, event, meta, payload
  A user broadcast is `{"type": "broadcast", "event": e, "payload": p}` once decoded; a binary
  payload stays `bytes` (and cannot be sent to a vsn 1 client, as on Supabase).

Pure: standard library only.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

VSN1 = "1.0.0"
VSN2 = "2.0.0"
VSNS = (VSN1, VSN2)

USER_BROADCAST_PUSH = 3
USER_BROADCAST = 4
BINARY_ENCODING = 0
JSON_ENCODING = 1


class BadFrame(ValueError):
    pass


@dataclass
class Frame:
    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decode(data: str | bytes, vsn: str) -> Frame:
    if isinstance(data, (bytes, bytearray)):
        return _decode_binary(bytes(data))
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise BadFrame(f"not JSON: {exc}") from None
    if isinstance(value, list):
        if len(value) != 5:
            raise BadFrame("a frame is [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = value
    elif isinstance(value, dict):
        join_ref, ref, topic, event, payload = (value.get(k) for k in ("join_ref", "ref", "topic", "event", "payload"))
    else:
        raise BadFrame("a frame is a JSON array or object")
    if not isinstance(topic, str) or not isinstance(event, str):
        raise BadFrame("topic and event must be strings")
    return Frame(_s(join_ref), _s(ref), topic, event, payload if payload is not None else {})


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def _decode_binary(buf: bytes) -> Frame:
    if not buf or buf[0] != USER_BROADCAST_PUSH:
        raise BadFrame("unknown binary frame kind")
    if len(buf) < 7:
        raise BadFrame("binary frame too short")
    sizes = buf[1:6]
    encoding = buf[6]
    at = 7
    parts = []
    for size in sizes:
        if at + size > len(buf):
            raise BadFrame("binary frame too short")
        parts.append(buf[at:at + size].decode("utf-8", "replace"))
        at += size
    join_ref, ref, topic, event, meta = parts
    raw = buf[at:]
    payload: Any
    if encoding == JSON_ENCODING:
        try:
            payload = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError as exc:
            raise BadFrame(f"broadcast payload is not JSON: {exc}") from None
    elif encoding == BINARY_ENCODING:
        payload = raw
    else:
        raise BadFrame("unknown payload encoding")
    body: dict[str, Any] = {"type": "broadcast", "event": event, "payload": payload}
    if meta:
        try:
            extra = json.loads(meta)
        except ValueError:
            extra = {}
        if isinstance(extra, dict):
            for k, v in extra.items():
                body.setdefault(k, v)
    return Frame(join_ref or None, ref or None, topic, "broadcast", body)


def is_user_broadcast(event: str, payload: Any) -> bool:
    return event == "broadcast" and isinstance(payload, dict) and isinstance(payload.get("event"), str)


def encode(frame: Frame, vsn: str) -> str | bytes | None:
    """The frame as this client's serializer reads it; None when it cannot be represented
    (a binary broadcast payload for a vsn 1 client)."""
    payload = frame.payload
    if vsn == VSN2 and is_user_broadcast(frame.event, payload):
        return _encode_user_broadcast(frame.topic, payload)
    if isinstance(payload, dict) and isinstance(payload.get("payload"), (bytes, bytearray)):
        return None
    if vsn == VSN1:
        return _dumps({"join_ref": frame.join_ref, "ref": frame.ref, "topic": frame.topic, "event": frame.event,
                       "payload": payload})
    return _dumps([frame.join_ref, frame.ref, frame.topic, frame.event, payload])


def _encode_user_broadcast(topic: str, payload: dict[str, Any]) -> bytes:
    event = payload["event"]
    inner = payload.get("payload")
    if isinstance(inner, (bytes, bytearray)):
        encoding, body = BINARY_ENCODING, bytes(inner)
    else:
        encoding, body = JSON_ENCODING, _dumps(inner if inner is not None else {}).encode()
    meta_value = payload.get("meta")
    meta = _dumps(meta_value).encode() if meta_value else b""
    t, e = topic.encode(), event.encode()
    if max(len(t), len(e), len(meta)) > 255:
        raise BadFrame("topic, event and meta must be at most 255 bytes")
    return struct.pack("BBBBB", USER_BROADCAST, len(t), len(e), len(meta), encoding) + t + e + meta + body


def payload_size(payload: Any) -> int:
    """Bytes of a broadcast or presence payload, as the limits count them."""
    if isinstance(payload, (bytes, bytearray)):
        return len(payload)
    return len(_dumps(payload).encode())
