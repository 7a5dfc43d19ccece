"""Where generations, datasets and campaign files travel: a storage URL or a Prefect storage block.

`open_storage(spec)`: `spec` is an fsspec URL (`s3://bucket/prefix`, `file:///shared/path`; an S3
endpoint and credentials come from the environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY) or the name of a Prefect `RemoteFileSystem` block (`prefect block create
remote-file-system`), whose `basepath` is the URL and whose `settings` are the fsspec options (in
plain text on the Prefect server: the environment is the better place for a secret key).
"""

from __future__ import annotations

from mlip_autopipec.storage import ObjectStore, ObjectStoreError


def open_storage(spec: str) -> ObjectStore:
    if "://" in spec:
        return ObjectStore(spec)
    from prefect.filesystems import RemoteFileSystem

    try:
        block = RemoteFileSystem.load(spec)
    except ValueError as exc:  # Prefect: "Unable to find block document named ..."
        raise ObjectStoreError(f"storage {spec!r} is neither a URL (s3://bucket/prefix, file:///path) nor a "
                               f"remote-file-system block: {exc}") from None
    return ObjectStore(block.basepath, block.settings)
