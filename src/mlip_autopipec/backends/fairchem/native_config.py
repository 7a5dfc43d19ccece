"""FairChem 1.10's own config yml: written from a FairChemConfig, or read from the user's
`train.config_yml`, with the dataset section pointed at the ASE LMDB files we exported.

The written file is what `fairchem --mode train --config-yml` reads, and it stays in the
generation directory, so a FairChem user can rerun the logged command by hand.
Models are FairChem's "hydra" form (a backbone plus heads), which OCPCalculator loads back from
the checkpoint alone:
  equiformer_v2  equiformer_v2_backbone + equiformer_v2_energy_head / equiformer_v2_force_head
  gemnet_oc      gemnet_oc_backbone + gemnet_oc_energy_and_grad_force_head (forces = -dE/dx)
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from mlip_autopipec.backends.fairchem.config import FairChemConfig
from mlip_autopipec.config.run_files import ConfigError, read_yaml_mapping
from mlip_autopipec.files import atomic_write_text

SPLITS = ("train", "val", "test")
# fairchem's AseDBDataset reads energy and forces from each row's calculator results.
A2G_ARGS = {"r_energy": True, "r_forces": True}
# Fitted on the training set when training starts: a linear per-element energy reference, then a
# normaliser on what is left; both are stored in the checkpoint and undone at prediction time.
FITTED_TRANSFORMS = {
    "element_references": {"fit": {"targets": ["energy"], "batch_size": 8}},
    "normalizer": {"fit": {"targets": {"energy": {}, "forces": {"mean": 0.0}}, "batch_size": 8}},
}


def equiformer_v2_model(config: FairChemConfig) -> dict[str, Any]:
    c = config.channels
    backbone = {
        "model": "equiformer_v2_backbone",
        "use_pbc": True, "regress_forces": True, "otf_graph": True,
        "max_neighbors": config.max_neighbors, "max_radius": config.cutoff, "max_num_elements": 90,
        "enforce_max_neighbors_strictly": False,
        "num_layers": config.num_layers, "sphere_channels": c, "attn_hidden_channels": c,
        "num_heads": 2 if c >= 16 else 1, "attn_alpha_channels": max(c // 2, 2), "attn_value_channels": max(c // 4, 2),
        "ffn_hidden_channels": 2 * c, "norm_type": "layer_norm_sh",
        "lmax_list": [config.lmax], "mmax_list": [min(config.lmax, 2)], "grid_resolution": 18,
        "num_sphere_samples": 128, "edge_channels": 2 * c, "use_atom_edge_embedding": True,
        "distance_function": "gaussian", "num_distance_basis": 512,
        "attn_activation": "silu", "use_s2_act_attn": False, "ffn_activation": "silu", "use_gate_act": False,
        "use_grid_mlp": False, "alpha_drop": 0.0, "drop_path_rate": 0.0, "proj_drop": 0.0,
        "weight_init": "normal",
        **config.model_overrides,
    }
    return {"name": "hydra", "backbone": backbone,
            "heads": {"energy": {"module": "equiformer_v2_energy_head"},
                      "forces": {"module": "equiformer_v2_force_head"}}}


def gemnet_oc_model(config: FairChemConfig) -> dict[str, Any]:
    atom = config.channels
    small = max(atom // 4, 2)
    backbone = {
        "model": "gemnet_oc_backbone",
        "num_spherical": 3, "num_radial": 8, "num_blocks": config.num_layers,
        "emb_size_atom": atom, "emb_size_edge": 2 * atom,
        "emb_size_trip_in": small, "emb_size_trip_out": small, "emb_size_quad_in": small, "emb_size_quad_out": small,
        "emb_size_aint_in": small, "emb_size_aint_out": small, "emb_size_rbf": small, "emb_size_cbf": small,
        "emb_size_sbf": small,
        "num_before_skip": 1, "num_after_skip": 1, "num_concat": 1, "num_atom": 2, "num_output_afteratom": 2,
        "cutoff": config.cutoff, "cutoff_qint": config.cutoff, "cutoff_aeaint": config.cutoff,
        "cutoff_aint": config.cutoff,
        "max_neighbors": config.max_neighbors, "max_neighbors_qint": min(config.max_neighbors, 8),
        "max_neighbors_aeaint": config.max_neighbors, "max_neighbors_aint": config.max_neighbors,
        "rbf": {"name": "gaussian"}, "envelope": {"name": "polynomial", "exponent": 5},
        "cbf": {"name": "spherical_harmonics"}, "sbf": {"name": "legendre_outer"},
        "extensive": True, "output_init": "HeOrthogonal", "activation": "silu",
        "regress_forces": True, "direct_forces": False, "forces_coupled": False, "otf_graph": True,
        "quad_interaction": True, "atom_edge_interaction": True, "edge_atom_interaction": True,
        "atom_interaction": True, "num_atom_emb_layers": 2, "num_global_out_layers": 2,
        # Quadruplets for every atom: bulk and molecules carry tag 0 (OC20 used them on adsorbates only).
        "qint_tags": [0, 1, 2],
        **config.model_overrides,
    }
    return {"name": "hydra", "backbone": backbone, "pass_through_head_outputs": True,
            "heads": {"energy": {"module": "gemnet_oc_energy_and_grad_force_head", "num_global_out_layers": 2}}}


MODELS = {"equiformer_v2": equiformer_v2_model, "gemnet_oc": gemnet_oc_model}


def build_native_config(config: FairChemConfig, datasets: dict[str, str | os.PathLike]) -> dict[str, Any]:
    """The whole FairChem config for `config`, training on the ASE LMDB files in `datasets`."""
    optim: dict[str, Any] = {
        "batch_size": config.batch_size, "eval_batch_size": config.eval_batch_size or config.batch_size,
        "num_workers": config.num_workers, "lr_initial": config.lr, "optimizer": config.optimizer,
        "optimizer_params": {"weight_decay": config.weight_decay}, "max_epochs": config.epochs,
        "scheduler": "Null",
    }
    if config.max_grad_norm is not None:
        optim["clip_grad_norm"] = config.max_grad_norm
    if config.eval_every is not None:
        optim["eval_every"] = config.eval_every
    native = {
        "trainer": "ocp",
        "logger": {"name": "tensorboard"},  # offline; fairchem's default (wandb) wants an account
        "outputs": {
            "energy": {"property": "energy", "shape": 1, "level": "system"},
            "forces": {"property": "forces", "irrep_dim": 1, "level": "atom",
                       "train_on_free_atoms": True, "eval_on_free_atoms": True},
        },
        "loss_functions": [
            {"energy": {"fn": "mae", "coefficient": config.energy_coefficient}},
            {"forces": {"fn": "l2mae", "coefficient": config.force_coefficient}},
        ],
        "evaluation_metrics": {"metrics": {"energy": ["mae"], "forces": ["mae", "cosine_similarity"]},
                               "primary_metric": "forces_mae"},
        "model": MODELS[config.backend](config),
        "optim": optim,
        "dataset": {},
    }
    return with_datasets(native, datasets, transforms=FITTED_TRANSFORMS)


def with_datasets(native: dict[str, Any], datasets: dict[str, str | os.PathLike],
                  transforms: dict[str, Any] | None = None, source: str = "the FairChem config") -> dict[str, Any]:
    """A copy of `native` whose dataset.<split> read `datasets[split]` (ASE LMDB) for the splits given;
    other settings of those splits (a2g_args, transforms, ...) are kept."""
    native = copy.deepcopy(native)
    section = native.get("dataset") or {}
    if not isinstance(section, dict) or not set(section) <= {*SPLITS, "relax"}:
        raise ConfigError(f"{source}: dataset: expected a mapping with train / val / test entries, got "
                          f"{section!r:.80}")
    for split, path in datasets.items():
        entry = dict(section.get(split) or {})
        entry.update({"format": "ase_db", "src": str(Path(path).resolve())})
        entry.setdefault("a2g_args", dict(A2G_ARGS))
        if split == "train" and transforms is not None:
            entry.setdefault("transforms", copy.deepcopy(transforms))
        section[split] = entry
    native["dataset"] = section
    return native


def load_native_config(path: str | os.PathLike) -> dict[str, Any]:
    """The user's FairChem config yml, checked for what a training needs; `includes` are made absolute
    so that the copy we write elsewhere still finds them."""
    path = Path(path)
    native = read_yaml_mapping(path, kind="FairChem config (train.config_yml)")
    model = native.get("model")
    if not isinstance(model, dict):
        raise ConfigError(f"{path}: model: required, a mapping with the model's name and sizes")
    if not isinstance(model.get("name"), str):
        raise ConfigError(f"{path}: model.name: required (e.g. hydra, equiformer_v2, gemnet_oc)")
    if "optim" in native and not isinstance(native["optim"], dict):
        raise ConfigError(f"{path}: optim: expected a mapping, got {type(native['optim']).__name__}")
    if "includes" in native:
        includes = native["includes"]
        if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
            raise ConfigError(f"{path}: includes: expected a list of file paths")
        native["includes"] = [str((path.parent / item).resolve()) for item in includes]
    return native


def check_trainable(native: dict[str, Any], source: str) -> None:
    """What `fairchem --mode train` needs before it starts: a training set and an epoch count."""
    train = (native.get("dataset") or {}).get("train") if isinstance(native.get("dataset"), dict) else None
    if not isinstance(train, dict) or not train.get("src"):
        raise ConfigError(f"{source}: dataset.train.src: missing; give data.train in run.yaml or a training "
                          "set in the FairChem config")
    optim = native.get("optim")
    if not isinstance(optim, dict) or not isinstance(optim.get("max_epochs"), int) or optim["max_epochs"] < 1:
        raise ConfigError(f"{source}: optim.max_epochs: required, a positive integer")


def write_native_config(native: dict[str, Any], path: str | os.PathLike) -> Path:
    return atomic_write_text(path, yaml.safe_dump(native, sort_keys=False))
