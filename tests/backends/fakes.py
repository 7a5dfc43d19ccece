"""Stand-ins for the training tools (no torch, no TensorFlow): a `mace_run_train` that crashes,
hangs or "trains" by copying a model file and writing MACE's logs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def write_fake_mace(directory: Path, body: str) -> Path:
    """A `mace_run_train` stand-in (Python, no torch): `args` maps --option -> value; cwd is MACE's."""
    executable = directory / "mace_run_train"
    executable.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import json, os, shutil, sys, time
        from pathlib import Path
        argv = sys.argv[1:]
        args = {}
        for index, item in enumerate(argv):
            if item.startswith("--"):
                following = argv[index + 1] if index + 1 < len(argv) else None
                args[item] = following if following is not None and not following.startswith("--") else True
        tag = f"{args['--name']}_run-{args['--seed']}"
        """) + textwrap.dedent(body))
    executable.chmod(0o755)
    return executable


FAKE_TABLES = """\
2026-01-01 00:00:00.000 INFO: Error-table on TRAIN and VALID:
+---------------+---------------------+------------------+-------------------+
|  config_type  | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % |
+---------------+---------------------+------------------+-------------------+
| train_Default |            1.5      |          2.5     |         10.00     |
| valid_Default |            1.7      |          2.7     |         11.00     |
+---------------+---------------------+------------------+-------------------+
2026-01-01 00:00:00.000 INFO: Error-table on TEST:
+-----------------+---------------------+------------------+-------------------+
|   config_type   | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % |
+-----------------+---------------------+------------------+-------------------+
| Default_Default |            1.9      |          2.9     |         12.00     |
+-----------------+---------------------+------------------+-------------------+
"""


def fake_successful_run(model_source: Path) -> str:
    """Body of a fake that 'trains' by copying a real model and writing MACE's log, results, checkpoint."""
    return f"""
        restarted = "--restart_latest" in args
        lines = ["2026-01-01 00:00:00.000 INFO: MACE version: 0.0-fake"]
        start = 0
        if restarted:
            found = sorted(Path("checkpoints").glob(tag + "_epoch-*.pt"))
            start = int(found[-1].stem.rsplit("-", 1)[1])
            Path("restarted_from.bin").write_bytes(found[-1].read_bytes())
            lines.append(f"2026-01-01 00:00:00.000 INFO: Loading checkpoint: ./checkpoints/{{found[-1].name}}")
        lines.append("2026-01-01 00:00:00.000 INFO: ===========TRAINING===========")
        Path("results").mkdir(exist_ok=True)
        Path("checkpoints").mkdir(exist_ok=True)
        with open(f"results/{{tag}}_train.txt", "w") as results:
            for epoch in range(start, int(args["--max_num_epochs"])):
                lines.append(f"2026-01-01 00:00:00.000 INFO: Epoch {{epoch}}: head: Default, loss=0.00100000, "
                             f"RMSE_E_per_atom=    1.70 meV, RMSE_F=    2.70 meV / A")
                results.write(json.dumps({{"loss": 0.001, "rmse_e_per_atom": 0.0017, "mae_e_per_atom": 0.0012,
                                           "rmse_f": 0.0027, "mae_f": 0.002, "mode": "eval", "epoch": epoch,
                                           "head": "Default"}}) + "\\n")
                Path(f"checkpoints/{{tag}}_epoch-{{epoch}}.pt").write_bytes(b"fake checkpoint")
        lines.append("2026-01-01 00:00:00.000 INFO: ===========RESULTS===========")
        lines.append(f"2026-01-01 00:00:00.000 INFO: Loaded Stage one model from epoch {{epoch}} for evaluation")
        text = "\\n".join(lines) + "\\n" + {FAKE_TABLES!r}
        Path("logs").mkdir(exist_ok=True)
        Path(f"logs/{{tag}}.log").write_text(text)
        print(text, flush=True)
        Path("argv.json").write_text(json.dumps(argv)) if args["--name"] == "mace" else None
        shutil.copyfile({str(model_source)!r}, args["--name"] + ".model")
    """
