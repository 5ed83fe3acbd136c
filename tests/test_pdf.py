"""The PDF edition (`make pdf`, tools/pdf.py), checked against the built HTML it was printed from.

Run after `python tools/pdf.py`: `pytest -m pdf`. The text layer is read with poppler's
`pdftotext` where it is installed (a second per page) and with pypdf otherwise (slower, same
checks); everything else is read with pypdf.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pdf
import pytest
import yaml
from bs4 import BeautifulSoup
from pypdf import PdfReader

import book

pytestmark = pytest.mark.pdf

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "book" / "_build" / "html"
PDF = ROOT / "_build" / "pdf" / "model-collapse-tutorials.pdf"
REPORT = ROOT / "_build" / "pdf" / "timings.json"
CHAPTERS = [f for f in book.toc_files() if f.startswith("chapters/")]
INCLUDED = pdf.pages()
# TeX left in the text layer: delimiters, commands, and `$...$` on one line.
TEX = [r"\\\(", r"\\\[", r"\$\$", r"\\[A-Za-z]+", r"\$[^$\n]{1,80}\$"]


def norm(text: str) -> str:
    """Text without ligatures, typographic minus signs or any whitespace."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-")
    return re.sub(r"\s+", "", text)


@functools.cache
def soup(file: str) -> BeautifulSoup:
    path = HTML / f"{file}.html"
    assert path.exists(), f"{path} was not built: run `python tools/book.py build` first"
    return BeautifulSoup(path.read_text(), "html.parser")


def article(file: str):
    return soup(file).select_one("article.bd-article")


def title(file: str) -> str:
    text = article(file).find("h1").get_text()
    return re.sub(r"\s+", " ", text.replace("#", "").replace("\u00b6", "")).strip()


@pytest.fixture(scope="module")
def reader() -> PdfReader:
    assert PDF.exists(), f"{PDF} is missing: run `make pdf` (or python tools/pdf.py) first"
    return PdfReader(PDF)


@pytest.fixture(scope="module")
def texts(reader) -> list[str]:
    """The text layer, one string per page."""
    if shutil.which("pdftotext"):
        out = subprocess.run(
            ["pdftotext", "-enc", "UTF-8", str(PDF), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pages = out.split("\f")[: len(reader.pages)]
    else:
        pages = [p.extract_text() or "" for p in reader.pages]
    assert len(pages) == len(reader.pages)
    return pages


@pytest.fixture(scope="module")
def ranges(reader) -> dict[str, range]:
    """Page range of every bookmarked part: top-level titles, and each solutions part."""
    tops = [item for item in reader.outline if not isinstance(item, list)]
    starts = [reader.get_destination_page_number(item) for item in tops]
    ends = [*starts[1:], len(reader.pages)]
    found = {str(item.title): range(s, e) for item, s, e in zip(tops, starts, ends, strict=True)}
    for i, item in enumerate(reader.outline):
        if isinstance(item, list) and str(reader.outline[i - 1].title) == pdf.APPENDIX:
            subs = [x for x in item if not isinstance(x, list)]
            sub_starts = [reader.get_destination_page_number(x) for x in subs]
            sub_ends = [*sub_starts[1:], found[pdf.APPENDIX].stop]
            for x, s, e in zip(subs, sub_starts, sub_ends, strict=True):
                found[str(x.title)] = range(s, e)
    return found


def text_of(texts: list[str], pages: range) -> str:
    return "\n".join(texts[i] for i in pages)


def test_pdf_opens_with_title_page_and_metadata(reader, texts):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert reader.metadata.title == config["title"]
    assert reader.metadata.author == config["author"]
    assert len(reader.pages) > len(CHAPTERS) + 2
    first = texts[0]
    import collapse_lib

    assert "Model Collapse" in first and f"Version {collapse_lib.__version__}" in first
    assert "CC BY 4.0" in first and "MIT" in first
    assert re.search(r"built \d{4}-\d{2}-\d{2}", first)
    assert re.search(r"(quick|full) mode", first)
    assert "Contents" in texts[1]


def test_a_bookmark_and_a_title_page_per_chapter(reader, ranges, texts):
    for file in CHAPTERS:
        name = title(file)
        assert name in ranges, f"no bookmark {name!r}"
        assert len(ranges[name]) >= 1
        assert norm(name) in norm(texts[ranges[name].start]), f"{name!r} not on its first page"
        assert f"Solutions: {name}" in ranges, f"no solutions bookmark for {name!r}"


def test_pages_in_toc_order_without_the_instructors_pages(ranges):
    titles = [title(f) for f in INCLUDED]
    for name in titles:
        assert name in ranges, f"{name!r} has no bookmark"
    body = [t for t, f in zip(titles, INCLUDED, strict=True) if f not in pdf.BACK_MATTER]
    starts = [ranges[t].start for t in body]
    assert starts == sorted(starts)
    assert ranges[body[-1]].start < ranges[pdf.APPENDIX].start
    for f in pdf.BACK_MATTER:
        assert ranges[title(f)].start > ranges[pdf.APPENDIX].start
    assert title("book/course_guide") not in ranges
    assert not any(f.startswith(pdf.EXCLUDED) for f in INCLUDED)


@pytest.mark.parametrize("file", CHAPTERS)
def test_every_glued_number_is_in_the_text_layer(file, ranges, texts):
    name = title(file)
    text = norm(text_of(texts, ranges[name]) + text_of(texts, ranges[f"Solutions: {name}"]))
    values = [s.get_text() for s in article(file).select("span.pasted-text")]
    assert len(values) >= 3, "a chapter with hardly any glued numbers"
    missing = [v for v in values if norm(v) and not printed(norm(v), text)]
    assert not missing, f"glued values not in the PDF: {missing}"


def printed(value: str, text: str) -> bool:
    """``value`` is in ``text``, whole or (a glued sentence) cut once by a page break: the text
    layer then puts the page's footer or a figure's text between its two halves. A word
    hyphenated at a line break ("self-referenced") comes out of pdftotext without its hyphen."""
    if value in text:
        return True
    if len(value) > 40:
        value, text = value.replace("-", ""), text.replace("-", "")
        if value in text:
            return True
    return len(value) > 40 and any(
        value[:k] in text and value[k:] in text for k in range(10, len(value) - 9)
    )


@pytest.mark.parametrize("file", INCLUDED)
def test_every_figure_is_printed(file, reader, ranges):
    name = title(file)
    pages = list(ranges[name])
    if f"Solutions: {name}" in ranges:
        pages += list(ranges[f"Solutions: {name}"])
    expected = len(article(file).find_all("img"))
    printed = sum(images(reader.pages[i]) for i in pages)
    assert printed >= expected, f"{printed} images printed, {expected} in the HTML"
    if file in CHAPTERS:
        assert expected >= 1


def images(page) -> int:
    """Image XObjects drawn on a page, including those inside its form XObjects."""

    def count(resources) -> int:
        objects = (resources or {}).get("/XObject")
        if not objects:
            return 0
        total = 0
        for ref in objects.get_object().values():
            obj = ref.get_object()
            if obj.get("/Subtype") == "/Image":
                total += 1
            elif obj.get("/Subtype") == "/Form":
                total += count(obj.get("/Resources"))
        return total

    return count(page.get("/Resources"))


def unwrapped(found: list[str]) -> set[str]:
    return {m.replace("-", "") for m in found}


def test_no_unrendered_math_in_the_text_layer(texts):
    """TeX may appear in printed code (plot labels, strings), never more often than there."""
    code = "\n".join(e.get_text() for f in INCLUDED for e in article(f).select("pre, code"))
    text = "\n".join(texts)
    for pattern in TEX:
        in_pdf = re.findall(pattern, text)
        in_code = re.findall(pattern, code)
        # a code line wrapped at a hyphen loses it in some text layers
        extra = sorted({m for m in in_pdf if m.replace("-", "") not in unwrapped(in_code)})
        assert len(in_pdf) <= len(in_code) and not extra, f"unrendered TeX {pattern}: {extra[:10]}"


@pytest.mark.parametrize("file", CHAPTERS)
def test_solutions_are_in_the_appendix_only(file, ranges, texts):
    name = title(file)
    solutions = len(article(file).select("div.solution"))
    assert solutions >= 3
    chapter = text_of(texts, ranges[name])
    appendix = text_of(texts, ranges[f"Solutions: {name}"])
    # in the chapter, each solution is only a pointer to the appendix, which prints it
    assert norm(chapter).count(norm(": in the appendix.")) == solutions
    assert norm(chapter).count(norm("Solution to Exercise")) == solutions
    assert norm(appendix).count(norm("Solution to Exercise")) == solutions


def test_build_time_is_reported_beside_the_html_build():
    report = json.loads(REPORT.read_text())
    assert report["seconds"] > 0 and report["pages"] > len(CHAPTERS)
    assert report["html_mode"] in ("quick", "full")
    assert "html_execution_seconds" in report
