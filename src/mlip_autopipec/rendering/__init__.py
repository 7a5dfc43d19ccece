"""Trajectory rendering: frames to PNG and a movie, atoms coloured by element or a per-atom value.

OVITO's Tachyon renderer (headless) by default, Blender's Cycles when a `blender` executable is
configured. No Prefect here: tasks/rendering.py wraps these calls.
"""

from mlip_autopipec.rendering.frames import TrajectoryError
from mlip_autopipec.rendering.ovito_scene import RenderingUnavailable
from mlip_autopipec.rendering.render import (
    RENDERERS,
    RenderResult,
    most_uncertain_trajectory,
    parse_size,
    render_most_uncertain,
    render_trajectory,
)

__all__ = ["RENDERERS", "RenderResult", "RenderingUnavailable", "TrajectoryError", "most_uncertain_trajectory",
           "parse_size", "render_most_uncertain", "render_trajectory"]
