"""Phoenix frames as realtime-js 2.x serializes them (services/realtime/server/protocol.py):
vsn 1 JSON objects, vsn 2 JSON arrays and binary user broadcasts both ways."""

from __future__ import annotations

import json
import struct

import pytest

from services.realtime.server.protocol import VSN1, VSN2, BadFrame, Frame, decode, encode


def user_broadcast_push(join_ref: str, ref: str, topic: str, event: str, payload: bytes, encoding: int,
                        meta: str = "") -> bytes:
    """What realtime-js's serializer sends for channel.send({type: 'broadcast', ...}) (kind 3)."""
    head = struct.pack("BBBBBBB", 3, len(join_ref), len(ref), len(topic), len(event), len(meta), encoding)
    return head + (join_ref + ref + topic + event + meta).encode() + payload


def test_vsn1_and_vsn2_text_frames() -> None:
    f = decode(json.dumps({"join_ref": "1", "ref": "2", "topic": "realtime:a", "event": "phx_join",
                           "payload": {"config": {}}}), VSN1)
    assert (f.join_ref, f.ref, f.topic, f.event, f.payload) == ("1", "2", "realtime:a", "phx_join", {"config": {}})
    f = decode(json.dumps(["1", "2", "phoenix", "heartbeat", {}]), VSN2)
    assert (f.topic, f.event) == ("phoenix", "heartbeat")
    reply = Frame("1", "2", "realtime:a", "phx_reply", {"status": "ok", "response": {}})
    assert json.loads(encode(reply, VSN1)) == {"join_ref": "1", "ref": "2", "topic": "realtime:a",
                                                "event": "phx_reply", "payload": {"status": "ok", "response": {}}}
    assert json.loads(encode(reply, VSN2)) == ["1", "2", "realtime:a", "phx_reply", {"status": "ok", "response": {}}]


def test_binary_user_broadcast_push_json_and_binary_payloads() -> None:
    f = decode(user_broadcast_push("1", "5", "realtime:room", "hello", b'{"n":1}', 1), VSN2)
    assert (f.join_ref, f.ref, f.topic, f.event) == ("1", "5", "realtime:room", "broadcast")
    assert f.payload == {"type": "broadcast", "event": "hello", "payload": {"n": 1}}
    f = decode(user_broadcast_push("1", "", "realtime:room", "bin", b"\x00\x01", 0), VSN2)
    assert f.ref is None and f.payload["payload"] == b"\x00\x01"


def test_user_broadcast_to_clients() -> None:
    body = {"type": "broadcast", "event": "hello", "payload": {"n": 1}}
    data = encode(Frame(None, None, "realtime:room", "broadcast", body), VSN2)
    assert isinstance(data, bytes)
    kind, tlen, elen, mlen, encoding = struct.unpack("BBBBB", data[:5])
    assert (kind, encoding, mlen) == (4, 1, 0)
    assert data[5:5 + tlen] == b"realtime:room" and data[5 + tlen:5 + tlen + elen] == b"hello"
    assert json.loads(data[5 + tlen + elen:]) == {"n": 1}
    # vsn 1 gets JSON; a binary payload cannot be represented there (as on Supabase).
    assert json.loads(encode(Frame(None, None, "realtime:room", "broadcast", body), VSN1))["payload"] == body
    assert encode(Frame(None, None, "t", "broadcast", {**body, "payload": b"\x01"}), VSN1) is None


@pytest.mark.parametrize("raw", [b"", b"\x09abc", b"\x03\x05", "not json", "[1,2]", "42"])
def test_bad_frames_are_refused(raw: bytes | str) -> None:
    with pytest.raises(BadFrame):
        decode(raw, VSN2)
