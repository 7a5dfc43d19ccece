"""The Prefect UI shows a generation's validation artifacts: checked in a real headless Chromium.

A real `prefect server start` on a free loopback port (its own PREFECT_HOME; the UI told to call that
port), a flow run in its own process that validates EMT against the shared Cu DFT data and publishes
the report and metrics table exactly as a generation does (tasks.validation.publish_validation), then
Debian's chromium opens each artifact page of the UI, lets its JavaScript run, and the DOM it dumps
must show the report's table cells and the table's metric values. The report's plots and the campaign
dashboard's learning curve are embedded as data: URI thumbnails: the screenshot must hold each
picture's pixels, drawn at its own size (not only an <img> tag). The screenshots are kept in
test-outputs/ui-render/ for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser

import base64
import io

import ase.io
import numpy as np
import pytest
from PIL import Image

from tests.conftest import PROJECT_ROOT
from tests.deployments.test_service import _stop, _wait_for_health

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
SCREENSHOTS = PROJECT_ROOT / "test-outputs" / "ui-render"
KEY = "ui check cu"
SERVER_START_S = 150
PAGE_BUDGET_MS = 15000  # virtual time for the UI's JavaScript to fetch and draw the artifact
WINDOW = (1280, 2200)  # tall enough that every table row is drawn without scrolling

SECONDS: dict[str, float] = {}  # printed at the end of the module: where the test's time goes

if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (scripts/bootstrap.sh installs it as root: "
                "apt-get install chromium)", allow_module_level=True)


def publish_generation_artifacts(data: str, out: str, key: str) -> None:
    """The flow the test runs in its own process: validation of EMT on DFT frames, published as a
    generation publishes its validation (markdown report + metrics table). Started together with the
    server, it imports while the server starts and waits for it before running."""
    from ase.calculators.emt import EMT
    from prefect import flow
    from prefect.settings import PREFECT_API_URL

    from mlip_autopipec.validation.report import load_validation_frames, validate_potential
    from tasks.validation import publish_validation

    from prefect.artifacts import create_markdown_artifact

    from mlip_autopipec.validation.plots import learning_curve
    from tasks.campaign import dashboard_markdown
    from tests.tasks.test_campaign_dashboard import dashboard_records

    @flow(name="ui-check-publish")
    def publish() -> None:
        frames, labels, _ = load_validation_frames([data])
        metrics = validate_potential(EMT(), frames, out, labels=labels, title="EMT on Cu DFT")
        publish_validation(metrics, out, key)
        records = dashboard_records()  # as tasks.campaign.dashboard_task publishes it
        curve = learning_curve(records, f"{out}/learning-curve.png", title="ui check: held-out error vs labels")
        create_markdown_artifact(dashboard_markdown("ui check", records, "running generation 3", str(curve), 100),
                                 key="ui-check-dashboard")

    deadline = time.monotonic() + SERVER_START_S
    while not _healthy(PREFECT_API_URL.value()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no Prefect server at {PREFECT_API_URL.value()} after {SERVER_START_S} s")
        time.sleep(0.5)
    publish()


@pytest.fixture(scope="module")
def published(tmp_path_factory, shared_data):
    """A server on loopback and the publishing flow run against it; yields the UI's address, the
    artifacts by type and the validation metrics, then stops the server."""
    workdir = tmp_path_factory.mktemp("ui")
    frames = ase.io.read(shared_data / "Cu-I.extxyz", ":")
    data = workdir / "cu-dft.extxyz"  # dimers and the 64-atom phonon cells: non-zero forces
    ase.io.write(data, [atoms for atoms in frames if len(atoms) == 2][:4] + [a for a in frames if len(a) == 64])
    out = workdir / "report"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(workdir / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_API_URL=api, PYTHONUNBUFFERED="1")
    started = time.monotonic()
    with open(workdir / "server.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port), "--no-services"], cwd=workdir, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    code = (f"from tests.deployments.test_ui_render import publish_generation_artifacts; "
            f"publish_generation_artifacts({str(data)!r}, {str(out)!r}, {KEY!r})")
    publisher = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, env={**env, "PREFECT_API_URL": api},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_health(api, SERVER_START_S, server, workdir / "server.log")
        SECONDS["server start"] = time.monotonic() - started
        output, _ = publisher.communicate(timeout=240)
        SECONDS["server start + publishing flow"] = time.monotonic() - started
        assert publisher.returncode == 0, output[-5000:]
        artifacts = _post(f"{api}/artifacts/filter", {})
        by_type = {artifact["type"]: artifact for artifact in artifacts if artifact["key"] != "ui-check-dashboard"}
        assert set(by_type) == {"markdown", "table"}, [a["key"] for a in artifacts]
        by_type["dashboard"] = next(artifact for artifact in artifacts if artifact["key"] == "ui-check-dashboard")
        yield {"ui": f"http://127.0.0.1:{port}", "workdir": workdir, "artifacts": by_type,
               "metrics": json.loads((out / "validation_metrics.json").read_text())}
    finally:
        _stop(publisher)
        _stop(server)
        print("\nmeasured: " + ", ".join(f"{k} {v:.1f} s" for k, v in SECONDS.items()))


def test_markdown_report_page_shows_the_metrics_and_table_cells(published):
    report, metrics = published["artifacts"]["markdown"], published["metrics"]
    text = _rendered_text(published, report["id"], "report")
    test = metrics["test_set"]
    assert f"{test['energy_rmse_mev_per_atom']:.3f}" in text
    assert f"{test['forces_rmse_mev_per_angstrom']:.2f}" in text
    cells = _markdown_table_cells(report["data"])
    assert len(cells) > 10
    missing = [cell for cell in cells if cell not in text]
    assert not missing, f"table cells of the report not shown by the UI: {missing}"
    assert "Validation of EMT on Cu DFT" in text and "|---|" not in text  # rendered, not raw markdown


def test_report_page_draws_the_plots_inline(published):
    report = published["artifacts"]["markdown"]
    pictures = _embedded_pictures(report["data"])
    assert set(pictures) == {"parity", "errors"}  # EMT has no γ; no crystal given: no EOS
    _rendered_text(published, report["id"], "report-plots", window=(1280, 3200))
    missing = [name for name, picture in pictures.items()
               if not _drawn(SCREENSHOTS / "artifact-report-plots.png", picture)]
    assert not missing, f"plots not drawn by the UI: {missing}"


def test_campaign_dashboard_page_shows_the_table_and_draws_the_learning_curve(published):
    dashboard = published["artifacts"]["dashboard"]
    text = _rendered_text(published, dashboard["id"], "dashboard")
    assert "ui check: campaign dashboard" in text and "running generation 3" in text
    missing = [cell for cell in _markdown_table_cells(dashboard["data"]) if cell not in text]
    assert not missing, f"table cells of the dashboard not shown by the UI: {missing}"
    pictures = _embedded_pictures(dashboard["data"])
    assert list(pictures) == ["learning curve"]
    assert _drawn(SCREENSHOTS / "artifact-dashboard.png", pictures["learning curve"]), "learning curve not drawn"


def test_metrics_table_page_shows_every_row(published):
    table = published["artifacts"]["table"]
    rows = json.loads(table["data"])
    text = _rendered_text(published, table["id"], "table")
    assert f"{len(rows)} Items" in text
    missing = [(row["metric"], row["value"]) for row in rows
               if row["metric"] not in text or _js_number(row["value"]) not in text]
    assert not missing, f"table rows not shown by the UI: {missing}"


# -- helpers ------------------------------------------------------------------------------------


def _rendered_text(published: dict, artifact_id: str, name: str, window: tuple[int, int] = WINDOW) -> str:
    """The artifact page after the UI's JavaScript ran, as visible text; its screenshot is kept."""
    url = f"{published['ui']}/artifacts/artifact/{artifact_id}"
    profile = published["workdir"] / f"chromium-{name}"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={profile}", f"--virtual-time-budget={PAGE_BUDGET_MS}",
              f"--window-size={window[0]},{window[1]}"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / f"artifact-{name}.png"
    started = time.monotonic()
    page = subprocess.run([*common, "--dump-dom", f"--screenshot={screenshot}", url], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    SECONDS[f"chromium {name} page"] = time.monotonic() - started
    assert page.returncode == 0, page.stderr[-3000:]
    with Image.open(screenshot) as image:  # a drawn page, not an empty window
        assert image.size == window
        rgb = np.asarray(image.convert("RGB")).astype(np.uint32)
        assert len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])) > 100
    text = _visible_text(page.stdout)
    assert "Prefect" in text, f"not the Prefect UI: {text[:500]}"
    return text


class _TextOnly(HTMLParser):
    """Text of a DOM dump without scripts and styles, whitespace collapsed."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _visible_text(html: str) -> str:
    parser = _TextOnly()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def _markdown_table_cells(markdown: str) -> list[str]:
    """Plain cells (no markup) of every markdown table."""
    cells = []
    for line in markdown.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-|: ]+\|", line.strip()):
            cells += [cell.strip() for cell in line.strip().strip("|").split("|")
                      if cell.strip() and not re.search(r"[*`\[]", cell)]
    return cells


def _embedded_pictures(markdown: str) -> dict[str, np.ndarray]:
    """The data: URI images of a markdown text by their alt text, decoded to RGB pixels."""
    pictures = {}
    for alt, payload in re.findall(r"!\[([^\]]*)\]\(data:image/png;base64,([^)]+)\)", markdown):
        with Image.open(io.BytesIO(base64.b64decode(payload))) as image:
            pictures[alt] = np.asarray(image.convert("RGB"))
    return pictures


def _drawn(screenshot, picture: np.ndarray) -> bool:
    """Whether the screenshot holds `picture` at its own size: three of its rows (without the ends,
    which rounded corners may clip) found in it, each right below the one before at the same column."""
    with Image.open(screenshot) as image:
        page = np.asarray(image.convert("RGB"))
    height, width = picture.shape[:2]
    rows = [height // 4, height // 2, 3 * height // 4]
    inner = slice(8, width - 8)
    first = picture[rows[0], inner].tobytes()
    for y in range(page.shape[0] - height):
        at = page[y].tobytes().find(first)
        while at >= 0:
            if at % 3 == 0:
                x = at // 3 - 8
                if all(np.array_equal(page[y + row - rows[0], x + 8:x + width - 8], picture[row, inner])
                       for row in rows[1:]):
                    return True
            at = page[y].tobytes().find(first, at + 1)
    return False


def _js_number(value) -> str:
    """How JavaScript prints a JSON number: 12.0 -> '12', 0.1234 -> '0.1234'."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _post(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
