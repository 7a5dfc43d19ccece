import subprocess
import sys

import ase.io
import numpy as np
import pandas as pd

from flows import export as export_flow
from flows import ingest as ingest_flow
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.store import StructureStore
from tests.conftest import PROJECT_ROOT


def test_ingest_then_export_on_real_data(tmp_path, shared_data):
    store = tmp_path / "campaign" / "structures.db"
    files = [str(shared_data / "Cu-I.extxyz"), str(shared_data / "ethanol-revMD17.extxyz")]
    assert ingest_flow.main(["--store", str(store), *files]) == 0
    assert ingest_flow.main(["--store", str(store), files[0]]) == 0  # duplicates are not errors
    assert StructureStore(store).status_counts()["completed"] == 105 + 997

    out = tmp_path / "dataset"
    assert export_flow.main(["--store", str(store), "--out", str(out), "--seed", "7",
                             "--formats", "extxyz", "pacemaker"]) == 0
    manifest = DatasetManifest.load(out)
    assert manifest.counts["train"] + manifest.counts["test"] == 1102
    assert {f.format for f in manifest.files} == {"extxyz", "pacemaker"}
    train = ase.io.read(manifest.path_of("extxyz", "train"), ":")
    table = pd.read_pickle(manifest.path_of("pacemaker", "train"), compression="gzip")
    assert len(train) == len(table) == manifest.counts["train"]
    np.testing.assert_array_equal(np.array([a.get_potential_energy() for a in train]), table["energy"].to_numpy())


def test_export_of_an_empty_store_fails_clearly(tmp_path, capsys):
    code = export_flow.main(["--store", str(tmp_path / "empty.db"), "--out", str(tmp_path / "out")])
    assert code == 2 and f"{tmp_path / 'empty.db'}: no such store" in capsys.readouterr().err
    assert not (tmp_path / "empty.db").exists()  # the check creates no store (tests/flows/test_cli.py: an empty one)


def test_cli_exit_code_and_messages_for_bad_input(tmp_path, shared_data):
    bad = tmp_path / "bad.extxyz"
    bad.write_text('1\nProperties=species:S:1:pos:R:3:forces:R:3 energy=nan pbc="F F F"\nCu 0 0 0 0 0 0\n')
    result = subprocess.run(
        [sys.executable, "-m", "flows.ingest", "--store", str(tmp_path / "s.db"),
         str(shared_data / "Cu-I.extxyz"), str(bad)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert f"{bad}: frame 0: energy: not finite (nan)" in output
    assert StructureStore(tmp_path / "s.db").status_counts()["completed"] == 105


def test_every_command_has_help():
    for module in ("flows.ingest", "flows.export"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "usage: python -m " + module in result.stdout
