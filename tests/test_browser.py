"""The built site, checked in a real browser (headless Debian Chromium driven by Playwright).

Run by `make test` after the quick build. The site is served on a loopback port; every
request to any other host is blocked, as a reader's browser offline or behind a firewall
would see it: the pages must render their math (MathJax ships with the site) and figures
without a CDN. A full-page screenshot of every chapter lands in `_build/screenshots/`.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import headless
import pytest
import yaml

import book

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "book" / "_build" / "html"))
SHOTS = ROOT / "_build" / "screenshots"
pytestmark = pytest.mark.browser


CHAPTERS = [f for f in book.toc_files() if f.startswith("chapters/")]
REPO = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
BRANCH = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["branch"]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def site():
    assert (HTML / "index.html").exists(), "build the book first (tools/book.py build)"
    handler = functools.partial(QuietHandler, directory=str(HTML))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    with headless.launch() as b:
        yield b


class Visit:
    """One page load with its console errors, failed local requests and blocked requests."""

    def __init__(self, browser, site: str, path: str, **options):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900}, **options)
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.blocked: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "requestfailed", lambda r: r.url.startswith(site) and self.failed.append(r.url)
        )
        self.page.on(
            "response",
            lambda r: r.url.startswith(site) and r.status >= 400 and self.failed.append(r.url),
        )

        def route(r):
            if r.request.url.startswith(site):
                r.continue_()
            else:
                self.blocked.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        # the chapter pages carry a dozen figures and MathJax: on a loaded 2-core machine their
        # network falls idle well after 30 s (playwright's default), so the wait is longer
        self.page.goto(f"{site}/{path}", wait_until="load", timeout=90_000)
        self.page.wait_for_load_state("networkidle", timeout=90_000)

    def wait_for_math(self) -> None:
        self.page.wait_for_function(
            "() => !document.querySelector('.math') || "
            "(window.MathJax && MathJax.startup && MathJax.startup.promise && "
            "document.querySelectorAll('mjx-container').length > 0)",
            timeout=90_000,  # chapter 1 typesets hundreds of equations
        )
        self.page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")

    def __enter__(self) -> Visit:
        return self

    def __exit__(self, *exc) -> None:
        self.page.close()


@pytest.mark.parametrize("file", book.toc_files())
def test_page_loads_cleanly_and_renders_math_figures_and_glue(browser, site, file):
    with Visit(browser, site, f"{file}.html") as v:
        v.wait_for_math()
        assert v.failed == [], f"failed local requests: {v.failed}"
        assert v.blocked == [], f"the page needs other hosts: {v.blocked}"
        assert v.errors == [], f"console errors: {v.errors}"
        page = v.page
        raw = page.evaluate(
            "() => Array.from(document.querySelectorAll('.math'))"
            ".filter(e => !e.querySelector('mjx-container')).length"
        )
        assert raw == 0, f"{raw} equations left unrendered"
        text = page.inner_text("article")
        assert "$$" not in text and "\\(" not in text and "\\[" not in text
        images = page.evaluate(
            "() => Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth])"
        )
        assert all(width for _, width in images), f"broken images: {images}"
        empty = page.evaluate(
            "() => Array.from(document.querySelectorAll('.pasted-text, .pasted-inline'))"
            ".filter(e => e.textContent.trim() === '').length"
        )
        assert empty == 0, f"{empty} empty glue placeholders"
        if file in CHAPTERS:
            assert len(images) >= 1, "a chapter without figures"
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"{Path(file).name}.png"), full_page=True)


@pytest.mark.parametrize("file", CHAPTERS)
def test_solutions_are_hidden_until_clicked(browser, site, file):
    with Visit(browser, site, f"{file}.html") as v:
        solutions = v.page.locator("div.solution.dropdown")
        count = solutions.count()
        assert count >= 3
        for i in range(count):
            body = solutions.nth(i).locator("section").first
            assert not body.is_visible(), f"solution {i} is visible before a click"
        first = solutions.first
        first.locator(".toggle-button, .admonition-title").first.click()
        first.locator("section").first.wait_for(state="visible", timeout=5_000)


@pytest.mark.parametrize("file", CHAPTERS)
def test_launch_and_download_buttons(browser, site, file):
    with Visit(browser, site, f"{file}.html") as v:
        hrefs = v.page.evaluate("() => Array.from(document.querySelectorAll('a')).map(a => a.href)")
        slug = REPO.removeprefix("https://github.com/")
        nb = f"{file}.ipynb"
        colab = [h for h in hrefs if h.startswith("https://colab.research.google.com/")]
        binder = [h for h in hrefs if h.startswith("https://mybinder.org/")]
        assert colab and binder, "launch buttons missing"
        for h in colab:
            assert h == f"https://colab.research.google.com/github/{slug}/blob/{BRANCH}/{nb}", h
        for h in binder:
            url = urllib.parse.urlparse(h)
            assert url.path == f"/v2/gh/{slug}/{BRANCH}", h
            query = urllib.parse.parse_qs(url.query)
            target = (query.get("urlpath") or query.get("labpath"))[0]
            assert target.endswith(nb), h
        download = [h for h in hrefs if h.startswith(site) and h.endswith(".ipynb")]
        assert download, "no download button for the notebook"
        for h in download:
            response = v.page.request.get(h)
            assert response.ok, h
            assert '"cells"' in response.text()


def test_search_finds_a_word_from_a_chapter(browser, site):
    with Visit(browser, site, "search.html?q=accumulate") as v:
        v.page.wait_for_selector("#search-results li", timeout=30_000)
        results = v.page.inner_text("#search-results")
        titles = [re.sub(r"\s+", " ", t) for t in results.splitlines() if t.strip()]
        assert any("Chapter 0" in t for t in titles), titles[:10]


@pytest.mark.parametrize("file", CHAPTERS)
def test_every_figure_has_alt_text(browser, site, file):
    """A screen reader says what each figure shows: every image has a non-empty ``alt`` that is
    not the file name (docutils' default when a cell sets none)."""
    with Visit(browser, site, f"{file}.html") as v:
        images = v.page.evaluate(
            "() => Array.from(document.querySelectorAll('article img'))"
            ".map(i => [i.getAttribute('src'), (i.getAttribute('alt') || '').trim()])"
        )
        assert images, "a chapter without figures"
        missing = [src for src, alt in images if not alt or re.search(r"\.(png|jpe?g|svg)$", alt)]
        assert missing == [], f"{len(missing)} of {len(images)} figures without alt text: {missing}"


@pytest.mark.parametrize("file", ["book/intro", CHAPTERS[0]])
def test_the_site_stays_light_for_a_reader_who_prefers_dark(browser, site, file):
    """Decision: the site is light only (the figures are drawn on white); a system preference
    for dark, or a dark mode chosen on an earlier visit, leaves it light, and there is no
    switch. The screenshot is kept next to the chapters' ones."""
    with Visit(browser, site, f"{file}.html", color_scheme="dark") as v:
        v.page.evaluate("() => localStorage.setItem('mode', 'dark')")
        v.page.reload(wait_until="load", timeout=60_000)
        theme = v.page.evaluate("() => document.documentElement.dataset.theme")
        assert theme == "light", theme
        background = v.page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        rgb = [int(x) for x in re.findall(r"\d+", background)[:3]]
        assert min(rgb) >= 230, f"the page background is {background}"
        assert not v.page.locator(".theme-switch-button").first.is_visible()
        assert v.errors == [], v.errors
        SHOTS.mkdir(parents=True, exist_ok=True)
        v.page.screenshot(path=str(SHOTS / f"dark-preference-{Path(file).name}.png"))
