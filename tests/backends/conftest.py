"""Fixtures every backend's tests share: the datasets in each backend's format."""

from __future__ import annotations

import pytest

N_STRUCTURES = 30  # the first 30 Cu-I frames without the 96-atom supercell: 29 frames, 108 atoms


@pytest.fixture(scope="session")
def mace_manifest(shared_data, tmp_path_factory):
    """Cu-I structures exported as for a generation (MACE + extxyz formats, 20% test)."""
    from mlip_autopipec.data.export import ExportItem, export_dataset
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.data.readers import read_labelled_frames

    frames = [frame for _, frame in read_labelled_frames(shared_data / "Cu-I.extxyz")
              if isinstance(frame, LabelledFrame)][:N_STRUCTURES]
    frames = [frame for frame in frames if len(frame.atoms) <= 64]  # keeps an epoch at ~2 s on 2 cores
    items = [ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)]
    return export_dataset(items, tmp_path_factory.mktemp("mace-export"), test_fraction=0.2, seed=0,
                          formats=["mace", "extxyz"])
