"""The PDF edition: print the built HTML book with headless Chromium and merge it with pypdf.

    python tools/pdf.py [--out FILE] [--jobs 2]   # needs a build in _build/book (make book)

Writes ``_build/pdf/model-collapse-tutorials.pdf``: a title page (version, build date and
mode), a contents page with links, then the reader's book in ``_toc.yml`` order (the
introduction, the notation, the nine chapters), an appendix with the solutions to every
chapter's exercises (each exercise points to it), and the reference pages (reproducibility,
troubleshooting, references). The instructor's course guide and per-chapter course pages are
left out: they plan teaching sessions around the online notebooks.

Every page is printed from the built site, served on a loopback port with every other host
blocked, after its bundled MathJax has typeset the math: the PDF builds offline and shows
exactly the numbers and figures of the HTML build. It has a bookmark per page with its
sections below it, page numbers, and its metadata (title, author). The build time, page count
and size are printed and recorded in ``_build/pdf/timings.json`` beside the HTML build's mode
and execution time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import html
import io
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from pypdf import PdfReader, PdfWriter
from pypdf.annotations import Link
from pypdf.generic import ArrayObject, Fit, NameObject

sys.path.insert(0, str(Path(__file__).resolve().parent))
from headless import launch  # noqa: E402  (tools/headless.py: Debian's Chromium)

import book  # noqa: E402  (tools/book.py: the table of contents and the build's paths)

ROOT = book.ROOT
HTML = book.HTML
OUT_DIR = book.BUILD / "pdf"
PDF = OUT_DIR / "model-collapse-tutorials.pdf"
REPORT = OUT_DIR / "timings.json"
SUBTITLE = "Nine papers on generative models trained on their own output, reproduced and explained"
LICENCE = "Text licensed CC BY 4.0, code MIT."
APPENDIX = "Appendix: solutions to the exercises"
# Instructor material: session plans around the online notebooks, not part of the reader's book.
EXCLUDED = ("book/course_guide", "book/course/")
# Pages after the solutions appendix; the other pages come before it.
BACK_MATTER = ("book/reproducibility", "book/troubleshooting", "book/references")
A4_PT = (595.28, 841.89)  # width, height in PDF points
PX_PT = 0.75  # one CSS pixel in PDF points
MARGIN_MM = {"top": 16, "bottom": 18, "left": 16, "right": 16}
SCALE = 0.82  # the theme's 16 px body text prints at about 10 pt
# The page is laid out at the printed column's width in CSS pixels, so heights measured in
# the browser are those of the print; half a printed page's height is "tall".
COLUMN_PX = round((210 - MARGIN_MM["left"] - MARGIN_MM["right"]) / 25.4 * 96 / SCALE)
TALL_PX = round((297 - MARGIN_MM["top"] - MARGIN_MM["bottom"]) / 25.4 * 96 / SCALE / 2)
# Headings get an invisible link to MARK + index: its annotation tells the page and height
# where Chromium printed the heading (the bookmarks' targets); it is removed afterwards.
MARK = "https://pdf-heading.invalid/"

PRINT_CSS = """
html, body { background: #fff !important; color: #222 !important; }
.bd-header, .bd-header-article, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-footer,
.bd-footer-article, .bd-footer-content, .prev-next-area, .header-article-items, .bd-search,
.search-button-field, #pst-skip-link, .skip-link, .sidebar-toggle, .theme-switch-button,
.headerlink, .bd-header-announcement, .pst-async-banner-revealer, .toggle-button,
.dropdown-buttons, .copybtn, #pst-back-to-top, #jb-print-docs-body, footer
{ display: none !important; }
.bd-main .bd-content .bd-article h1:first-of-type { display: block !important; margin-top: 0; }
.bd-container, .bd-container__inner, .bd-page-width, .bd-main, .bd-main .bd-content,
.bd-article-container, .bd-main .bd-content .bd-article-container, .bd-article
{ max-width: none !important; width: auto !important; margin: 0 !important;
  padding: 0 !important; display: block !important; }
pre { white-space: pre-wrap !important; word-break: break-word; overflow: visible !important; }
div.cell_output, div.output, .table-wrapper, .pst-scrollable-table-container,
mjx-container[display="true"] { overflow: visible !important; max-height: none !important; }
img { max-width: 100% !important; height: auto !important; }
.cell_input, div.highlight, figure, img, .proof, .admonition, table,
mjx-container[display="true"] { break-inside: avoid; }
h1, h2, h3, h4, .admonition-title { break-after: avoid; }
a { color: inherit !important; text-decoration: none !important; }
.admonition, div.admonition { box-shadow: none !important; border-top: 1px solid #d5d9de;
  border-right: 1px solid #d5d9de; border-bottom: 1px solid #d5d9de; }
a.pdf-mark { display: inline-block; width: 1px; height: 1em; }
.pdf-solution-note { font-style: italic; color: #555; margin: 0.2em 0 1em 0; }
"""

# Before printing a page: light theme, everything folded expanded, links into the site
# (which would point at the loopback server) made plain text, and each exercise's solution
# replaced by a note and kept aside for the appendix. Returns the number of solutions.
PREPARE_JS = """
(site) => {
  const d = document.documentElement;
  d.dataset.theme = 'light'; d.dataset.mode = 'light';
  document.querySelectorAll('details').forEach(e => e.open = true);
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  document.querySelectorAll('a[href]').forEach(a => {
    if (!a.href.startsWith('http') || a.href.startsWith(site)) a.removeAttribute('href');
  });
  const article = document.querySelector('article.bd-article');
  const solutions = Array.from(article.querySelectorAll('div.solution'));
  solutions.forEach(s => {
    s.classList.remove('dropdown');
    const title = s.querySelector('.admonition-title');
    const note = document.createElement('p');
    note.className = 'pdf-solution-note';
    note.textContent = (title ? title.textContent.trim() : 'Solution') + ': in the appendix.';
    s.replaceWith(note);
  });
  window.pdfSolutions = solutions;
  return solutions.length;
}
"""

# The same page turned into its solutions: the page's title, then every solution.
SOLUTIONS_JS = """
(title) => {
  const article = document.querySelector('article.bd-article');
  const heading = document.createElement('h1');
  heading.textContent = title;
  article.replaceChildren(heading, ...window.pdfSolutions);
}
"""

# Bibliography entries are outside MathJax's reach on the site, so a title's `$...$` would
# print raw: such math is typeset here (loading the bundled MathJax where the page has none).
BIB_MATH_JS = r"""
async (site) => {
  const found = [];
  document.querySelectorAll('div.citation p').forEach(p => {
    const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    nodes.forEach(n => {
      const parts = n.textContent.split(/\$([^$]+)\$/);
      if (parts.length < 3) return;
      const frag = document.createDocumentFragment();
      parts.forEach((t, i) => {
        if (i % 2 === 0) { frag.append(t); return; }
        const span = document.createElement('span');
        span.className = 'math notranslate nohighlight';
        span.textContent = '\\(' + t + '\\)';
        frag.append(span);
        found.push(span);
      });
      n.replaceWith(frag);
    });
  });
  if (!found.length) return 0;
  if (!window.MathJax || !MathJax.typesetPromise) {
    window.MathJax = {startup: {typeset: false}};
    await new Promise((ok, fail) => {
      const s = document.createElement('script');
      s.src = site + '/_static/mathjax/tex-chtml.js';
      s.onload = ok; s.onerror = fail;
      document.head.appendChild(s);
    });
    await MathJax.startup.promise;
  }
  await MathJax.typesetPromise(found);
  return document.querySelectorAll('div.citation mjx-container').length;
}
"""

# Code, outputs and boxes are kept on one page (the theme's and this file's `break-inside:
# avoid`) unless they are tall, more than about half a printed page: those may break, inside
# and out, instead of leaving most of a page empty.
BREAKS_JS = """
(tall) => Array.from(document.querySelectorAll('article.bd-article *'))
  .filter(e => getComputedStyle(e).breakInside === 'avoid'
    && e.getBoundingClientRect().height > tall)
  .forEach(e => { e.style.breakInside = 'auto'; })
"""

# Marks the headings that become bookmarks; returns [level, text] for each.
MARK_JS = """
([selector, mark]) => Array.from(document.querySelectorAll(selector))
  .filter(h => h.offsetParent !== null)
  .map((h, i) => {
    const a = document.createElement('a');
    a.className = 'pdf-mark';
    a.href = mark + i;
    h.prepend(a);
    const level = /^H[1-6]$/.test(h.tagName) ? Number(h.tagName[1]) - 1 : 1;
    return [level, h.textContent.replace(/[#\\u00b6]/g, '').replace(/\\s+/g, ' ').trim()];
  })
"""
PAGE_HEADINGS = "article.bd-article h2, article.bd-article h3"
SOLUTION_HEADINGS = "article.bd-article div.solution > p.admonition-title"


@dataclass
class Part:
    """One printed piece of the book: a page, or a chapter's solutions."""

    file: str
    title: str
    kind: str  # "page" or "solutions"
    data: bytes = b""
    pages: int = 0
    # bookmarks below the part's own: (level, title, page within the part, height in pt)
    sections: list[tuple[int, str, int, float]] = field(default_factory=list)


@dataclass
class Meta:
    """What the title page says about the build."""

    title: str
    author: str
    version: str
    built: str
    mode: str
    execution_s: float


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no request log on the console
        pass


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on a free loopback port; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def pages() -> list[str]:
    """The pages of the PDF edition, in ``_toc.yml`` order, without the instructor's pages."""
    return [f for f in book.toc_files() if not f.startswith(EXCLUDED)]


def open_page(browser, site: str, path: str):
    """Load one page of the site offline (other hosts blocked), typeset, in print media."""
    page = browser.new_page(viewport={"width": COLUMN_PX, "height": 1200}, color_scheme="light")

    def route(r):
        return r.continue_() if r.request.url.startswith(site) else r.abort()

    page.route("**/*", route)
    page.goto(f"{site}/{path}", wait_until="load", timeout=120_000)
    page.wait_for_function(
        "() => !document.querySelector('.math') || (window.MathJax && MathJax.startup"
        " && MathJax.startup.promise)",
        timeout=120_000,
    )
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    page.add_style_tag(content=PRINT_CSS)
    page.evaluate("() => document.fonts.ready")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
    return page


def page_title(page) -> str:
    """The page's first heading, without its permalink sign."""
    text = page.evaluate(
        "() => { const h = document.querySelector('article.bd-article h1');"
        " return h ? h.textContent : document.title; }"
    )
    return re.sub(r"\s+", " ", re.sub(r"[#\u00b6]", "", text)).strip()


def marks(data: bytes) -> dict[int, tuple[int, float]]:
    """Where each marked heading was printed: index -> (page, top in pt)."""
    found: dict[int, tuple[int, float]] = {}
    for number, page in enumerate(PdfReader(io.BytesIO(data)).pages):
        for annot in page.get("/Annots", []):
            uri = str(annot.get_object().get("/A", {}).get("/URI", ""))
            if uri.startswith(MARK):
                top = float(annot.get_object()["/Rect"][3])
                found.setdefault(int(uri.removeprefix(MARK)), (number, top))
    return found


def print_marked(page, selector: str) -> tuple[bytes, list[tuple[int, str, int, float]]]:
    """Print the loaded page to A4; returns the PDF and its marked headings' positions."""
    heads = page.evaluate(MARK_JS, [selector, MARK])
    margin = {k: f"{v}mm" for k, v in MARGIN_MM.items()}
    data = page.pdf(format="A4", margin=margin, scale=SCALE, print_background=True)
    where = marks(data)
    sections = [
        (level, title, *where[i]) for i, (level, title) in enumerate(heads) if i in where and title
    ]
    return data, sections


def part(file: str, title: str, kind: str, printed: tuple[bytes, list]) -> Part:
    """A printed part with its page count."""
    data, sections = printed
    return Part(file, title, kind, data, len(PdfReader(io.BytesIO(data)).pages), sections)


def print_file(browser, site: str, file: str) -> list[Part]:
    """Print one page of the book; a page with solutions also gives its solutions part."""
    page = open_page(browser, site, f"{file}.html")
    try:
        count = page.evaluate(PREPARE_JS, site)
        page.evaluate(BIB_MATH_JS, site)
        page.evaluate(BREAKS_JS, TALL_PX)
        title = page_title(page)
        parts = [part(file, title, "page", print_marked(page, PAGE_HEADINGS))]
        if count:
            heading = f"Solutions: {title}"
            page.evaluate(SOLUTIONS_JS, heading)
            page.evaluate(BREAKS_JS, TALL_PX)
            printed = print_marked(page, SOLUTION_HEADINGS)
            parts.append(part(file, heading, "solutions", printed))
        return parts
    finally:
        page.close()


def meta() -> Meta:
    """Title, author, version and the HTML build's date, mode and execution time."""
    import collapse_lib

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    results = json.loads(book.TIMINGS.read_text()) if book.TIMINGS.exists() else []
    modes = sorted({r.get("mode", "?") for r in results}) or ["unknown"]
    stamp = (book.TIMINGS if book.TIMINGS.exists() else HTML / "index.html").stat().st_mtime
    built = dt.datetime.fromtimestamp(stamp, tz=dt.UTC).strftime("%Y-%m-%d")
    return Meta(
        title=config["title"],
        author=config["author"],
        version=collapse_lib.__version__,
        built=built,
        mode="/".join(modes),
        execution_s=round(sum(r.get("seconds", 0.0) for r in results), 1),
    )


PAGE_CSS = """
@page { size: A4; margin: 0; }
html, body { margin: 0; font-family: "DejaVu Serif", Georgia, serif; color: #222; }
.sheet { box-sizing: border-box; width: 210mm; padding: 25mm 22mm; }
"""


def title_html(m: Meta) -> str:
    """The title page."""
    mode = (
        "quick mode (smaller simulations than the full edition, so some numbers differ)"
        if m.mode == "quick"
        else f"{m.mode} mode"
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>{PAGE_CSS}
.sheet {{ height: 297mm; display: flex; flex-direction: column; }}
h1 {{ font-size: 30pt; margin: 50mm 0 6mm 0; line-height: 1.15; }}
.sub {{ font-size: 15pt; color: #444; margin-bottom: 30mm; }}
.facts {{ font-size: 11pt; line-height: 1.8; }}
.foot {{ margin-top: auto; font-size: 9.5pt; color: #555; line-height: 1.6; }}
</style></head><body><div class="sheet">
<h1>{html.escape(m.title)}</h1>
<div class="sub">{html.escape(SUBTITLE)}</div>
<div class="facts">
<div>{html.escape(m.author)}</div>
<div>Version {html.escape(m.version)} &middot; built {html.escape(m.built)}</div>
<div>Numbers computed in {html.escape(mode)}</div>
</div>
<div class="foot">{html.escape(LICENCE)}<br>
Every number and figure in this book was computed by the build that produced it; the notebooks,
the library and the online edition are in the book's repository.<br>
PDF edition: solutions to the exercises are collected in an appendix.</div>
</div></body></html>"""


def contents_html(rows: list[tuple[int, str, int]]) -> str:
    """The contents page: ``(level, title, page number)`` rows, each a link target."""
    items = "\n".join(
        f'<div class="row l{level}" data-page="{page}"><span class="t">{html.escape(title)}</span>'
        f'<span class="dots"></span><span class="n">{page}</span></div>'
        for level, title, page in rows
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>{PAGE_CSS}
h1 {{ font-size: 22pt; margin: 0 0 8mm 0; }}
.row {{ display: flex; align-items: baseline; font-size: 10.5pt; line-height: 1.45; }}
.row.l0 {{ font-weight: bold; margin-top: 2.2mm; }}
.row.l1 {{ padding-left: 7mm; }}
.dots {{ flex: 1; border-bottom: 1px dotted #999; margin: 0 2mm; }}
</style></head><body><div class="sheet"><h1>Contents</h1>
{items}
</div></body></html>"""


def render(browser, source: str) -> tuple[bytes, list[tuple[int, float, float, float, float]]]:
    """Print a generated page; returns the PDF and each ``.row``'s (page, rectangle in pt)."""
    page = browser.new_page(viewport={"width": 794, "height": 1123})
    try:
        page.set_content(source, wait_until="load")
        page.emulate_media(media="print")
        boxes = page.evaluate(
            "() => Array.from(document.querySelectorAll('.row')).map(r => {"
            " const b = r.getBoundingClientRect();"
            " return [b.left, b.top + window.scrollY, b.width, b.height]; })"
        )
        data = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
    finally:
        page.close()
    page_px = A4_PT[1] / PX_PT
    rects = []
    for left, top, width, height in boxes:
        index = int(top // page_px)
        y = top - index * page_px
        rects.append(
            (
                index,
                left * PX_PT,
                A4_PT[1] - (y + height) * PX_PT,
                (left + width) * PX_PT,
                A4_PT[1] - y * PX_PT,
            )
        )
    return data, rects


def footers_html(labels: list[str]) -> str:
    """One A4 sheet per page of the book: its running title and page number, at the foot."""
    sheets = "\n".join(
        f'<div class="s"><span>{html.escape(label)}</span><span>{n}</span></div>'
        if label
        else '<div class="s"></div>'
        for n, label in enumerate(labels, start=1)
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
@page {{ size: A4; margin: 0; }}
html, body {{ margin: 0; }}
.s {{ box-sizing: border-box; height: 297mm; padding: 0 16mm 7mm 16mm; display: flex;
  align-items: flex-end; justify-content: space-between; font: 8pt sans-serif; color: #777;
  break-after: page; overflow: hidden; }}
.s:last-child {{ break-after: auto; }}
</style></head><body>{sheets}</body></html>"""


def layout(parts: list[Part], front: int) -> list[tuple[int, str, int]]:
    """Contents rows ``(level, title, first page, 1-based)`` for parts after ``front`` pages."""
    rows: list[tuple[int, str, int]] = []
    start = front + 1
    for i, p in enumerate(parts):
        if p.kind == "solutions" and (i == 0 or parts[i - 1].kind != "solutions"):
            rows.append((0, APPENDIX, start))
        rows.append((1 if p.kind == "solutions" else 0, p.title, start))
        start += p.pages
    return rows


def front_matter(browser, m: Meta, parts: list[Part]) -> tuple[bytes, bytes, list, list]:
    """The title page and the contents (whose length decides where the parts start)."""
    title_pdf, _ = render(browser, title_html(m))
    title_pages = len(PdfReader(io.BytesIO(title_pdf)).pages)
    front = title_pages + 1
    while True:
        rows = layout(parts, front)
        contents_pdf, rects = render(browser, contents_html(rows))
        length = len(PdfReader(io.BytesIO(contents_pdf)).pages)
        if title_pages + length == front:
            return title_pdf, contents_pdf, rows, rects
        front = title_pages + length


def strip_marks(writer: PdfWriter) -> None:
    """Remove the heading marks' link annotations."""
    for page in writer.pages:
        annots = page.get("/Annots")
        if annots is None:
            continue
        kept = ArrayObject(
            a
            for a in annots
            if not str(a.get_object().get("/A", {}).get("/URI", "")).startswith(MARK)
        )
        page[NameObject("/Annots")] = kept


def assemble(browser, m: Meta, parts: list[Part]) -> PdfWriter:
    """Title page, contents with links, the parts with bookmarks, footers and metadata."""
    title_pdf, contents_pdf, rows, rects = front_matter(browser, m, parts)
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(title_pdf)), import_outline=False)
    first_contents = len(writer.pages)
    writer.append(PdfReader(io.BytesIO(contents_pdf)), import_outline=False)
    writer.add_outline_item(title="Title page", page_number=0, fit=Fit.fit())
    writer.add_outline_item(title="Contents", page_number=first_contents, fit=Fit.fit())
    labels = [""] * len(writer.pages)
    appendix = None
    for p in parts:
        start = len(writer.pages)
        writer.append(PdfReader(io.BytesIO(p.data)), import_outline=False)
        if p.kind == "solutions" and appendix is None:
            appendix = writer.add_outline_item(title=APPENDIX, page_number=start, fit=Fit.fit())
        parent = appendix if p.kind == "solutions" else None
        item = writer.add_outline_item(
            title=p.title, page_number=start, parent=parent, fit=Fit.fit()
        )
        stack = {0: item}
        for level, title, page, top in p.sections:
            stack[level] = writer.add_outline_item(
                title=title,
                page_number=start + page,
                parent=stack.get(level - 1, item),
                fit=Fit.xyz(left=0, top=top + 12),
            )
        labels += [p.title] * p.pages
    strip_marks(writer)
    for (_, _, target), (index, *rect) in zip(rows, rects, strict=True):
        link = Link(rect=tuple(rect), target_page_index=target - 1)
        writer.add_annotation(first_contents + index, link)
    footers, _ = render(browser, footers_html(labels))
    for number, overlay in enumerate(PdfReader(io.BytesIO(footers)).pages):
        if labels[number]:
            writer.pages[number].merge_page(overlay)
    for page in writer.pages:
        page.compress_content_streams()
    writer.compress_identical_objects(remove_duplicates=True, remove_unreferenced=True)
    writer.add_metadata(
        {
            "/Title": m.title,
            "/Author": m.author,
            "/Subject": f"{SUBTITLE}. Version {m.version}, built {m.built} ({m.mode} mode).",
            "/Creator": "tools/pdf.py (headless Chromium, pypdf)",
        }
    )
    writer.page_mode = "/UseOutlines"
    return writer


def print_files(files: list[str]) -> list[Part]:
    """Print ``files`` in one browser, served by this worker process's own loopback server."""
    with serve(HTML) as site, launch() as browser:
        printed: list[Part] = []
        for file in files:
            print(f"  printing {file}", flush=True)
            printed += print_file(browser, site, file)
        return printed


def shares(files: list[str], jobs: int) -> list[list[str]]:
    """Split the pages between ``jobs`` workers, balanced by the size of their HTML."""
    loads = [0] * jobs
    split: list[list[str]] = [[] for _ in range(jobs)]
    for file in sorted(files, key=lambda f: -(HTML / f"{f}.html").stat().st_size):
        worker = loads.index(min(loads))
        split[worker].append(file)
        loads[worker] += (HTML / f"{file}.html").stat().st_size
    return [s for s in split if s]


def build(out: Path, jobs: int) -> dict:
    """Print every page, assemble the book and write it to ``out``; returns the report."""
    start = time.perf_counter()
    m = meta()
    files = pages()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        done = [p for share in pool.map(print_files, shares(files, jobs)) for p in share]
    printed = sorted(done, key=lambda p: (files.index(p.file), p.kind))
    body = [p for p in printed if p.kind == "page" and p.file not in BACK_MATTER]
    solutions = [p for p in printed if p.kind == "solutions"]
    back = [p for p in printed if p.kind == "page" and p.file in BACK_MATTER]
    with launch() as browser:
        writer = assemble(browser, m, body + solutions + back)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        writer.write(f)
    return {
        "pdf": str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out),
        "seconds": round(time.perf_counter() - start, 1),
        "jobs": jobs,
        "pages": len(writer.pages),
        "bytes": out.stat().st_size,
        "html_mode": m.mode,
        "html_execution_seconds": m.execution_s,
        "version": m.version,
        "built": m.built,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PDF, help=f"the PDF (default {PDF})")
    parser.add_argument(
        "--jobs", type=int, default=2, help="browsers printing in parallel (default 2)"
    )
    args = parser.parse_args(argv)
    if not (HTML / "index.html").exists():
        print(
            f"no built book in {HTML.relative_to(ROOT)}: run `make book` (or"
            " `make book MODE=quick`) first",
            file=sys.stderr,
        )
        return 1
    print(f"printing the book in {HTML.relative_to(ROOT)} with headless Chromium", flush=True)
    report = build(args.out, max(1, args.jobs))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1))
    print(
        f"PDF: {report['pdf']} ({report['pages']} pages, {report['bytes'] / 1e6:.1f} MB)"
        f" built in {report['seconds']:.1f} s from the {report['html_mode']}-mode HTML build"
        f" (its chapters executed in {report['html_execution_seconds']:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
