"""campaign.yaml: everything one active-learning campaign needs, checked key by key."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Literal

from ase.data import chemical_symbols
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, field_validator, model_validator

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.config.execution import ExecutionSettings, SlurmSettings
from mlip_autopipec.config.run_files import ConfigError, load_yaml_model
from mlip_autopipec.config.training import BaseTrainingConfig, PacemakerConfig, parse_training_config
from mlip_autopipec.files import sha256_file
from mlip_autopipec.outbox import DEFAULT_NEAR_TOLERANCE
from mlip_autopipec.storage import check_no_credentials
from mlip_autopipec.store.secrets import password_to_environment


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedSpec(_Strict):
    """A starting structure: a bulk crystal built with ASE (optionally an alloy), or a file."""

    bulk: str | None = Field(None, description="element for ase.build.bulk, e.g. Cu")
    crystalstructure: str = "fcc"
    a: float | None = None
    repeat: list[int] = Field(default_factory=lambda: [2, 2, 2])
    substitute: dict[str, float] = Field(default_factory=dict,
                                         description="element -> fraction of sites, random with the campaign seed")
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SeedSpec:
        if (self.bulk is None) == (self.file is None):
            raise ValueError("give exactly one of 'bulk' (an element) or 'file'")
        if sum(self.substitute.values()) > 1.0:
            raise ValueError("substitute fractions add up to more than 1")
        return self


class BootstrapSettings(_Strict):
    """Generation 0's training set, labelled before any training: perturbed copies of every seed,
    plus `pool_pick` diverse structures DIRECT-sampled (ACE descriptors, BIRCH clusters) from the
    structure files in `pool`. Pool structures are labelled by the campaign's labeler like every
    other row: one campaign, one level of theory."""

    per_seed: int = Field(12, ge=0)
    rattle_stdev: float = Field(0.08, ge=0, description="Å")
    max_strain: float = Field(0.04, ge=0, description="isotropic strain range ±")
    pool: list[Path] = Field(default_factory=list, description="structure files (any ase.io format)")
    pool_pick: int = Field(10, ge=1, description="structures DIRECT-sampled from the pool")

    @model_validator(mode="after")
    def _something_to_train_on(self) -> BootstrapSettings:
        if self.per_seed == 0 and not self.pool:
            raise ValueError("per_seed is 0 and there is no pool: generation 0 would have nothing to train on")
        return self


class ExplorationSettings(_Strict):
    """Langevin MD walkers (`engine: md`), the sampling-rules engine (`sampling`: actions, validators,
    quench, basins; see campaigns/sampling-rules.yaml), or both. Either way every explored frame
    carries the potential's uncertainty and goes to the same selection."""

    engine: Literal["md", "sampling", "both"] = "md"
    temperatures_K: list[float] = Field(default_factory=lambda: [300.0, 900.0])
    walkers_per_temperature: int = Field(2, ge=1)
    steps: int = Field(300, ge=1)
    timestep_fs: float = Field(2.0, gt=0)
    friction_per_fs: float = Field(0.01, gt=0)
    record_every: int = Field(10, ge=1)
    sampling_rules: Path | None = Field(None, description="sampling rules YAML (engine sampling or both)")
    sampling_steps: int = Field(50, ge=1, description="sampling steps per seed structure and generation")
    render_most_uncertain: bool = Field(True, description="render the walker that reached the highest "
                                                          "uncertainty into the generation's report (OVITO)")

    @model_validator(mode="after")
    def _rules_for_sampling(self) -> ExplorationSettings:
        if self.engine != "md" and self.sampling_rules is None:
            raise ValueError(f"engine {self.engine!r} needs sampling_rules (a rules file such as "
                             "campaigns/sampling-rules.yaml)")
        return self


class SelectionSettings(_Strict):
    """Which explored frames to label. γ methods need a Pacemaker potential (its active set);
    `committee` needs a MACE committee (training.committee_size >= 2) and uses DP-GEN's trust
    levels on the committee's max force deviation."""

    method: Literal["d_optimal", "top_gamma", "committee"] = "d_optimal"
    gamma_lower: float = Field(1.2, ge=1.0, description="frames below are already known")
    gamma_upper: float = Field(10.0, gt=1.0, description="walkers stop and frames are dropped above this")
    trust_lower: float = Field(0.05, gt=0, description="committee: max force deviation (eV/Å) below which "
                                                       "a frame is known")
    trust_upper: float = Field(0.30, gt=0, description="committee: walkers stop and frames are dropped above "
                                                       "this max force deviation (eV/Å)")
    max_per_generation: int = Field(20, ge=1)
    near_duplicate_tolerance: float = Field(DEFAULT_NEAR_TOLERANCE, ge=0,
                                            description="outbox: a candidate whose every atom lies this close (Å) "
                                                        "to a partner of its species in a stored or queued "
                                                        "structure (after translation, permutation and "
                                                        "equivalent cell) is skipped")

    @model_validator(mode="after")
    def _ordered_levels(self) -> SelectionSettings:
        if self.gamma_upper <= self.gamma_lower:
            raise ValueError("gamma_upper must be above gamma_lower")
        if self.trust_upper <= self.trust_lower:
            raise ValueError("trust_upper must be above trust_lower")
        return self

    @property
    def uncertainty_key(self) -> str:
        """The frame's info key the method reads (what exploration records per frame)."""
        return "max_force_std" if self.method == "committee" else "max_gamma"

    @property
    def lower(self) -> float:
        return self.trust_lower if self.method == "committee" else self.gamma_lower

    @property
    def upper(self) -> float:
        return self.trust_upper if self.method == "committee" else self.gamma_upper


class LabelingSettings(_Strict):
    calculator: CalculatorSpec = Field(default_factory=CalculatorSpec)
    timeout_s: float = Field(600.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    workers: int = Field(2, ge=1)
    executor: Literal["local", "slurm"] = Field("local", description="local: worker processes here (or on the "
                                                                     "Dask cluster); slurm: sbatch jobs, see slurm")
    slurm: SlurmSettings | None = Field(None, description="partition, account, walltime, ntasks, modules, ... "
                                                          "(executor: slurm; default settings when left out)")

    @model_validator(mode="after")
    def _slurm_needs_the_slurm_executor(self) -> LabelingSettings:
        if self.slurm is not None and self.executor != "slurm":
            raise ValueError("slurm: used only with executor: slurm")
        if self.executor == "slurm" and self.slurm is None:
            self.slurm = SlurmSettings()
        return self

    def digest(self) -> str:
        """sha256 of these settings (not of the file around them): what a label run checks it was given."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


class _LabelingSection(BaseModel):
    """A campaign file read for its `labeling:` section alone."""

    labeling: LabelingSettings = Field(default_factory=LabelingSettings)


class ValidationSettings(_Strict):
    """The fixed held-out set: a labelled file, or MD snapshots run with the labeler itself
    (sensible for cheap labelers such as EMT) at the given temperatures. With a DFT labeler every
    MD step is a DFT calculation: a labelled `data` file is usually the better choice."""

    data: Path | None = None
    md_temperatures_K: list[float] = Field(default_factory=lambda: [600.0, 1200.0])
    md_steps: int = Field(400, ge=1)
    snapshots_per_run: int = Field(8, ge=1)
    md_timeout_s: float | None = Field(None, gt=0, description="per held-out MD run (each is a labelling job, "
                                                               "retried like one); default labeling.timeout_s "
                                                               "x (md_steps + 1)")


class StopSettings(_Strict):
    max_generations: int = Field(3, ge=1)
    label_budget: int | None = Field(None, ge=1)
    converged_fraction: float | None = Field(0.95, gt=0, le=1.0,
                                             description="stop when this fraction of explored frames has "
                                                         "max γ below gamma_lower")


class DispatchSettings(_Strict):
    """Hand steps to Prefect deployments (work pools) instead of running them in the campaign's process.

    Unset (the default): everything runs in-process. The campaign must then run against a Prefect
    server (PREFECT_API_URL) where the named deployments exist and a worker serves their pool. Without
    `storage`, the store, the campaign file and the campaign's workdir must be reachable from that
    worker under the same path or URL; with `storage`, only the store (a postgresql:// URL) and the
    object storage are shared: files travel there by digest (campaign/travel.py)."""

    labeling_deployment: str | None = Field(None, description="e.g. label/dft (flows/label.py on dft-pool)")
    training_deployment: str | None = Field(
        None, description="e.g. train-generation/gpu (flows/train.py:train_generation on gpu-pool)")
    timeout_s: float | None = Field(None, gt=0, description="wait at most this long per dispatched run; "
                                                           "None waits until it finishes")


class CampaignConfig(_Strict):
    campaign: str
    workdir: Path
    store: str | None = Field(None, description="SQLite path or postgresql:// URL; default workdir/structures.db")
    seed: int = 0
    seeds: list[SeedSpec]
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)
    exploration: ExplorationSettings = Field(default_factory=ExplorationSettings)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    labeling: LabelingSettings = Field(default_factory=LabelingSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    training: SerializeAsAny[BaseTrainingConfig] = Field(default_factory=PacemakerConfig)
    export_test_fraction: float = Field(0.1, ge=0, lt=1)
    stop: StopSettings = Field(default_factory=StopSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    storage: str | None = Field(None, description="object storage that datasets, generations and the campaign "
                                                  "file travel through: an fsspec URL (s3://bucket/prefix) or "
                                                  "the name of a Prefect remote-file-system block; credentials "
                                                  "come from the environment or the block, never from here")
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings,
                                         description="where in-process labelling fans out: threads (default) "
                                                     "or a Dask cluster")

    _file: str | None = PrivateAttr(None)
    _digest: str | None = PrivateAttr(None)

    @property
    def file(self) -> str | None:
        """The campaign file this was loaded from (absolute), None when built in code."""
        return self._file

    @property
    def digest(self) -> str | None:
        """sha256 of the campaign file as it was loaded."""
        return self._digest

    @field_validator("training", mode="before")
    @classmethod
    def _backend_specific(cls, value):
        return value if isinstance(value, BaseTrainingConfig) else parse_training_config(value or {})

    @model_validator(mode="after")
    def _selection_fits_the_backend(self) -> CampaignConfig:
        method, backend = self.selection.method, self.training.backend
        if method == "committee":
            if backend != "mace" or getattr(self.training, "committee_size", 1) < 2:
                raise ValueError("selection.method 'committee' needs a MACE committee: training.backend mace "
                                 "with training.committee_size >= 2")
        elif backend != "pacemaker":
            raise ValueError(f"selection.method {method!r} needs the extrapolation grade γ of a Pacemaker "
                             f"potential; with training.backend {backend!r} use method 'committee' "
                             "(and training.committee_size >= 2)")
        return self

    @field_validator("storage")
    @classmethod
    def _no_credentials(cls, value):
        return value if value is None else check_no_credentials(value)

    @model_validator(mode="after")
    def _slurm_jobs_need_a_shared_directory(self) -> CampaignConfig:
        # With storage a dispatched label run works in a private scratch directory, removed at its end:
        # compute nodes cannot see it, and a killed run's jobs could not be found again to cancel.
        if self.storage is not None and self.dispatch.labeling_deployment is not None \
                and self.labeling.executor == "slurm":
            raise ValueError("labeling.executor 'slurm' with storage: and dispatch.labeling_deployment is not "
                             "supported: SLURM jobs need a directory shared with the compute nodes; label in "
                             "the campaign's own process (no labeling_deployment) or drop storage:")
        return self

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, value):
        if not value:
            raise ValueError("at least one seed structure is needed")
        return value

    @property
    def store_url(self) -> str:
        return self.store or str(self.workdir / "structures.db")

    @property
    def held_out_campaign(self) -> str:
        """The held-out set lives in the same store under its own campaign name: never trained on."""
        return f"{self.campaign}--held-out"

    @classmethod
    def load(cls, path: str | Path) -> CampaignConfig:
        config = load_yaml_model(path, cls)
        # Relative paths in the file are relative to the file, as users expect.
        base = Path(path).resolve().parent
        config.workdir = (base / config.workdir).resolve()
        if config.store:  # a password in the URL goes to PGPASSWORD, never into a flow parameter or file
            config.store = password_to_environment(config.store)
        if config.store and not config.store.startswith(("postgresql://", "postgres://")) \
                and not Path(config.store).is_absolute():
            config.store = str(base / config.store)
        for seed in config.seeds:
            if seed.file is not None and not seed.file.is_absolute():
                seed.file = base / seed.file
        config.bootstrap.pool = [path if path.is_absolute() else base / path for path in config.bootstrap.pool]
        rules = config.exploration.sampling_rules
        if rules is not None and not rules.is_absolute():
            config.exploration.sampling_rules = base / rules
        if config.validation.data is not None and not config.validation.data.is_absolute():
            config.validation.data = base / config.validation.data
        problems = config.problems()
        if problems:
            raise ConfigError(f"{path}: " + "; ".join(f"{key}: {problem}" for key, problem in problems))
        config._file, config._digest = str(Path(path).resolve()), sha256_file(path)
        return config

    def problems(self) -> list[tuple[str, str]]:
        """(dotted.key, problem) for what the schema cannot see: files that do not exist, unknown
        elements, a labeler that cannot be imported or has no parameters for the campaign's
        elements. Reads nothing but the file system and imports; creates nothing."""
        found: list[tuple[str, str]] = []
        elements: set[str] = set()
        for index, seed in enumerate(self.seeds):
            if seed.file is not None and not seed.file.is_file():
                found.append((f"seeds.{index}.file", f"no such file {seed.file}"))
            for key, element in ([("bulk", seed.bulk)] if seed.bulk else []) + \
                    [(f"substitute.{element}", element) for element in seed.substitute]:
                if element not in chemical_symbols[1:]:
                    found.append((f"seeds.{index}.{key}", f"unknown element {element!r}"))
                else:
                    elements.add(element)
        for index, pool_file in enumerate(self.bootstrap.pool):
            if not pool_file.is_file():
                found.append((f"bootstrap.pool.{index}", f"no such file {pool_file}"))
        rules = self.exploration.sampling_rules
        if rules is not None and not rules.is_file():
            found.append(("exploration.sampling_rules", f"no such file {rules}"))
        if self.validation.data is not None and not self.validation.data.is_file():
            found.append(("validation.data", f"no such file {self.validation.data}"))
        calculator = self.labeling.calculator
        try:
            factory = calculator.resolve()
        except ValueError as exc:
            found.append(("labeling.calculator.factory", str(exc)))
        else:
            from ase.calculators.emt import EMT, parameters as emt_parameters

            unsupported = sorted(elements - set(emt_parameters)) if factory is EMT else []
            if unsupported:
                found.append(("labeling.calculator", f"EMT has no parameters for {', '.join(unsupported)} "
                                                     f"(it knows {', '.join(sorted(emt_parameters))})"))
        return found


@functools.lru_cache(maxsize=8)
def load_campaign(path: str, digest: str) -> CampaignConfig:
    """The campaign file a flow or task was handed as its path and digest, parsed once per process.
    Flows get the file, not its settings: Prefect records a flow run's parameters, and the file holds
    the labeler's keyword arguments and the SLURM jobs' environment. The campaign's own process keeps
    the settings it started with (an edit meanwhile, even of `stop:`, waits for the next run); another
    process (a Dask worker) refuses a file edited since then rather than silently mixing settings."""
    config = CampaignConfig.load(path)
    if config.digest != digest:
        raise ConfigError(f"{path} changed since the campaign started (digest {config.digest[:12]}, "
                          f"expected {digest[:12]}): restart the campaign to use the new settings")
    return config


def load_labeling(path: str, digest: str | None) -> LabelingSettings:
    """The `labeling:` section of a campaign file, for a label run on another machine: only that
    section is read and checked, so the files the rest of the campaign names need not exist there,
    and an edit elsewhere in the file does not stop the run. `digest` is the section's
    `LabelingSettings.digest()` when the campaign started (None: the section as it is now)."""
    labeling = load_yaml_model(path, _LabelingSection).labeling
    if digest is not None and labeling.digest() != digest:
        raise ConfigError(f"{path}: labeling changed since the campaign started (digest {labeling.digest()[:12]}, "
                          f"expected {digest[:12]}): restart the campaign to use the new settings")
    return labeling
