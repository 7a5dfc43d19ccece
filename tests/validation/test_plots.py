"""The plotting module's import cost (validation/plots.py)."""

import subprocess
import sys


def test_matplotlib_is_imported_only_when_something_is_plotted():
    """Every command imports the plotting helpers (through tasks/); most never plot."""
    code = ("import sys, mlip_autopipec.validation.evaluation, mlip_autopipec.validation.report; "
            "from mlip_autopipec.validation.plots import pyplot; "
            "assert 'matplotlib' not in sys.modules, 'imported early'; "
            "assert pyplot().get_backend().lower() == 'agg'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
