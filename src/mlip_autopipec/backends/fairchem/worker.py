"""The half of the FairChem backend that runs inside the FairChem interpreter (`backend_python`).

fairchem-core 1.10 needs torch ~2.4 and numpy <2, so it cannot be imported by the main process;
the main process runs this file *by path* with that interpreter. It imports only the standard
library, numpy, ase and fairchem, never mlip_autopipec (which is not installed there).

    python worker.py predict  --checkpoint C --input in.extxyz --output out.extxyz [--energy-only] [--cpu]
    python worker.py strip    --source C --target start.pt
    python worker.py describe --checkpoint C
    python worker.py serve    --checkpoint C [--cpu]

Each one-shot command prints one JSON object on stdout. `serve` loads the checkpoint once into
fairchem's OCPCalculator and then answers one JSON request per stdin line, one JSON reply per
stdout line:  {"numbers", "positions", "cell", "pbc"}  ->  {"energy", "forces"[, "stress"]}
or {"error": "..."}. stdout carries only this protocol: everything fairchem or torch print goes to
stderr (file descriptor 1 is pointed at 2 before they load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

PREDICTION_PREFIX = "FAIRCHEM_"
# Trainer state that a fine-tuning run must not inherit (it starts at step 0 with a fresh optimizer).
TRAINING_STATE_KEYS = ("epoch", "step", "optimizer", "scheduler", "best_val_metric", "primary_metric", "amp", "ema")


def _protocol_stream():
    """A text stream on the original stdout; fd 1 then points at stderr for everything else."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def _load_checkpoint(path: str) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def _calculator(checkpoint: str, cpu: bool):
    from fairchem.core.common.relaxation.ase_utils import OCPCalculator

    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint file")
    return OCPCalculator(checkpoint_path=checkpoint, cpu=cpu, seed=0)


def predict(args) -> dict:
    import ase.io
    import numpy as np

    calculator = _calculator(args.checkpoint, args.cpu)
    frames = ase.io.read(args.input, index=":", format="extxyz")
    out = []
    for atoms in frames:
        geometry = atoms.copy()
        geometry.calc = calculator
        energy = float(geometry.get_potential_energy())
        result = atoms.copy()
        result.calc = None
        result.info[PREDICTION_PREFIX + "energy"] = energy
        if not args.energy_only:
            result.arrays[PREDICTION_PREFIX + "forces"] = np.asarray(geometry.get_forces(), dtype=float)
        out.append(result)
    temporary = args.output + ".partial"
    ase.io.write(temporary, out, format="extxyz")
    os.replace(temporary, args.output)
    return {"frames": len(out), "output": args.output}


def strip(args) -> dict:
    """A copy of the checkpoint with weights, normalizers and config but no trainer state."""
    import torch

    checkpoint = _load_checkpoint(args.source)
    kept = {key: value for key, value in checkpoint.items() if key not in TRAINING_STATE_KEYS}
    temporary = args.target + ".partial"
    torch.save(kept, temporary)
    os.replace(temporary, args.target)
    return {"source_epoch": checkpoint.get("epoch"), "source_step": checkpoint.get("step"),
            "kept": sorted(kept)}


def describe(args) -> dict:
    checkpoint = _load_checkpoint(args.checkpoint)
    config = checkpoint.get("config", {}) or {}
    model = config.get("model", {}) or {}
    backbone = model.get("backbone", {}) if isinstance(model.get("backbone"), dict) else {}
    import fairchem.core
    import torch

    return {
        "model": model.get("name"), "backbone": backbone.get("model"),
        "epoch": checkpoint.get("epoch"), "step": checkpoint.get("step"),
        "parameters": int(sum(value.numel() for value in checkpoint["state_dict"].values())),
        "fairchem_version": fairchem.core.__version__, "torch_version": torch.__version__,
    }


def serve(args, protocol) -> None:
    import numpy as np
    from ase import Atoms

    calculator = _calculator(args.checkpoint, args.cpu)
    protocol.write(json.dumps({"ready": True, "implemented_properties": list(calculator.implemented_properties)})
                   + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            atoms = Atoms(numbers=request["numbers"], positions=request["positions"], cell=request["cell"],
                          pbc=request["pbc"])
            atoms.calc = calculator
            reply = {"energy": float(atoms.get_potential_energy()),
                     "forces": np.asarray(atoms.get_forces(), dtype=float).tolist()}
            if "stress" in request.get("properties", []) and "stress" in calculator.implemented_properties:
                reply["stress"] = np.asarray(atoms.get_stress(voigt=True), dtype=float).tolist()
        except Exception as exc:  # the reply names the failure; the server keeps serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        protocol.write(json.dumps(reply) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("predict")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--energy-only", action="store_true")
    p.add_argument("--cpu", action="store_true")
    s = commands.add_parser("strip")
    s.add_argument("--source", required=True)
    s.add_argument("--target", required=True)
    d = commands.add_parser("describe")
    d.add_argument("--checkpoint", required=True)
    v = commands.add_parser("serve")
    v.add_argument("--checkpoint", required=True)
    v.add_argument("--cpu", action="store_true")
    args = parser.parse_args(argv)

    protocol = _protocol_stream()
    try:
        if args.command == "serve":
            serve(args, protocol)
            return 0
        result = {"predict": predict, "strip": strip, "describe": describe}[args.command](args)
    except Exception as exc:
        traceback.print_exc()
        protocol.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 1
    protocol.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
