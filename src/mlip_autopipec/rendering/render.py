"""Render a trajectory to PNG frames and a movie, and a campaign's most uncertain exploration walker.

Output in the target directory: frame-00000.png, ... (one per rendered frame, captioned with its
trajectory frame and MD step), trajectory.mp4 or trajectory.gif (not for a single frame: `note` says
so), and render.json (what was rendered: source file and frames, colouring and its range,
renderer, size). Input is checked completely first and the pictures are made in a scratch directory
that is moved into place at the end, so a failure leaves the target as it was.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import ase.io
import numpy as np

from mlip_autopipec.files import atomic_write_text
from mlip_autopipec.rendering import blender as blender_renderer
from mlip_autopipec.rendering import ovito_scene
from mlip_autopipec.rendering.frames import (AUTO, FORCES_STD, GAMMA, TrajectoryError, caption, colouring, label_font,
                                             read_trajectory)
from mlip_autopipec.rendering.movie import MOVIE_FORMATS, write_movie

RENDERERS = ("ovito", "blender")
MANIFEST_NAME = "render.json"
MOST_UNCERTAIN_DIR = "most-uncertain"
MIN_SIDE, MAX_SIDE = 16, 8192
UNCERTAINTY_ARRAYS = (GAMMA, FORCES_STD)  # per-atom arrays exploration walkers record


@dataclass
class RenderResult:
    trajectory: str
    frames: list[str]  # the PNG files, in order
    source_frames: list[int]  # which frame of the trajectory each PNG shows
    movie: str | None
    colour_by: str
    value_range: tuple[float, float] | None  # of the colour bar; None when coloured by element
    renderer: str
    size: tuple[int, int]
    note: str | None = None  # e.g. why there is no movie

    def to_dict(self) -> dict:
        return asdict(self)


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    check_size((width, height))
    return width, height


def check_size(size: tuple[int, int]) -> None:
    if not all(MIN_SIDE <= side <= MAX_SIDE for side in size):
        raise ValueError(f"image size {size[0]}x{size[1]} out of range: each side {MIN_SIDE} to {MAX_SIDE} pixels")


def render_trajectory(trajectory: str | os.PathLike, out_dir: str | os.PathLike, every: int = 1,
                      size: tuple[int, int] = (640, 480), color_by: str = AUTO, renderer: str = "ovito",
                      blender: str | None = None, movie: str | None = "mp4", fps: float = 8.0) -> RenderResult:
    """Frames of `trajectory` (every `every`-th) to PNG and a movie in `out_dir`.

    color_by: "element", "force" (force norm), "gamma" or any other per-atom array of the file, or
    "auto" (γ when every frame has it, else element). renderer: "ovito" (Tachyon, headless) or
    "blender" (Cycles; `blender` or $MLIP_BLENDER names the executable). movie: "mp4", "gif" or None.
    Raises TrajectoryError (bad input: names file, frame and field), ValueError (bad option) and
    ovito_scene.RenderingUnavailable (the renderer cannot run here; says what to install)."""
    check_size(size)
    if renderer not in RENDERERS:
        raise ValueError(f"renderer {renderer!r} unknown; use one of {', '.join(RENDERERS)}")
    if movie is not None and movie not in MOVIE_FORMATS:
        raise ValueError(f"movie format {movie!r} unknown; use one of {', '.join(MOVIE_FORMATS)}")
    blender_path = blender_renderer.find_blender(blender) if renderer == "blender" else None
    frames = read_trajectory(trajectory, every)
    colours = colouring(frames, color_by, trajectory)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".render-", dir=out))
    try:
        if blender_path is None:
            pictures = ovito_scene.render_frames(frames, colours, scratch, size)
        else:
            pictures = blender_renderer.render_frames(frames, colours, scratch, size, blender_path)
        for picture, atoms in zip(pictures, frames):
            _draw_caption(picture, caption(atoms))
        note = None
        if movie and len(pictures) < 2:
            note = f"a single frame ({caption(frames[0])}): no movie"
            movie = None
        movie_file = write_movie(pictures, scratch / f"trajectory.{movie}", fps) if movie else None
        for stale in [*out.glob("frame-*.png"), *(out / f"trajectory.{kind}" for kind in MOVIE_FORMATS)]:
            stale.unlink(missing_ok=True)
        for path in [*pictures, *([movie_file] if movie_file else [])]:
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    result = RenderResult(
        trajectory=str(Path(trajectory).resolve()),
        frames=[str((out / path.name).resolve()) for path in pictures],
        source_frames=[int(atoms.info["source_frame"]) for atoms in frames],
        movie=str((out / movie_file.name).resolve()) if movie_file else None,
        colour_by=colours.by,
        value_range=None if colours.values is None else (colours.low, colours.high),
        renderer=renderer, size=tuple(size), note=note,
    )
    atomic_write_text(out / MANIFEST_NAME, json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _draw_caption(path: Path, text: str) -> None:
    """`text` in the picture's top-left corner (the legend sits top-right)."""
    from PIL import Image, ImageDraw

    image = Image.open(path).convert("RGB")
    unit = max(8, image.height // 25)
    ImageDraw.Draw(image).text((unit // 2, unit // 2), text, fill=(20, 20, 20), font=label_font(unit))
    image.save(path)


def most_uncertain_trajectory(trajectories: list[str | os.PathLike],
                              arrays: tuple[str, ...] = UNCERTAINTY_ARRAYS) -> tuple[Path, str, float] | None:
    """The trajectory with the largest per-atom uncertainty of any frame: (path, array name, value).

    `arrays` are tried in order (γ of a Pacemaker walker, then a MACE committee's force deviation);
    the first one any trajectory carries is used. None when no trajectory carries any of them."""
    peaks: dict[str, list[tuple[float, Path]]] = {name: [] for name in arrays}
    for path in trajectories:
        try:
            frames = ase.io.read(path, ":")
        except Exception as exc:  # ASE raises many types for unreadable files; report them all the same way
            raise TrajectoryError(f"{path}: not a readable trajectory ({type(exc).__name__}: {exc})") from exc
        for name in arrays:
            values = [float(np.max(atoms.arrays[name])) for atoms in frames if name in atoms.arrays and len(atoms)]
            if values:
                peaks[name].append((max(values), Path(path)))
    for name in arrays:
        if peaks[name]:
            value, path = max(peaks[name], key=lambda peak: peak[0])
            return path, name, value
    return None


def render_most_uncertain(trajectories: list[str | os.PathLike], report_dir: str | os.PathLike,
                          max_frames: int = 40, size: tuple[int, int] = (480, 360),
                          movie: str = "mp4") -> RenderResult | None:
    """Render the exploration trajectory that reached the highest per-atom uncertainty (γ, else a
    committee's `forces_std`) into `report_dir/most-uncertain/`, atoms coloured by it, at most
    `max_frames` frames (evenly spaced, the first one included).

    Returns None (and renders nothing) when no trajectory carries a per-atom uncertainty."""
    found = most_uncertain_trajectory(trajectories)
    if found is None:
        return None
    path, array, _peak = found
    count = len(ase.io.read(path, ":"))
    every = max(1, math.ceil(count / max_frames))
    return render_trajectory(path, Path(report_dir) / MOST_UNCERTAIN_DIR, every=every, size=size,
                             color_by=array, movie=movie)
