"""The Jupyter editions: a chapter's MyST notebook turned into plain Jupyter Markdown.

The book's chapters are MyST notebooks: Jupyter Book renders their directives (exercises,
theorems, admonitions, includes) and roles (citations, cross-references, glued numbers).
JupyterLab, Colab and nbconvert show that syntax raw. :func:`convert_notebook` rewrites
every markdown cell so that a student reads the same text without it:

* ``{exercise-start}`` / ``{solution-start}`` fences become headings ("Exercise 9",
  "Solution to Exercise 9"), numbered as the built book numbers them (one counter per kind
  for the whole book, in ``_toc.yml`` order: the toc has no section numbers);
* ``{prf:theorem}`` and its kin become a bold title ("**Theorem 6** (name)") and their text,
  ``{prf:proof}`` an italic "Proof." ending with a square;
* ``{cite:t}`` becomes "Author (year)", ``{cite:p}`` and ``{cite}`` "(Author, year)"; the
  works cited are listed at the end of the notebook;
* ``{prf:ref}``, ``{ref}``, ``{numref}`` and ``{doc}`` become the name the book shows
  ("Theorem 6", "Exercise 13", a page title);
* ``{glue:text}`` becomes the value from the book's executed notebook, marked with a dagger
  that a note at the top explains, or, with no executed copy, the name under which the
  code prints it;
* admonitions become block quotes with a bold title, ``{include}`` inlines the file,
  ``{literalinclude}`` inlines the code (``:pyobject:`` extracted with :mod:`ast`);
* MyST targets ``(label)=``, ``% comments`` and ``+++`` cell breaks are dropped.

:func:`index_book` reads the book's pages once (labels, titles, ``references.bib``); the
conversion itself is a pure function of a notebook and that index. ``tools/book.py`` writes
the editions (``make student``, ``make notebooks``).
"""

from __future__ import annotations

import ast
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import nbformat
import yaml

DAGGER = "†"

# sphinx-proof's directive types (each has its own counter) and the admonitions of MyST.
PROOF_TYPES = (
    "algorithm axiom assumption conjecture corollary criterion definition example lemma "
    "notation observation property proposition remark theorem"
).split()
ADMONITIONS = (
    "admonition attention caution danger error hint important note seealso tip warning "
    "dropdown topic sidebar margin epigraph"
).split()
ADMONITION_TITLES = {"seealso": "See also"}
# Keys that collapse_lib.notebook.setup glues itself; outside the book it prints them in
# its banner instead.
SETUP_KEYS = {"collapse_lib_version", "run_mode", "run_seed", "run_device"}

DIRECTIVE = re.compile(r"^ {0,3}(?P<fence>`{3,}|:{3,})\{(?P<name>[^}\s]+)\}[ \t]*(?P<arg>.*?)\s*$")
CODE_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})")
OPTION = re.compile(r"^:(?P<key>[\w-]+):(?:[ \t]+(?P<value>.*?))?\s*$")
TARGET = re.compile(r"^ {0,3}\((?P<label>[^()\s]+)\)=\s*$")
COMMENT = re.compile(r"^ {0,3}%")
BLOCK_BREAK = re.compile(r"^ {0,3}\+\+\+")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
INLINE = re.compile(
    r"(?P<role>\{(?P<name>[A-Za-z][\w:.+-]*)\}(?P<ticks>`+)(?P<content>.+?)(?P=ticks))"
    r"|(?P<code>(?P<cticks>`+).+?(?P=cticks))",
    re.S,
)
EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
GLUE_CALL = re.compile(r"""\bglue\(\s*(?:f?)["'](?P<key>[^"'{}]+)["']""")


@dataclass(frozen=True)
class Reference:
    """One work of ``references.bib``, in the forms the book's author_year style prints."""

    authors: str  # "Dohmatob et al.", "Barzilai and Shamir"
    year: str
    entry: str  # the full entry, for the list of works cited


@dataclass
class Book:
    """What the converter knows about the whole book: names of labels, pages, works.

    ``labels`` maps a label to the name the book shows for it ("Theorem 6", "Exercise 13",
    a section's title), ``label_docs`` to the page that defines it, ``titles`` a page
    (``chapters/02_regression``, ``book/notation``) to its title.
    """

    root: Path
    labels: dict[str, str] = field(default_factory=dict)
    label_docs: dict[str, str] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    references: dict[str, Reference] = field(default_factory=dict)


@dataclass(frozen=True)
class Glue:
    """The glued values of one executed chapter (``text/plain`` reprs) and its run's mode."""

    values: dict[str, str]
    mode: str | None = None
    seed: Any = None


@dataclass
class _Context:
    """The state of one notebook's conversion."""

    book: Book
    docname: str
    glue: Glue | None
    glue_cells: dict[str, int]  # glue key -> index of the code cell that glues it
    cell: int = 0
    cited: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    glued: int = 0
    missing: int = 0
    unresolved: list[str] = field(default_factory=list)
    said: set[str] = field(default_factory=set)  # where this cell's missing values are printed


# ---------------------------------------------------------------------------- the book


def _latex_text(value: str) -> str:
    """Plain text of a BibTeX field: braces and LaTeX accents resolved."""
    from pybtex.richtext import Text

    try:
        return Text.from_latex(value).render_as("text")
    except Exception:  # a field pybtex cannot parse: strip the braces
        return value.replace("{", "").replace("}", "")


def read_references(bib: Path) -> dict[str, Reference]:
    """Every entry of a ``.bib`` file as a :class:`Reference` (pybtex parses the file)."""
    from pybtex.database import parse_file

    out: dict[str, Reference] = {}
    for key, entry in parse_file(str(bib)).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        lasts = [_latex_text(" ".join(p.prelast_names + p.last_names)) for p in people]
        if not lasts:
            short = _latex_text(entry.fields.get("title", key))
        elif len(lasts) == 1:
            short = lasts[0]
        elif len(lasts) == 2:
            short = f"{lasts[0]} and {lasts[1]}"
        else:
            short = f"{lasts[0]} et al."
        names = [
            _latex_text(
                " ".join(p.prelast_names + p.last_names)
                + ", "
                + " ".join(f"{n[0]}." for n in p.first_names + p.middle_names if n)
            ).rstrip(", ")
            for p in people
        ]
        authors = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        f = {k.lower(): _latex_text(v) for k, v in entry.fields.items()}
        year = f.get("year", "n.d.")
        parts = [f"{authors} ({year}).", f"{f.get('title', key)}."]
        venue = f.get("journal") or f.get("booktitle") or f.get("publisher") or ""
        if venue:
            volume = f.get("volume", "")
            if volume and f.get("number"):
                volume += f"({f['number']})"
            pages = f.get("pages", "").replace("--", "–")
            parts.append(", ".join(x for x in [f"*{venue}*", volume, pages] if x) + ".")
        if f.get("note") and not f.get("journal"):
            parts.append(f"{f['note']}.")
        if f.get("doi"):
            parts.append(f"https://doi.org/{f['doi']}")
        elif f.get("url"):
            parts.append(f["url"])
        out[key] = Reference(short, year, " ".join(parts))
    return out


def _cells(path: Path) -> list[tuple[str, str]]:
    """``(cell type, source)`` of a page: the cells of a notebook, one markdown cell of a file."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return [(c["cell_type"], "".join(c["source"])) for c in cells]
    return [("markdown", path.read_text())]


def page_title(path: Path) -> str:
    """The first heading of a page (``.md`` or ``.ipynb``), else its file name."""
    for kind, text in _cells(path):
        if kind == "markdown":
            for line in text.splitlines():
                m = HEADING.match(line)
                if m:
                    return _plain_title(m["title"])
    return path.stem


def _plain_title(title: str) -> str:
    """A heading without inline markup the book would render (roles become their text)."""
    return INLINE.sub(lambda m: m["content"] if m["role"] else m["code"], title).strip()


def _page_path(root: Path, docname: str) -> Path | None:
    for suffix in (".ipynb", ".md"):
        path = root / f"{docname}{suffix}"
        if path.exists():
            return path
    return None


def _directives(text: str, root: Path, here: PurePosixPath):
    """Yield ``(name, argument, options, body)`` of every directive in ``text``, in order,
    nested ones and those of included files too (code blocks are skipped)."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        d = DIRECTIVE.match(lines[i])
        c = None if d else CODE_FENCE.match(lines[i])
        if d:
            end = _closing(lines, i + 1, d["fence"])
            options, body = _options(lines[i + 1 : end])
            yield d["name"], d["arg"], options, body
            if d["name"] == "include":
                path = root / _resolve(here, d["arg"])
                if path.exists():
                    yield from _directives(path.read_text(), root, here)
            elif d["name"] not in ("code", "code-block", "math", "literalinclude"):
                yield from _directives(body, root, here)
            i = end + 1
        elif c:
            i = _closing(lines, i + 1, c["fence"]) + 1
        else:
            i += 1


def index_book(root: Path, docnames: list[str], bib: Path | None = None) -> Book:
    """Name every label of the book the way the built book does.

    ``docnames`` are the toc's pages in order (``tools/book.py toc_files``). Sphinx numbers
    exercises and each kind of ``prf`` directive with one counter for the whole book when
    the toc has no section numbers (as here): chapter 2's first exercise is "Exercise 9".
    A ``(label)=`` target names the heading that follows it.
    """
    book = Book(root=root)
    if bib is not None and bib.exists():
        book.references = read_references(bib)
    counters: dict[str, int] = {}
    for doc in docnames:
        path = _page_path(root, doc)
        if path is None:
            continue
        book.titles[doc] = page_title(path)
        here = PurePosixPath(doc).parent
        for kind, text in _cells(path):
            if kind != "markdown":
                continue
            for name, _arg, options, _body in _directives(text, root, here):
                kind_name = _numbered_kind(name)
                if kind_name is None:
                    continue
                label = options.get("label")
                if "nonumber" in options:
                    title = kind_name
                else:
                    counters[kind_name] = counters.get(kind_name, 0) + 1
                    title = f"{kind_name} {counters[kind_name]}"
                if label:
                    book.labels[label] = title
                    book.label_docs[label] = doc
            lines = text.split("\n")
            for j, line in enumerate(lines):
                m = TARGET.match(line)
                if m:
                    for nxt in lines[j + 1 :]:
                        h = HEADING.match(nxt)
                        if h:
                            book.labels[m["label"]] = _plain_title(h["title"])
                            book.label_docs[m["label"]] = doc
                            break
                        if nxt.strip():
                            break
    return book


def _numbered_kind(name: str) -> str | None:
    """The kind of a numbered directive ("Exercise", "Theorem", ...), else None."""
    if name in ("exercise", "exercise-start"):
        return "Exercise"
    if name.startswith("prf:") and name[4:] in PROOF_TYPES:
        return name[4:].title()
    return None


def read_glue(nb: dict | nbformat.NotebookNode) -> Glue:
    """The glued values of an executed notebook and the parameters papermill ran it with.

    myst-nb's ``glue`` leaves a ``display_data`` output whose metadata ``scrapbook.name``
    is the key and whose ``application/papermill.record/text/plain`` is the value's repr.
    """
    values: dict[str, str] = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if not meta or "name" not in meta:
                continue
            prefix = meta.get("mime_prefix", "application/papermill.record/")
            data = out.get("data", {})
            text = data.get(prefix + "text/plain", data.get("text/plain"))
            if text is not None:
                values[meta["name"]] = "".join(text) if isinstance(text, list) else text
    params = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
    return Glue(values, params.get("mode"), params.get("seed"))


def format_glue(text: str, fmt: str) -> str:
    """A glued ``text/plain`` value formatted as myst-nb's ``{glue:text}`` formats it."""
    try:
        value: Any = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if fmt == "":
        return str(value)
    kind = fmt[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, fmt)


# ---------------------------------------------------------------------------- blocks


def _closing(lines: list[str], start: int, fence: str) -> int:
    """Index of the line closing ``fence`` (same character, at least as long), or the end."""
    char, n = fence[0], len(fence)
    for j in range(start, len(lines)):
        s = lines[j].strip()
        if len(s) >= n and set(s) == {char}:
            return j
    return len(lines)


def _options(body: list[str]) -> tuple[dict[str, str], str]:
    """Split a directive's ``:key: value`` (or ``---`` YAML) options from its content."""
    options: dict[str, str] = {}
    i = 0
    if body and body[0].strip() == "---":
        end = next((j for j in range(1, len(body)) if body[j].strip() == "---"), len(body))
        loaded = yaml.safe_load("\n".join(body[1:end])) or {}
        options = {str(k): "" if v is None else str(v) for k, v in loaded.items()}
        i = end + 1
    else:
        while i < len(body):
            m = OPTION.match(body[i].strip())
            if not m:
                break
            options[m["key"]] = m["value"] or ""
            i += 1
    while i < len(body) and not body[i].strip():
        i += 1
    return options, "\n".join(body[i:]).rstrip()


def _resolve(here: PurePosixPath, target: str) -> str:
    """A docname or file path as the book resolves it: ``/x`` from the root, else relative."""
    target = target.strip()
    if target.startswith("/"):
        path = PurePosixPath(target.lstrip("/"))
    else:
        path = here / target
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _math_crosses_lines(text: str) -> bool:
    """Whether some math spans lines (a block quote's ``>`` would land inside it)."""
    if "$$" in text or "\\begin{" in text:
        return True
    return any(line.count("$") % 2 for line in text.split("\n"))


def _quote(title: str, body: str) -> str:
    """A block quote with a bold title; a bold title and plain text where math spans lines."""
    if _math_crosses_lines(body):
        return f"**{title}**\n\n{body}".rstrip()
    lines = [f"> **{title}**", ">", *(f"> {line}" if line else ">" for line in body.split("\n"))]
    while lines[-1] == ">":
        lines.pop()
    return "\n".join(lines)


def _blocks(text: str, ctx: _Context) -> str:
    """Convert one markdown text: directives, targets, comments, then inline roles."""
    lines = text.split("\n")
    out: list[str] = []
    pending: list[str] = []
    in_math = False

    def flush() -> None:
        if pending:
            out.append(_inline("\n".join(pending), ctx))
            pending.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        d = None if in_math else DIRECTIVE.match(line)
        c = None if in_math or d else CODE_FENCE.match(line)
        if d:
            flush()
            end = _closing(lines, i + 1, d["fence"])
            options, body = _options(lines[i + 1 : end])
            out.append(_directive(d["name"], d["arg"], options, body, ctx))
            i = end + 1
            continue
        if c:
            flush()
            end = _closing(lines, i + 1, c["fence"])
            out.append("\n".join(lines[i : end + 1]))
            i = end + 1
            continue
        if not in_math and (TARGET.match(line) or COMMENT.match(line) or BLOCK_BREAK.match(line)):
            i += 1
            continue
        stripped = line.strip()
        if stripped.startswith("$$") and not (len(stripped) > 4 and stripped.endswith("$$")):
            in_math = not in_math
        elif stripped.endswith("$$") and in_math:
            in_math = False
        pending.append(line)
        i += 1
    flush()
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _exercise_name(options: dict[str, str], ctx: _Context) -> str:
    label = options.get("label", "")
    if label in ctx.book.labels:
        return ctx.book.labels[label]
    n = ctx.counters["Exercise"] = ctx.counters.get("Exercise", 0) + 1
    return "Exercise" if "nonumber" in options else f"Exercise {n}"


def _directive(name: str, arg: str, options: dict[str, str], body: str, ctx: _Context) -> str:
    """The plain Markdown for one directive."""
    if name in ("exercise-end", "solution-end", "bibliography", "tableofcontents", "toctree"):
        return ""
    if name in ("code", "code-block", "code-cell", "sourcecode"):  # content taken literally
        return f"```{arg}\n{body}\n```"
    if name == "math":
        return f"$$\n{body}\n$$"
    if name == "include":
        path = ctx.book.root / _resolve(PurePosixPath(ctx.docname).parent, arg)
        return _blocks(path.read_text(), ctx)
    if name == "literalinclude":
        return _literalinclude(arg, options, ctx)
    title = _inline(arg, ctx) if arg and not name.startswith("solution") else ""
    inner = _blocks(body, ctx) if body else ""
    if name in ("exercise-start", "exercise"):
        head = _exercise_name(options, ctx) + (f" ({title})" if title else "")
        return f"### {head}\n\n{inner}".strip()
    if name in ("solution-start", "solution"):
        target = ctx.book.labels.get(arg.strip(), "the exercise")
        head = f"Solution to {target}" + (
            f" ({_inline(options['title'], ctx)})" if options.get("title") else ""
        )
        return f"### {head}\n\n{inner}".strip()
    if name == "prf:proof":
        square = "" if not inner else ("\n\n∎" if _ends_in_block(inner) else " ∎")
        head = f"*Proof.*{' ' + title if title else ''}"
        # "Proof." opens the first paragraph, unless that is math, a list, a table or code
        glue_on = inner and not _starts_block(inner)
        return f"{head}{' ' if glue_on else chr(10) * 2}{inner}{square}".strip()
    if name.startswith("prf:"):
        kind = name[4:].title()
        label = options.get("label", "")
        if label in ctx.book.labels:
            head = ctx.book.labels[label]
        else:
            n = ctx.counters[kind] = ctx.counters.get(kind, 0) + 1
            head = kind if "nonumber" in options else f"{kind} {n}"
        return f"**{head}**" + (f" ({title})" if title else "") + f"\n\n{inner}".rstrip()
    if name in ADMONITIONS:
        head = title or ADMONITION_TITLES.get(name, name.title())
        if name == "admonition" and not title:
            head = "Note"
        return _quote(head, inner)
    if name in ("glue", "glue:", "glue:any", "glue:figure", "glue:math", "glue:md"):
        caption = f" {inner}" if inner else ""
        return f"*(Figure `{arg}`: drawn by this chapter's code when you run it.){caption}*"
    if name in ("figure", "image"):
        alt = options.get("alt", inner or arg)
        image = f"![{alt}]({arg})"
        return f"{image}\n\n*{inner}*" if inner and name == "figure" else image
    # Anything else (a table, a tab, a card): its title in bold and its content.
    return (f"**{title}**\n\n{inner}" if title else inner).strip()


def _starts_block(text: str) -> bool:
    """Whether a text opens with display math, a list, a table, a quote, a heading or code."""
    first = text.lstrip().split("\n")[0].strip()
    return first.startswith(("$$", "|", "* ", "- ", "+ ", ">", "#", "```", "~~~", "\\begin")) or (
        bool(re.match(r"^\d+[.)]\s", first))
    )


def _ends_in_block(text: str) -> bool:
    """Whether a text ends in display math, a table, a list or a code block."""
    last = text.rstrip().split("\n")[-1].strip()
    return (
        last.endswith("$$")
        or last.startswith(("|", "* ", "- ", "+ ", "```", "~~~", "\\end"))
        or (bool(re.match(r"^\d+\.", last)))
    )


def _literalinclude(arg: str, options: dict[str, str], ctx: _Context) -> str:
    """The included code as a fenced block, with a line naming where it comes from."""
    rel = _resolve(PurePosixPath(ctx.docname).parent, arg)
    code = (ctx.book.root / rel).read_text()
    obj = options.get("pyobject")
    if obj:
        code = python_object_source(code, obj)
    lines = code.split("\n")
    if options.get("lines"):
        keep: list[str] = []
        for part in options["lines"].split(","):
            a, dash, b = part.strip().partition("-")
            lo = int(a) if a else 1
            hi = int(b) if b else (len(lines) if dash else lo)
            keep.extend(lines[lo - 1 : hi])
        lines = keep
    if options.get("start-after"):
        idx = next((j for j, s in enumerate(lines) if options["start-after"] in s), -1)
        lines = lines[idx + 1 :]
    if options.get("end-before"):
        idx = next((j for j, s in enumerate(lines) if options["end-before"] in s), len(lines))
        lines = lines[:idx]
    language = options.get("language", "python" if rel.endswith(".py") else "")
    where = f"`{rel}`" + (f", `{obj}`" if obj else "")
    caption = f"*{_inline(options['caption'], ctx)}* " if options.get("caption") else ""
    body = "\n".join(lines).strip("\n")
    return f"{caption}The code: {where}.\n\n```{language}\n{body}\n```"


def python_object_source(code: str, dotted: str) -> str:
    """The source of a class or function (``Name`` or ``Class.method``), decorators included."""
    tree = ast.parse(code)
    nodes: list[ast.AST] = list(tree.body)
    found: ast.AST | None = None
    for part in dotted.split("."):
        found = next(
            (
                n
                for n in nodes
                if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and n.name == part
            ),
            None,
        )
        if found is None:
            raise KeyError(f"{dotted!r} not found")
        nodes = list(getattr(found, "body", []))
    assert isinstance(found, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    start = min([found.lineno, *(d.lineno for d in found.decorator_list)])
    lines = code.split("\n")[start - 1 : found.end_lineno]
    indent = min(len(s) - len(s.lstrip()) for s in lines if s.strip())
    return "\n".join(s[indent:] for s in lines)


# ---------------------------------------------------------------------------- roles


def _split_explicit(content: str) -> tuple[str | None, str]:
    """``text <target>`` as ``(text, target)``; a bare target as ``(None, target)``."""
    m = EXPLICIT.match(content.strip())
    if m and m["text"]:
        return m["text"], m["target"].strip()
    return None, content.strip()


def _cite(name: str, content: str, ctx: _Context) -> str:
    keys = [k.strip() for k in content.split(",") if k.strip()]
    refs = []
    for key in keys:
        if key not in ctx.cited:
            ctx.cited.append(key)
        ref = ctx.book.references.get(key)
        if ref is None:
            ctx.unresolved.append(f"citation {key}")
        refs.append(ref or Reference(key, "", key))
    style = name.split(":", 1)[1] if ":" in name else "p"
    if style in ("t", "ts"):
        return ", ".join(f"{r.authors} ({r.year})" if r.year else r.authors for r in refs)
    if style in ("author", "authors", "authorpar"):
        return ", ".join(r.authors for r in refs)
    if style in ("year", "yearpar"):
        years = ", ".join(r.year for r in refs)
        return f"({years})" if style == "yearpar" else years
    inner = "; ".join(f"{r.authors}, {r.year}" if r.year else r.authors for r in refs)
    return inner if style in ("alp", "alps") else f"({inner})"


def _reference(name: str, content: str, ctx: _Context) -> str:
    """The name the book shows for a ``{ref}``, ``{prf:ref}``, ``{numref}`` or ``{doc}``."""
    text, target = _split_explicit(content)
    if name == "doc":
        doc = _resolve(PurePosixPath(ctx.docname).parent, target)
        doc = doc.removesuffix(".md").removesuffix(".ipynb")
        return text or f"*{ctx.book.titles.get(doc, PurePosixPath(doc).name.replace('_', ' '))}*"
    label = target.lstrip("#")
    known = ctx.book.labels.get(label)
    if name == "numref" and text and known:
        number = known.rsplit(" ", 1)[-1]
        return text.replace("%s", number).replace("{number}", number)
    if text:
        return text
    if known is None:
        ctx.unresolved.append(f"label {label}")
        return label.replace("-", " ")
    doc = ctx.book.label_docs.get(label, ctx.docname)
    if doc != ctx.docname and doc in ctx.book.titles:
        return f"{known} ({ctx.book.titles[doc]})"
    return known


def _glue(content: str, ctx: _Context) -> str:
    key, _, fmt = content.rpartition(":")
    if not key:  # no format
        key, fmt = content, ""
    key = key.split("::")[-1].strip()
    if ctx.glue is not None and key in ctx.glue.values:
        ctx.glued += 1
        try:
            value = format_glue(ctx.glue.values[key], fmt)
        except (ValueError, TypeError):
            value = format_glue(ctx.glue.values[key], "")
        return f"{value}{DAGGER}"
    ctx.missing += 1
    where = ctx.glue_cells.get(key)
    if key in SETUP_KEYS:
        phrase = "printed by the setup cell"
    elif where is None:
        phrase = "printed by the code"
    else:
        phrase = f"printed by the code {'above' if where < ctx.cell else 'below'}"
    if phrase in ctx.said:  # once per cell is enough
        return f"`{key}`"
    ctx.said.add(phrase)
    return f"`{key}` ({phrase})"


def _role(name: str, content: str, ctx: _Context) -> str:
    if name == "cite" or name.startswith("cite:"):
        return _cite(name, content, ctx)
    if name in ("ref", "prf:ref", "numref", "doc", "eq", "any", "std:ref"):
        if name == "eq":
            return f"({content.strip()})"
        return _reference(name, content, ctx)
    if name == "glue" or name.startswith("glue:"):
        return _glue(content, ctx)
    if name == "math":
        return f"${content}$"
    if name in ("sub", "subscript"):
        return f"<sub>{content}</sub>"
    if name in ("sup", "superscript"):
        return f"<sup>{content}</sup>"
    if name in ("code", "literal", "kbd", "samp", "file", "command", "program"):
        return f"`{content}`"
    text, _target = _split_explicit(content)
    return text or content  # abbr, term, download, external links and others: the text


def _inline(text: str, ctx: _Context) -> str:
    """Every role in ``text`` replaced by its text; code spans are left as they are."""

    def sub(m: re.Match) -> str:
        if m["code"]:
            return m["code"]
        return _role(m["name"], m["content"], ctx)

    out = INLINE.sub(sub, text)
    # The book prints "exercise Exercise 13" for "exercise {ref}`label`"; say it once.
    return re.sub(r"\b[Ee]xercises? (?=Exercise \d)", "", out)


# ---------------------------------------------------------------------------- notebooks


def convert_markdown(
    text: str, book: Book, docname: str, glue: Glue | None = None, cell: int = 0
) -> str:
    """One markdown text in plain Jupyter Markdown (see the module's docstring)."""
    ctx = _Context(book, docname, glue, {}, cell=cell)
    return _blocks(text, ctx)


def retarget_links(text: str, repository: str, branch: str, folder: str = "") -> str:
    """Point a chapter's launch links (Colab, Binder, download) at ``branch`` (and
    ``folder``, e.g. ``student/``) of ``repository`` instead of the MyST sources."""
    slug = re.escape(repository.removeprefix("https://github.com/").rstrip("/"))
    pattern = re.compile(
        rf"(?P<head>{slug}/(?:blob/|raw/)?)[\w.-]+(?P<sep>/|\?labpath=|\?urlpath=tree/)"
        r"(?P<path>chapters/)"
    )
    return pattern.sub(lambda m: f"{m['head']}{branch}{m['sep']}{folder}{m['path']}", text)


def pin_install(code: str, repository: str, branch: str) -> str:
    """The Colab install cell's ``git+URL`` pinned to ``@branch``, where it is not pinned."""
    url = re.escape(repository.rstrip("/"))
    return re.sub(rf"(git\+{url})(?=[\"'\s#])", rf"\1@{branch}", code)


def edition_note(edition: str, glue: Glue | None, used: bool) -> str:
    """The note under a chapter's title that says what the reader holds."""
    if edition == "student":
        what = (
            "**Student edition.** The exercises are yours: write your answer in the code cell "
            "under each one (it runs as it is; where an answer can be checked, `check(...)` "
            "says whether yours is right). Solutions are not included."
        )
    else:
        what = "**Jupyter edition.** The book's text, with each exercise's solution right after it."
    if not used:
        return f"> {what}"
    if glue is not None and glue.mode:
        run = f"the book's {glue.mode}-mode run" + (
            f" (seed {glue.seed})" if glue.seed is not None else ""
        )
        numbers = (
            f"Numbers marked {DAGGER} in the text are from {run}; "
            "running this notebook computes its own."
        )
    else:
        numbers = (
            "Numbers the book fills in from the code appear here by the name the code "
            "prints them under (`glue(name, value)`)."
        )
    return f"> {what}\n>\n> {numbers}"


def convert_notebook(
    nb: nbformat.NotebookNode,
    book: Book,
    docname: str,
    *,
    glue: Glue | None = None,
    edition: str = "instructor",
    repository: str = "",
    branch: str = "",
) -> nbformat.NotebookNode:
    """A chapter as plain Jupyter Markdown; ``nb`` itself is not changed.

    ``edition`` is "instructor" (solutions kept, after each exercise) or "student" (pass
    a notebook whose solutions :func:`book.student_notebook` removed). With ``repository``
    and ``branch``, the launch links and the Colab install cell point at that branch,
    where the published editions live (``student/chapters/`` for the student edition).
    Markdown cells tagged ``remove-cell`` (hidden in the book) are dropped, as are cells
    left empty (the fences that only closed an exercise); code cells are all kept.
    """
    nb = copy.deepcopy(nb)
    glue_cells: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for m in GLUE_CALL.finditer(cell.source):
                glue_cells.setdefault(m["key"], i)
    ctx = _Context(book, docname, glue, glue_cells)
    folder = "student/" if edition == "student" else ""
    cells = []
    for i, cell in enumerate(nb.cells):
        ctx.cell, ctx.said = i, set()
        if cell.cell_type == "markdown":
            if "remove-cell" in cell.metadata.get("tags", []):
                continue
            text = _blocks(cell.source, ctx)
            if repository and branch:
                text = retarget_links(text, repository, branch, folder)
            if not text.strip():
                continue
            cell.source = text
        elif cell.cell_type == "code" and repository and branch:
            cell.source = pin_install(cell.source, repository, branch)
        cells.append(cell)
    note = nbformat.v4.new_markdown_cell(edition_note(edition, glue, ctx.glued + ctx.missing > 0))
    note.metadata["tags"] = ["edition-note"]
    first = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), -1)
    cells.insert(first + 1, note)
    if ctx.cited:
        refs = [ctx.book.references[k] for k in ctx.cited if k in ctx.book.references]
        listing = "\n".join(f"* {r.entry}" for r in sorted(refs, key=lambda r: r.entry))
        works = nbformat.v4.new_markdown_cell(f"**Works cited in this chapter**\n\n{listing}")
        works.metadata["tags"] = ["works-cited"]
        cells.append(works)
    if ctx.unresolved:
        raise ValueError(f"{docname}: unknown {', '.join(sorted(set(ctx.unresolved)))}")
    nb.cells = cells
    return nb


# The checks on a converted notebook (tests/test_student.py runs them on both editions).
MYST_LEFTOVERS = {
    "role": re.compile(r"\{[A-Za-z][\w:.+-]*\}`"),
    "directive fence": re.compile(r"(?m)^\s*(`{3,}|:{3,})\{"),
    "directive option": re.compile(r"(?m)^\s*:(label|class|name|nonumber|title):"),
    "target": re.compile(r"(?m)^\s*\([^()\s]+\)=\s*$"),
}


FENCED_CODE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?!\{)[^\n]*\n.*?^(?P=fence)[ \t]*$", re.M | re.S)


def myst_leftovers(text: str) -> list[str]:
    """The kinds of MyST syntax still in a markdown text (empty when it reads cleanly).

    Fenced code blocks (not directives) are code, not MyST: a docstring's ``:func:`` inside an
    included library object is left as it is.
    """
    prose = FENCED_CODE.sub("", text)
    return [kind for kind, pattern in MYST_LEFTOVERS.items() if pattern.search(prose)]
