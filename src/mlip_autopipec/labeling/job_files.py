"""The files of a labelling job directory: what the parent writes and the worker reads, and back."""

STRUCTURE_FILE = "structure.traj"  # ASE's binary trajectory: positions and cell round-trip exactly
CALCULATOR_FILE = "calculator.json"  # a CalculatorSpec
RESULT_FILE = "result.json"  # energy, forces, stress, compute_seconds; written atomically
LOG_FILE = "worker.log"  # the worker's stdout and stderr
