"""PacemakerTrainer: one generation of an ACE potential, fitted by the real `pacemaker` CLI in the
generation directory (so `pacemaker input.yaml` can be rerun there by hand): input.yaml ->
potential.yaml -> `pace_yaml2yace` -> potential.yace -> `pace_activeset` -> potential.asi, then
metrics from pacemaker's tables. When pace_activeset stops because a species has fewer training
environments than B-functions, the active set is built species by species (active_set.py) and
the artifact's `species_without_gamma` says which species have no γ yet.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import DatasetError, PotentialArtifact, TrainingError, TrainingTimeout
from mlip_autopipec.backends.pacemaker.calculator import make_calculator
from mlip_autopipec.backends.pacemaker.config import PacemakerConfig
from mlip_autopipec.backends.pacemaker.input_yaml import build_input, check_basis, write_input_yaml
from mlip_autopipec.backends.pacemaker.log_watch import FIT_SHARE, PacemakerLogWatcher
from mlip_autopipec.backends.pacemaker.metrics import MetricsFormatError, collect_metrics
from mlip_autopipec.backends.template import Backend, TrainingRun, dataset_elements, dataset_files
from mlip_autopipec.data.manifest import DatasetManifest

INSTALL_HINT = ("Install Pacemaker (pip install python-ace==0.4.0rc1 tensorpotential; see requirements/) "
                "into this environment.")
TOOLS = ("pacemaker", "pace_yaml2yace", "pace_activeset")

# Our files in the generation directory, by artifact role.
INPUT_YAML = "input.yaml"
POTENTIAL_YAML = "potential.yaml"
POTENTIAL_YACE = "potential.yace"
ACTIVE_SET = "potential.asi"  # pace_activeset names it after the .yaml it was given
ACTIVE_SET_SUMMARY = "active_set.json"  # per species, when the active set was built species by species
LOG = "pacemaker.log"
INITIAL_POTENTIAL = "initial_potential.yaml"
DELTA_DATA = {"train": "delta_train.pckl.gzip", "test": "delta_test.pckl.gzip"}
# What pacemaker itself writes there.
PACEMAKER_OUTPUT = "output_potential.yaml"
PACEMAKER_FITTING_DATA = "fitting_data_info.pckl.gzip"


class PacemakerTrainer(Backend):
    name, config_class, log_name, delta_data = "pacemaker", PacemakerConfig, LOG, DELTA_DATA
    tools, install_hint, iterations_field = TOOLS, INSTALL_HINT, "maxiter"
    calculator = staticmethod(make_calculator)

    def _prepare(self, run: TrainingRun) -> dict:
        config, initial_potential = run.config, run.initial_potential
        tools = {tool: self.executable(tool) for tool in TOOLS}
        data_files = {split: str(path) for split, path in dataset_files(run.manifest, ["pacemaker"]).items()}
        elements = _fit_elements(config, run.manifest, initial_potential)
        if initial_potential is None or config.fine_tune != "continue":  # "continue" keeps the old basis
            check_basis(config, elements)
        return {"tools": tools, "data_files": data_files, "elements": elements}

    def _fit(self, run: TrainingRun, plan: dict) -> PotentialArtifact:
        config, generation_dir, tools, data_files = run.config, run.generation_dir, plan["tools"], plan["data_files"]
        starting_potential = None
        if run.initial_potential is not None:
            shutil.copyfile(run.initial_potential.path("potential_yaml"), generation_dir / INITIAL_POTENTIAL)
            starting_potential = INITIAL_POTENTIAL
        run.subtract_baseline(data_files, DELTA_DATA, lambda source, target, baseline: write_delta_dataframe(
            source, target, baseline, config.baseline.name))
        content = build_input(config, plan["elements"], data_files["train"], data_files.get("test"),
                              starting_potential)
        write_input_yaml(content, generation_dir / INPUT_YAML)

        run.stage(0.0, "fitting")
        watcher = PacemakerLogWatcher(config.maxiter, run.progress)
        run.run_tool([tools["pacemaker"], INPUT_YAML], "pacemaker", PACEMAKER_OUTPUT, watcher.feed)
        shutil.copyfile(generation_dir / PACEMAKER_OUTPUT, generation_dir / POTENTIAL_YAML)

        fitted = watcher.last_iteration or 0
        run.stage(FIT_SHARE, "converting to .yace", fitted)
        run.run_tool([tools["pace_yaml2yace"], POTENTIAL_YAML, "-o", POTENTIAL_YACE], "pace_yaml2yace",
                     POTENTIAL_YACE, failure="could not convert the fitted potential to .yace")
        run.stage(FIT_SHARE + 0.02, "computing the active set", fitted)
        gaps = self._active_set(tools["pace_activeset"], run)
        try:
            final_metrics, history = collect_metrics(generation_dir)
        except (OSError, MetricsFormatError) as exc:
            raise run.error(f"cannot read pacemaker's metrics: {exc}") from exc

        files = {"input_yaml": INPUT_YAML, "potential_yaml": POTENTIAL_YAML, "potential_yace": POTENTIAL_YACE,
                 "active_set": ACTIVE_SET}
        if (generation_dir / ACTIVE_SET_SUMMARY).is_file():
            files["active_set_summary"] = ACTIVE_SET_SUMMARY
        if starting_potential is not None:
            files["initial_potential"] = INITIAL_POTENTIAL
        return run.finish(files, final_metrics, {"history": history}, watcher.version, fitted,
                          elements=plan["elements"], species_without_gamma=gaps, energy_label="energy_corrected",
                          reference_energies=fit_reference_energies(generation_dir / POTENTIAL_YAML))

    def _active_set(self, pace_activeset: Path, run: TrainingRun) -> dict[str, str]:
        """potential.asi; returns element -> why it has no γ yet (empty: every species has one).

        pace_activeset first, as a Pacemaker user would run it. A species with fewer training
        environments than B-functions makes it stop for the whole potential; then the active set is
        built species by species (backends/pacemaker/active_set.py), in a logged subprocess too."""
        # Imported here: the module is also run with -m, which warns if the package imported it first.
        from mlip_autopipec.backends.pacemaker.active_set import (
            UNDER_DETERMINED_MESSAGE,
            read_summary,
            species_without_gamma,
        )

        generation_dir, log_path = run.generation_dir, run.log_path
        start = log_path.stat().st_size if log_path.is_file() else 0
        try:
            run.run_tool([pace_activeset, *active_set_arguments(run.config)], pace_activeset.name, ACTIVE_SET,
                         failure="could not compute the active set")
            return {}
        except TrainingError as exc:
            with open(log_path, "rb") as log:  # only what pace_activeset wrote
                log.seek(start)
                written = log.read().decode("utf-8", errors="replace")
            if isinstance(exc, TrainingTimeout) or UNDER_DETERMINED_MESSAGE not in written:
                raise
        with open(log_path, "a", encoding="utf-8") as log:
            log.write("\nA species has fewer training environments than B-functions (the error above): the "
                      "potential is kept; building the active set species by species instead\n")
        options = run.config.active_set
        run.run_tool([sys.executable, "-m", "mlip_autopipec.backends.pacemaker.active_set", POTENTIAL_YAML,
                      "-d", PACEMAKER_FITTING_DATA, "-g", str(options.gamma_tolerance),
                      "-i", str(options.maxvol_iters), "-o", ACTIVE_SET, "-s", ACTIVE_SET_SUMMARY],
                     Path(sys.executable).name, ACTIVE_SET, failure="could not build the active set species by species")
        return species_without_gamma(read_summary(generation_dir / ACTIVE_SET_SUMMARY))


def _fit_elements(config: PacemakerConfig, manifest: DatasetManifest,
                  initial_potential: PotentialArtifact | None) -> list[str]:
    data_elements = dataset_elements(manifest)
    if initial_potential is not None and config.fine_tune == "continue":
        elements = sorted(initial_potential.elements)
        if config.elements is not None and config.elements != elements:
            raise DatasetError(f"fine_tune 'continue' keeps the initial potential's elements {elements}, "
                               f"but the config asks for {config.elements}; use fine_tune 'upfit' to change "
                               f"the basis")
        source = "the initial potential"
    else:
        elements = config.elements if config.elements is not None else sorted(data_elements)
        source = "the config"
        if initial_potential is not None and not set(initial_potential.elements) <= set(elements):
            raise DatasetError(f"the initial potential has elements {initial_potential.elements} that the "
                               f"upfitted potential {elements} would drop")
    missing = sorted(data_elements - set(elements))
    if missing:
        raise DatasetError(f"the dataset contains {missing}, which {source} does not cover "
                           f"(elements {elements}; dataset elements {sorted(data_elements)})")
    return elements


def fit_reference_energies(potential_yaml: Path) -> dict[str, float] | None:
    """The single-atom reference energies (and "shift") Pacemaker subtracted from `energy` to make
    `energy_corrected`, as it records them in the potential's metadata; None when the fit used the
    dataset's own energy_corrected column."""
    from pyace import BBasisConfiguration

    metadata = BBasisConfiguration(str(potential_yaml)).metadata  # a pybind map: no .get
    if "reference_energy" not in metadata.keys():
        return None
    recorded = metadata["reference_energy"]
    return {str(key): float(value) for key, value in json.loads(recorded).items()}


def active_set_arguments(config: PacemakerConfig) -> list[str]:
    options = config.active_set
    arguments = [POTENTIAL_YAML, "-d", PACEMAKER_FITTING_DATA,
                 "-g", str(options.gamma_tolerance), "-i", str(options.maxvol_iters),
                 "-r", str(options.maxvol_refinement)]
    if options.all_atoms:
        arguments.append("--all-atoms")
    return arguments


def write_delta_dataframe(source: Path, target: Path, baseline: Calculator, baseline_name: str) -> None:
    """Delta learning: `source` with the baseline's energy and forces subtracted from every row."""
    import numpy as np
    import pandas as pd

    table = pd.read_pickle(source, compression="gzip")
    energies, forces = [], []
    for index, atoms in enumerate(table["ase_atoms"]):
        atoms = atoms.copy()
        atoms.calc = baseline
        try:
            energies.append(float(atoms.get_potential_energy()))
            forces.append(np.asarray(atoms.get_forces(), dtype=float))
        except Exception as exc:  # any calculator error: name the frame, keep the cause
            raise DatasetError(f"{source}: frame {index}: baseline {baseline_name} failed "
                               f"({type(exc).__name__}: {exc})") from exc
    baseline_energy = np.array(energies)
    for column in ("energy", "energy_corrected"):
        if column in table.columns:
            table[column] = table[column].to_numpy(dtype=float) - baseline_energy
    table["forces"] = [np.asarray(label, dtype=float) - base
                       for label, base in zip(table["forces"], forces, strict=True)]
    # mtime=0: the same data always gives the same bytes, hence the same digest.
    table.to_pickle(target, compression={"method": "gzip", "mtime": 0}, protocol=4)
