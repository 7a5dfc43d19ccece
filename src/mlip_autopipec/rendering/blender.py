"""Frames to PNG with Blender's Cycles path tracer, when a `blender` executable is configured.

Blender runs as a killable subprocess in background mode on `blender_scene.py` with a JSON scene
(one Blender start for the whole trajectory); the legend or colour bar is drawn onto each picture
afterwards with Pillow. Atoms are coloured with ASE's Jmol element colours or matplotlib's viridis.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii
from ase.data.colors import jmol_colors
from PIL import Image, ImageDraw

from mlip_autopipec import processes
from mlip_autopipec.rendering.frames import Colouring, label_font, visible_on_white
from mlip_autopipec.rendering.ovito_scene import CAMERA_DIRECTION, RADIUS_SCALE, RenderingUnavailable

BLENDER_ENV = "MLIP_BLENDER"
SCENE_SCRIPT = Path(__file__).with_name("blender_scene.py")
FIELD_OF_VIEW = np.radians(40.0)
SAMPLES = 16
TIMEOUT_PER_FRAME_S = 120


def find_blender(configured: str | None = None) -> str:
    """The Blender executable: `configured` (--blender), else $MLIP_BLENDER. Raises RenderingUnavailable."""
    candidate = configured or os.environ.get(BLENDER_ENV)
    if not candidate:
        raise RenderingUnavailable(f"the blender renderer needs a Blender executable: pass --blender PATH or set "
                                   f"{BLENDER_ENV}=PATH (or use --renderer ovito)")
    found = shutil.which(candidate)
    if found is None:
        raise RenderingUnavailable(f"Blender executable {candidate!r} not found or not executable "
                                   f"(from {'--blender' if configured else BLENDER_ENV})")
    return found


def render_frames(frames: list[Atoms], colours: Colouring, out_dir: Path, size: tuple[int, int],
                  blender: str) -> list[Path]:
    scene = {
        "size": list(size),
        "samples": SAMPLES,
        "camera": _camera(frames[0], size),
        "frames": [],
    }
    for index, atoms in enumerate(frames):
        scene["frames"].append({
            "output": str((out_dir / f"frame-{index:05d}.png").resolve()),
            "positions": atoms.positions.tolist(),
            "radii": [max(RADIUS_SCALE * float(covalent_radii[z]), 0.25) for z in atoms.numbers],
            "colours": _atom_colours(atoms, colours, index).tolist(),
        })
    scene_file = out_dir / "blender-scene.json"
    scene_file.write_text(json.dumps(scene))
    command = [blender, "--background", "--factory-startup", "--python-exit-code", "1",
               "--python", str(SCENE_SCRIPT), "--", str(scene_file)]
    try:
        result = processes.run(command, 60 + TIMEOUT_PER_FRAME_S * len(frames), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"Blender did not finish {len(frames)} frames in {exc.timeout} s") from exc
    finally:
        scene_file.unlink(missing_ok=True)
    paths = [Path(frame["output"]) for frame in scene["frames"]]
    missing = [path.name for path in paths if not path.is_file()]
    if result.returncode != 0 or missing:
        raise RuntimeError(f"Blender ({blender}) exited with {result.returncode}"
                           + (f", frames not written: {', '.join(missing[:5])}" if missing else "")
                           + f":\n{(result.stdout + result.stderr)[-3000:]}")
    for index, path in enumerate(paths):
        _draw_legend(path, colours, sorted(set(frames[index].get_chemical_symbols())))
    return paths


def _camera(atoms: Atoms, size: tuple[int, int]) -> dict:
    """Looks along CAMERA_DIRECTION at the centre of the first frame (its cell, for a crystal) from
    far enough that the whole of it fits the narrower side of the picture."""
    points = atoms.positions
    if atoms.cell.rank == 3:
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
        points = np.vstack([points, corners @ atoms.cell.array])
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    radius = float(np.linalg.norm(points - centre, axis=1).max()) + 1.0
    direction = np.asarray(CAMERA_DIRECTION) / np.linalg.norm(CAMERA_DIRECTION)
    narrow = FIELD_OF_VIEW * min(1.0, size[1] / size[0])  # Blender's angle spans the wider side
    distance = radius / np.sin(narrow / 2)
    return {"position": (centre - direction * distance).tolist(), "target": centre.tolist(),
            "fov_radians": float(FIELD_OF_VIEW)}


def _atom_colours(atoms: Atoms, colours: Colouring, index: int) -> np.ndarray:
    if colours.values is None:
        return np.array([visible_on_white(jmol_colors[number]) for number in atoms.numbers])
    from matplotlib import colormaps

    scaled = (colours.values[index] - colours.low) / (colours.high - colours.low)
    return colormaps["viridis"](np.clip(scaled, 0.0, 1.0))[:, :3]


def _draw_legend(path: Path, colours: Colouring, elements: list[str]) -> None:
    image = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(image)
    unit = max(8, image.height // 25)
    font = label_font(unit)
    x = image.width - 4 * unit
    if colours.values is None:
        for row, symbol in enumerate(elements):
            y = unit + row * int(1.5 * unit)
            rgb = tuple(int(255 * c) for c in visible_on_white(jmol_colors[atomic_numbers[symbol]]))
            draw.rectangle([x, y, x + unit, y + unit], fill=rgb, outline=(60, 60, 60))
            draw.text((x + int(1.3 * unit), y), symbol, fill=(20, 20, 20), font=font)
    else:
        from matplotlib import colormaps

        top, height = 2 * unit, image.height // 3
        for step in range(height):  # high values on top, as in OVITO's colour bar
            rgb = tuple(int(255 * c) for c in colormaps["viridis"](1.0 - step / (height - 1))[:3])
            draw.line([x, top + step, x + unit, top + step], fill=rgb)
        draw.text((x - unit, top - int(1.3 * unit)), colours.label, fill=(20, 20, 20), font=font)
        draw.text((x + int(1.3 * unit), top), f"{colours.high:.3g}", fill=(20, 20, 20), font=font)
        draw.text((x + int(1.3 * unit), top + height - unit), f"{colours.low:.3g}", fill=(20, 20, 20), font=font)
    image.save(path)
