"""The S3 adapter of the object store (services/shared/s3_adapter.py), under the name the
provisioner has always used."""

from services.shared.s3_adapter import S3ObjectStore  # noqa: F401
