"""A small real dataset for the training backends: 30 Cu-I structures, exported as for a generation."""

from __future__ import annotations

import pytest

from mlip_autopipec.data.export import ExportItem, export_dataset
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.data.readers import read_labelled_frames

N_STRUCTURES = 30  # 204 atoms, among them 64- and 96-atom phonon supercells


@pytest.fixture(scope="session")
def cu_manifest(shared_data, tmp_path_factory) -> DatasetManifest:
    frames = [frame for _, frame in read_labelled_frames(shared_data / "Cu-I.extxyz")
              if isinstance(frame, LabelledFrame)][:N_STRUCTURES]
    items = [ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)]
    return export_dataset(items, tmp_path_factory.mktemp("cu-export"), test_fraction=0.2, seed=0,
                          formats=["pacemaker"])
