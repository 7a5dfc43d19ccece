"""Exploration by sampling rules: actions, plugins, validators, quench, basin registry, triggers.

    from mlip_autopipec.sampling import load_rules, read_structure, run_sampling
    summary = run_sampling(read_structure("start.json"), EMT(), load_rules("rules.yaml"), Path("run"), steps=100)

No Prefect here; tasks/sampling.py and flows/sample.py wrap it.
"""

from mlip_autopipec.sampling.config import SamplingRules, load_rules
from mlip_autopipec.sampling.engine import SamplingSummary, run_sampling
from mlip_autopipec.sampling.structure import read_structure, structure_from_json, structure_to_json

__all__ = ["SamplingRules", "SamplingSummary", "load_rules", "read_structure", "run_sampling",
           "structure_from_json", "structure_to_json"]
