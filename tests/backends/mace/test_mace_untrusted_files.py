"""MACE files and code (issue 14.10): a weights file or checkpoint is read with weights_only=True,
so a crafted one is refused before its payload runs; a .model file is code (documented)."""

from __future__ import annotations

import os

import pytest

from mlip_autopipec.backends.mace.export import export_model, load_exported_models


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_weights_file_is_refused_and_a_real_checkpoint_loads(mace_generation, tmp_path):
    import torch

    manifest_path = export_model(mace_generation.directory, tmp_path / "run")
    marker = tmp_path / "pwned"
    evil = tmp_path / "weights.pt"
    torch.save({"model": _Payload(marker)}, evil)
    with pytest.raises(ValueError, match=f"{evil}: not a plain weights file or checkpoint"):
        load_exported_models(manifest_path, weights=evil)
    assert not marker.exists()

    checkpoint = sorted((mace_generation.directory / "checkpoints").glob("*.pt"))[-1]
    [model] = load_exported_models(manifest_path, weights=checkpoint)
    state = torch.load(checkpoint, weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
