"""DP-GEN-style selection by committee force deviation."""

from __future__ import annotations

import pytest

from mlip_autopipec.selection.committee import TrustLevels, classify, select_candidates


def test_frames_are_classified_against_the_trust_levels():
    deviations = [0.01, 0.2, 0.5, 0.1, 0.3, 0.05]
    classes = classify(deviations, TrustLevels(lower=0.1, upper=0.3))
    assert classes == {"accurate": [0, 5], "candidate": [1, 3], "failed": [2, 4]}
    assert classify(deviations, TrustLevels(lower=0.1))["failed"] == []


def test_candidates_are_ranked_most_uncertain_first():
    deviations = [0.12, 0.25, 0.9, 0.18, 0.25]
    assert select_candidates(deviations, TrustLevels(0.1, 0.3)) == [1, 4, 3, 0]
    assert select_candidates(deviations, TrustLevels(0.1, 0.3), count=2) == [1, 4]


@pytest.mark.parametrize("lower, upper", [(-0.1, 0.3), (0.3, 0.3), (0.3, 0.1)])
def test_inconsistent_trust_levels_are_refused(lower, upper):
    with pytest.raises(ValueError, match="0 <= lower < upper"):
        TrustLevels(lower, upper)
