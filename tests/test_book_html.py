"""Checks on the built HTML book (run by `make test` after the quick build).

``BOOK_HTML`` points them at another build's HTML folder (default: ``_build/book/_build/html``;
the executed chapters are the ones beside it, in ``../../chapters``).
"""

import json
import os
import re
from pathlib import Path

import guards
import pytest
import yaml
from bs4 import BeautifulSoup

import book

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "book" / "_build" / "html"))
EXECUTED = HTML.parents[1] / "chapters"

pytestmark = pytest.mark.book


CHAPTERS = [f for f in book.toc_files() if f.startswith("chapters/")]


def page(file):
    path = HTML / f"{file}.html"
    assert path.exists(), f"{path} was not built: run `python tools/book.py build` first"
    return path.read_text()


@pytest.mark.parametrize("file", book.toc_files())
def test_every_toc_page_is_built(file):
    assert "<h1" in page(file)


@pytest.mark.parametrize("file", CHAPTERS)
def test_chapter_page_has_figures_theorems_exercises_and_no_errors(file):
    html = page(file)
    images = re.findall(r'<img[^>]+src="(\.\./_images/[^"]+\.png)"', html)
    assert images, "no figures"
    for src in images:
        assert (HTML / "chapters" / src).resolve().exists(), src
    assert "proof theorem admonition" in html
    assert html.count("solution dropdown") >= 3
    assert html.count("exercise admonition") >= 3
    for bad in ("Traceback", "output traceback", "output stderr", "{glue:", "{cite:", "{prf:"):
        assert bad not in html, f"{bad!r} in the rendered page"


@pytest.mark.parametrize("file", CHAPTERS)
def test_executed_notebook_has_no_errors_or_warnings(file):
    nb = json.loads((EXECUTED / f"{Path(file).name}.ipynb").read_text())
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"cell {i}: {out.get('ename')}"
            assert out.get("name") != "stderr", f"cell {i} wrote to stderr: {out.get('text')}"


@pytest.mark.parametrize("file", CHAPTERS)
def test_launch_and_download_buttons_point_at_the_repository(file):
    html = page(file)
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    slug, branch = repo["url"].removeprefix("https://github.com/"), repo["branch"]
    colab = f"https://colab.research.google.com/github/{slug}/blob/{branch}/{file}.ipynb"
    assert colab in html
    assert f"https://mybinder.org/v2/gh/{slug}/{branch}?urlpath=tree/{file}.ipynb" in html
    assert f'href="../_sources/{file}.ipynb"' in html


@pytest.mark.parametrize("file", book.toc_files())
def test_issue_and_edit_buttons_point_at_the_repository(file):
    """Every page: "open an issue" titled with the page, "suggest edit" on its source on main,
    and the licences in the footer."""
    html = page(file)
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    (source,) = [p for p in (ROOT / f"{file}.ipynb", ROOT / f"{file}.md") if p.exists()]
    issue = f"{repo}/issues/new?title=Issue%20on%20page%20%2F{file}.html"
    edit = f"{repo}/edit/main/{source.relative_to(ROOT).as_posix()}"
    for url, button in [(issue, "btn-source-issues-button"), (edit, "btn-source-edit-button")]:
        link = rf'<a href="{re.escape(url)}(&[^"]*)?"[^>]*class="[^"]*{button}'
        assert re.search(link, html), f"{button}: {url}"
    footer = html[html.index('class="extra_footer"') :]
    assert "https://creativecommons.org/licenses/by/4.0/" in footer
    assert f"{repo}/blob/main/LICENSE" in footer


def test_reproducibility_page_lists_every_chapter_time():
    html = page("book/reproducibility")
    for file in CHAPTERS:
        assert re.search(rf"{Path(file).name}(</p>)?</td>\s*<td[^>]*>(<p>)?(quick|full)", html), (
            file
        )
    assert "numpy" in html and "torch" in html


# -- the guards: defects a reader found, on every page (tools/guards.py) -----------------------


@pytest.mark.parametrize("name", list(guards.GUARDS))
@pytest.mark.parametrize("file", book.toc_files())
def test_guard(file, name):
    found = guards.GUARDS[name](page(file))
    assert found == [], f"{name} in {file}: {found}"


# -- navigation: the book reads in order --------------------------------------------------------


def soup(file):
    return BeautifulSoup(page(file), "html.parser")


def title(file):
    return soup(file).select_one("article h1").get_text(" ", strip=True).rstrip("#").strip()


def test_next_from_the_intro_reaches_chapter_0_first_within_three_steps():
    file, seen = "book/intro", []
    for _ in range(3):
        link = soup(file).select_one("a.right-next")
        assert link, f"{file} has no next link"
        file = os.path.normpath(os.path.join(os.path.dirname(file), link["href"]))
        file = file.removesuffix(".html")
        seen.append(file)
        assert not file.startswith("book/course/"), f"an instructor page before chapter 0: {seen}"
        if file.startswith("chapters/"):
            break
    assert file == CHAPTERS[0], f"next from the intro: {seen}"
    previous = soup(CHAPTERS[0]).select_one("a.left-prev")
    target = os.path.normpath(os.path.join("chapters", previous["href"])).removesuffix(".html")
    assert not target.startswith("book/course/")
    assert previous.select_one(".prev-next-title").get_text(strip=True) == title(target)


def test_no_two_pages_in_the_sidebar_share_a_title():
    links = soup("book/intro").select("nav.bd-docs-nav a.reference")
    titles = [re.sub(r"\s+", " ", a.get_text(" ", strip=True)) for a in links]
    assert len(titles) >= len(book.toc_files()) - 1
    duplicates = sorted({t for t in titles if titles.count(t) > 1})
    assert duplicates == [], duplicates
    pages = [title(f) for f in book.toc_files()]
    assert len(set(pages)) == len(pages), pages


def test_the_intro_names_each_chapters_paper_with_authors_year_and_venue():
    rows = soup("book/intro").select("article table tbody tr")
    by_chapter = {}
    for row in rows:
        link = row.select_one('a[href^="../chapters/"]')
        if link:
            by_chapter[link["href"].removeprefix("../").removesuffix(".html")] = row
    assert sorted(by_chapter) == sorted(CHAPTERS)
    for file, row in by_chapter.items():
        cites = row.select('a[href^="references.html"]')
        assert cites, f"{file}: no link to the references"
        text = row.get_text(" ", strip=True)
        assert re.search(r"\b20\d\d\b", text), f"{file}: no year in {text!r}"
        venue = r"NeurIPS|ICML|ICLR|COLM|Nature|arXiv|AISTATS|TMLR|JMLR|Annals|preprint"
        assert re.search(venue, text), f"{file}: no venue in {text!r}"


# -- the page never contradicts itself about how it ran -----------------------------------------


@pytest.mark.parametrize("file", CHAPTERS)
def test_the_parameters_cell_shows_what_the_chapter_ran_with(file):
    html = soup(file)
    cell = html.select_one("div.cell.tag_parameters")
    assert cell, "no parameters cell shown"
    shown = dict(re.findall(r'^(mode|device|seed) = "?([\w.]+)"?', cell.get_text(), re.M))
    banner = re.search(r"mode=(\w+) \| device=(\w+) \| seed=(\d+)", html.get_text())
    assert banner, "no banner"
    mode, _, seed = banner.groups()
    assert shown["mode"] == mode and shown["seed"] == seed, (shown, banner.group(0))
    nb = json.loads((EXECUTED / f"{Path(file).name}.ipynb").read_text())
    run = book.editions.read_glue(nb).values
    if "run_mode" in run:
        assert book.editions.format_glue(run["run_mode"], "") == mode
