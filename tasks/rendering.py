"""Rendering tasks: thin wrappers over mlip_autopipec.rendering that publish what was drawn as a
markdown artifact (files, colouring and its range, the first and last frame inline as thumbnails: the
Prefect UI cannot open local pictures)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlip_autopipec.rendering import RenderingUnavailable, RenderResult, render_most_uncertain, render_trajectory
from mlip_autopipec.validation.plots import markdown_image
from tasks.publish import slug


@task(name="render-trajectory", task_run_name="render {trajectory}", cache_policy=NO_CACHE)
def render_trajectory_task(trajectory: str, out: str, every: int = 1, size: tuple[int, int] = (640, 480),
                           color_by: str = "auto", renderer: str = "ovito", blender: str | None = None,
                           movie: str | None = "mp4", fps: float = 8.0, key: str | None = None) -> RenderResult:
    result = render_trajectory(trajectory, out, every=every, size=size, color_by=color_by, renderer=renderer,
                               blender=blender, movie=movie, fps=fps)
    _publish(result, key or f"render-{Path(trajectory).stem}")
    return result


@task(name="render-most-uncertain", cache_policy=NO_CACHE)
def render_most_uncertain_task(trajectories: list[str], report_dir: str, key: str) -> RenderResult | None:
    """The campaign's step: the walker that reached the highest per-atom uncertainty (γ, else a
    committee's forces_std), into report_dir/most-uncertain/. A machine that cannot render (no
    Vulkan driver, no OVITO) costs the generation its pictures, never the generation itself."""
    try:
        result = render_most_uncertain(trajectories, report_dir)
    except RenderingUnavailable as exc:
        get_run_logger().warning(f"most uncertain trajectory not rendered: {exc}")
        return None
    if result is None:
        get_run_logger().info("no exploration trajectory carries a per-atom uncertainty: nothing rendered")
        return None
    if result.note:
        get_run_logger().info(f"most uncertain walker {Path(result.trajectory).name}: {result.note}")
    _publish(result, key)
    return result


def _publish(result: RenderResult, key: str) -> None:
    scale = ("" if result.value_range is None
             else f", colour bar {result.value_range[0]:.4g} to {result.value_range[1]:.4g}")
    lines = [
        f"# Rendered trajectory: {Path(result.trajectory).name}",
        "",
        f"{len(result.frames)} frames ({result.renderer}, {result.size[0]}x{result.size[1]}), "
        f"coloured by {result.colour_by}{scale}.",
        "",
        f"- trajectory: `{result.trajectory}`",
        *([f"- movie: `{result.movie}`"] if result.movie else []),
        *([f"- note: {result.note}"] if result.note else []),
        f"- first frame: `{result.frames[0]}`",
        f"- last frame: `{result.frames[-1]}`",
        "",
        "## First and last frame",  # inline thumbnails: the UI cannot open the files
        "",
        *markdown_image("first frame", result.frames[0], 360),
        "",
        *(markdown_image("last frame", result.frames[-1], 360) if len(result.frames) > 1 else []),
    ]
    create_markdown_artifact(key=slug(key), markdown="\n".join(lines) + "\n",
                             description=f"render of {Path(result.trajectory).name}")
