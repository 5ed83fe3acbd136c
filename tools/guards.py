"""Guards on the built HTML book: defects a reader sees, found in the text a reader reads.

Each guard takes a page's HTML and returns the defects it finds (a list of short excerpts; empty
means clean). They read the reader-visible text only: scripts, styles, code, code-cell inputs and
text outputs (``pre``), and math (MathJax typesets it) are dropped. The article is checked; the
raw-label guard also checks the page's tables of contents (the sidebar and "On this page").

    python tools/guards.py [HTML_DIR]   # every page of the built book, defects per guard and page

``tests/test_book_html.py`` runs them on every page of the built book (``pytest -m book``);
``tests/test_guards.py`` feeds each a page with its defect, so a guard that cannot fail fails.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "book" / "_build" / "html"

# what a reader never reads as prose: code, program output, math (typeset by MathJax); a
# cross-reference rendered as a literal (``code.xref``: a reference inside a heading, in the
# page's table of contents) is what the reader sees, so it stays
INVISIBLE = (
    "script, style, code:not(.xref), pre, .math, mjx-container, .headerlink, .visually-hidden"
)
# the tables of contents a page shows (the book's sidebar and the page's own)
TOCS = ".bd-sidebar-primary, .bd-sidebar-secondary, .bd-toc"

REFERENCE_WORDS = (
    "Exercise|Theorem|Algorithm|Lemma|Proposition|Corollary|Definition|Assumption|Remark"
    "|Example|Solution|Proof|Figure|Table|Equation|Section|Chapter"
)
DOUBLED = re.compile(rf"\b({REFERENCE_WORDS})[^\S\n]+\1\b", re.IGNORECASE)
# the book's labels are chN-kind-name (ch1-thm-consistency); a rendered page never shows one
RAW_LABEL = re.compile(r"\bch\d+-[a-z0-9]+(?:[-_][a-z0-9]+)+\b")
PROCESS_WORDS = re.compile(
    r"\bthe\s+specs?\b|\bspec(?:['’]s|s)?\b|\bprototypes?\b|\bclosing\s+notes?\b"
    r"|\bTODO\b|\bFIXME\b|\bXXX\b",
    re.IGNORECASE,
)
UNRENDERED_MATH = re.compile(r"\$|\\\(|\\\)|\\\[|\\\]|\\(?:frac|mathcal|mathbb|hat|sigma|alpha)\b")
# "token(s)": a plural the text could not choose
OPTIONAL_PLURAL = re.compile(r"[A-Za-z]\((?:s|es)\)")
# "1 replicates": the number one with a plural noun. Nouns the book counts; a verb after a
# numbered thing ("Theorem 1 says") or a generation index ("t = 1 gives") is fine.
COUNTED_NOUNS = (
    "replicates|seeds|generations|tokens|samples|rounds|runs|steps|epochs|points|candidates"
    "|chapters|minutes|seconds|hours|sequences|states|cores|errors|iterations|draws|trials"
    "|models|exercises|conditions|words|bits|classes|images|digits|labels|items|values"
    "|dimensions|parameters|components|examples|sources|sets|batches|copies|times|elements"
    "|pixels|symbols|features|entries|cells|pages|classifiers|verifiers|outputs|inputs|units"
    "|layers|modes|datasets|observations|prompts|answers|bigrams|n-grams|documents|repeats"
)
ONE_PLURAL = re.compile(rf"(?<![\d.,/=^_-])(?<![=<>]\s)\b(?:1|one)\s+(?:{COUNTED_NOUNS})\b", re.I)


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


# elements that end a block of text: a word at the end of one (a heading) and the first word of
# the next (a paragraph) are never read as one phrase
BLOCKS = "p, h1, h2, h3, h4, h5, h6, li, dt, dd, td, th, caption, figcaption, div, section"


def _text(node) -> str:
    """The text of ``node`` with its invisible parts removed: whitespace collapsed within a block,
    one line per block."""
    node = soup(str(node))
    for hidden in node.select(INVISIBLE):
        hidden.decompose()
    for block in node.select(BLOCKS):
        block.append("\n")
    text = re.sub(r"[^\S\n]+", " ", node.get_text(" "))
    return re.sub(r"\s*\n\s*", "\n", text).strip()


@lru_cache(maxsize=8)  # six guards read the same page
def article_text(html: str) -> str:
    """The reader-visible text of a page's article (its content, without the sidebars)."""
    page = soup(html)
    article = page.select_one("article") or page.select_one("main") or page
    return _text(article)


@lru_cache(maxsize=8)
def toc_text(html: str) -> str:
    """The text of the tables of contents the page shows."""
    return " ".join(_text(node) for node in soup(html).select(TOCS))


def _excerpts(pattern: re.Pattern, text: str, width: int = 40) -> list[str]:
    return [
        text[max(0, m.start() - width) : m.end() + width].strip() for m in pattern.finditer(text)
    ]


def doubled_reference_words(html: str) -> list[str]:
    """Guard 1: "Exercise Exercise 13", "in Algorithm Algorithm 1", "exercise Exercise 4"."""
    return _excerpts(DOUBLED, article_text(html))


def raw_labels(html: str, labels: set[str] = frozenset()) -> list[str]:
    """Guard 2: a label printed as text (``ch1-thm-consistency``), in the article or in a table
    of contents (where a reference inside a heading lands); ``labels``: more to look for."""
    found = []
    for where, text in (("text", article_text(html)), ("toc", toc_text(html))):
        hits = {m.group(0) for m in RAW_LABEL.finditer(text)}
        hits |= {label for label in labels if re.search(rf"(?<![\w-]){re.escape(label)}\b", text)}
        found += [f"{where}: {label}" for label in sorted(hits)]
    return found


def process_words(html: str) -> list[str]:
    """Guard 3: words of the team's working process ("the spec", "prototype", "TODO", ...)."""
    return _excerpts(PROCESS_WORDS, article_text(html))


def unrendered_math(html: str) -> list[str]:
    """Guard 4: math left as source in the visible text: a ``$``, ``\\(``, ``\\[``, a TeX macro."""
    return _excerpts(UNRENDERED_MATH, article_text(html))


def plural_fragments(html: str) -> list[str]:
    """Guard 5: glued fragments that break with a value of 1: "token(s)", "over 1 replicates"."""
    text = article_text(html)
    numbered = re.compile(rf"\b(?:{REFERENCE_WORDS}|Step|Phase|Part|Appendix)\s*$", re.I)
    ones = [m for m in ONE_PLURAL.finditer(text) if not numbered.search(text[: m.start()])]
    return _excerpts(OPTIONAL_PLURAL, text) + [
        text[max(0, m.start() - 40) : m.end() + 40].strip() for m in ones
    ]


def unresolved_citations(html: str) -> list[str]:
    """Guard 6: a citation that did not resolve (left as ``{cite}`` source or as sphinxcontrib-
    bibtex's unknown-key marker) or a reference whose title is empty or shows TeX source."""
    text = article_text(html)
    found = _excerpts(re.compile(r"\{cite(?::\w+)?\}|\[\?\]|\?\?"), text)
    for entry in soup(html).select('[role="doc-biblioentry"], div.citation'):
        body = _text(entry)
        if not re.search(r"[A-Za-z]{3}", body.lstrip("[]0-9 ")):
            found.append(f"empty reference: {body}")
        found += [f"reference: {e}" for e in _excerpts(re.compile(r"[{}$\\]"), body)]
    return found


GUARDS: dict[str, Callable[[str], list[str]]] = {
    "doubled reference words": doubled_reference_words,
    "raw labels": raw_labels,
    "working-process words": process_words,
    "unrendered math": unrendered_math,
    "plural fragments": plural_fragments,
    "unresolved citations": unresolved_citations,
}


def pages(html_dir: Path = HTML) -> list[Path]:
    """Every page of the built book (not Sphinx's generated index, search and proof pages)."""
    skip = {"genindex.html", "search.html", "prf-prf.html", "index.html"}
    return sorted(
        p
        for p in html_dir.rglob("*.html")
        if p.name not in skip and not p.relative_to(html_dir).parts[0].startswith("_")
    )


def report(html_dir: Path = HTML) -> dict[str, dict[str, list[str]]]:
    """``{guard: {page: defects}}`` over every page of the built book."""
    out: dict[str, dict[str, list[str]]] = {name: {} for name in GUARDS}
    for path in pages(html_dir):
        html = path.read_text()
        for name, guard in GUARDS.items():
            found = guard(html)
            if found:
                out[name][path.relative_to(html_dir).as_posix()] = found
    return out


def main(argv: list[str]) -> int:
    html_dir = Path(argv[0]) if argv else HTML
    total = 0
    for name, by_page in report(html_dir).items():
        count = sum(map(len, by_page.values()))
        total += count
        print(f"{name}: {count}")
        for page, found in by_page.items():
            print(f"  {page}: {len(found)}")
            for excerpt in found:
                print(f"    {excerpt}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
