"""Real DFT through the same worker; runs only where GPAW is installed
(apt-get install libxc-dev libopenblas-dev libopenmpi-dev; pip install gpaw gpaw-data)."""

import numpy as np
import pytest
from ase.build import bulk

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.labeling import label_pending
from mlip_autopipec.store import Status

pytest.importorskip("gpaw")

# Tiny on purpose: one Cu atom, LDA, a low plane-wave cutoff, Γ only (about a second, not physics).
GPAW_SPEC = CalculatorSpec(factory="gpaw", kwargs={
    "mode": {"name": "pw", "ecut": 200}, "xc": "LDA", "kpts": {"size": [1, 1, 1], "gamma": True},
    "txt": "gpaw.txt"})


def test_gpaw_labels_match_an_in_process_calculation(pending, tmp_path):
    atoms = bulk("Cu", "fcc", a=3.55)
    store, [row] = pending(atoms)
    report = label_pending(store, GPAW_SPEC, timeout_s=300, workdir=tmp_path, keep_files=True)
    assert report.completed == [row], report.errors

    stored = store.get(row)
    reference = stored.frame.atoms.copy()
    reference.calc = CalculatorSpec(factory="gpaw", kwargs={**GPAW_SPEC.kwargs, "txt": None}).build()
    assert stored.status is Status.COMPLETED and stored.provenance["labeler"] == "GPAW"
    assert abs(stored.frame.energy - reference.get_potential_energy()) < 1e-8
    np.testing.assert_allclose(stored.frame.forces, reference.get_forces(), atol=1e-8)
    np.testing.assert_allclose(stored.frame.stress, reference.get_stress(), atol=1e-8)
    assert (tmp_path / f"structure-{row}" / "gpaw.txt").is_file()  # the DFT log stays in the job
