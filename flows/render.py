"""Render a trajectory to PNG frames and a movie, headless.

    python -m flows.render --input walker-003.extxyz --out render/
    python -m flows.render --input md.extxyz --out render/ --every 5 --size 800x600 --color-by force
    python -m flows.render --input md.extxyz --out render/ --renderer blender --blender /opt/blender/blender

Writes frame-00000.png, ... (one per rendered frame), trajectory.mp4 (or .gif) and render.json to
--out. Atoms are coloured by element, by the force norm (`forces` in the file), or by any per-atom
array of the file such as γ (`gamma`) or a committee's `forces_std` (what exploration walkers
record), with a colour bar on one scale over all frames; `auto` picks γ, else forces_std, when every
frame has it, else element. OVITO's Tachyon renderer needs no
display or GPU; Blender (Cycles) is used when asked for and an executable is given by --blender or
$MLIP_BLENDER. Bad input stops with an error naming the file, frame and field, and exit code 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow

from flows import cli
from mlip_autopipec.rendering import RENDERERS, RenderingUnavailable, RenderResult, TrajectoryError, parse_size
from mlip_autopipec.rendering.blender import find_blender
from tasks.rendering import render_trajectory_task


@flow(name="render", log_prints=True)
def render(input: str, out: str, every: int = 1, size: tuple[int, int] = (640, 480), color_by: str = "auto",
           renderer: str = "ovito", blender: str | None = None, movie: str | None = "mp4",
           fps: float = 8.0) -> RenderResult:
    result = render_trajectory_task(input, out, every, size, color_by, renderer, blender, movie, fps)
    scale = "" if result.value_range is None else " ({:.4g} to {:.4g})".format(*result.value_range)
    print(f"{len(result.frames)} frames coloured by {result.colour_by}{scale} in {Path(out).resolve()}"
          + (f", movie {Path(result.movie).name}" if result.movie else "")
          + (f"; {result.note}" if result.note else ""))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("render", __doc__)
    parser.add_argument("--input", required=True, help="trajectory: extxyz or anything ase.io reads")
    parser.add_argument("--out", required=True, help="directory for the PNG frames, the movie and render.json")
    parser.add_argument("--every", type=int, default=1, help="render every K-th frame (default 1)")
    parser.add_argument("--size", default="640x480", help="picture size WIDTHxHEIGHT in pixels (default 640x480)")
    parser.add_argument("--color-by", default="auto",
                        help="element, force, gamma, forces_std, another per-atom array of the file, or "
                             "auto (gamma, else forces_std, when present, else element; the default)")
    parser.add_argument("--renderer", choices=RENDERERS, default="ovito")
    parser.add_argument("--blender", default=None, help="Blender executable for --renderer blender "
                                                        "(default: $MLIP_BLENDER)")
    parser.add_argument("--movie", choices=["mp4", "gif", "none"], default="mp4", help="movie format (default mp4)")
    parser.add_argument("--fps", type=float, default=8.0, help="movie frames per second (default 8)")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
        if args.renderer == "blender":
            find_blender(args.blender)  # before a Prefect server is started for nothing
        if not Path(args.input).is_file():
            raise TrajectoryError(f"{args.input}: no such file")
        with cli.prefect_api():
            render(args.input, args.out, args.every, size, args.color_by, args.renderer, args.blender,
                   None if args.movie == "none" else args.movie, args.fps)
    except (TrajectoryError, RenderingUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
