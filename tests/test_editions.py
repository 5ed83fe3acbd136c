"""The Jupyter editions' converter (tools/editions.py) on small synthetic books."""

import textwrap

import editions as E
import nbformat
import pytest

BIB = """
@article{solo2020,
  title = {A {Single} Author},
  author = {Solo, Han},
  journal = {J. Tests},
  year = {2020}
}
@inproceedings{pair2021,
  title = {Two of Us},
  author = {Pair, Ann and Duo, Bob},
  booktitle = {Proc. Pairs},
  year = {2021},
  url = {https://example.org/pair}
}
@article{many2022,
  title = {Many Hands},
  author = {M{\\"u}ller, Jan and Two, T. and Three, T.},
  journal = {Nature},
  volume = {1},
  number = {2},
  pages = {3--4},
  year = {2022},
  doi = {10.1/x}
}
"""

CODE = '''
import os


def helper(x):
    return x


class Selection:
    """Keep some."""

    @staticmethod
    def keep(n):
        return n
'''


def nb(*cells):
    """A notebook from ``("md" | "code", source[, tags])`` tuples."""
    out = nbformat.v4.new_notebook()
    for kind, src, *tags in cells:
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = make(textwrap.dedent(src).strip("\n"))
        if tags:
            cell.metadata["tags"] = tags[0]
        out.cells.append(cell)
    return out


def fence(name, arg="", *options, body=""):
    lines = [f"```{{{name}}} {arg}".rstrip(), *options]
    if body:
        lines += ["", body]
    return "\n".join([*lines, "```"])


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """Two chapters and a prose page; the second chapter's numbers continue the first's."""
    tmp_path = tmp_path_factory.mktemp("book")
    (tmp_path / "chapters").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "book" / "refs.bib").write_text(BIB)
    (tmp_path / "book" / "notation.md").write_text("# Notation\n\n(sec-regimes)=\n## Regimes\n")
    (tmp_path / "book" / "_inc.md").write_text(
        fence("admonition", "GPU optional", ":class: tip", body="See {doc}`/book/notation`.")
    )
    (tmp_path / "lib" / "mod.py").write_text(CODE)
    first = nb(
        ("md", "# Chapter 0: First"),
        ("md", fence("prf:theorem", "Old", ":label: ch0-thm")),
        ("md", fence("exercise-start", "", ":label: ch0-ex")),
        ("md", fence("exercise-end")),
    )
    nbformat.write(first, tmp_path / "chapters" / "a.ipynb")
    second = nb(
        ("md", "# Chapter 1: Second"),
        ("md", fence("prf:lemma", "Small", ":label: ch1-lem", body="A lemma.")),
        ("md", fence("prf:theorem", "Big", ":label: ch1-thm", body="Text $x$.")),
        ("md", fence("exercise-start", "", ":label: ch1-ex")),
        ("md", fence("exercise-end")),
    )
    nbformat.write(second, tmp_path / "chapters" / "b.ipynb")
    docs = ["book/notation", "chapters/a", "chapters/b", "book/missing"]
    return E.index_book(tmp_path, docs, tmp_path / "book" / "refs.bib")


def convert(book, text, glue=None):
    return E.convert_markdown(textwrap.dedent(text).strip("\n"), book, "chapters/b", glue)


def test_index_numbers_like_the_book_one_counter_per_kind(book):
    assert book.labels["ch0-thm"] == "Theorem 1"
    assert book.labels["ch1-thm"] == "Theorem 2"
    assert book.labels["ch1-lem"] == "Lemma 1"
    assert book.labels["ch0-ex"] == "Exercise 1"
    assert book.labels["ch1-ex"] == "Exercise 2"
    assert book.labels["sec-regimes"] == "Regimes"
    assert book.titles["chapters/b"] == "Chapter 1: Second"
    assert book.label_docs["ch0-thm"] == "chapters/a"
    assert "book/missing" not in book.titles


def test_references_in_the_books_author_year_forms(book):
    refs = book.references
    assert (refs["solo2020"].authors, refs["solo2020"].year) == ("Solo", "2020")
    assert refs["pair2021"].authors == "Pair and Duo"
    assert refs["many2022"].authors == "Müller et al."
    assert "A Single Author" in refs["solo2020"].entry
    assert "*Nature*, 1(2), 3–4." in refs["many2022"].entry
    assert "https://doi.org/10.1/x" in refs["many2022"].entry


def test_citations(book):
    text = convert(book, "{cite:t}`solo2020` and {cite:p}`pair2021,many2022`; {cite}`solo2020`.")
    assert text == ("Solo (2020) and (Pair and Duo, 2021; Müller et al., 2022); (Solo, 2020).")


def test_cross_references_resolve_to_the_books_names(book):
    text = convert(
        book,
        """
        {prf:ref}`ch1-thm`, {ref}`ch1-ex`, exercise {ref}`ch1-ex`, {numref}`ch1-lem`,
        {prf:ref}`ch0-thm`, {ref}`sec-regimes`, {ref}`the regimes <sec-regimes>`,
        {doc}`a`, {doc}`../book/notation`, {doc}`notation <../book/notation>`.
        """,
    )
    assert text == (
        "Theorem 2, Exercise 2, Exercise 2, Lemma 1,\n"
        "Theorem 1 (Chapter 0: First), Regimes (Notation), the regimes,\n"
        "*Chapter 0: First*, *Notation*, notation."
    )


def test_notebook_conversion(book):
    src = nb(
        ("md", "# Chapter 1: Second\n\n*Executed in {glue:text}`run_mode` mode.*"),
        ("code", 'mode = "full"', ["parameters"]),
        ("md", "(sec-x)=\n## Results\n\n% a comment\nThe value is {glue:text}`v:.2f`."),
        ("code", 'glue("v", 0.12345)\nglue("w", 3)'),
        ("md", fence("prf:lemma", "Small", ":label: ch1-lem", body="A lemma.")),
        ("md", fence("prf:theorem", "Big", ":label: ch1-thm", body="Text $x$ {cite:t}`solo2020`.")),
        ("md", fence("prf:proof", body="Since $$\na\n$$")),
        ("md", fence("exercise-start", "", ":label: ch1-ex")),
        ("md", "Prove {prf:ref}`ch1-thm`."),
        ("code", "answer = None", ["starter", "remove-cell"]),
        ("md", fence("exercise-end")),
        ("md", fence("solution-start", "ch1-ex", ":class: dropdown")),
        ("code", "answer = 1"),
        ("md", fence("solution-end")),
        ("md", "hidden prose", ["remove-cell"]),
    )
    before = nbformat.writes(src)
    glue = E.Glue({"v": "0.12345", "run_mode": "'quick'"}, "quick", 0)
    out = E.convert_notebook(src, book, "chapters/b", glue=glue)
    assert nbformat.writes(src) == before, "the input is not changed"
    md = [c.source for c in out.cells if c.cell_type == "markdown"]
    assert md[0] == "# Chapter 1: Second\n\n*Executed in quick† mode.*"
    assert "quick-mode run (seed 0)" in md[1] and "†" in md[1]
    assert md[2] == "## Results\n\nThe value is 0.12†."
    assert md[3] == "**Lemma 1** (Small)\n\nA lemma."
    assert md[4] == "**Theorem 2** (Big)\n\nText $x$ Solo (2020)."
    assert md[5] == "*Proof.* Since $$\na\n$$\n\n∎"
    assert md[6:9] == ["### Exercise 2", "Prove Theorem 2.", "### Solution to Exercise 2"]
    assert md[-1].startswith("**Works cited in this chapter**\n\n* Solo, H. (2020). A Single")
    assert not any("hidden prose" in m for m in md)
    code = [c.source for c in out.cells if c.cell_type == "code"]
    assert code == [
        'mode = "full"',
        'glue("v", 0.12345)\nglue("w", 3)',
        "answer = None",
        "answer = 1",
    ]
    assert all(not E.myst_leftovers(m) for m in md)


def test_proofs_open_their_first_paragraph_and_end_with_a_square(book):
    assert convert(book, fence("prf:proof", body="*(Sketch.)* So $x$.")) == (
        "*Proof.* *(Sketch.)* So $x$. ∎"
    )
    assert convert(book, fence("prf:proof", body="$$\nx\n$$")) == "*Proof.*\n\n$$\nx\n$$\n\n∎"
    assert convert(book, fence("prf:proof", body="* a\n* b")) == "*Proof.*\n\n* a\n* b\n\n∎"


def test_glue_without_an_executed_copy_points_at_the_code(book):
    src = nb(
        ("md", "# T\n\nMode {glue:text}`run_mode`, {glue:text}`a:.2f`, {glue}`b`, {glue:text}`c`."),
        ("code", 'glue("a", 1.0)'),
        ("md", "later"),
        ("code", "glue('b', 2)"),
    )
    out = E.convert_notebook(src, book, "chapters/b")
    assert out.cells[0].source == (
        "# T\n\nMode `run_mode` (printed by the setup cell), `a` (printed by the code below), "
        "`b`, `c` (printed by the code)."
    )
    assert "by the name the code prints them under" in out.cells[1].source


def test_admonitions_includes_and_literalinclude(book):
    text = convert(
        book,
        """
        ```{note}
        Plain note with $x$.
        ```

        :::{admonition} Careful
        :class: warning dropdown
        Display math
        $$
        y
        $$
        :::

        ```{include} ../book/_inc.md
        ```

        ```{literalinclude} ../lib/mod.py
        :pyobject: Selection.keep
        ```
        """,
    )
    assert text.split("\n\n")[:2] == ["> **Note**\n>\n> Plain note with $x$.", "**Careful**"]
    assert "> **GPU optional**\n>\n> See *Notation*." in text
    assert "The code: `lib/mod.py`, `Selection.keep`.\n\n```python\n@staticmethod\n" in text
    assert "def keep(n):\n    return n\n```" in text
    assert not E.myst_leftovers(text)


def test_glue_figures_code_directives_and_figures(book):
    text = convert(
        book,
        """
        ```{glue:figure} fig_a
        :name: f1
        The caption.
        ```

        ```{code} python
        x = "{ref}`not resolved`"
        ```

        ```{figure} img.png
        :alt: pic
        Cap.
        ```
        """,
    )
    assert text.split("\n\n") == [
        "*(Figure `fig_a`: drawn by this chapter's code when you run it.) The caption.*",
        '```python\nx = "{ref}`not resolved`"\n```',
        "![pic](img.png)",
        "*Cap.*",
    ]


def test_python_object_source():
    assert E.python_object_source(CODE, "helper") == "def helper(x):\n    return x"
    assert E.python_object_source(CODE, "Selection").startswith('class Selection:\n    """Keep')
    with pytest.raises(KeyError):
        E.python_object_source(CODE, "nothing")


def test_code_is_left_alone_and_targets_and_comments_go(book):
    text = convert(
        book,
        """
        (my-target)=
        % a comment
        Write `` {cite:t}`key` `` for a citation:

        ```python
        x = "{ref}`not a role`"
        # % not a comment
        ```

        $$
        % a LaTeX comment stays
        x
        $$
        +++
        """,
    )
    assert text.startswith("Write `` {cite:t}`key` `` for a citation:")
    assert 'x = "{ref}`not a role`"\n# % not a comment' in text
    assert "% a LaTeX comment stays" in text
    assert "(my-target)=" not in text and "+++" not in text


def test_glue_values_and_formats_match_myst_nb():
    executed = {
        "metadata": {"papermill": {"parameters": {"mode": "quick", "seed": 0}}},
        "cells": [
            {
                "cell_type": "code",
                "outputs": [
                    {
                        "output_type": "display_data",
                        "data": {"application/papermill.record/text/plain": "0.31415"},
                        "metadata": {
                            "scrapbook": {
                                "name": "x",
                                "mime_prefix": "application/papermill.record/",
                            }
                        },
                    }
                ],
            }
        ],
    }
    glue = E.read_glue(executed)
    assert glue == E.Glue({"x": "0.31415"}, "quick", 0)
    cases = [("0.31415", ".2f"), ("'quick'", ""), ("12", ".1e"), ("3.0", "d"), ("0.25", ".0%")]
    myst = pytest.importorskip("myst_nb.core.variables")
    for text, fmt in cases[:3] + cases[4:]:
        assert E.format_glue(text, fmt) == myst.format_plain_text(text, fmt or "s")
    assert E.format_glue("'quick'", "") == "quick"


def test_launch_links_and_install_cell_follow_the_branch():
    url = "https://github.com/o/r"
    header = (
        "[Colab](https://colab.research.google.com/github/o/r/blob/main/chapters/x.ipynb) "
        "[Binder](https://mybinder.org/v2/gh/o/r/main?labpath=chapters/x.ipynb) "
        "[Download](https://github.com/o/r/raw/main/chapters/x.ipynb)"
    )
    assert E.retarget_links(header, url, "nb", "student/") == (
        "[Colab](https://colab.research.google.com/github/o/r/blob/nb/student/chapters/x.ipynb) "
        "[Binder](https://mybinder.org/v2/gh/o/r/nb?labpath=student/chapters/x.ipynb) "
        "[Download](https://github.com/o/r/raw/nb/student/chapters/x.ipynb)"
    )
    cell = '    %pip install -q "collapse_lib @ git+https://github.com/o/r"'
    assert E.pin_install(cell, url, "nb") == cell.replace('/o/r"', '/o/r@nb"')
    assert E.pin_install(E.pin_install(cell, url, "nb"), url, "nb").count("@nb") == 1


def test_unknown_labels_and_keys_fail_loudly(book):
    with pytest.raises(ValueError, match="label nope.*|citation"):
        E.convert_notebook(nb(("md", "{ref}`nope` {cite:t}`nokey`")), book, "chapters/b")


@pytest.mark.parametrize(
    "text, kinds",
    [
        ("{glue:text}`x`", ["role"]),
        ("```{exercise-start}\n```", ["directive fence"]),
        (":::{note}\n:::", ["directive fence"]),
        (":label: x", ["directive option"]),
        ("(target)=", ["target"]),
        ("Plain text with `code`, $x$ and a {set}.", []),
        ("```python\n''':func:`f`\n:param x: y'''\n```", []),  # included code is code
        ("{ref}`x`\n```python\nx = 1\n```", ["role"]),
    ],
)
def test_myst_leftovers(text, kinds):
    assert E.myst_leftovers(text) == kinds
