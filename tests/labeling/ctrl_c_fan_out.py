"""Run by test_label_fan_out in a process of its own: fan_out one hanging labelling job until the
test presses Ctrl-C (SIGINT), then print the run's failures as JSON and exit with 130.

    python -m tests.labeling.ctrl_c_fan_out STORE WORKDIR
"""

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.labeling import LabelingRun, fan_out, label_claimed
from mlip_autopipec.store import StructureStore

HANGING = CalculatorSpec(factory="tests.labeling.faulty_calculators:Hanging")


def main(store_url: str, workdir: str) -> int:
    store = StructureStore(store_url, campaign="test")
    run = LabelingRun(store, HANGING, max_attempts=1)
    cancel = threading.Event()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            fan_out(run, lambda row_id: pool.submit(label_claimed, StructureStore(store_url, campaign="test"),
                                                    row_id, HANGING, workdir, timeout_s=120, cancel=cancel),
                    workers=1, on_interrupt=cancel.set)
    except KeyboardInterrupt:
        print(json.dumps({str(row): error for row, error in run.report.failed.items()}))
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
