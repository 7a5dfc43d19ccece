import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.labeling import label_pending
from mlip_autopipec.labeling.job_files import LOG_FILE, RESULT_FILE, STRUCTURE_FILE
from mlip_autopipec.store import Status
from tests.labeling.conftest import fcc_cell

EMT_SPEC = CalculatorSpec(factory="emt")


def test_stored_labels_are_exactly_what_emt_computes_in_process(pending, tmp_path):
    structures = [fcc_cell("Cu"), fcc_cell("Ni", seed=1), fcc_cell("CuNi", seed=2),
                  fcc_cell("Cu", seed=3, periodic=False)]
    store, ids = pending(*structures)
    report = label_pending(store, EMT_SPEC, workers=2, timeout_s=60, workdir=tmp_path / "jobs")

    assert sorted(report.completed) == ids and not report.failed and not report.errors
    for row_id in ids:
        row = store.get(row_id)
        reference = row.frame.atoms.copy()
        reference.calc = EMT()
        assert row.status is Status.COMPLETED and row.provenance["attempts"] == 1
        assert row.provenance["labeler"] == "EMT" and row.provenance["labeler_digest"] == EMT_SPEC.digest()
        assert abs(row.frame.energy - reference.get_potential_energy()) < 1e-10
        np.testing.assert_allclose(row.frame.forces, reference.get_forces(), rtol=0, atol=1e-10)
        if reference.pbc.all():
            np.testing.assert_allclose(row.frame.stress, reference.get_stress(), rtol=0, atol=1e-10)
        else:
            assert row.frame.stress is None  # no stress without a periodic cell
    assert all(a.ok and a.seconds > a.compute_seconds > 0 for a in report.attempts)
    assert not list((tmp_path / "jobs").iterdir())  # job files of completed rows are cleaned up
    assert "EMT: 4 completed, 0 failed, 0 retried" in report.summary()


def test_generation_and_limit_select_what_is_labelled(pending):
    store, ids = pending(*(fcc_cell("Cu", seed=s) for s in range(3)))
    _, [other_generation] = pending(fcc_cell("Ni"), generation=1)
    report = label_pending(store, EMT_SPEC, generation=0, limit=2, timeout_s=60)
    assert report.completed == ids[:2]
    assert store.get(ids[2]).status is Status.PENDING
    assert store.get(other_generation).status is Status.PENDING


def test_rows_left_running_by_a_crashed_labeller_are_recovered_only_on_request(pending, tmp_path):
    store, ids = pending(fcc_cell("Cu"), fcc_cell("Ni"))
    store.claim(2)  # a labeller claimed them, then died
    assert label_pending(store, EMT_SPEC, timeout_s=60, workdir=tmp_path).completed == []

    report = label_pending(store, EMT_SPEC, timeout_s=60, workdir=tmp_path, recover_running=True,
                           keep_files=True)
    assert report.recovered == ids and sorted(report.completed) == ids
    assert store.get(ids[0]).provenance["attempts"] == 2
    job = tmp_path / f"structure-{ids[0]}"
    assert {STRUCTURE_FILE, RESULT_FILE, LOG_FILE} <= {p.name for p in job.iterdir()}


def test_a_broken_geometry_fails_without_starting_a_worker(pending, tmp_path):
    atoms = fcc_cell("Cu")
    atoms.positions[1] = atoms.positions[0] + [0.3, 0, 0]
    store, [row] = pending(atoms)
    report = label_pending(store, EMT_SPEC, max_attempts=1, workdir=tmp_path)
    assert store.get(row).status is Status.FAILED
    assert "geometry is unusable: positions: atoms 0 and 1 are 0.300 Å apart" in report.failed[row]
    assert not (tmp_path / f"structure-{row}").exists()


def test_nonsense_settings_are_refused(pending):
    store, _ = pending(fcc_cell("Cu"))
    with pytest.raises(ValueError, match="workers >= 1"):
        label_pending(store, EMT_SPEC, workers=0)
    assert store.status_counts()["pending"] == 1
