"""Pacemaker's input.yaml from a PacemakerConfig, written so that `pacemaker input.yaml`, run by hand
in the generation directory, repeats the fit (the `backend:` section is always present: pacemaker 0.4
crashes without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlip_autopipec.backends.pacemaker.config import PacemakerConfig
from mlip_autopipec.files import atomic_write_text


def build_input(
    config: PacemakerConfig,
    elements: list[str],
    train_file: str,
    test_file: str | None = None,
    initial_potential: str | None = None,
) -> dict[str, Any]:
    """The input.yaml content as a dict; `initial_potential` is a potential .yaml to start from."""
    if initial_potential is not None and config.fine_tune == "continue":
        # Refit the previous potential as it is: same basis, its coefficients as the start.
        potential: dict[str, Any] = {"filename": initial_potential}
    else:
        potential = _basis_section(config, elements)
        if initial_potential is not None:  # upfit: grow the previous basis towards the one above
            potential["initial_potential"] = initial_potential

    data: dict[str, Any] = {"filename": train_file}
    if test_file is not None:
        data["test_filename"] = test_file
    if config.reference_energy is not None:
        data["reference_energy"] = config.reference_energy

    return {
        "seed": config.seed,
        "potential": potential,
        "data": data,
        "fit": _fit_section(config, upfit=initial_potential is not None and config.fine_tune == "upfit"),
        "backend": {
            "evaluator": "tensorpot",  # the pyace evaluator ignores the test set
            "batch_size": config.batch_size,
            "display_step": config.display_step,
        },
    }


def check_basis(config: PacemakerConfig, elements: list[str]) -> None:
    """Build the basis Pacemaker will build (pyace, well under a second) and refuse one without a
    single function. Pacemaker spreads `number_of_functions_per_element` evenly (rounding down) over
    every block of an element: with many elements that is 0 per block, and its fit crashes deep in
    TensorFlow (an IndexError) instead of saying so."""
    from mlip_autopipec.backends import TrainingConfigError

    blocks, total = _basis_size(config, elements, config.number_of_functions_per_element)
    if total > 0:
        return
    enough = -(-blocks // len(elements))  # one function for each block of an element
    advice = (f"at least {enough} functions per element" if _basis_size(config, elements, enough)[1] > 0
              else "more functions per element")
    raise TrainingConfigError(
        f"training.number_of_functions_per_element: {config.number_of_functions_per_element} functions per "
        f"element spread over the {blocks} basis blocks of {len(elements)} elements ({', '.join(elements)}) "
        f"give every block 0 functions, so Pacemaker would have nothing to fit. Use {advice}, or fewer body "
        "orders (shorter nradmax_by_orders / lmax_by_orders)")


def _basis_size(config: PacemakerConfig, elements: list[str], functions_per_element: int) -> tuple[int, int]:
    """(blocks, functions) of the basis pyace builds for these settings."""
    from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

    extension = import_pyace("pyace.multispecies_basisextension")
    section = _basis_section(config, elements)
    section["functions"]["number_of_functions_per_element"] = functions_per_element
    basis = extension.create_multispecies_basis_config(section)
    return len(basis.funcspecs_blocks), int(basis.total_number_of_functions)


def write_input_yaml(content: dict[str, Any], path: str | Path) -> Path:
    return atomic_write_text(path, yaml.safe_dump(content, sort_keys=False, default_flow_style=None))


def _basis_section(config: PacemakerConfig, elements: list[str]) -> dict[str, Any]:
    return {
        "deltaSplineBins": 0.001,
        "elements": list(elements),
        "embeddings": {"ALL": config.embedding.model_dump()},
        "bonds": {"ALL": {**config.radial.model_dump(), "rcut": config.cutoff}},
        "functions": {
            "number_of_functions_per_element": config.number_of_functions_per_element,
            "ALL": {
                "nradmax_by_orders": list(config.nradmax_by_orders),
                "lmax_by_orders": list(config.lmax_by_orders),
            },
        },
    }


def _fit_section(config: PacemakerConfig, upfit: bool) -> dict[str, Any]:
    fit: dict[str, Any] = {
        "loss": config.loss.model_dump(),
        "optimizer": config.optimizer,
        "maxiter": config.maxiter,
    }
    if config.optimizer_options:
        fit["options"] = dict(config.optimizer_options)
    if config.weighting is not None:
        fit["weighting"] = config.weighting.model_dump(exclude_none=True)
    if config.repulsion is not None:
        fit["repulsion"] = config.repulsion
    if config.ladder_step is not None or upfit:
        if config.ladder_step is not None:  # absent: pacemaker adds all new functions in one step
            fit["ladder_step"] = config.ladder_step
        fit["ladder_type"] = config.ladder_type
    if config.early_stopping is not None:
        stopping = config.early_stopping
        if stopping.min_relative_train_loss_per_iter is not None:
            fit["min_relative_train_loss_per_iter"] = stopping.min_relative_train_loss_per_iter
        if stopping.min_relative_test_loss_per_iter is not None:
            fit["min_relative_test_loss_per_iter"] = stopping.min_relative_test_loss_per_iter
        fit["early_stopping_patience"] = stopping.patience
    return fit
