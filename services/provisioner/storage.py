"""The object store the provisioner keeps tenant buckets and backups in: the shared port and
adapters (services/shared/objectstore.py), under the name the provisioner has always used."""

from services.shared.objectstore import (  # noqa: F401
    BUCKET_RE, KEY_RE, LocalObjectStore, ObjectStore, StorageError, check_bucket, check_key, copy_file,
    make_object_store, state_path,
)
