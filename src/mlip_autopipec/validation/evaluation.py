"""A generation's errors on one split of an exported dataset, with the plots its report shows."""

from __future__ import annotations

import json

from mlip_autopipec.backends import PotentialArtifact, get_trainer
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.files import atomic_write_text
from mlip_autopipec.validation.errors import predict
from mlip_autopipec.validation.plots import error_histogram, gamma_histograms, parity_plot
from mlip_autopipec.validation.report import gamma_statistics


def evaluate_on_split(artifact: PotentialArtifact, manifest: DatasetManifest, split: str | None = None,
                      name: str = "test") -> dict:
    """Errors of the potential on `split` (default: the test split, else train), labelled `name`
    (e.g. "held-out") in the generation's report/: parity and error plots, γ histograms and
    statistics when the potential reports γ, and report/evaluation-<name>.json."""
    split = split or ("test" if manifest.counts.get("test") else "train")
    frames = [item for _, item in read_labelled_frames(manifest.path_of("extxyz", split))]
    predictions = predict(get_trainer(artifact.backend).make_calculator(artifact), frames)
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
    evaluation = {"split": name, "metrics": predictions.summary(), "gamma": gamma,
                  "worst_frames": predictions.worst_frames(), "plots": plots}
    atomic_write_text(report_dir / f"evaluation-{name}.json", json.dumps(evaluation, indent=2) + "\n")
    return evaluation
