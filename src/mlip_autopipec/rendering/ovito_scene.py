"""Frames to PNG with OVITO's Tachyon ray tracer: headless, no display and no GPU.

The OVITO wheel composes its images through Vulkan; on a machine without a GPU, Debian's
`mesa-vulkan-drivers` (a CPU driver) and `libvulkan1` are enough (scripts/bootstrap.sh installs them).
One pipeline is kept for the whole trajectory and its data replaced frame by frame; the camera is
fixed on the first frame, so motion shows as motion and not as a re-framed picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from mlip_autopipec.rendering.frames import FORCE, Colouring, visible_on_white

CAMERA_DIRECTION = (2.0, 1.2, -1.0)  # oblique: a cubic cell shows three faces, not one
BACKGROUND = (1.0, 1.0, 1.0)
RADIUS_SCALE = 0.6  # of the covalent radius: neighbours stay apart, so the structure can be read


class RenderingUnavailable(RuntimeError):
    """The renderer cannot run on this machine; the message says what to install."""


def render_frames(frames: list[Atoms], colours: Colouring, out_dir: Path, size: tuple[int, int]) -> list[Path]:
    """One PNG per frame (frame-00000.png, ...) in `out_dir`, with a legend or colour bar."""
    try:  # imported here, not at the top: OVITO loads Qt, which only rendering needs
        from ovito.modifiers import ColorCodingModifier
        from ovito.pipeline import Pipeline, StaticSource
        from ovito.vis import ColorLegendOverlay, TachyonRenderer, Viewport
        from PySide6.QtCore import Qt
    except ImportError as exc:
        raise RenderingUnavailable(f"the OVITO Python module cannot be imported ({exc}); "
                                   "install it with: pip install ovito") from exc

    elements = sorted({symbol for atoms in frames for symbol in atoms.get_chemical_symbols()})
    source = StaticSource(data=_data_collection(frames[0], elements, colours, 0))
    pipeline = Pipeline(source=source)
    corner = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop
    if colours.values is None:
        legend = ColorLegendOverlay(property="particles/Particle Type", alignment=corner, title="element",
                                    use_type_shapes=False, aspect_ratio=3.0)
    else:
        coding = ColorCodingModifier(property=_property_name(colours.by), start_value=colours.low,
                                     end_value=colours.high, gradient=ColorCodingModifier.Viridis())
        pipeline.modifiers.append(coding)
        legend = ColorLegendOverlay(modifier=coding, alignment=corner, title=colours.label,
                                    orientation=Qt.Orientation.Vertical, format_string="%.3g", rotate_title=False)
    legend.text_color = (0.1, 0.1, 0.1)
    legend.font_size = 0.2
    legend.label_size = 0.8
    legend.legend_size = 0.25
    legend.offset_x, legend.offset_y = -0.02, -0.1
    pipeline.add_to_scene()
    try:
        viewport = Viewport(type=Viewport.Type.Perspective, camera_dir=CAMERA_DIRECTION)
        viewport.zoom_all(size=size)
        viewport.overlays.append(legend)
        renderer = TachyonRenderer(antialiasing_samples=4, ambient_occlusion_samples=6)
        paths = []
        for index, atoms in enumerate(frames):
            source.data = _data_collection(atoms, elements, colours, index)
            target = out_dir / f"frame-{index:05d}.png"
            try:
                viewport.render_image(size=size, filename=str(target), background=BACKGROUND, renderer=renderer)
            except RuntimeError as exc:
                if "Vulkan" in str(exc):
                    raise RenderingUnavailable(
                        "OVITO needs a Vulkan driver to compose images; without a GPU install mesa's "
                        "software one: apt-get install libvulkan1 mesa-vulkan-drivers") from exc
                raise
            paths.append(target)
        return paths
    finally:
        pipeline.remove_from_scene()


def _data_collection(atoms: Atoms, elements: list[str], colours: Colouring, index: int):
    """One frame as OVITO data: cell, positions, element types (OVITO's colours), the colouring field."""
    from ovito.data import DataCollection, ParticleType, SimulationCell

    data = DataCollection()
    cell = SimulationCell(pbc=tuple(bool(p) for p in atoms.pbc))
    matrix = np.zeros((3, 4))
    if atoms.cell.rank == 3:
        matrix[:, :3] = atoms.cell.array.T
    else:  # a molecule: OVITO still wants a cell; an invisible box around the atoms
        low, high = atoms.positions.min(axis=0) - 1.0, atoms.positions.max(axis=0) + 1.0
        matrix[:, :3] = np.diag(high - low)
        matrix[:, 3] = low
    cell[...] = matrix
    cell.vis.enabled = atoms.cell.rank == 3
    cell.vis.line_width = 0.006 * float(np.cbrt(max(abs(atoms.cell.volume), 1.0)))
    cell.vis.rendering_color = (0.3, 0.3, 0.3)
    data.objects.append(cell)

    particles = data.create_particles(count=len(atoms))
    particles.create_property("Position", data=atoms.positions)
    types = particles.create_property("Particle Type")
    for type_id, symbol in enumerate(elements, start=1):
        particle_type = ParticleType(id=type_id, name=symbol)
        particle_type.load_defaults()  # OVITO's element colours
        particle_type.color = visible_on_white(particle_type.color)
        particle_type.radius = max(RADIUS_SCALE * float(covalent_radii[atomic_numbers[symbol]]), 0.25)
        types.types.append(particle_type)
    types[...] = [elements.index(symbol) + 1 for symbol in atoms.get_chemical_symbols()]
    if colours.values is not None:
        particles.create_property(_property_name(colours.by), data=colours.values[index])
    return data


def _property_name(by: str) -> str:
    """OVITO's own "Force" is a vector; the norm gets a name of its own."""
    return "Force Norm" if by == FORCE else by


