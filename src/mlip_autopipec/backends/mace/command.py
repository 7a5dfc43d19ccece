"""The `mace_run_train` command line for a MaceConfig.

Everything is written as explicit options (no MACE --config YAML), so the exact command is in the
log's `$ mace_run_train ...` line and a user can rerun it by hand in the generation directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlip_autopipec.backends.mace.config import MaceConfig

# The keys our exporter writes (data/export.py: format "mace").
ENERGY_KEY = "REF_energy"
FORCES_KEY = "REF_forces"
STRESS_KEY = "REF_stress"


@dataclass(frozen=True)
class RunFiles:
    """What one `mace_run_train --name NAME --seed SEED --work_dir .` writes, relative to its work dir."""

    name: str
    seed: int
    swa: bool = False  # the final model is stage two's

    @property
    def tag(self) -> str:  # mace.tools.get_tag
        return f"{self.name}_run-{self.seed}"

    def model(self, compiled: bool = False) -> str:
        return f"{self.name}{'_stagetwo' if self.swa else ''}{'_compiled' if compiled else ''}.model"

    @property
    def log(self) -> str:
        return f"logs/{self.tag}.log"

    @property
    def results(self) -> str:  # JSON lines: one per validation ("eval") and per batch ("opt")
        return f"results/{self.tag}_train.txt"


def train_arguments(
    config: MaceConfig,
    files: RunFiles,
    train_file: str | Path,
    test_file: str | Path | None,
    device: str,
    foundation_model: str | Path | None = None,
    restart: bool = False,
    valid_file: str | Path | None = None,
) -> list[str]:
    """Options for `mace_run_train`, run with the generation directory as working directory.

    Without `valid_file` MACE holds out `valid_fraction` of the train file (a seeded random split)
    to choose the best epoch."""
    c = config
    validation = (["--valid_file", str(valid_file)] if valid_file is not None
                  else ["--valid_fraction", repr(c.valid_fraction)])
    args = [
        "--name", files.name, "--seed", str(files.seed), "--work_dir", ".",
        "--train_file", str(train_file), *validation,
        "--energy_key", ENERGY_KEY, "--forces_key", FORCES_KEY,
        "--device", device, "--default_dtype", c.default_dtype,
        "--model", c.model, "--r_max", repr(c.r_max),
    ]
    if test_file is not None:
        args += ["--test_file", str(test_file)]
    if c.compute_stress:
        args += ["--stress_key", STRESS_KEY]
    if c.hidden_irreps is not None:
        args += ["--hidden_irreps", c.hidden_irreps]
    else:
        if c.num_channels is not None:
            args += ["--num_channels", str(c.num_channels)]
        if c.max_L is not None:
            args += ["--max_L", str(c.max_L)]
    args += [
        "--max_ell", str(c.max_ell), "--correlation", str(c.correlation),
        "--num_interactions", str(c.num_interactions),
        "--num_radial_basis", str(c.num_radial_basis), "--num_cutoff_basis", str(c.num_cutoff_basis),
        "--radial_MLP", str(list(c.radial_MLP)), "--scaling", c.scaling,
        "--E0s", c.e0s_argument(),
        "--max_num_epochs", str(c.epochs), "--batch_size", str(c.batch_size),
        "--valid_batch_size", str(c.valid_batch_size or c.batch_size),
        "--lr", repr(c.lr), "--weight_decay", repr(c.weight_decay), "--optimizer", c.optimizer,
        "--scheduler", c.scheduler, "--lr_factor", repr(c.lr_factor),
        "--scheduler_patience", str(c.scheduler_patience), "--lr_scheduler_gamma", repr(c.lr_scheduler_gamma),
        "--loss", c.loss, "--energy_weight", repr(c.energy_weight), "--forces_weight", repr(c.forces_weight),
        "--stress_weight", repr(c.stress_weight), "--compute_stress", str(c.compute_stress),
        "--clip_grad", "None" if c.max_grad_norm is None else repr(c.max_grad_norm),
        "--patience", str(c.patience), "--eval_interval", str(c.eval_interval),
        "--error_table", c.error_table, "--num_workers", str(c.num_workers),
        "--pin_memory", str(device != "cpu"), "--plot", str(c.plot),
    ]
    if c.pair_repulsion:
        args.append("--pair_repulsion")
    if c.ema:
        args += ["--ema", "--ema_decay", repr(c.ema_decay)]
    if c.swa:
        args += ["--swa", "--swa_lr", repr(c.swa_lr), "--swa_energy_weight", repr(c.swa_energy_weight),
                 "--swa_forces_weight", repr(c.swa_forces_weight)]
        if c.start_swa is not None:
            args += ["--start_swa", str(c.start_swa)]
    if c.freeze is not None:
        args += ["--freeze", str(c.freeze)]
    if foundation_model is not None:
        # A local model: MACE keeps its architecture and starts from its weights. Multi-head
        # replay fine-tuning needs the pretraining data, which a campaign does not have.
        args += ["--foundation_model", str(foundation_model), "--multiheads_finetuning", "False",
                 "--foundation_model_elements", str(c.foundation_model_elements)]
        if c.foundation_head is not None:
            args += ["--foundation_head", c.foundation_head]
    if restart:
        args.append("--restart_latest")
    return args + list(c.extra_args)
