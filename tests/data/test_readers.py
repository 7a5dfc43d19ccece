import numpy as np
import pandas as pd
import ase.io

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.problems import FrameProblem
from mlip_autopipec.data.readers import read_labelled_frames


def test_extxyz_frames_carry_reference_labels(shared_data):
    frames = [item for _, item in read_labelled_frames(shared_data / "Cu-I.extxyz")]
    reference = ase.io.read(shared_data / "Cu-I.extxyz", ":")
    assert len(frames) == len(reference) == 105
    for frame, atoms in zip(frames, reference):
        assert isinstance(frame, LabelledFrame)
        assert frame.energy == atoms.get_potential_energy()
        np.testing.assert_array_equal(frame.forces, atoms.get_forces())
        np.testing.assert_array_equal(frame.atoms.positions, atoms.positions)


def test_pacemaker_dataframe_matches_its_extxyz_twin(shared_data):
    frames = [item for _, item in read_labelled_frames(shared_data / "Cu_df1_A1_A2_A3_EV_elast_phon.pckl.gzip")]
    table = pd.read_pickle(shared_data / "Cu_df1_A1_A2_A3_EV_elast_phon.pckl.gzip", compression="gzip")
    assert len(frames) == len(table)
    for frame, row in zip(frames, table.itertuples()):
        assert frame.energy_corrected == row.energy_corrected
        np.testing.assert_array_equal(frame.forces, row.forces)


def test_a_broken_frame_does_not_hide_the_next_one(tmp_path, shared_data):
    text = (shared_data / "Cu-I.extxyz").read_text().splitlines(keepends=True)
    first = "".join(text[:3])  # 1-atom frame: count, comment, atom
    broken = first.replace("Cu ", "Qq ", 1)
    path = tmp_path / "mixed.extxyz"
    path.write_text(first + broken + first)
    items = list(read_labelled_frames(path))
    assert [index for index, _ in items] == [0, 1, 2]
    assert isinstance(items[0][1], LabelledFrame) and isinstance(items[2][1], LabelledFrame)
    problem = items[1][1]
    assert isinstance(problem, FrameProblem) and problem.frame == 1 and "Qq" in problem.message


def test_any_ase_format_is_read(tmp_path, shared_data):
    atoms = ase.io.read(shared_data / "Cu-I.extxyz", "3")
    path = tmp_path / "frame.traj"
    ase.io.write(path, atoms)
    [(index, frame)] = list(read_labelled_frames(path))
    assert index == 0 and frame.energy == atoms.get_potential_energy()
