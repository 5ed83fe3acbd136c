"""The student edition: no solution survives, starters remain, every notebook runs."""

import json
from pathlib import Path

import nbformat
import pytest

import book

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "_build" / "student"

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
