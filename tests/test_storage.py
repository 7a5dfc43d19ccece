"""The object store on a real S3-compatible server (moto, tests/s3.py) and on file:// URLs."""

from __future__ import annotations

import hashlib
import json
import os

import fsspec
import pytest

from mlip_autopipec.files import sha256_file
from mlip_autopipec.storage import ObjectStore, ObjectStoreError


@pytest.fixture(params=["s3", "file"])
def store_url(request, tmp_path):
    if request.param == "s3":
        return request.getfixturevalue("s3_server").bucket() + "/campaigns/cu"
    return (tmp_path / "objects-root").as_uri()


def _tree(root, seed: int):
    files = {"potential.yace": os.urandom(3000 + seed), "artifact.json": json.dumps({"seed": seed}).encode(),
             "report/plots/parity.png": os.urandom(777), "report/empty.txt": b""}
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return files


def _objects(store: ObjectStore) -> list[str]:
    fs, root = fsspec.core.url_to_fs(store.url)
    return sorted(fs.find(f"{root}/objects"))


def test_a_tree_travels_and_comes_back_byte_for_byte(store_url, tmp_path):
    source = tmp_path / "gen-000"
    files = _tree(source, 1)
    store = ObjectStore(store_url)
    tree = store.put_tree(source)
    assert tree.url == store.object_url(tree.digest) and tree.url.startswith(store_url)
    stored = _objects(store)
    assert len(stored) == len(set(files.values())) + 1  # contents once each (the empty file too) + the manifest

    again = store.put_tree(source)  # nothing new is written for the same contents
    assert again == tree and _objects(store) == stored

    copy = store.get_tree(tree.digest, tmp_path / "elsewhere" / "gen-000")
    assert {p.relative_to(copy).as_posix(): p.read_bytes() for p in copy.rglob("*") if p.is_file()} == files
    assert store.get_tree(tree.digest, copy) == copy  # an existing, matching copy is accepted
    (copy / "artifact.json").write_text("{}")
    with pytest.raises(ObjectStoreError, match="artifact.json differs"):
        store.get_tree(tree.digest, copy)


def test_a_corrupted_or_missing_object_names_its_key_and_digest_and_writes_nothing(store_url, tmp_path):
    source = tmp_path / "gen-000"
    files = _tree(source, 2)
    store = ObjectStore(store_url)
    tree = store.put_tree(source)
    potential = hashlib.sha256(files["potential.yace"]).hexdigest()
    fs, root = fsspec.core.url_to_fs(store_url)
    fs.pipe_file(f"{root}/objects/{potential[:2]}/{potential}", b"flipped bits")

    target = tmp_path / "download" / "gen-000"
    with pytest.raises(ObjectStoreError) as caught:
        store.get_tree(tree.digest, target)
    assert store.object_url(potential) in str(caught.value) and f"expected {potential}" in str(caught.value)
    assert not target.exists() and list(target.parent.iterdir()) == []  # no partial directory left

    fs.rm(f"{root}/objects/{potential[:2]}/{potential}")
    with pytest.raises(ObjectStoreError, match=f"no such object \\(expected digest {potential}\\)"):
        store.get_file(potential, tmp_path / "potential.yace")
    assert not (tmp_path / "potential.yace").exists()
    with pytest.raises(ObjectStoreError, match="no such object"):
        store.get_tree("0" * 64, tmp_path / "never")


def test_an_interrupted_upload_leaves_no_manifest_and_no_partial_object(store_url, tmp_path, monkeypatch):
    source = tmp_path / "gen-000"
    _tree(source, 3)
    store = ObjectStore(store_url)
    real_put = store._fs.put_file
    uploads = []

    def dies_on_the_third_file(local, remote, **kwargs):
        uploads.append(local)
        if len(uploads) == 3:
            if "/incoming/" in remote:  # a file system: half the bytes reach the disk, then the link drops
                with open(local, "rb") as handle:
                    store._fs.pipe_file(remote, handle.read()[: os.path.getsize(local) // 2])
            raise ConnectionResetError("connection reset by peer")  # S3 drops an incomplete PUT
        return real_put(local, remote, **kwargs)

    monkeypatch.setattr(store._fs, "put_file", dies_on_the_third_file)
    with pytest.raises(ObjectStoreError, match="connection reset"):
        store.put_tree(source)
    fs, root = fsspec.core.url_to_fs(store_url)
    complete = _objects(store)
    assert 2 <= len(complete) < 4  # the files sent whole (uploads run in parallel); no manifest
    for key in complete:
        data = fs.cat_file(key)
        assert hashlib.sha256(data).hexdigest() == key.rsplit("/", 1)[1]  # nothing partial under objects/
        assert b"mlip-autopipec tree" not in data
    assert not fs.exists(f"{root}/incoming") or fs.ls(f"{root}/incoming") == []
    monkeypatch.undo()
    tree = store.put_tree(source)  # a retry completes the tree
    assert store.get_tree(tree.digest, tmp_path / "copy").is_dir()


def test_a_manifest_cannot_write_outside_its_directory(store_url, tmp_path):
    store = ObjectStore(store_url)
    payload = store.put_bytes(b"owned")
    for evil in ("../escape.txt", "/etc/evil", "a/../../escape"):
        manifest = store.put_bytes(json.dumps({"format": "mlip-autopipec tree 1", "files": {
            evil: {"digest": payload.digest, "size": 5}}}).encode())
        with pytest.raises(ObjectStoreError, match="must stay inside the tree"):
            store.get_tree(manifest.digest, tmp_path / "target")
    not_a_tree = store.put_bytes(b"[1, 2]")
    with pytest.raises(ObjectStoreError, match="not a tree manifest"):
        store.get_tree(not_a_tree.digest, tmp_path / "target")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "target").exists()


def test_names_point_at_the_latest_digest(store_url, tmp_path):
    store = ObjectStore(store_url)
    assert store.name("generations/gen-000") is None
    first, second = store.put_bytes(b"one"), store.put_bytes(b"two")
    store.set_name("generations/gen-000", first.digest)
    store.set_name("generations/gen-000", second.digest)
    assert store.name("generations/gen-000") == second.digest
    assert ObjectStore(store_url).name("generations/gen-000") == second.digest  # another client sees it
    with pytest.raises(ObjectStoreError, match="must stay inside"):
        store.set_name("../outside", first.digest)
    single = tmp_path / "one.bin"
    assert store.get_file(first.digest, single) == single and sha256_file(single) == first.digest


def test_an_unknown_protocol_is_a_clear_error():
    with pytest.raises(ObjectStoreError, match="nosuchproto"):
        ObjectStore("nosuchproto://bucket/prefix")


def test_an_unreachable_endpoint_is_one_clear_error(monkeypatch, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = ObjectStore("s3://nowhere/prefix", {"skip_instance_cache": True})
    for action in (store.probe, lambda: store.put_bytes(b"x"), lambda: store.get_bytes("0" * 64),
                   lambda: store.get_tree("0" * 64, tmp_path / "t")):
        with pytest.raises(ObjectStoreError, match="s3://nowhere/prefix"):
            action()
    assert not (tmp_path / "t").exists()


def test_two_downloads_of_one_tree_into_one_directory_both_succeed(store_url, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    source = tmp_path / "gen-000"
    files = _tree(source, 4)
    store = ObjectStore(store_url)
    tree = store.put_tree(source)
    target = tmp_path / "cache" / tree.digest
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: store.get_tree(tree.digest, target), range(4)))
    assert results == [target] * 4
    assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()} == files
    assert [p.name for p in target.parent.iterdir()] == [tree.digest]  # no partial directory left


def test_a_missing_bucket_is_found_by_the_probe(s3_server):
    ObjectStore(s3_server.bucket() + "/prefix").probe()  # an existing, empty bucket is fine
    with pytest.raises(ObjectStoreError, match="no bucket 'no-such-bucket-here' there"):
        ObjectStore("s3://no-such-bucket-here/prefix").probe()
