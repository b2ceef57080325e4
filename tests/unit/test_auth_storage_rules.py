"""The project Auth and Storage APIs' pure rules: object names, sizes, MIME patterns, ban
durations, rate-limit windows, keyless paths, password hashes (gateway/edge/auth.py, storage.py)."""

from __future__ import annotations

import pytest

from gateway.edge import auth, storage


@pytest.mark.parametrize("name", ["a.txt", "folder/a b.png", "uid/sub/deep.txt", "ümlaut/ok"])
def test_object_names_accepted(name: str) -> None:
    assert storage.check_name(name) == name


@pytest.mark.parametrize("name", ["", "/abs", "a//b", "a/../b", "./a", "a/.", "tab\there", "x" * 1025])
def test_object_names_refused(name: str) -> None:
    with pytest.raises(storage.StorageApiError) as e:
        storage.check_name(name)
    assert e.value.status == 400


def test_sizes_as_storage_js_sends_them() -> None:
    assert storage.parse_size(1024) == 1024
    assert storage.parse_size("10MB") == 10_000_000
    assert storage.parse_size("1.5 kb") == 1500
    assert storage.parse_size(None) is None and storage.parse_size(0) is None
    for bad in ("ten", True, "5 parsecs"):
        with pytest.raises(storage.StorageApiError):
            storage.parse_size(bad)


def test_mime_patterns() -> None:
    assert storage.mime_allowed("image/png", ["image/*"])
    assert storage.mime_allowed("text/plain; charset=utf-8", ["text/plain"])
    assert not storage.mime_allowed("application/pdf", ["image/*", "text/plain"])
    assert storage.mime_allowed("anything/else", None)


def test_keyless_paths_are_only_signed_and_public_ones() -> None:
    open_paths = storage.StorageUpstream.open_paths
    assert "/object/public/pics/logo.png" in open_paths
    assert "/object/sign/docs/a.txt" in open_paths
    assert "/object/upload/sign/docs/a.txt" in open_paths
    assert "/object/docs/a.txt" not in open_paths
    assert "/bucket" not in open_paths


def test_ban_durations_in_go_syntax() -> None:
    assert auth._duration_s("24h") == 86400
    assert auth._duration_s("1h30m") == 5400
    for bad in ("forever", "10", "5d", 3):
        with pytest.raises(auth.AuthError):
            auth._duration_s(bad)


def test_rate_window_counts_per_key() -> None:
    w = auth.Windows()
    assert [w.allow(("p", "ip1"), 2, 60) for _ in range(3)] == [True, True, False]
    assert w.allow(("p", "ip2"), 2, 60)
    assert w.allow(("p", "ip1"), 0, 60)  # 0: no limit


def test_passwords_are_bcrypt_as_gotrue_stores_them() -> None:
    hashed = auth.hash_password("correct horse")
    assert hashed.startswith("$2b$10$")
    assert auth.check_password("correct horse", hashed)
    assert not auth.check_password("wrong horse", hashed)
    assert not auth.check_password("x", None) and not auth.check_password("x", "not a hash")
