"""The Jupyter editions: the student edition (no solution survives, starters remain) and the
instructor's (solutions after each exercise); both read without MyST syntax and run."""

import json
import re
from importlib import metadata
from pathlib import Path

import editions
import nbformat
import pytest

import book

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "_build" / "student"
NOTEBOOKS = ROOT / "_build" / "notebooks"
SHOTS = ROOT / "_build" / "screenshots"
EDITIONS = {"student": STUDENT, "instructor": NOTEBOOKS}

CHAPTERS = book.chapters()


def solution_cells(nb):
    inside, out = False, []
    for cell in nb.cells:
        if "{solution-start}" in cell.source:
            inside = True
        elif "{solution-end}" in cell.source:
            inside = False
        elif inside and cell.source.strip():
            out.append(cell)
    return out


def make(sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s) for s in sources]
    return nb


def test_student_notebook_strips_solutions_on_a_small_example():
    nb = make(
        ["exercise", "```{solution-start} x\n```", "secret", "```{solution-end}\n```", "after"]
    )
    assert [c.source for c in book.student_notebook(nb).cells] == ["exercise", "after"]
    with pytest.raises(SystemExit, match="without its"):
        book.student_notebook(make(["```{solution-start} x\n```", "secret"]))
    with pytest.raises(SystemExit, match="without its"):
        book.student_notebook(make(["```{solution-end}\n```"]))


@pytest.mark.student
@pytest.mark.parametrize("name", CHAPTERS)
def test_no_solution_survives_and_starters_remain(name):
    instructor = nbformat.read(ROOT / "chapters" / f"{name}.ipynb", as_version=4)
    student = nbformat.read(STUDENT / "chapters" / f"{name}.ipynb", as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "{solution-start}" not in text and "{solution-end}" not in text
    solutions = solution_cells(instructor)
    assert solutions, "the instructor edition has solutions"
    elsewhere = {
        line for c in instructor.cells if c not in solutions for line in c.source.splitlines()
    }
    distinctive = [
        line
        for c in solutions
        for line in c.source.splitlines()
        if len(line.strip()) > 20 and line not in elsewhere
    ]
    assert distinctive
    student_lines = set(text.splitlines())
    leaked = [line for line in distinctive if line in student_lines]
    assert not leaked, f"solution lines survived: {leaked}"
    starters = [c for c in student.cells if "starter" in c.metadata.get("tags", [])]
    assert starters, "at least one coding exercise with a starter cell"
    assert all("remove-cell" not in c.metadata["tags"] for c in starters)
    params = next(c for c in student.cells if "parameters" in c.metadata.get("tags", []))
    assert 'mode = "quick"' in params.source


@pytest.mark.student
@pytest.mark.parametrize("name", CHAPTERS)
def test_student_notebook_runs_top_to_bottom_in_quick_mode(name):
    nb = json.loads((STUDENT / "executed" / f"{name}.ipynb").read_text())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    texts = "".join("".join(o.get("text", "")) for o in outputs)
    assert "no answer yet" in texts, "the starters' checks ran"


@pytest.mark.student
@pytest.mark.parametrize("edition", sorted(EDITIONS))
@pytest.mark.parametrize("name", CHAPTERS)
def test_edition_reads_without_myst_syntax(edition, name):
    nb = nbformat.read(EDITIONS[edition] / "chapters" / f"{name}.ipynb", as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            left = editions.myst_leftovers(cell.source)
            assert not left, f"cell {i}: {left} in {cell.source[:300]!r}"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"^### Exercise \d+", text, re.M), "exercises are headed"
    assert re.search(r"\*\*(Theorem|Proposition|Algorithm|Definition) \d+\*\*", text)
    solutions = len(re.findall(r"^### Solution to Exercise \d+", text, re.M))
    source = nbformat.read(ROOT / "chapters" / f"{name}.ipynb", as_version=4)
    expected = sum("{solution-start}" in c.source for c in source.cells)
    assert solutions == (expected if edition == "instructor" else 0)


def run_code_cells(nb):
    """The code cells a notebook's author wrote, without papermill's injected parameters."""
    return [
        c
        for c in nb.cells
        if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
    ]


def executed_instructor_edition(name):
    """The instructor edition of ``name`` with the outputs of its quick-mode run: its own run
    (``tools/book.py notebooks --execute``) if there is one, else the book's quick build, which
    ran the same code cells (see the test below)."""
    executed = NOTEBOOKS / "executed" / f"{name}.ipynb"
    if executed.exists():
        return nbformat.read(executed, as_version=4)
    nb = nbformat.read(NOTEBOOKS / "chapters" / f"{name}.ipynb", as_version=4)
    book_run = nbformat.read(ROOT / "_build" / "book" / "chapters" / f"{name}.ipynb", as_version=4)
    for cell, ran in zip(run_code_cells(nb), run_code_cells(book_run), strict=True):
        cell.outputs, cell.execution_count = ran.outputs, ran.execution_count
    return nb


@pytest.mark.student
@pytest.mark.parametrize("name", CHAPTERS)
def test_instructor_edition_runs_the_books_code_top_to_bottom(name):
    source = nbformat.read(ROOT / "chapters" / f"{name}.ipynb", as_version=4)
    edition = nbformat.read(NOTEBOOKS / "chapters" / f"{name}.ipynb", as_version=4)
    code = [c.source for c in source.cells if c.cell_type == "code"]
    pinned = [c.source for c in edition.cells if c.cell_type == "code"]
    assert len(code) == len(pinned)
    assert [a for a, b in zip(code, pinned, strict=True) if a != b and "git+" not in a] == []
    # The edition's code is the book's, cell for cell (only the Colab-only install line names
    # another branch), so the quick build's executed copy is this edition's run unless
    # `tools/book.py notebooks --execute` ran it itself: every code cell ran, none failed.
    ran = run_code_cells(executed_instructor_edition(name))
    assert all(c.execution_count is not None for c in ran), "a code cell never ran"
    errors = [o for c in ran for o in c.outputs if o["output_type"] == "error"]
    assert not errors, errors[0]["ename"] if errors else ""


@pytest.mark.student
def test_jupyter_edition_renders_cleanly_in_a_browser(tmp_path):
    """nbconvert's HTML of an executed chapter, in headless Chromium (offline, local MathJax)."""
    import headless
    from nbconvert import HTMLExporter

    name = "02_regression"
    nb = executed_instructor_edition(name)
    for cell in nb.cells:  # glue's records: invisible in Jupyter, unrepresentable in nbconvert
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if "scrapbook" not in o.get("metadata", {})]
    mathjax = metadata.distribution("sphinx-mathjax-offline").locate_file(
        "sphinx-mathjax-offline/static/mathjax/tex-chtml.js"
    )
    html, _ = HTMLExporter(
        template_name="lab", mathjax_url=Path(mathjax).as_uri()
    ).from_notebook_node(nb)
    config = (  # MathJax 3 (the book's offline copy) in place of nbconvert's MathJax 2 setup
        "<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']],"
        " processEscapes: true, processEnvironments: true}};</script>"
    )
    html = html.replace("<!-- Load mathjax -->", config).replace("init_mathjax();", "")
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(html)
    with headless.launch() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort()
        )
        page.goto(page_file.as_uri(), wait_until="load")
        page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000
        )
        page.evaluate("() => MathJax.startup.promise")
        markdown = "\n".join(page.locator(".jp-MarkdownCell").all_inner_texts())
        assert page.locator("h3", has_text=re.compile(r"^Exercise \d+")).count() >= 3
        assert page.locator("h3", has_text=re.compile(r"^Solution to Exercise \d+")).count() >= 3
        assert page.locator("strong", has_text=re.compile(r"^Theorem \d+$")).count() >= 3
        assert page.locator("blockquote strong").count() >= 1, "admonitions are block quotes"
        for bad in ("{glue", "{exercise", "{solution", "{prf", "{cite", "{doc", "{ref", ":label:"):
            assert bad not in markdown, bad
        assert page.locator("mjx-container").count() > 50, "the math is typeset"
        assert "$$" not in markdown
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"jupyter_edition_{name}.png"), full_page=True)
