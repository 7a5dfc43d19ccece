"""Object storage for what travels between machines: potentials, datasets, reports, campaign files.

`ObjectStore(url)` is a location any fsspec URL names: `s3://bucket/prefix` (s3fs; endpoint and
credentials from the environment, e.g. AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
or passed as `storage_options`), `file:///shared/path`, `memory://` in tests. Under it:

    objects/<sha256[:2]>/<sha256>   content-addressed file contents, written once
    names/<name>                    small pointers: a name -> the digest it stands for now

A directory travels as a *tree*: each file as an object, then a JSON manifest (relative path ->
digest, size) as one more object; the manifest's digest names the whole tree. An object appears
whole or not at all (one PUT on S3-like stores; on a file system it is written under a temporary
key and moved onto its final key), and a tree's manifest only after all its files, so an interrupted upload never leaves a digest (or a name) pointing at a
partial object. Every read verifies the digest: a missing or corrupted object is an
ObjectStoreError naming its key and the digest expected, and nothing is left half-written locally.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import fsspec

from mlip_autopipec.files import atomic_path, sha256_file

TREE_FORMAT = "mlip-autopipec tree 1"
_ATOMIC_PUT_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "memory"}
_BUCKET_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs"}
_TRANSFERS = 8


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a storage client raises when the location cannot be used: OSError (fsspec's convention),
    and botocore's own errors, which s3fs lets through for an unreachable endpoint."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


_TRANSPORT_ERRORS = _transport_errors()


class ObjectStoreError(Exception):
    """An object is missing, corrupted, or the storage location cannot be used."""


def check_no_credentials(spec: str) -> str:
    """A storage spec travels as a flow parameter and a block field, which the Prefect server records
    and shows: `user:secret@` in it (in any part of a chained `a::b` URL) is refused (ValueError),
    without echoing it."""
    parts = [urlsplit(part) for part in spec.split("::") if "://" in part]
    if any(part.username is not None or part.password is not None for part in parts):
        raise ValueError("put no credentials in the storage URL: give them in the environment "
                         "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or in a remote-file-system block")
    return spec


@dataclass(frozen=True)
class StoredObject:
    url: str
    digest: str
    size: int


class ObjectStore:
    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = url.rstrip("/")
        try:
            self._fs, root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        except (ValueError, ImportError) as exc:
            raise ObjectStoreError(f"storage {url!r}: {exc}") from exc
        self._root = root.rstrip("/")
        self._put_is_atomic = bool(set(_as_tuple(self._fs.protocol)) & _ATOMIC_PUT_PROTOCOLS)

    def object_url(self, digest: str) -> str:
        return f"{self.url}/objects/{digest[:2]}/{digest}"

    def _key(self, digest: str) -> str:
        return f"{self._root}/objects/{digest[:2]}/{digest}"

    def _write(self, key: str, write, what: str) -> None:
        """Write an object whole or not at all: one PUT on an object store (S3, GCS, Azure: an object
        appears only when complete), a temporary key moved onto `key` elsewhere (a file system)."""
        if self._put_is_atomic:
            self._wrap(lambda: write(key), what)
            return
        incoming = f"{self._root}/incoming/{uuid.uuid4().hex}"
        try:
            self._wrap(lambda: self._fs.makedirs(f"{self._root}/incoming", exist_ok=True), what)
            self._wrap(lambda: write(incoming), what)
            self._wrap(lambda: self._fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True), what)
            self._wrap(lambda: self._fs.mv(incoming, key), what)
        finally:
            with contextlib.suppress(OSError):
                if self._fs.exists(incoming):
                    self._fs.rm(incoming)

    def _stored(self, digest: str, size: int) -> bool:
        try:
            return self._fs.info(self._key(digest))["size"] == size
        except FileNotFoundError:
            return False
        except _TRANSPORT_ERRORS as exc:
            raise ObjectStoreError(f"{self.url}: cannot reach it: {exc}") from exc

    def probe(self) -> None:
        """Fail now, with one clear line, if the location cannot be reached or read (wrong endpoint,
        credentials or bucket), rather than after a training whose result it should keep."""
        self.name("probe")
        if set(_as_tuple(self._fs.protocol)) & _BUCKET_PROTOCOLS:
            bucket = self._root.split("/", 1)[0]
            try:
                found = self._fs.exists(bucket)
            except _TRANSPORT_ERRORS as exc:
                raise ObjectStoreError(f"{self.url}: cannot reach it: {exc}") from exc
            if not found:
                raise ObjectStoreError(f"{self.url}: no bucket {bucket!r} there (create it first)")

    def put_file(self, path: str | os.PathLike) -> StoredObject:
        """Upload a file's contents (once: an object already there is not sent again)."""
        digest, size = sha256_file(path), os.path.getsize(path)
        if not self._stored(digest, size):
            self._write(self._key(digest), lambda key: self._fs.put_file(str(path), key), f"uploading {path}")
        return StoredObject(self.object_url(digest), digest, size)

    def put_bytes(self, data: bytes) -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        if not self._stored(digest, len(data)):
            self._write(self._key(digest), lambda key: self._fs.pipe_file(key, data), "uploading")
        return StoredObject(self.object_url(digest), digest, len(data))

    def get_bytes(self, digest: str) -> bytes:
        data = self._read(digest, lambda key: self._fs.cat_file(key))
        self._check(digest, hashlib.sha256(data).hexdigest())
        return data

    def get_file(self, digest: str, target: str | os.PathLike) -> Path:
        """Download the object `digest` to `target`, verified; `target` appears only if it matches."""
        with atomic_path(target) as tmp:
            self._read(digest, lambda key: self._fs.get_file(key, str(tmp)))
            self._check(digest, sha256_file(tmp))
        return Path(target)

    def put_tree(self, directory: str | os.PathLike) -> StoredObject:
        """Upload every file under `directory`, then its manifest; returns the manifest's object."""
        directory = Path(directory)
        paths = sorted(p for p in directory.rglob("*") if p.is_file())
        with ThreadPoolExecutor(_TRANSFERS) as pool:  # an object store's latency, not its bandwidth, dominates
            stored = list(pool.map(self.put_file, paths))
        files = {path.relative_to(directory).as_posix(): {"digest": one.digest, "size": one.size}
                 for path, one in zip(paths, stored)}
        manifest = {"format": TREE_FORMAT, "files": files}
        return self.put_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode())

    def tree_files(self, digest: str) -> dict[str, dict]:
        """The manifest of tree `digest`: relative path -> {"digest", "size"}."""
        try:
            manifest = json.loads(self.get_bytes(digest))
            files = manifest["files"] if manifest.get("format") == TREE_FORMAT else None
        except (ValueError, AttributeError, KeyError, TypeError):
            files = None
        if not isinstance(files, dict):
            raise ObjectStoreError(f"{self.object_url(digest)} is not a tree manifest ({TREE_FORMAT!r})")
        for relative in files:
            _safe_relative(relative, self.object_url(digest))
        return files

    def get_tree(self, digest: str, target: str | os.PathLike) -> Path:
        """Download tree `digest` into the directory `target`, every file verified. A `target` that
        exists must already hold those files (checked); otherwise it appears only when complete."""
        target = Path(target)
        files = self.tree_files(digest)
        if target.exists():
            differing = [rel for rel, entry in files.items()
                         if not (target / rel).is_file() or sha256_file(target / rel) != entry["digest"]]
            if differing:
                raise ObjectStoreError(f"{target} exists and does not hold tree {digest[:12]}: "
                                       f"{differing[0]} differs ({len(differing)} files in all)")
            return target
        partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            with ThreadPoolExecutor(_TRANSFERS) as pool:
                list(pool.map(lambda item: self.get_file(item[1]["digest"], partial / item[0]), files.items()))
            partial.mkdir(parents=True, exist_ok=True)  # an empty tree is a directory too
            try:
                os.replace(partial, target)
            except OSError:
                if not target.is_dir():
                    raise
                return self.get_tree(digest, target)  # another process got there first: check its copy
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target

    def set_name(self, name: str, digest: str) -> None:
        """Point `name` at `digest` (replacing what it pointed at); written whole or not at all."""
        key = f"{self._root}/names/{_safe_relative(name, self.url)}"
        self._write(key, lambda target: self._fs.pipe_file(target, digest.encode()), f"naming {name}")

    def name(self, name: str) -> str | None:
        """The digest `name` points at, or None."""
        key = f"{self._root}/names/{_safe_relative(name, self.url)}"
        try:
            return self._fs.cat_file(key).decode().strip()
        except FileNotFoundError:
            return None
        except _TRANSPORT_ERRORS as exc:
            raise ObjectStoreError(f"{self.url}: cannot reach it: {exc}") from exc

    def _read(self, digest: str, read):
        key = self._key(digest)
        try:
            return read(key)
        except FileNotFoundError:
            raise ObjectStoreError(f"{self.object_url(digest)}: no such object (expected digest {digest})") from None
        except _TRANSPORT_ERRORS as exc:
            raise ObjectStoreError(f"{self.object_url(digest)}: cannot read it: {exc}") from exc

    def _check(self, expected: str, actual: str) -> None:
        if actual != expected:
            raise ObjectStoreError(f"{self.object_url(expected)} is corrupted: its contents have digest "
                                   f"{actual}, expected {expected}; delete that object and upload again from a "
                                   "good copy (an upload skips objects already there)")

    def _wrap(self, action, what: str) -> None:
        try:
            action()
        except _TRANSPORT_ERRORS as exc:
            raise ObjectStoreError(f"{self.url}: {what} failed: {exc}") from exc


def _as_tuple(protocol: str | tuple[str, ...]) -> tuple[str, ...]:
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _safe_relative(relative: str, where: str) -> str:
    """A relative POSIX path that stays below its root: a manifest from storage never writes elsewhere."""
    path = PurePosixPath(relative)
    if not relative or path.is_absolute() or ".." in path.parts or "\\" in relative:
        raise ObjectStoreError(f"{where}: refusing path {relative!r} (must stay inside the tree)")
    return path.as_posix()
