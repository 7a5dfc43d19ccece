"""Rendering real trajectories with the real OVITO (and Blender when one is configured): the pictures
are checked as pictures (size, drawn on, shaded, changing with the atoms and with the colouring), the
movies by the frames read back from them, and bad input by its message and an untouched output."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import ase.io
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from mlip_autopipec.rendering import (
    RenderingUnavailable,
    TrajectoryError,
    parse_size,
    render_most_uncertain,
    render_trajectory,
)
from mlip_autopipec.rendering.render import MANIFEST_NAME, MOST_UNCERTAIN_DIR
from tests.rendering.pictures import (
    assert_real_picture,
    atom_area,
    changed_fraction,
    cu_md_trajectory,
    hue_count,
    pixels,
)

SIZE = (192, 144)


@pytest.fixture(scope="module")
def cu_md(shared_data, tmp_path_factory):
    return cu_md_trajectory(shared_data, tmp_path_factory.mktemp("md") / "cu-md.extxyz")


@pytest.fixture(scope="module")
def by_element(cu_md, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "element"
    return out, render_trajectory(cu_md, out, every=2, size=SIZE, color_by="element", movie="mp4")


@pytest.fixture(scope="module")
def by_gamma(cu_md, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "gamma"
    return out, render_trajectory(cu_md, out, every=2, size=SIZE, color_by="gamma", movie="gif")


def test_frames_are_real_pictures_that_follow_the_moving_atoms(cu_md, by_element):
    out, result = by_element
    count = len(ase.io.read(cu_md, ":"))
    assert result.source_frames == list(range(0, count, 2))
    assert [os.path.basename(path) for path in result.frames] == [
        f"frame-{index:05d}.png" for index in range(len(result.source_frames))]
    images = [assert_real_picture(path, SIZE) for path in result.frames]
    for earlier, later in zip(images, images[1:]):
        assert changed_fraction(earlier, later) > 0.005, "consecutive frames look the same although atoms moved"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["frames"] == result.frames and manifest["colour_by"] == "element"
    assert manifest["value_range"] is None
    assert not [path for path in out.iterdir() if path.name.startswith(".render-")]  # scratch removed


def test_mp4_movie_has_one_frame_per_picture(by_element):
    _, result = by_element
    frames, _seconds = imageio_ffmpeg.count_frames_and_secs(result.movie)
    assert frames == len(result.frames)
    reader = imageio_ffmpeg.read_frames(result.movie)
    meta = reader.__next__()
    reader.close()
    assert tuple(meta["size"]) == SIZE  # both sides even: no padding needed


def test_gamma_colouring_differs_from_element_colouring_and_spans_the_array(cu_md, by_element, by_gamma):
    _, element = by_element
    out, gamma = by_gamma
    values = np.concatenate([atoms.arrays["gamma"] for atoms in ase.io.read(cu_md, ":")[::2]])
    assert gamma.value_range == pytest.approx((values.min(), values.max()))
    for element_png, gamma_png in zip(element.frames, gamma.frames):
        assert_real_picture(gamma_png, SIZE)
        # same geometry and camera, other colours: most drawn atom pixels change
        element_atoms, gamma_atoms = atom_area(pixels(element_png)), atom_area(pixels(gamma_png))
        drawn = np.any(element_atoms != 255, axis=1)
        assert changed_fraction(element_atoms[drawn][None], gamma_atoms[drawn][None]) > 0.5
    # element: copper's one hue; gamma: a spread of viridis hues over the atoms
    assert hue_count(element.frames[0]) == 1
    assert hue_count(gamma.frames[0]) >= 2
    with Image.open(gamma.movie) as movie:
        assert movie.n_frames == len(gamma.frames)
        assert movie.size == SIZE


def test_force_colouring_of_a_molecule_from_dft_forces(shared_data, tmp_path):
    """Ethanol (no cell) coloured by the norm of the DFT forces in the file."""
    frames = ase.io.read(shared_data / "ethanol-revMD17.extxyz", ":7")
    source = tmp_path / "ethanol.extxyz"
    ase.io.write(source, frames)
    result = render_trajectory(source, tmp_path / "out", every=3, size=(160, 120), color_by="force", movie=None)
    norms = np.concatenate([np.linalg.norm(atoms.get_forces(), axis=1) for atoms in frames[::3]])
    assert result.value_range == pytest.approx((norms.min(), norms.max()))
    assert len(result.frames) == math.ceil(len(frames) / 3) and result.movie is None
    for path in result.frames:
        assert_real_picture(path, (160, 120), min_drawn=0.01)


def test_auto_colours_by_gamma_when_present_else_by_element(cu_md, shared_data, tmp_path):
    assert render_trajectory(cu_md, tmp_path / "a", every=6, size=(64, 48), movie=None).colour_by == "gamma"
    plain = tmp_path / "plain.extxyz"
    ase.io.write(plain, [atoms for atoms in ase.io.read(shared_data / "Cu-I.extxyz", ":") if len(atoms) == 64][:1])
    assert render_trajectory(plain, tmp_path / "b", size=(64, 48), movie=None).colour_by == "element"


def _one_atom(z: float) -> str:
    return f"1\nProperties=species:S:1:pos:R:3 pbc=\"F F F\"\nCu 0.0 0.0 {z}\n"


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("empty frame", "frame 1 has no atoms"),
    ("unknown array", "frame 0 has no per-atom array 'charge'"),
    ("no forces", "frame 0 has no field 'forces'"),
])
def test_bad_input_names_file_frame_and_field_and_leaves_the_output_alone(tmp_path, case, message):
    source = tmp_path / "bad.extxyz"
    if case == "empty frame":
        source.write_text(_one_atom(0.0) + "0\nProperties=species:S:1:pos:R:3\n" + _one_atom(1.0))
    elif case != "missing":
        source.write_text(_one_atom(0.0) + _one_atom(1.0))
    color_by = {"unknown array": "charge", "no forces": "force"}.get(case, "element")
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame-00000.png").write_bytes(b"earlier render")
    with pytest.raises(TrajectoryError, match=message) as error:
        render_trajectory(source, out, size=(64, 48), color_by=color_by)
    assert str(source) in str(error.value)
    assert sorted(path.name for path in out.iterdir()) == ["frame-00000.png"]
    assert (out / "frame-00000.png").read_bytes() == b"earlier render"


def test_bad_options_are_refused(cu_md, tmp_path):
    with pytest.raises(ValueError, match="not WIDTHxHEIGHT"):
        parse_size("640by480")
    with pytest.raises(ValueError, match="out of range"):
        parse_size("8x8")
    with pytest.raises(TrajectoryError, match="at least 1"):
        render_trajectory(cu_md, tmp_path, every=0)


def test_blender_without_an_executable_says_how_to_configure_one(cu_md, tmp_path, monkeypatch):
    monkeypatch.delenv("MLIP_BLENDER", raising=False)
    with pytest.raises(RenderingUnavailable, match="--blender PATH or set MLIP_BLENDER"):
        render_trajectory(cu_md, tmp_path / "out", renderer="blender")
    monkeypatch.setenv("MLIP_BLENDER", str(tmp_path / "no-blender-here"))
    with pytest.raises(RenderingUnavailable, match="not found"):
        render_trajectory(cu_md, tmp_path / "out", renderer="blender")
    assert not (tmp_path / "out").exists()


def test_blender_cycles_renders_real_pictures(cu_md, tmp_path):
    blender = os.environ.get("MLIP_BLENDER") or shutil.which("blender")
    if not blender:
        pytest.skip("no Blender executable configured (MLIP_BLENDER) or on PATH")
    result = render_trajectory(cu_md, tmp_path / "out", every=5, size=(96, 72), color_by="gamma",
                               renderer="blender", blender=blender, movie="gif")
    images = [assert_real_picture(path, (96, 72)) for path in result.frames]
    assert len(images) == 2 and changed_fraction(*images) > 0.005


def test_most_uncertain_walker_is_rendered_into_the_report(shared_data, tmp_path):
    calm = cu_md_trajectory(shared_data, tmp_path / "walker-000.extxyz", frames=3, gamma_scale=1.0)
    wild = cu_md_trajectory(shared_data, tmp_path / "walker-001.extxyz", frames=3, gamma_scale=5.0)
    report = tmp_path / "gen-001" / "report"
    result = render_most_uncertain([calm, wild], report, max_frames=2, size=(64, 48), movie="gif")
    assert result.trajectory == str(wild.resolve()) and result.colour_by == "gamma"
    assert result.source_frames == [0, 2]  # 3 frames, at most 2: every second one
    assert all(path.startswith(str(report / MOST_UNCERTAIN_DIR)) for path in result.frames)
    manifest = json.loads((report / MOST_UNCERTAIN_DIR / MANIFEST_NAME).read_text())
    assert manifest["trajectory"] == str(wild.resolve())

    # A MACE committee's walkers record forces_std instead of γ; with neither, nothing is rendered.
    committee, plain = tmp_path / "committee.extxyz", tmp_path / "plain.extxyz"
    frames = ase.io.read(calm, ":")
    for atoms in frames:
        atoms.arrays["forces_std"] = atoms.arrays.pop("gamma") / 10
    ase.io.write(committee, frames)
    result = render_most_uncertain([committee], tmp_path / "committee-report", max_frames=3, size=(64, 48),
                                   movie="gif")
    assert result.colour_by == "forces_std" and result.source_frames == [0, 1, 2]
    for atoms in frames:
        del atoms.arrays["forces_std"]
    ase.io.write(plain, frames)
    assert render_most_uncertain([plain], tmp_path / "other") is None
    assert not (tmp_path / "other").exists()


def test_a_machine_without_a_vulkan_driver_gets_told_what_to_install(cu_md, tmp_path):
    """OVITO composes its pictures through Vulkan: hide every driver (the loader's own variable) in a
    fresh process, as on a machine without mesa-vulkan-drivers."""
    code = ("import sys; from mlip_autopipec.rendering import render_trajectory, RenderingUnavailable\n"
            f"try: render_trajectory({str(cu_md)!r}, {str(tmp_path / 'out')!r}, size=(64, 48), movie=None)\n"
            "except RenderingUnavailable as exc: print(exc); sys.exit(3)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "VK_ICD_FILENAMES": str(tmp_path / "no-driver.json")})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "apt-get install libvulkan1 mesa-vulkan-drivers" in result.stdout
    assert not list((tmp_path / "out").iterdir())


def test_hydrogen_is_not_white_on_white_and_frames_carry_their_step(shared_data, tmp_path):
    """Ethanol's hydrogens used to vanish on the white background; every frame now says which
    trajectory frame and MD step it shows."""
    from mlip_autopipec.rendering.frames import colouring, visible_on_white
    from mlip_autopipec.rendering.ovito_scene import _data_collection

    frames = ase.io.read(shared_data / "ethanol-revMD17.extxyz", ":2")
    for step, atoms in enumerate(frames):
        atoms.info["md_step"] = 10 * (step + 1)
    source = tmp_path / "ethanol.extxyz"
    ase.io.write(source, frames)
    data = _data_collection(frames[0], ["C", "H", "O"], colouring(frames, "element"), 0)
    hydrogen = [t for t in data.particles.particle_types.types if t.name == "H"][0]
    assert max(hydrogen.color) < 0.85 and visible_on_white((1.0, 1.0, 1.0)) != (1.0, 1.0, 1.0)

    result = render_trajectory(source, tmp_path / "out", size=(200, 150), color_by="element", movie=None)
    corners = [pixels(path)[:16, :120] for path in result.frames]
    assert all((corner < 128).any() for corner in corners)  # dark caption text top-left
    assert changed_fraction(*corners) > 0  # "MD step 10" against "MD step 20"


def test_a_single_frame_makes_no_movie_and_says_so(cu_md, tmp_path):
    frames = ase.io.read(cu_md, ":1")
    frames[0].info["md_step"] = 20
    source = tmp_path / "stopped.extxyz"
    ase.io.write(source, frames)
    result = render_trajectory(source, tmp_path / "out", size=(96, 72), color_by="element", movie="mp4")
    assert result.movie is None and result.note == "a single frame (frame 0, MD step 20): no movie"
    assert json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["note"] == result.note
    assert not list((tmp_path / "out").glob("trajectory.*"))
