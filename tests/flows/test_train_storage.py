"""Generations that travel (issue 17): `flows.train --storage` uploads a real (tiny) Pacemaker
generation to an S3 server (moto on 127.0.0.1); with the local generation deleted, the block alone
gives its files back byte for byte, a calculator with the same energies, and a potential for
flows.validate, flows.train --initial-potential and run.yaml's model_in. A corrupted object fails
naming its key and digest and leaves nothing half-written."""

from __future__ import annotations

import shutil

import ase.io
import numpy as np
import pytest
import yaml

from flows import train as train_flow
from flows import validate as validate_flow
from mlip_autopipec.backends import PotentialArtifact
from mlip_autopipec.backends.potentials import load_potential
from mlip_autopipec.storage import ObjectStore
from tasks.blocks import PotentialGeneration
from tests.flows.test_train import TINY_TRAINING

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published(tmp_path_factory, shared_data, s3_server):
    """One tiny generation trained with --storage, its files and energies read, then its run deleted."""
    work = tmp_path_factory.mktemp("travel")
    frames = [atoms for atoms in ase.io.read(shared_data / "Cu-I.extxyz", ":") if len(atoms) <= 2][::3][:36]
    ase.io.write(work / "cu-small.extxyz", frames)
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump({"campaign": "cu-travel", "export": {"test_fraction": 0.2, "seed": 0},
                                      "training": TINY_TRAINING}))
    bucket = f"{s3_server.bucket()}/mlip"
    out = work / "run"
    result = train_flow.train(out=str(out), config=str(config), data=[str(work / "cu-small.extxyz")],
                              name=f"travel-{bucket.split('/')[2]}", storage=bucket)
    generation = out / "generations" / "gen-000"
    files = {path.relative_to(generation).as_posix(): path.read_bytes()
             for path in generation.rglob("*") if path.is_file()}
    probe = frames[:4]
    energies = predict(load_potential(generation)[0], probe)
    test_data = work / "test.extxyz"
    shutil.copy(out / "dataset" / "test.extxyz", test_data)
    shutil.rmtree(out)
    return {"block": result.block, "bucket": bucket, "files": files, "probe": probe, "energies": energies,
            "test_data": test_data}


def predict(calculator, frames) -> list[float]:
    energies = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calculator
        energies.append(atoms.get_potential_energy())
    return energies


def test_the_block_alone_gives_the_generation_back_byte_for_byte(published, tmp_path, monkeypatch):
    block = PotentialGeneration.load(published["block"])
    assert block.storage == published["bucket"]
    assert set(block.objects) >= {"potential_yaml", "potential_yace", "active_set", "artifact"}
    store = ObjectStore(published["bucket"])
    assert store.name(f"{published['block'].rsplit('-gen-', 1)[0]}/generations/gen-000") == block.tree_digest

    target = block.download(tmp_path / "fresh")
    assert {path.relative_to(target).as_posix(): path.read_bytes()
            for path in target.rglob("*") if path.is_file()} == published["files"]
    assert {"report/evaluation-test.json", "report/report.md", "report/parity-test.png"} <= set(published["files"])

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    energies = predict(block.calculator(), published["probe"])
    assert energies == published["energies"]  # the same potential: bit-identical energies
    assert (tmp_path / "cache" / "mlip-autopipec" / "generations" / block.tree_digest / "artifact.json").is_file()


def test_validate_takes_the_block_name(published, tmp_path, capsys):
    out = tmp_path / "validation"
    assert validate_flow.main(["--potential", published["block"], "--data", str(published["test_data"]),
                               "--out", str(out)]) == 0
    assert (out / "report.md").is_file() and (out / "validation_metrics.json").is_file()
    assert PotentialArtifact.load(out / "potential" / published["block"]).digest == \
        PotentialGeneration.load(published["block"]).potential_digest


def test_run_yaml_model_in_takes_the_block_name(published, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({"backend": "pacemaker", "task": "evaluate", "device": "cpu",
                                        "run_dir": str(tmp_path / "eval"), "model_in": published["block"],
                                        "data": {"test": str(published["test_data"])}}))
    assert train_flow.main(["--config", str(run_yaml)]) == 0
    assert (tmp_path / "eval" / "eval_metrics.json").is_file()


def test_a_missing_block_is_one_line_and_exit_2(published, tmp_path, capsys):
    code = train_flow.main(["--data", str(published["test_data"]), "--out", str(tmp_path / "out"),
                            "--initial-potential", "nobody-gen-007"])
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [
        "error: nobody-gen-007: neither a file nor a PotentialGeneration block on this Prefect server"]


def test_a_corrupted_object_fails_naming_key_and_digest_and_leaves_nothing(published, tmp_path, capsys):
    block = PotentialGeneration.load(published["block"])
    store = ObjectStore(published["bucket"])
    digest = block.objects["potential_yace"].rsplit("/", 1)[1]
    key = f"{store._root}/objects/{digest[:2]}/{digest}"
    original = store._fs.cat_file(key)
    store._fs.pipe_file(key, original.replace(b"0", b"1", 1))
    try:
        out = tmp_path / "validation"
        code = validate_flow.main(["--potential", published["block"], "--data", str(published["test_data"]),
                                   "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1
        assert err.splitlines() == [f"error: {block.objects['potential_yace']} is corrupted: its contents have "
                                    f"digest {err.split('digest ')[1].split(',')[0]}, expected {digest}; delete "
                                    "that object and upload again from a good copy (an upload skips objects "
                                    "already there)"]
        assert not (out / "potential").exists() or list((out / "potential").iterdir()) == []

        code = train_flow.main(["--data", str(published["test_data"]), "--out", str(tmp_path / "out"),
                                "--initial-potential", published["block"]])
        assert code == 1 and f"expected {digest}" in capsys.readouterr().err
        assert list((tmp_path / "out" / "initial").iterdir()) == []
    finally:
        store._fs.pipe_file(key, original)


def test_fine_tuning_from_a_block_name(published, tmp_path):
    """--initial-potential <block>: downloaded into OUT/initial/<block>, verified, fine-tuned from."""
    out = tmp_path / "finetune"
    config = tmp_path / "finetune.yaml"
    config.write_text(yaml.safe_dump({"campaign": "cu-travel", "export": {"test_fraction": 0.2, "seed": 0},
                                      "training": {**TINY_TRAINING, "maxiter": 3}}))
    assert train_flow.main(["--config", str(config), "--data", str(published["test_data"]),
                            "--out", str(out), "--initial-potential", published["block"],
                            "--storage", published["bucket"]]) == 0
    initial = PotentialArtifact.load(out / "initial" / published["block"])
    trained = PotentialArtifact.load(out / "generations" / "gen-000")
    assert trained.initial_potential == initial.digest == PotentialGeneration.load(published["block"]).potential_digest
    assert np.isfinite(list(trained.metrics.values())).all()


def test_sample_with_a_missing_block_name_is_one_line(tmp_path, capsys):
    import json

    from flows import sample as sample_flow
    from mlip_autopipec.sampling import structure_to_json
    from tests.conftest import PROJECT_ROOT
    from tests.sampling.structures import slab_with_adsorbate

    structure = tmp_path / "start.json"
    structure.write_text(json.dumps(structure_to_json(slab_with_adsorbate())))
    code = sample_flow.main(["--out", str(tmp_path / "run"), "--structure", str(structure), "--config",
                             str(PROJECT_ROOT / "campaigns" / "sampling-rules.yaml"), "--steps", "1",
                             "--model", "nobody-gen-001"])
    assert code == 1 and capsys.readouterr().err.splitlines() == [
        "error: nobody-gen-001: neither a file nor a PotentialGeneration block on this Prefect server"]


def test_credentials_in_the_storage_url_are_refused_before_anything_starts(tmp_path, capsys):
    (tmp_path / "cu.extxyz").write_text("")
    code = train_flow.main(["--data", str(tmp_path / "cu.extxyz"), "--out", str(tmp_path / "out"),
                            "--storage", "s3://AKIAEXAMPLE:s3cr3t@bucket/mlip"])
    err = capsys.readouterr().err
    assert code == 2 and "put no credentials in the storage URL" in err and "s3cr3t" not in err
    assert not (tmp_path / "out").exists()


def test_an_unreachable_storage_endpoint_is_one_line_before_any_training(tmp_path, capsys, monkeypatch, shared_data,
                                                                        request):
    import socket

    import s3fs

    # fsspec reuses a filesystem made earlier in this process, with the endpoint it was made with
    s3fs.S3FileSystem.clear_instance_cache()
    request.addfinalizer(s3fs.S3FileSystem.clear_instance_cache)

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code = train_flow.main(["--data", str(shared_data / "Cu-I.extxyz"), "--out", str(tmp_path / "out"),
                            "--storage", "s3://unreachable-bucket/mlip"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --storage: s3://unreachable-bucket/mlip: cannot reach it")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
