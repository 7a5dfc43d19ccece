"""Progress from pacemaker's log lines, as pacemaker 0.4.0rc1 / tensorpotential 0.6.2.1 write them."""

from __future__ import annotations

from mlip_autopipec.backends.pacemaker.log_watch import FIT_SHARE, PacemakerLogWatcher

# Verbatim from a real run (trailing spaces and long lines included), shortened to three iterations.
SINGLE_SHOT_LOG = """\
2026-11-22 04:22:27,247 I - pacemaker/pyace version: 0.4.0rc1
2026-11-22 04:22:27,283 I - Target potential shape constructed from dictionary, it contains 15 functions
2026-11-22 04:22:29,380 I - tensorpot_version: 0.6.2.1
2026-11-22 04:22:36,294 I - Initial state:#0    (1 evals):        Loss: 9.4267e+00 | RMSE Energy(low): 3669.71 (3669.71) meV/at | Forces(low): 4.77 (4.77) meV/A | Time/eval: 62112.70 mcs/at
2026-11-22 04:22:36,294 I - 
--------------------------------------------INIT STATS--------------------------------------------
Iteration:  #0   Loss:    Total:  9.4267e+00 (100%) 
2026-11-22 04:22:37,970 I - Initial(TEST):#0    (1 evals):        Loss: 9.4306e+00 | RMSE Energy(low): 3670.46 (3670.46) meV/at | Forces(low): 0.00 (0.00) meV/A | Time/eval:   0.00 mcs/at
--------------------------------------------INIT TEST STATS--------------------------------------------
Iteration:  #0   Loss:    Total:  9.4306e+00 (100%) 
2026-11-22 04:22:38,007 I - Iteration   #1    (3 evals):        Loss: 5.5634e+00 | RMSE Energy(low): 2819.15 (2819.15) meV/at | Forces(low): 7.31 (7.31) meV/A | Time/eval: 134.29 mcs/at
-------------------------------------------------------------------------------------------------
--------------------------------------------FIT STATS--------------------------------------------
Iteration:  #2   Loss:    Total:  4.3310e-02 (100%) 
--------------------------------------------TEST STATS--------------------------------------------
Iteration:  #2   Loss:    Total:  4.9039e-02 (100%) 
--------------------------------------------Cycle last iteration:--------------------------------------------
Iteration:  #3   Loss:    Total:  4.3310e-02 (100%) 
2026-11-22 04:22:38,659 D - Update metadata: MapStringString{pacemaker_version: 0.4.0rc1, tensorpot_version: 0.6.2.1, user: root}
"""


def _watch(log: str, max_iterations: int):
    events = []
    watcher = PacemakerLogWatcher(max_iterations, events.append)
    for line in log.splitlines(keepends=True):
        watcher.feed(line)
    return watcher, events


def test_training_iterations_are_reported_once_each_and_test_blocks_are_not():
    watcher, events = _watch(SINGLE_SHOT_LOG, max_iterations=2)
    assert [(event.iteration, event.loss) for event in events] == [(0, 9.4267), (1, 5.5634), (2, 4.3310e-2)]
    assert [event.fraction for event in events] == [0.0, FIT_SHARE / 2, FIT_SHARE]
    assert watcher.version == "pacemaker 0.4.0rc1, tensorpotential 0.6.2.1"


def test_ladder_progress_follows_the_basis_size():
    log = """\
I - Target potential shape constructed from dictionary, it contains 16 functions
I - Current basis set size: 10 B-functions
I - Extended basis set size: 13 B-functions
I - Initial state:#0    (1 evals):        Loss: 2.5650e-04 | RMSE Energy(low): 1 (1) meV/at
I - Iteration   #4    (9 evals):        Loss: 2.0e-04 | RMSE Energy(low): 1 (1) meV/at
I - Current basis set size: 13 B-functions
I - Extended basis set size: 16 B-functions
I - Initial state:#0    (1 evals):        Loss: 1.9e-04 | RMSE Energy(low): 1 (1) meV/at
"""
    _, events = _watch(log, max_iterations=4)
    assert [round(event.fraction / FIT_SHARE, 4) for event in events] == [10 / 16, 13 / 16, 13 / 16]
    assert events[-1].message.startswith("basis 16/16 functions")


def test_a_log_without_versions_says_so():
    watcher, events = _watch("something else entirely\n", max_iterations=10)
    assert events == [] and watcher.version == "pacemaker (version not reported)"
