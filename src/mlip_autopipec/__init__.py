"""mlip-autopipec: the science and data layer of active-learning campaigns for MLIPs.

This package never imports Prefect; `tasks/` and `flows/` wrap it.
"""

__version__ = "0.1.0"
