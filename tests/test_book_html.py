"""Checks on the built HTML book (run by `make test` after the quick build)."""

import json
import re
from pathlib import Path

import pytest
import yaml

import book

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "book" / "_build" / "html"
EXECUTED = ROOT / "_build" / "book" / "chapters"

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
