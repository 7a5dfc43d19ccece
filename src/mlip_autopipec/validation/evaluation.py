"""A generation's errors on one split of an exported dataset, with the plots its report shows."""

from __future__ import annotations

import json

from mlip_autopipec.backends import PotentialArtifact, get_trainer
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.files import atomic_write_text
from mlip_autopipec.validation.errors import predict
from mlip_autopipec.validation.physical import per_element_force_errors
from mlip_autopipec.validation.plots import error_histogram, gamma_histograms, parity_plot
from mlip_autopipec.validation.report import gamma_statistics


def evaluate_on_split(artifact: PotentialArtifact, manifest: DatasetManifest, split: str | None = None,
                      name: str = "test") -> dict:
    """Errors of the potential on `split` (default: the test split, else train), labelled `name`
    (e.g. "held-out") in the generation's report/: parity and error plots, γ histograms and
    statistics when the potential reports γ, force errors per element, the species without γ yet,
    and report/evaluation-<name>.json. Frames with an element the potential was not trained for
    (a species only in this split) are skipped and listed, not predicted."""
    split = split or ("test" if manifest.counts.get("test") else "train")
    path = manifest.path_of("extxyz", split)
    frames, skipped = frames_the_potential_covers([item for _, item in read_labelled_frames(path)],
                                                  artifact.elements, str(path))
    predictions = predict(get_trainer(artifact.backend).make_calculator(artifact), frames,
                          energy_reference=artifact.energy_reference)
    report_dir = artifact.generation_dir / "report"
    title = f"{artifact.generation_dir.name}: {name} set ({len(frames)} structures)"
    plots = {
        "parity": str(parity_plot(predictions, report_dir / f"parity-{name}.png", title)),
        "errors": str(error_histogram(predictions, report_dir / f"errors-{name}.png", title)),
    }
    gamma = None
    if predictions.atom_gamma is not None:
        gamma = gamma_statistics(predictions.max_gamma, predictions.atom_gamma)
        plots["gamma"] = str(gamma_histograms(predictions.max_gamma, predictions.atom_gamma,
                                              report_dir / f"gamma-{name}.png", title))
    symbols = [symbol for frame in frames for symbol in frame.atoms.get_chemical_symbols()]
    evaluation = {"split": name, "metrics": predictions.summary(), "energy_compared_with": predictions.energy_label,
                  "gamma": gamma,
                  "per_element": per_element_force_errors(predictions, symbols),
                  "species_without_gamma": dict(artifact.species_without_gamma),
                  "skipped_frames": skipped, "worst_frames": predictions.worst_frames(), "plots": plots}
    atomic_write_text(report_dir / f"evaluation-{name}.json", json.dumps(evaluation, indent=2) + "\n")
    return evaluation


def frames_the_potential_covers(frames: list[LabelledFrame], elements: list[str],
                                source: str) -> tuple[list[LabelledFrame], list[dict]]:
    """The frames made of `elements` only, and one {frame, problem} entry per other frame.
    Raises ValueError (naming `source`) when no frame is left."""
    known = set(elements)
    kept, skipped = [], []
    for index, frame in enumerate(frames):
        unknown = sorted(set(frame.atoms.get_chemical_symbols()) - known)
        if unknown:
            skipped.append({"file": source, "frame": index,
                            "problem": f"element(s) {unknown} not in the potential (trained for {sorted(known)})"})
        else:
            kept.append(frame)
    if not kept:
        raise ValueError(f"{source}: no frame to evaluate: every one holds an element the potential was not "
                         f"trained for ({skipped[0]['problem'] if skipped else 'no frames'})")
    return kept, skipped
