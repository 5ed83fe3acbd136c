"""Each guard on the built HTML (tools/guards.py) fails on a page with its defect.

A guard that cannot fail is a defect: every test here feeds a small page, shaped like the built
book's (an article, the sidebar, the page's table of contents), with one defect, and asserts the
guard finds it, and that the same page without it is clean. Run with the library tests; the
guards themselves run over the built book in tests/test_book_html.py (``pytest -m book``).
"""

import guards
import pytest


def page(body: str, toc: str = "") -> str:
    return f"""<html><head><script>var x = "$ Exercise Exercise TODO";</script>
<style>.a::after {{ content: "$" }}</style></head><body>
<div class="bd-sidebar-primary"><nav class="bd-docs-nav"><a href="x.html">Chapter 1: Title</a>
</nav></div>
<main><article class="bd-article">{body}</article></main>
<div class="bd-sidebar-secondary"><nav class="bd-toc-nav">{toc}</nav></div>
</body></html>"""


CLEAN = page(
    "<h1>Chapter 1</h1><h2>The consistency theorem</h2><p>Theorem 3 holds.</p>"
    "<p>By <a href='#ch1-ex-a'>Exercise 13</a>, over 2 replicates, see "
    '<span class="math notranslate nohighlight">\\(\\hat\\sigma^2\\)</span> and Theorem 1 says '
    "the spectrum; 1 replicate; replicates: 1; t = 1 generations later.</p>"
    "<pre>mode = '$quick' # TODO the spec token(s)</pre><code>ch1-thm-a</code>"
    '<div class="citation" role="doc-biblioentry"><span>[1]</span>Dey and Donoho. '
    "Universality of the π²/6 pathway. 2024.</div>",
    toc="<a>A.5 The scaling of Theorem 3</a>",
)


@pytest.mark.parametrize(("name", "guard"), list(guards.GUARDS.items()))
def test_a_clean_page_passes_every_guard(name, guard):
    assert guard(CLEAN) == [], name


@pytest.mark.parametrize(
    ("guard", "body", "toc"),
    [
        (guards.doubled_reference_words, "in Algorithm <a>Algorithm 1</a>, the bound", ""),
        (guards.doubled_reference_words, "(exercise <a>Exercise 13</a>)", ""),
        (guards.doubled_reference_words, "theorem\u00a0Theorem 10", ""),
        (guards.raw_labels, "<h2>The scaling of ch1-thm-consistency</h2>", ""),
        (
            guards.raw_labels,
            "<h2>The scaling</h2>",
            '<a>A.5 The scaling of <code class="xref prf prf-ref docutils literal notranslate">'
            '<span class="pre">ch1-thm-consistency</span></code></a>',
        ),
        (guards.process_words, "as the spec states", ""),
        (guards.process_words, "the spec's Table 2", ""),
        (guards.process_words, "the prototype measured", ""),
        (guards.process_words, "see the closing note", ""),
        (guards.process_words, "TODO: finish", ""),
        (guards.process_words, "FIXME", ""),
        (guards.unrendered_math, "<li>then: $ $ Upper bound</li>", ""),
        (guards.unrendered_math, "Universality of the $\\pi^2/6$ Pathway", ""),
        (guards.unrendered_math, "a \\(x\\) left", ""),
        (guards.plural_fragments, "only 1 token(s) remain", ""),
        (guards.plural_fragments, "2 standard errors over 1 replicates.", ""),
        (guards.plural_fragments, "averaged over 1 seeds", ""),
        (guards.unresolved_citations, "as shown by {cite:t}`shumailov2024nature`", ""),
        (
            guards.unresolved_citations,
            '<div class="citation" role="doc-biblioentry"><span>[1]</span>D. '
            "Universality of the {$\\pi^2/6$} pathway.</div>",
            "",
        ),
        (
            guards.unresolved_citations,
            '<div class="citation" role="doc-biblioentry"><span>[1]</span></div>',
            "",
        ),
    ],
)
def test_each_guard_finds_its_defect(guard, body, toc):
    found = guard(page(body, toc))
    assert found, f"{guard.__name__} missed the defect in {body!r} {toc!r}"


def test_the_report_counts_defects_per_guard_and_page(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "a.html").write_text(page("exercise Exercise 4 and 1 token(s)"))
    (tmp_path / "chapters" / "b.html").write_text(CLEAN)
    (tmp_path / "search.html").write_text(page("TODO"))  # Sphinx's own pages are not the book's
    found = guards.report(tmp_path)
    assert [len(v) for v in found["doubled reference words"].values()] == [1]
    assert list(found["doubled reference words"]) == ["chapters/a.html"]
    assert list(found["plural fragments"]) == ["chapters/a.html"]
    assert found["working-process words"] == {}
    assert guards.main([str(tmp_path)]) == 1
