"""The HTML timeline in headless Chromium: every node and cycle drawn, drill-down at scale.

Uses Debian's Chromium (``apt-get install chromium``; ``.ci/run`` installs it)
driven by Playwright, offline. Keeps screenshots in build/test-artifacts/ (the
README's docs/images/timeline-html.png is the small job's).
"""

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.timeline_synth import synth_job
from torchelastic_otel.otlp_data import read_otlp_json
from torchelastic_otel.timeline.html import write_html
from torchelastic_otel.timeline.model import JobTimeline, build_timelines

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "demo-job.otlp.jsonl"
ARTIFACTS = ROOT / "build" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRAW_S = 10.0
"""A 1,024-node page must be drawn within this (a few seconds on the 2-core machine)."""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def _open(browser: Any, html: Path) -> Any:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
    page = context.new_page()
    page.requests = []
    page.errors = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    started = time.monotonic()
    page.goto(html.as_uri())
    page.wait_for_selector("section.job svg")
    page.draw_s = time.monotonic() - started
    return page


@pytest.fixture(scope="module")
def small(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, JobTimeline]]:
    jobs = build_timelines(read_otlp_json(DATA))
    page = _open(browser, write_html(jobs, tmp_path_factory.mktemp("t") / "t.html"))
    yield page, jobs[0]
    page.context.close()


@pytest.fixture(scope="module")
def large(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, JobTimeline]]:
    received = synth_job(
        nodes=1024, workers=8, rounds=4, missing={2: [700, 701]}, late={1: {33: 25.0}}
    )
    jobs = build_timelines(received)
    html = write_html(jobs, tmp_path_factory.mktemp("t") / "big.html")
    assert html.stat().st_size <= 5_000_000
    page = _open(browser, html)
    yield page, jobs[0]
    page.context.close()


def test_every_node_and_cycle_is_drawn(small: tuple[Any, JobTimeline]) -> None:
    page, job = small
    assert page.errors == []
    lanes = page.locator("g.lane")
    assert lanes.count() == len(job.nodes) == 2
    titles = [lanes.nth(i).get_attribute("data-node") for i in range(lanes.count())]
    assert titles == [n.title for n in job.nodes]
    assert page.locator("rect.bar.cycle").count() == len(job.cycles) == 2
    parts = sum(len(n.cycles) for n in job.nodes)
    assert page.locator("rect.bar.rdzv").count() == parts == 4
    assert page.locator("rect.bar.worker").count() == 8
    for i in range(page.locator("rect.bar").count()):
        box = page.locator("rect.bar").nth(i).bounding_box()
        assert box is not None and box["width"] > 0
    # The root cause and the worker killed because of it, drawn differently.
    assert page.locator("rect.bar.worker.failed").count() == 1
    assert page.locator("rect.bar.worker.killed").count() == 1
    assert page.locator("rect.bar.worker.restarted").count() == 2
    assert page.locator("rect.bar.worker.succeeded").count() == 4


def test_hover_shows_what_a_bar_is(small: tuple[Any, JobTimeline]) -> None:
    page, _ = small
    tip = page.locator("#tip")
    assert not tip.is_visible()
    page.locator("rect.bar.worker.failed").hover()
    assert tip.is_visible()
    text = tip.inner_text()
    assert "worker 3 (round 0): failed" in text
    assert "RuntimeError: rank 3: simulated failure" in text
    for key in ("run_id", "rank", "node_state", "torchelastic.global_rank"):
        assert key in text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "timeline.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.mouse.move(5, 5)
    assert not tip.is_visible()


def test_clicking_a_cycle_zooms_to_it(small: tuple[Any, JobTimeline]) -> None:
    page, _ = small
    axis = page.locator(".lanes text.axis").last.text_content()
    page.locator("rect.bar.cycle").first.click()
    zoomed = page.locator(".lanes text.axis").last.text_content()
    assert zoomed != axis
    page.locator("button.whole").click()
    assert page.locator(".lanes text.axis").last.text_content() == axis


def test_at_scale_clicking_a_node_draws_its_lanes(large: tuple[Any, JobTimeline]) -> None:
    page, job = large
    assert page.errors == []
    assert page.draw_s < DRAW_S, page.draw_s
    # The summary, the overview and the node list.
    assert page.locator("tr.cycle-row").count() == 4
    # 1,024 nodes do not fit the overview's width: a cell per 2 nodes per round, showing
    # the more telling outcome of the two (and drawing that node when clicked).
    cells = page.locator(".overview rect.cell")
    assert cells.count() == 512 * 4
    gone = cells.nth(2 * 512 + 350)  # round 2, nodes 700 and 701 (both missing)
    assert "o-absent" in (gone.get_attribute("class") or "")
    assert gone.get_attribute("data-n") == "700"
    assert "o-absent" not in (cells.nth(2 * 512 + 349).get_attribute("class") or "")
    assert "missing:" in page.locator("p.alert.missing").inner_text()
    assert page.locator("tr.node-row").count() == 200  # the list is capped; search narrows it
    # The root cause's node is drawn on load.
    assert page.locator("g.lane").count() == 1
    page.locator("input.search").fill("node-00777")
    rows = page.locator("tr.node-row")
    assert rows.count() == 1
    started = time.monotonic()
    rows.first.click()
    lane = page.locator('g.lane[data-node*="node-00777.test"]')
    lane.wait_for()
    assert time.monotonic() - started < DRAW_S
    node = next(n for n in job.nodes if n.host == "node-00777.test")
    workers = sum(len(c.workers) for c in node.cycles)
    assert lane.locator("rect.bar.worker").count() == workers == 32
    # A large job's page comes packed (whole milliseconds): unpacked, every worker is there.
    drawn = page.evaluate(
        "document.querySelector('section.job').job.d.nodes"
        ".find(n => n.h === 'node-00777.test').c.map(c => c[6])"
    )
    for part, ws in zip(node.cycles, drawn, strict=True):
        assert [w[0] for w in ws] == [w.global_rank for w in part.workers]
        assert [w[6] for w in ws] == [w.local_rank for w in part.workers]
        assert [w[3] for w in ws] == [w.result for w in part.workers]
        for w, want in zip(ws, part.workers, strict=True):
            assert abs(w[1] - (want.start_ns - job.start_ns) / 1e6) <= 1
            assert abs(w[2] - (want.end_ns - job.start_ns) / 1e6) <= 1
    assert lane.locator("rect.bar.rdzv").count() == len(node.cycles) == 4
    # A missing node, from its link in the summary.
    page.locator('p.alert.missing .nodelink[data-node*="node-00700.test"]').click()
    gone = page.locator('g.lane[data-node*="node-00700.test"]')
    gone.wait_for()
    assert gone.locator("rect.bar.rdzv").count() == 2  # rounds 0 and 1, then gone
    page.locator("input.search").fill("late")
    assert page.locator("tr.node-row").count() == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(
        path=str(ARTIFACTS / "timeline-scale.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1200, "height": 1250},
    )


def test_no_network_fetches(small: tuple[Any, JobTimeline], large: tuple[Any, JobTimeline]) -> None:
    for page, _ in (small, large):
        assert all(url.startswith("file://") for url in page.requests), page.requests
