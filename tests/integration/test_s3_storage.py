"""The S3 adapter of the object store against a real S3 API on loopback (moto's server as a
subprocess), the local-filesystem adapter against the same expectations, and the local
driver keeping a paused tenant's backup in an S3 bucket."""

from __future__ import annotations

import random
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import requests

from services.provisioner.drivers.base import StepContext
from services.provisioner.drivers.local import LocalDriver, authenticator_role, group_role, owner_role
from services.provisioner.drivers.s3 import S3ObjectStore
from services.provisioner.storage import LocalObjectStore, ObjectStore, StorageError, make_object_store
from services.shared.db import connect
from services.shared.settings import Settings
from tests.conftest import ARTIFACTS, free_port, make_test_settings
from tests.support import stop_process

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    log_path = ARTIFACTS / "logs" / f"moto-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/moto-api/", timeout=1)
                break
            except requests.RequestException:
                assert proc.poll() is None, f"moto server exited: see {log_path}"
                assert time.monotonic() < deadline, f"moto server did not answer on {url}"
                time.sleep(0.1)
        yield url
    finally:
        stop_process(proc)


def s3_settings(url: str, tmp: Path) -> Settings:
    return make_test_settings("s3").with_overrides(
        storage_backend="s3", s3_endpoint_url=url, s3_region="eu-west-1", s3_access_key="test",
        s3_secret_key="test", state_dir=str(tmp))


@pytest.fixture(params=["s3", "local"])
def store(request: pytest.FixtureRequest, moto_url: str, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return make_object_store(make_test_settings("fs").with_overrides(state_dir=str(tmp_path)))
    s = make_object_store(s3_settings(moto_url, tmp_path))
    assert isinstance(s, S3ObjectStore)
    return s


def bucket() -> str:
    return "sp-" + "".join(random.choices(string.ascii_lowercase, k=20))


def test_buckets_and_objects_behave_the_same_on_s3_and_on_disk(store: ObjectStore, tmp_path: Path) -> None:
    b = bucket()
    assert not store.bucket_exists(b)
    store.ensure_bucket(b)
    store.ensure_bucket(b)  # create-or-get
    assert store.bucket_exists(b)
    assert store.get_bytes(b, "missing/key") is None and store.size(b, "missing/key") is None
    store.put_bytes(b, "_platform/backups/LATEST", b"_platform/backups/one.dump")
    assert store.get_bytes(b, "_platform/backups/LATEST") == b"_platform/backups/one.dump"
    big = tmp_path / "big.bin"
    big.write_bytes(random.randbytes(3 * 1024 * 1024))
    assert store.put_file(b, "_platform/backups/one.dump", big) == 3 * 1024 * 1024
    assert store.size(b, "_platform/backups/one.dump") == 3 * 1024 * 1024
    back = tmp_path / "back.bin"
    assert store.get_file(b, "_platform/backups/one.dump", back) == 3 * 1024 * 1024
    assert back.read_bytes() == big.read_bytes()
    with pytest.raises(StorageError, match="not found"):
        store.get_file(b, "_platform/backups/none.dump", back)
    store.put_bytes(b, "avatars/a.png", b"png")
    assert store.list_keys(b) == ["_platform/backups/LATEST", "_platform/backups/one.dump", "avatars/a.png"]
    assert store.list_keys(b, "_platform/") == ["_platform/backups/LATEST", "_platform/backups/one.dump"]
    assert store.delete_bucket(b) == 3
    assert not store.bucket_exists(b)
    assert store.delete_bucket(b) == 0  # already gone: fine
    with pytest.raises(StorageError):
        store.put_bytes(b, "x", b"no bucket")
    for bad in ("Upper_Case", "ab", "../escape"):
        with pytest.raises(StorageError, match="invalid bucket name"):
            store.ensure_bucket(bad)
    with pytest.raises(StorageError, match="invalid object key"):
        store.put_bytes("sp-" + "a" * 20, "../../etc/passwd", b"")


def test_s3_listing_and_emptying_go_past_one_page(moto_url: str, tmp_path: Path) -> None:
    store = make_object_store(s3_settings(moto_url, tmp_path))
    b = bucket()
    store.ensure_bucket(b)
    for i in range(1005):  # more than one ListObjectsV2 page and one DeleteObjects call
        store.put_bytes(b, f"objects/{i:05d}", b"x")
    assert len(store.list_keys(b)) == 1005
    assert store.delete_bucket(b) == 1005 and not store.bucket_exists(b)


def test_an_unreachable_s3_endpoint_is_a_readable_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = make_object_store(s3_settings(url, tmp_path))
    with pytest.raises(StorageError) as e:
        store.ensure_bucket(bucket())
    assert str(e.value).endswith(f"could not connect to S3 at {url}")


def test_a_paused_tenant_is_backed_up_to_s3_and_restored_from_it(moto_url: str, tmp_path: Path) -> None:
    settings = s3_settings(moto_url, tmp_path)
    store = make_object_store(settings)
    driver = LocalDriver(settings, store)
    ref = "".join(random.choices(string.ascii_lowercase, k=20))
    ctx = StepContext(ref, "pause-s3", lambda: {"db_pass": "s3 tenant password", "jwt_secret": "-"})
    try:
        for op in ("create", "pause", "restore"):
            if op == "create":
                for step in driver.plan(op):
                    driver.run_step(op, step, ctx)
                with psycopg.connect(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=ref,
                                     user=owner_role(ref), password="s3 tenant password", autocommit=True) as conn:
                    conn.execute("CREATE TABLE kept AS SELECT g AS v FROM generate_series(1, 500) g")
                continue
            for step in driver.plan(op):
                driver.run_step(op, step, ctx)
            if op == "pause":
                assert store.list_keys(f"sp-{ref}") == ["_platform/backups/LATEST", "_platform/backups/pause-s3.dump"]
        with psycopg.connect(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=ref,
                             user=owner_role(ref), password="s3 tenant password", autocommit=True) as conn:
            assert conn.execute("SELECT count(*), sum(v) FROM kept").fetchone() == (500, 125250)
        for step in driver.plan("delete"):
            driver.run_step("delete", step, ctx)
        assert not store.bucket_exists(f"sp-{ref}")
    finally:
        with connect(settings, autocommit=True, dbname="postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{ref}" WITH (FORCE)')
            for role in (f"supabase_auth_admin.{ref}", f"supabase_storage_admin.{ref}", f"supabase_realtime_admin.{ref}",
                     owner_role(ref),
                         authenticator_role(ref), group_role(ref)):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_local_store_writes_objects_whole(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "storage")
    b = bucket()
    store.ensure_bucket(b)
    store.put_bytes(b, "a/b", b"1")
    # No temporary file is left next to the object, and temporaries are never listed.
    assert [p.name for p in (tmp_path / "storage" / b / "a").iterdir()] == ["b"]
