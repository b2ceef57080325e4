"""ObjectStore.delete_prefix (the kubernetes driver's delete_s3_prefix: Storage leaves a
deleted tenant's objects under <ref>/ in its bucket), on moto's real S3 API and on disk."""

from __future__ import annotations

import pytest

from services.provisioner.storage import ObjectStore
from tests.integration.test_s3_storage import moto_url, store  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(60)


def test_delete_prefix_removes_that_tenant_only_and_is_idempotent(store: ObjectStore) -> None:  # noqa: F811
    bucket = "sp-storage-prefix-test"
    store.ensure_bucket(bucket)
    for key in ("aaaa/.supaplatform", "aaaa/avatars/1.png", "aaaa/deep/er/2.txt", "aaaab/other.txt", "bbbb/x"):
        store.put_bytes(bucket, key, b"data")
    assert store.delete_prefix(bucket, "aaaa/") == 3
    assert store.list_keys(bucket) == ["aaaab/other.txt", "bbbb/x"]
    assert store.delete_prefix(bucket, "aaaa/") == 0
