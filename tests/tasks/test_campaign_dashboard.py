"""The campaign dashboard (one markdown artifact per campaign, a version per generation) and the
inline thumbnails that put the campaign's plots into the Prefect UI (it cannot open files on disk).
That the UI really draws them is checked in a browser by tests/deployments/test_ui_render.py."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from mlip_autopipec.campaign.records import GenerationRecord
from mlip_autopipec.validation.plots import THUMBNAIL_WIDTH, learning_curve, markdown_image, thumbnail_uri
from tasks.campaign import dashboard_markdown


def dashboard_records() -> list[GenerationRecord]:
    return [GenerationRecord(
        generation=g, potential=f"gen-{g:03d}/artifact.json", potential_digest="0" * 64, training_structures=20 + 9 * g,
        labels_total=30 + 10 * g, labels_added=10, labels_failed=g, held_out_energy_rmse_mev_per_atom=8.0 / (g + 1),
        held_out_forces_rmse_mev_per_angstrom=120.0 / (g + 1), explored_frames=40, fraction_below_gamma_lower=0.3 * g,
        selected=12, step_seconds={"export": 0.4, "train": 31.0 + g, "validate": 2.5, "explore": 12.0, "select": 0.2,
                                   "label": 8.0}) for g in range(3)]


def test_the_dashboard_holds_the_table_labels_times_and_the_curve_inline(tmp_path):
    records = dashboard_records()
    curve = learning_curve(records, tmp_path / "learning-curve.png", title="demo")
    text = dashboard_markdown("demo", records, "running generation 3", str(curve), label_budget=100)
    assert text.startswith("# demo: campaign dashboard") and "**running generation 3**" in text
    assert "| 3 | 50 of 100 | 3 | 40.0 | 2.67 | 60 |" in text  # labels spent of the budget, failed in all
    assert "| 1 | 29 | 40 | 10 | 1 | 60.0 | 4.00 | 30 | 12 |" in text  # the table flows.active_learning prints
    assert "| gen | export | train | validate | explore | select | label | total |" in text
    assert "| 2 | 0.4 | 33 | 2.5 | 12 | 0.2 | 8.0 | 56 |" in text
    uri = re.search(r"!\[learning curve\]\((data:image/png;base64,[^)]+)\)", text).group(1)
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumbnail:
        assert thumbnail.width == THUMBNAIL_WIDTH and thumbnail.height > 100
    assert len(uri) < 60_000  # small: artifacts live in the Prefect database
    assert f"`{curve.resolve()}`" in text


def test_before_the_first_generation_the_dashboard_says_so():
    text = dashboard_markdown("demo", [], "running generation 0", None)
    assert "No generation finished yet." in text and "data:" not in text


def test_a_missing_picture_is_named_not_embedded(tmp_path):
    assert thumbnail_uri(tmp_path / "gone.png") is None
    assert markdown_image("parity", tmp_path / "gone.png") == [f"parity: `{tmp_path / 'gone.png'}` (not readable)"]
    Image.new("RGB", (100, 40), (255, 0, 255)).save(tmp_path / "small.png")
    with Image.open(io.BytesIO(base64.b64decode(thumbnail_uri(tmp_path / "small.png").split(",", 1)[1]))) as small:
        assert small.size == (100, 40)  # never enlarged
