"""The files of a labelling job directory: what the parent writes and the worker reads, and back."""

STRUCTURE_FILE = "structure.traj"  # ASE's binary trajectory: positions and cell round-trip exactly
CALCULATOR_FILE = "calculator.json"  # a CalculatorSpec
RESULT_FILE = "result.json"  # energy, forces, stress, compute_seconds; written atomically
LOG_FILE = "worker.log"  # the worker's stdout and stderr
WALKER_FILE = "walker.json"  # an MD job's WalkerSettings (held-out MD with the labeler)
TRAJECTORY_FILE = "trajectory.extxyz"  # an MD job's snapshots with the labeler's energy and forces
