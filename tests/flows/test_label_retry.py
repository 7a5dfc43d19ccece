"""`python -m flows.label --retry-failed` and the automatic retry after a labeler fix (issue 14.4)."""

from __future__ import annotations

from flows import label as label_flow
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StructureStore
from tests.conftest import PROJECT_ROOT
from tests.labeling.conftest import fcc_cell


def test_the_cli_says_when_failed_rows_are_retried(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(PROJECT_ROOT)
    store = StructureStore(tmp_path / "structures.db")
    [row] = [o.id for o in store.add([NewStructure(LabelledFrame(fcc_cell("Cu"), None, None), "md",
                                                   status=Status.PENDING)])]
    crashing = ["--calculator", "tests.labeling.faulty_calculators:Crashing", "--max-attempts", "1",
                "--timeout", "60"]
    assert label_flow.main(["--store", store.url, *crashing]) == 0
    assert store.get(row).status is Status.FAILED
    capsys.readouterr()

    assert label_flow.main(["--store", store.url, *crashing, "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "Crashing: 0 completed, 1 failed, 0 retried; 1 failed structures were made pending again " \
           "(retry failed was asked for)" in out

    assert label_flow.main(["--store", store.url, "--calculator", "emt", "--max-attempts", "1"]) == 0
    out = capsys.readouterr().out
    assert "EMT: 1 completed, 0 failed, 0 retried; 1 failed structures were made pending again (the labeler " \
           "changed since they failed" in out
    assert store.get(row).status is Status.COMPLETED


def test_a_labeler_that_cannot_be_imported_is_a_usage_error(tmp_path, capsys):
    store = StructureStore(tmp_path / "structures.db")
    try:
        label_flow.main(["--store", store.url, "--calculator", "my_labelers:Dft"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("no usage error")
    assert "--calculator: calculator 'my_labelers:Dft': cannot import my_labelers:Dft (No module named " \
           "'my_labelers')" in capsys.readouterr().err
