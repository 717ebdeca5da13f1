"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright for
Python, over a real store. They skip, saying why, when either is missing (``.ci/run``
installs both). Each page's screenshot goes to ``TASKTRACE_UI_SHOTS`` (default: a folder
in the test's tmp_path), to be looked at."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, List

import pytest
from _ui import HOSTILE, Server, store

pytestmark = pytest.mark.integration

#: Read at import: the tests' own fixture clears TASKTRACE_* variables while a test runs.
SHOTS = os.environ.get("TASKTRACE_UI_SHOTS")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class _Page:
    """A page of the dashboard that records dialogs, console errors and failed requests."""

    def __init__(self, browser: Any, base: str, shots: Path) -> None:
        self.base = base
        self.shots = shots
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.dialogs: List[str] = []
        self.problems: List[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on(
            "console",
            lambda m: self.problems.append(m.text) if m.type in ("error", "warning") else None,
        )
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str, shot: str = "") -> Any:
        self.page.goto(self.base + path)
        self.page.wait_for_selector("body[data-ready]")
        if shot:
            self.page.screenshot(path=str(self.shots / f"{shot}.png"), full_page=True)
        return self.page


@pytest.fixture
def ui(browser: Any, tmp_path: Path) -> Iterator[_Page]:
    shots = Path(SHOTS or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    server = Server(store(tmp_path))
    page = _Page(browser, f"http://127.0.0.1:{server.port}", shots)
    try:
        yield page
    finally:
        page.page.close()
        server.close()


def test_overview_lists_every_task_with_a_chart(ui: _Page) -> None:
    """The overview has a row per task of report, each with an SVG chart of bars drawn."""
    page = ui.open("/", "overview")
    assert page.locator("td.chart svg").count() == 3  # data-ready waits for the charts
    names = page.locator("#tasks a.task-link").all_text_contents()
    assert sorted(names) == sorted(["jobs:a", "jobs:b", HOSTILE])
    assert page.locator("td.chart svg rect").count() >= 4
    assert ui.dialogs == [] and ui.problems == []


def test_task_page_draws_its_charts_traces_and_errors(ui: _Page) -> None:
    """A task's page: calls/errors bars and p50/p95 lines as SVG, its recent and slowest
    runs, its error group with the traceback."""
    page = ui.open("/")
    page.locator("a.task-link", has_text="jobs:a").click()
    page.wait_for_selector("body[data-ready]")
    page.screenshot(path=str(ui.shots / "task.png"), full_page=True)
    assert page.locator("h1").text_content() == "jobs:a"
    assert page.locator("svg.chart rect.bar-calls").count() >= 1
    assert page.locator("svg.chart rect.bar-errors").count() >= 1
    assert page.locator("svg.chart path.line-p95").count() == 1
    assert page.locator("#recent tbody tr").count() == 2
    assert page.locator("#slowest tbody tr").first.locator("td").nth(1).text_content() == "3,000.0"
    assert page.locator(".error-group .title").text_content() == "KeyError: <b>k</b>"
    assert ui.dialogs == [] and ui.problems == []


def test_from_an_error_to_its_trace(ui: _Page) -> None:
    """Errors page -> a group's trace link -> that trace's page with its waterfall."""
    page = ui.open("/errors", "errors")
    group = page.locator(".error-group", has_text="KeyError")
    assert "Traceback (most recent call last)" in group.locator("pre").text_content()
    group.locator("a.trace-link").click()
    page.wait_for_selector("body[data-ready]")
    page.screenshot(path=str(ui.shots / "trace.png"), full_page=True)
    assert page.url.endswith("/trace/4bf92f3577b34da6a3ce929d0e0e4736")
    assert page.locator("h1").text_content() == "Trace 4bf92f3577b34da6a3ce929d0e0e4736"
    assert page.locator("svg.waterfall rect.wf-bar").count() == 2  # the transaction, a segment
    assert "db <b>query</b>" in page.locator("svg.waterfall").text_content()
    assert ui.dialogs == [] and ui.problems == []


def test_hostile_names_stay_text(ui: _Page) -> None:
    """A task name and message holding markup and script show as text on every page: no
    dialog fires and no element is injected."""
    for path in ("/", "/errors", "/task?app=billing&task=" + _quote(HOSTILE)):
        page = ui.open(path)
        assert page.locator("img").count() == 0
        assert page.locator("script").count() == 1  # the page's own
        assert HOSTILE in page.locator("main").text_content()
    page = ui.open("/errors")
    page.locator(".error-group", has_text="x:E").locator("a.trace-link").click()
    page.wait_for_selector("body[data-ready]")
    assert page.locator("img").count() == 0
    assert HOSTILE in page.locator("main").text_content()
    assert ui.dialogs == []
    assert ui.problems == []


def test_filters_are_kept_in_the_url_and_survive_a_reload(ui: _Page) -> None:
    """Applying app and name filters puts them in the URL; a reload shows the same rows."""
    page = ui.open("/")
    page.fill("#f-app", "billing")
    page.fill("#f-name", "jobs:*")
    page.click("#filters button")
    page.wait_for_url("**/?app=billing&name=jobs%3A*")
    page.wait_for_selector("body[data-ready]")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    assert page.locator("#tasks a.task-link").all_text_contents() == ["jobs:a"]
    assert page.input_value("#f-name") == "jobs:*"
    assert ui.problems == []


def test_a_bad_since_is_said_on_the_page(ui: _Page) -> None:
    """A bad since in the URL shows the API's message instead of a page."""
    page = ui.open("/?since=soon")
    assert "invalid duration 'soon'" in page.locator(".notice").text_content()


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def test_jobs_page_shows_scheduled_and_running_tasks(browser: Any, tmp_path: Path) -> None:
    """The Jobs page draws check's and running's tables with status badges (a hostile name
    as text), and the Tasks page says a job needs attention, linking there."""
    import time

    from tasktrace import store as tt_store
    from tasktrace.records import RunningReport, RunningTask, ScheduleEntry

    shots = Path(SHOTS or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    db = store(tmp_path)
    conn = tt_store.connect(db)
    now = time.time()
    tt_store.record_schedules(
        conn,
        [
            ScheduleEntry("billing", HOSTILE, "every 1h", 60.0, None, None),
            ScheduleEntry("billing", "jobs:a", "every 1h", 60.0, None, None),
        ],
        now - 7200,
    )
    task = RunningTask("billing", HOSTILE, "Function", 1, 9, 9, now - 300, None)
    tt_store.replace_running(conn, RunningReport("elsewhere", 99, None, now - 200, 1.0, (task,)))
    conn.close()
    server = Server(db)
    ui = _Page(browser, f"http://127.0.0.1:{server.port}", shots)
    try:
        page = ui.open("/jobs", "jobs")
        statuses = page.locator("#check tbody tr td:first-child").all_text_contents()
        assert sorted(statuses) == ["lost", "missed"]
        assert page.locator("#running tbody tr").count() == 1
        assert page.locator("#running .status-bad").text_content() == "lost"
        assert HOSTILE in page.locator("#running a.task-link").text_content()
        page = ui.open("/", "overview-attention")
        attention = page.locator("p.attention")
        assert (
            "Needs attention" in attention.text_content() and "(lost)" in attention.text_content()
        )
        attention.locator("a").click()
        page.wait_for_selector("body[data-ready]")
        assert page.url.endswith("/jobs")
        assert page.locator("img").count() == 0 and page.locator("main script").count() == 0
        assert ui.dialogs == [] and ui.problems == []
    finally:
        ui.page.close()
        server.close()
