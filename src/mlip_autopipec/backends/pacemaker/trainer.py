"""PacemakerTrainer: one generation of an ACE potential, fitted by the real `pacemaker` CLI.

Steps, all in the generation directory (pacemaker's working directory, so a user can rerun
`pacemaker input.yaml` there by hand):
  1. check the dataset and elements; with a baseline, write the delta datasets
  2. write input.yaml; run `pacemaker input.yaml`, log to pacemaker.log, report progress
  3. potential.yaml (copy of output_potential.yaml) -> `pace_yaml2yace` -> potential.yace
  4. `pace_activeset` on pacemaker's fitting_data_info.pckl.gzip -> potential.asi; when it stops
     because a species has fewer training environments than B-functions, the active set is built
     species by species instead (backends/pacemaker/active_set.py: MaxVol where there are enough
     environments, pseudo-inverse where not); the potential is kept and the artifact's
     `species_without_gamma` says which species have no γ yet and why
  5. metrics.json from metrics.txt / test_metrics.txt; artifact.json last

Generations are never overwritten: a directory holding artifact.json is refused
(GenerationExistsError). Leftovers of an unfinished attempt (a crash, a timeout) are moved to
failed-attempts/attempt-N/ first, so a retry starts clean and the evidence is kept.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import (
    ARTIFACT_NAME,
    BaseTrainingConfig,
    DatasetError,
    GenerationExistsError,
    PotentialArtifact,
    ProgressCallback,
    TrainingError,
    TrainingProgress,
    TrainingTimeout,
)
from mlip_autopipec.backends.pacemaker.calculator import make_calculator
from mlip_autopipec.backends.pacemaker.config import PacemakerConfig
from mlip_autopipec.backends.pacemaker.delta import write_delta_dataframe
from mlip_autopipec.backends.pacemaker.input_yaml import build_input, check_basis, write_input_yaml
from mlip_autopipec.backends.pacemaker.log_watch import FIT_SHARE, PacemakerLogWatcher
from mlip_autopipec.backends.pacemaker.metrics import MetricsFormatError, collect_metrics
from mlip_autopipec.backends.runner import log_tail, resolve_executable, run_logged, tool_failed
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.files import atomic_write_text, sha256_file

INSTALL_HINT = ("Install Pacemaker (pip install python-ace==0.4.0rc1 tensorpotential; see requirements/) "
                "into this environment.")
TOOLS = ("pacemaker", "pace_yaml2yace", "pace_activeset")
FAILED_ATTEMPTS = "failed-attempts"

# Our files in the generation directory, by artifact role.
INPUT_YAML = "input.yaml"
POTENTIAL_YAML = "potential.yaml"
POTENTIAL_YACE = "potential.yace"
ACTIVE_SET = "potential.asi"  # pace_activeset names it after the .yaml it was given
ACTIVE_SET_SUMMARY = "active_set.json"  # per species, when the active set was built species by species
LOG = "pacemaker.log"
METRICS_JSON = "metrics.json"
INITIAL_POTENTIAL = "initial_potential.yaml"
DELTA_DATA = {"train": "delta_train.pckl.gzip", "test": "delta_test.pckl.gzip"}
# What pacemaker itself writes there.
PACEMAKER_OUTPUT = "output_potential.yaml"
PACEMAKER_FITTING_DATA = "fitting_data_info.pckl.gzip"


class PacemakerTrainer:
    name = "pacemaker"

    def __init__(self, executables: Mapping[str, str | Path] | None = None):
        """`executables` overrides where a tool is found, e.g. {"pacemaker": "/opt/ace/bin/pacemaker"}."""
        self.executables = dict(executables or {})
        unknown = sorted(set(self.executables) - set(TOOLS))
        if unknown:
            raise ValueError(f"unknown Pacemaker tool(s) {unknown}; known: {list(TOOLS)}")

    def make_calculator(self, artifact: PotentialArtifact, with_uncertainty: bool = True) -> Calculator:
        return make_calculator(artifact, with_active_set=with_uncertainty)

    def train(
        self,
        manifest: DatasetManifest,
        config: BaseTrainingConfig,
        generation_dir: Path,
        initial_potential: PotentialArtifact | None = None,
        progress: ProgressCallback | None = None,
    ) -> PotentialArtifact:
        if not isinstance(config, PacemakerConfig):
            raise TypeError(f"PacemakerTrainer needs a PacemakerConfig, got {type(config).__name__}")
        started = time.monotonic()
        deadline = started + config.timeout_seconds
        report = _Reporter(progress, config.maxiter)

        # Everything that can be checked before an hour of fitting is checked first.
        tools = {tool: resolve_executable(tool, self.executables.get(tool), INSTALL_HINT) for tool in TOOLS}
        data_files = _dataset_files(manifest)
        elements = _fit_elements(config, manifest, initial_potential)
        if initial_potential is None or config.fine_tune != "continue":  # "continue" keeps the old basis
            check_basis(config, elements)
        if initial_potential is not None:
            initial_potential.verify()
        generation_dir = Path(generation_dir).resolve()
        _claim_generation_dir(generation_dir)
        log_path = generation_dir / LOG

        starting_potential = None
        if initial_potential is not None:
            shutil.copyfile(initial_potential.path("potential_yaml"), generation_dir / INITIAL_POTENTIAL)
            starting_potential = INITIAL_POTENTIAL
        if config.baseline is not None:
            report.stage(0.0, f"subtracting baseline {config.baseline.name} from the labels")
            baseline = config.baseline.build()
            for split, source in list(data_files.items()):
                write_delta_dataframe(Path(source), generation_dir / DELTA_DATA[split], baseline,
                                      config.baseline.name)
                data_files[split] = DELTA_DATA[split]
            if time.monotonic() > deadline:
                raise TrainingTimeout("time limit reached while evaluating the baseline")

        content = build_input(config, elements, data_files["train"], data_files.get("test"), starting_potential)
        write_input_yaml(content, generation_dir / INPUT_YAML)

        report.stage(0.0, "fitting")
        watcher = PacemakerLogWatcher(config.maxiter, progress)
        status = run_logged([tools["pacemaker"], INPUT_YAML], generation_dir, log_path, deadline, watcher.feed)
        if status != 0:
            raise tool_failed("pacemaker", status, log_path)
        if not (generation_dir / PACEMAKER_OUTPUT).is_file():
            raise TrainingError(f"pacemaker exited normally but wrote no {PACEMAKER_OUTPUT}",
                                log_tail(log_path), log_path)
        shutil.copyfile(generation_dir / PACEMAKER_OUTPUT, generation_dir / POTENTIAL_YAML)

        fitted = watcher.last_iteration or 0
        report.stage(FIT_SHARE, "converting to .yace", fitted)
        self._run_tool(tools["pace_yaml2yace"], [POTENTIAL_YAML, "-o", POTENTIAL_YACE], POTENTIAL_YACE,
                       generation_dir, log_path, deadline, "could not convert the fitted potential to .yace")
        report.stage(FIT_SHARE + 0.02, "computing the active set", fitted)
        gaps = self._active_set(tools["pace_activeset"], config, generation_dir, log_path, deadline)

        try:
            final_metrics, history = collect_metrics(generation_dir)
        except (OSError, MetricsFormatError) as exc:
            raise TrainingError(f"cannot read pacemaker's metrics: {exc}", log_tail(log_path), log_path) from exc
        final_metrics["wall_seconds"] = round(time.monotonic() - started, 3)
        atomic_write_text(generation_dir / METRICS_JSON,
                          json.dumps({"final": final_metrics, "history": history}, indent=1) + "\n")

        files = {
            "input_yaml": INPUT_YAML, "potential_yaml": POTENTIAL_YAML, "potential_yace": POTENTIAL_YACE,
            "active_set": ACTIVE_SET, "log": LOG, "metrics_json": METRICS_JSON,
        }
        if (generation_dir / ACTIVE_SET_SUMMARY).is_file():
            files["active_set_summary"] = ACTIVE_SET_SUMMARY
        if starting_potential is not None:
            files["initial_potential"] = INITIAL_POTENTIAL
        if config.baseline is not None:
            files.update({f"delta_{split}": name for split, name in DELTA_DATA.items()
                          if (generation_dir / name).is_file()})
        artifact = PotentialArtifact(
            backend=self.name,
            elements=elements,
            files=files,
            digests={role: sha256_file(generation_dir / name) for role, name in files.items()},
            metrics=final_metrics,
            version=watcher.version,
            dataset_digest=manifest.digest,
            config_digest=config.digest(),
            initial_potential=None if initial_potential is None else initial_potential.digest,
            baseline=config.baseline,
            species_without_gamma=gaps,
            energy_label="energy_corrected",
            reference_energies=fit_reference_energies(generation_dir / POTENTIAL_YAML),
        )
        artifact.save(generation_dir)  # last: its presence marks the generation as finished
        report.stage(1.0, "done", fitted)
        return artifact

    def _active_set(self, pace_activeset: Path, config: PacemakerConfig, generation_dir: Path, log_path: Path,
                    deadline: float) -> dict[str, str]:
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

        start = log_path.stat().st_size if log_path.is_file() else 0
        status = run_logged([pace_activeset, *active_set_arguments(config)], generation_dir, log_path, deadline)
        if status == 0 and (generation_dir / ACTIVE_SET).is_file():
            return {}
        with open(log_path, "rb") as log:  # only what pace_activeset wrote
            log.seek(start)
            under_determined = UNDER_DETERMINED_MESSAGE in log.read().decode("utf-8", errors="replace")
        if not under_determined:
            failure = "could not compute the active set"
            if status == 0:
                raise TrainingError(f"{pace_activeset.name} exited normally but wrote no {ACTIVE_SET}: {failure}",
                                    log_tail(log_path), log_path)
            raise tool_failed(pace_activeset.name, status, log_path, failure)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write("\nA species has fewer training environments than B-functions (the error above): the "
                      "potential is kept; building the active set species by species instead\n")
        options = config.active_set
        self._run_tool(Path(sys.executable),
                       ["-m", "mlip_autopipec.backends.pacemaker.active_set", POTENTIAL_YAML,
                        "-d", PACEMAKER_FITTING_DATA, "-g", str(options.gamma_tolerance),
                        "-i", str(options.maxvol_iters), "-o", ACTIVE_SET, "-s", ACTIVE_SET_SUMMARY],
                       ACTIVE_SET, generation_dir, log_path, deadline,
                       "could not build the active set species by species")
        return species_without_gamma(read_summary(generation_dir / ACTIVE_SET_SUMMARY))

    @staticmethod
    def _run_tool(executable: Path, arguments: list[str], output: str, cwd: Path, log_path: Path,
                  deadline: float, failure: str) -> None:
        status = run_logged([executable, *arguments], cwd, log_path, deadline)
        if status != 0:
            raise tool_failed(executable.name, status, log_path, failure)
        if not (cwd / output).is_file():
            raise TrainingError(f"{executable.name} exited normally but wrote no {output}: {failure}",
                                log_tail(log_path), log_path)


class _Reporter:
    """Stage messages between pacemaker's own iteration reports."""

    def __init__(self, progress: ProgressCallback | None, max_iterations: int):
        self.progress = progress
        self.max_iterations = max_iterations

    def stage(self, fraction: float, message: str, iteration: int = 0) -> None:
        if self.progress is not None:
            self.progress(TrainingProgress(iteration=iteration, max_iterations=self.max_iterations, loss=None,
                                           fraction=fraction, message=message))


def _dataset_files(manifest: DatasetManifest) -> dict[str, str]:
    """Absolute paths of the pacemaker train (and test, if any) files, checked against the manifest."""
    entries = {entry.split: entry for entry in manifest.files if entry.format == "pacemaker"}
    where = manifest.directory or "the manifest"
    if "train" not in entries:
        raise DatasetError(f"{where}: no pacemaker-format train file; the dataset is empty or was exported "
                           f"without the 'pacemaker' format")
    files = {}
    for split, entry in entries.items():
        path = manifest.path_of("pacemaker", split).resolve()
        if entry.frames == 0:
            if split == "train":
                raise DatasetError(f"{path}: the training set is empty")
            continue
        if not path.is_file():
            raise DatasetError(f"{path}: {split} file listed in the manifest does not exist")
        if sha256_file(path) != entry.sha256:
            raise DatasetError(f"{path}: {split} file changed since export (sha256 differs from the manifest)")
        files[split] = str(path)
    return files


def _fit_elements(config: PacemakerConfig, manifest: DatasetManifest,
                  initial_potential: PotentialArtifact | None) -> list[str]:
    data_elements = set(manifest.elements)
    if not data_elements:
        raise DatasetError("the dataset manifest lists no elements: the dataset is empty")
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


def _claim_generation_dir(generation_dir: Path) -> None:
    if (generation_dir / ARTIFACT_NAME).exists():
        raise GenerationExistsError(f"{generation_dir} already holds a finished generation ({ARTIFACT_NAME}); "
                                    "generations are never overwritten: train into a new directory")
    generation_dir.mkdir(parents=True, exist_ok=True)
    leftovers = [path for path in generation_dir.iterdir() if path.name != FAILED_ATTEMPTS]
    if not leftovers:
        return
    attempts = generation_dir / FAILED_ATTEMPTS
    prefix = "attempt-"
    numbers = [int(path.name[len(prefix):]) for path in attempts.glob(prefix + "*")
               if path.name[len(prefix):].isdigit()]
    target = attempts / f"{prefix}{max(numbers, default=0) + 1}"
    target.mkdir(parents=True)
    for path in leftovers:
        path.rename(target / path.name)
