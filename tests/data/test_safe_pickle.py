"""Untrusted pickles (issue 14.5): a user's Pacemaker DataFrame is read with an allow-list, so a
crafted file's payload never runs; real Pacemaker files still read."""

from __future__ import annotations

import gzip
import os
import pickle

import pandas as pd
import pytest

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.problems import FrameProblem
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.data.safe_pickle import UnsafePickle, load_dataframe


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _write(path, obj):
    with gzip.open(path, "wb") as handle:
        pickle.dump(obj, handle)
    return path


def test_a_crafted_pickle_is_refused_before_its_payload_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path / "data.pckl.gzip", _Payload(marker))
    [(index, problem)] = list(read_labelled_frames(path))
    assert isinstance(problem, FrameProblem)
    assert "refused to load posix.system" in problem.message and str(path) == problem.file
    assert not marker.exists()


def test_a_payload_hidden_in_a_dataframe_cell_is_refused(tmp_path, shared_data):
    marker = tmp_path / "pwned"
    table = pd.read_pickle(shared_data / "Cu_df1_A1_A2_A3_EV_elast_phon.pckl.gzip", compression="gzip").head(3)
    table["extra"] = [_Payload(marker), 1, 2]
    path = tmp_path / "data.pkl"
    table.to_pickle(path)
    with pytest.raises(UnsafePickle, match="posix.system"):
        load_dataframe(path, None)
    assert not marker.exists()
    problems = [item for _, item in read_labelled_frames(path)]
    assert len(problems) == 1 and "nothing in the file was run" in problems[0].message
    assert not marker.exists()


def test_getattr_to_dunders_is_refused(tmp_path):
    class Escape:
        def __reduce__(self):
            return getattr, (pd.DataFrame, "__init__")

    with pytest.raises(UnsafePickle, match="getattr"):
        load_dataframe(_write(tmp_path / "x.pckl.gzip", Escape()), "gzip")


def test_real_pacemaker_dataframes_read_as_with_pandas(shared_data, generation_1):
    source = shared_data / "Cu_df1_A1_A2_A3_EV_elast_phon.pckl.gzip"
    ours = load_dataframe(source, "gzip")
    theirs = pd.read_pickle(source, compression="gzip")
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs)
    assert all(isinstance(item, LabelledFrame) for _, item in read_labelled_frames(source))
    # pacemaker's own outputs (a DataFrameWithMetadata, SinglePointCalculators) read too
    for written in generation_1.directory.glob("*.pckl.gzip"):
        assert len(load_dataframe(written, "gzip")) == len(pd.read_pickle(written, compression="gzip"))


def test_a_method_that_writes_files_cannot_be_looked_up(tmp_path):
    """getattr(ndarray, 'tofile')(path): no dunder, a numpy object, and still a file writer."""
    import numpy as np

    target = tmp_path / "written.txt"

    class _WritesFile:
        def __reduce__(self):
            return getattr(np.frombuffer(b"owned", dtype=np.uint8), "tofile"), (str(target),)

    path = _write(tmp_path / "data.pckl.gzip", _WritesFile())
    with pytest.raises(UnsafePickle, match="refused getattr"):
        load_dataframe(path, "gzip")
    assert not target.exists()
