"""The HTML timeline in headless Chromium: every node and round drawn, hover works.

Uses Debian's Chromium (``apt-get install chromium``; ``.ci/run`` installs it)
driven by Playwright. Keeps a screenshot in build/test-artifacts/.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from torchelastic_otel.otlp_data import read_otlp_json
from torchelastic_otel.timeline.html import write_html
from torchelastic_otel.timeline.model import build_timelines

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "demo-job.otlp.jsonl"
ARTIFACTS = ROOT / "build" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    html = write_html(
        build_timelines(read_otlp_json(DATA)), tmp_path_factory.mktemp("t") / "t.html"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
        pg = context.new_page()
        requests: list[str] = []
        pg.on("request", lambda r: requests.append(r.url))
        pg.goto(html.as_uri())
        pg.requests = requests
        yield pg
        browser.close()


def test_every_node_and_round_is_drawn(page: Any) -> None:
    job = build_timelines(read_otlp_json(DATA))[0]
    lanes = page.locator("g.lane")
    assert lanes.count() == len(job.lanes) == 2
    titles = [lanes.nth(i).get_attribute("data-node") for i in range(lanes.count())]
    assert titles == [lane.title for lane in job.lanes]
    rounds = sum(1 for lane in job.lanes for b in lane.bars if b.kind == "round")
    assert page.locator("rect.bar.round").count() == rounds == 4
    for i in range(page.locator("rect.bar").count()):
        box = page.locator("rect.bar").nth(i).bounding_box()
        assert box is not None and box["width"] > 0
    assert page.locator("rect.bar.failed").count() == 2


def test_hover_shows_attributes(page: Any) -> None:
    tip = page.locator("#tip")
    assert not tip.is_visible()
    failed = page.locator("rect.bar.failed").last
    failed.hover()
    assert tip.is_visible()
    text = tip.inner_text()
    assert "worker 3: FAILED" in text
    assert "RuntimeError: rank 3: simulated failure" in text
    for key in ("run_id", "rank", "node_state", "torchelastic.global_rank"):
        assert key in text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "timeline.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.mouse.move(5, 5)
    assert not tip.is_visible()


def test_no_network_fetches(page: Any) -> None:
    assert all(url.startswith("file://") for url in page.requests), page.requests
