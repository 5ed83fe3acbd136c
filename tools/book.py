"""Execute the chapters with papermill and build the book with Jupyter Book 1.

    python tools/book.py build [--mode full|quick] [--device auto|cpu|cuda] [--seed 0] [--jobs 2]
    python tools/book.py run NAME [--mode quick] ...   # one chapter, into _build/run/NAME.ipynb
    python tools/book.py timings                       # the last build's times against budgets
    python tools/book.py student [--execute]           # the student edition, in _build/student
    python tools/book.py notebooks [--execute]         # the Jupyter edition, in _build/notebooks

The source notebooks in ``chapters/`` are never written. ``build`` checks its arguments
first (``--jobs``, ``--seed``, ``--device``: a bad one stops it before anything is deleted),
copies the book's sources into a fresh staging folder (``_build/book.next``), executes every
chapter listed in ``_toc.yml`` into it, fills ``book/reproducibility.md`` with the measured
times, the device each chapter ran on and the environment's versions (and
``book/troubleshooting.md`` with the latest full-mode times), and runs
``jupyter-book build -W -n --keep-going`` on it (execution is off in ``_config.yml``: each
notebook runs exactly once). Only a build that succeeds replaces the previous book in
``_build/book``; a failed or interrupted one stays in ``_build/book.next`` for inspection.
Ctrl-C marks an executed copy as interrupted and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import metadata
from pathlib import Path

import editions
import nbformat
import papermill as pm
import yaml
import zmq
from jupyter_client.manager import AsyncKernelManager

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
STAGING = BUILD / "book"  # the last good build
NEXT = BUILD / "book.next"  # a build in progress, swapped into STAGING once it succeeds
HTML = STAGING / "_build" / "html"
TIMINGS = BUILD / "timings.json"
STUDENT = BUILD / "student"
NOTEBOOKS = BUILD / "notebooks"  # the instructor's Jupyter edition (solutions kept)
BUDGETS = {"quick": 60.0, "full": 300.0}  # seconds on a 2-core CPU, unless a chapter says more
MARKER = "<!-- execution-times -->"
FULL_TIMES = "<!-- full-mode-times -->"  # in book/troubleshooting.md
VERSIONS = [
    "collapse_lib",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "seaborn",
    "scikit-learn",
    "torch",
    "papermill",
    "jupyter-book",
    "myst-nb",
    "sphinx",
]


def toc_files() -> list[str]:
    """Every page of the book in ``_toc.yml`` order (root, chapters and their sections)."""
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            page = node.get("file") or node.get("root")
            if isinstance(page, str):
                files.append(page)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    return files


def chapters() -> list[str]:
    """Chapter notebooks in ``_toc.yml`` order, as names (``00_collapse_in_one_picture``)."""
    return [Path(f).stem for f in toc_files() if f.startswith("chapters/")]


def budget(nb_path: Path, mode: str) -> float:
    """The budget: notebook metadata ``collapse_lib.budget_<mode>_s``, else the default."""
    meta = json.loads(nb_path.read_text()).get("metadata", {}).get("collapse_lib", {})
    return float(meta.get(f"budget_{mode}_s", BUDGETS[mode]))


def source(name: str) -> Path:
    """The source notebook of chapter ``name``; a clear error for an unknown name."""
    src = ROOT / "chapters" / f"{name}.ipynb"
    if not src.exists():
        raise SystemExit(f"unknown chapter {name!r}; chapters: {', '.join(chapters())}")
    return src


def failure(exc: pm.PapermillExecutionError, src: Path, lines: int = 3) -> str:
    """Where a notebook failed: its position among the source notebook's cells, the execution
    count (the ``In [n]`` a reader sees in the executed copy) and the first lines of its source.

    papermill's ``cell_index`` counts the parameters cell it injects right after the cell
    tagged ``parameters`` (or first, if none is tagged); the source notebook lacks it.
    """
    cells = nbformat.read(src, as_version=4).cells
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    injected_at = tagged[0] + 1 if tagged else 0
    position = exc.cell_index + (1 if exc.cell_index < injected_at else 0)
    head = exc.source.splitlines()
    snippet = "\n".join(f"    {line}" for line in head[:lines])
    more = "\n    ..." if len(head) > lines else ""
    return (
        f"{exc.ename}: {exc.evalue}\n  in cell {position} of {len(cells)}"
        f" (execution count {exc.exec_count}):\n{snippet}{more}"
    )


def mark_interrupted(out: Path) -> int:
    """Mark an executed copy that was stopped by Ctrl-C, so it never reads as complete.

    papermill's clean-up marks every pending cell "completed"; here the cells that never ran
    (no execution count) are set back to "pending", the notebook's metadata says
    ``interrupted``, and a first markdown cell tells the reader. Returns how many code cells ran.
    """
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    ran = sum(c.execution_count is not None for c in code)
    for cell in code:
        if cell.execution_count is None:
            cell.metadata.setdefault("papermill", {})["status"] = "pending"
    nb.metadata.setdefault("papermill", {})["exception"] = True
    nb.metadata.setdefault("collapse_lib", {})["interrupted"] = True
    note = nbformat.v4.new_markdown_cell(
        f"**Interrupted.** This copy was stopped by the user (Ctrl-C) after {ran} of"
        f" {len(code)} code cells had run; the cells after that never ran."
    )
    note.metadata["tags"] = ["interrupted"]
    nb.cells.insert(0, note)
    nbformat.write(nb, out)
    return ran


class ChapterKernel(AsyncKernelManager):
    """The kernel papermill starts for a chapter, without ipykernel's two harmless messages, so
    that a real warning stands out in the build's output.

    * "Kernel is running over TCP without encryption": the manager provisions CurveZMQ keys,
      which ipykernel's kernelspec declares it supports (jupyter_client's
      ``transport_encryption="auto"``).
    * "KeyboardInterrupt caught in kernel": jupyter_client interrupts a kernel before every
      shutdown, even the idle kernel of a finished notebook, where the SIGINT can land in a
      message handler. Here a shutdown is the shutdown request alone; a kernel still busy (the
      build stopped by Ctrl-C) is terminated after ``shutdown_wait_time / 2`` instead.
    """

    def __init__(self, **kwargs):
        if zmq.has("curve"):  # pyzmq's wheels have it; "auto" is refused without it
            kwargs.setdefault("transport_encryption", "auto")
        kwargs.setdefault("shutdown_wait_time", 2.0)
        super().__init__(**kwargs)

    async def _async_interrupt_kernel(self):
        if not self.shutting_down:  # an interrupt asked for still interrupts
            await super()._async_interrupt_kernel()


def show_parameters(nb: nbformat.NotebookNode, params: dict) -> nbformat.NotebookNode:
    """The executed copy shows the parameters it ran with, once.

    papermill runs the cell tagged ``parameters`` as written (``mode = "full"``) and then a cell
    it injects with the values passed (``mode = "quick"``). Here the visible cell's assignments
    are rewritten to the values used (its comments kept), and the injected cell, now a copy of
    it, is hidden (``remove-cell``), so the page never shows a mode, device or seed it did not
    run with.
    """
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
        elif "parameters" in tags:
            for name, value in params.items():
                literal = json.dumps(value)  # "quick", 0: also Python literals
                cell.source = re.sub(
                    rf"^({re.escape(name)}\s*=\s*)[^#\n]*?(\s*(?:#.*)?)$",
                    lambda m, v=literal: f"{m.group(1)}{v}{m.group(2)}",
                    cell.source,
                    flags=re.M,
                )
    return nb


def execute(src: Path, out_dir: Path, mode: str, device: str, seed: int) -> dict:
    """Run one notebook with papermill into ``out_dir``; the source is never written.

    The result records the device the chapter really ran on (glued as ``run_device`` by
    ``collapse_lib.notebook.setup``), not the one requested, and the executed copy's parameters
    cell shows the values it ran with (:func:`show_parameters`). Ctrl-C marks the executed copy
    as interrupted (:func:`mark_interrupted`), says where it is and exits with status 130.
    """
    name = src.stem
    out = out_dir / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(
            str(src),
            str(out),
            parameters={"mode": mode, "device": device, "seed": seed},
            kernel_name="python3",
            kernel_manager_class=ChapterKernel,
            cwd=str(out_dir),
            progress_bar=False,
            log_output=False,
        )
    except KeyboardInterrupt:
        if not out.exists():
            print(f"\ninterrupted: {name} stopped before its first cell ran", file=sys.stderr)
            raise SystemExit(130) from None
        ran = mark_interrupted(out)
        print(
            f"\ninterrupted: {name} stopped after {ran} code cells; the partial copy,"
            f" marked as interrupted, is {out}",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    except pm.PapermillExecutionError as exc:
        error = failure(exc, src)
    seconds = time.perf_counter() - start
    nb = show_parameters(
        nbformat.read(out, as_version=4), {"mode": mode, "device": device, "seed": seed}
    )
    nbformat.write(nb, out)
    glued = editions.read_glue(nb).values  # run_device: glued by collapse_lib.notebook.setup
    ran_on = editions.format_glue(glued["run_device"], "") if "run_device" in glued else None
    slow = sorted(
        (
            (c.metadata.get("papermill", {}).get("duration") or 0.0, i)
            for i, c in enumerate(nb.cells)
        ),
        reverse=True,
    )[:3]
    return {
        "name": name,
        "mode": mode,
        "device": ran_on or f"{device} (requested; setup never ran)",
        "seconds": round(seconds, 1),
        "budget": budget(src, mode),
        "error": error,
        "output": str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out),
        "slowest_cells": [[i, round(d, 1)] for d, i in slow],
    }


def versions() -> list[tuple[str, str]]:
    rows = [("python", platform.python_version()), ("platform", platform.platform(terse=True))]
    for pkg in VERSIONS:
        try:
            rows.append((pkg, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            rows.append((pkg, "not installed"))
    return rows


def table(results: list[dict]) -> str:
    lines = [
        "| chapter | mode | device | time (s) | budget (s) | status |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in results:
        status = "failed" if r["error"] else ("over budget" if r["seconds"] > r["budget"] else "ok")
        cells = [
            r["name"],
            r["mode"],
            r["device"],
            f"{r['seconds']:.1f}",
            f"{r['budget']:.0f}",
            status,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_reproducibility(folder: Path, results: list[dict]) -> None:
    page = folder / "book" / "reproducibility.md"
    env = "\n".join(
        ["| package | version |", "|---|---|", *(f"| {k} | {v} |" for k, v in versions())]
    )
    generated = (
        f"Measured by the build of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"on {os.cpu_count()} CPU cores ({platform.machine()}).\n\n"
        f"{table(results)}\n\n### Environment\n\n{env}\n"
    )
    fill_marker(page, MARKER, generated)


def fill_marker(page: Path, marker: str, content: str) -> None:
    """Replace ``marker`` in the staged ``page`` by what the build measured."""
    text = page.read_text()
    if marker not in text:
        raise SystemExit(f"{page} lost its {marker} marker")
    page.write_text(text.replace(marker, content))


def full_mode_results(results: list[dict]) -> tuple[list[dict], str] | None:
    """The latest full-mode times: this build's if it ran in full mode, else the last full
    build's (``_build/timings_full.json``, else ``_build/timings.json`` if it was full), with
    when they were measured; ``None`` if no full build has run here."""
    if results and all(r["mode"] == "full" for r in results):
        return results, "this build"
    for path in (BUILD / "timings_full.json", TIMINGS):
        if path.exists():
            found = json.loads(path.read_text())
            if found and all(r["mode"] == "full" for r in found):
                when = time.strftime("%Y-%m-%d", time.gmtime(path.stat().st_mtime))
                return found, f"the full-mode build of {when}"
    return None


def write_troubleshooting(folder: Path, results: list[dict]) -> None:
    """Fill ``book/troubleshooting.md``'s full-mode line with each chapter's measured time."""
    full = full_mode_results(results)
    if full is None:
        line = "no full-mode build has been timed yet on the machine that built these pages."
    else:
        found, when = full
        times = ", ".join(f"{r['name'].split('_')[0]}: {r['seconds']:.0f} s" for r in found)
        line = (
            f"measured in full mode by {when} on {os.cpu_count()} CPU cores, per chapter: {times}."
        )
    fill_marker(folder / "book" / "troubleshooting.md", FULL_TIMES, line)


def stage(folder: Path) -> None:
    """A fresh copy of the book's sources in ``folder``: config, toc, prose pages, and the
    library's modules, which the chapters show with ``{literalinclude}``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for item in ["_config.yml", "_toc.yml", "book"]:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, folder / item)
    (folder / "collapse_lib").mkdir()
    for module in (ROOT / "collapse_lib").glob("*.py"):
        shutil.copy2(module, folder / "collapse_lib" / module.name)


def publish(folder: Path) -> None:
    """Swap a finished build into ``STAGING``: the previous book goes only once this one exists."""
    previous = BUILD / "book.previous"
    if previous.exists():
        shutil.rmtree(previous)
    if STAGING.exists():
        STAGING.rename(previous)
    folder.rename(STAGING)
    if previous.exists():
        shutil.rmtree(previous)


def exit_unless_device(device: str) -> str:
    """Fail at once, with the library's message, for a device the chapters would reject."""
    from collapse_lib.runtime import resolve_device

    try:
        return resolve_device(device)
    except ValueError as exc:
        raise SystemExit(f"--device: {exc}") from None


def job_count(jobs: int, tasks: int) -> int:
    """Notebooks executed at once: at most one per chapter; more than the cores only slows."""
    if jobs > tasks:
        print(f"--jobs {jobs}: only {tasks} notebook(s) to run, so {tasks} at once", flush=True)
        jobs = tasks
    cores = os.cpu_count() or 1
    if jobs > cores:
        print(f"warning: --jobs {jobs} is more than the {cores} CPU cores here", file=sys.stderr)
    return jobs


def build(args: argparse.Namespace) -> int:
    """Execute every chapter and build the HTML in ``NEXT``; swap it in only on success.

    The previous book in ``_build/book`` stays readable until the new one has built: a failed
    or interrupted build leaves its partial copy in ``_build/book.next`` for inspection.
    """
    names = chapters()
    exit_unless_device(args.device)
    jobs = job_count(args.jobs, len(names))
    stage(NEXT)
    os.environ.setdefault("COLLAPSE_LIB_PROGRESS", "0")
    os.environ.setdefault("COLLAPSE_LIB_THREADS", "1")
    print(f"executing {len(names)} chapter(s) in {args.mode} mode with {jobs} job(s)", flush=True)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        results = list(
            pool.map(
                lambda n: execute(source(n), NEXT / "chapters", args.mode, args.device, args.seed),
                names,
            )
        )
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        print(
            f"\ninterrupted: the previous book in {STAGING.relative_to(ROOT)} is untouched;"
            f" the partial build is in {NEXT.relative_to(ROOT)}",
            file=sys.stderr,
        )
        return 130
    pool.shutdown()
    TIMINGS.write_text(json.dumps(results, indent=1))
    (BUILD / f"timings_{args.mode}.json").write_text(json.dumps(results, indent=1))
    print(table(results), flush=True)
    failed = [r for r in results if r["error"]]
    for r in failed:
        print(
            f"FAILED {r['name']}: {r['error']}\n  partially executed copy: {r['output']}",
            file=sys.stderr,
        )
    if failed:
        print(f"the previous book in {STAGING.relative_to(ROOT)} is untouched", file=sys.stderr)
        return 1
    write_reproducibility(NEXT, results)
    write_troubleshooting(NEXT, results)
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    cmd = [jb, "build", str(NEXT), "--builder", "html", "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode:
        print(
            "the book build failed (warnings count as errors); the previous book in"
            f" {STAGING.relative_to(ROOT)} is untouched, this one is in {NEXT.relative_to(ROOT)}",
            file=sys.stderr,
        )
        return proc.returncode
    publish(NEXT)
    print(f"\nThe book: {HTML / 'index.html'}")
    return 0


def run_one(args: argparse.Namespace) -> int:
    exit_unless_device(args.device)
    os.environ.setdefault("COLLAPSE_LIB_PROGRESS", "0")
    r = execute(source(args.name), BUILD / "run", args.mode, args.device, args.seed)
    print(table([r]))
    print(f"executed copy: {r['output']}")
    if r["error"]:
        print(f"FAILED: {r['error']}", file=sys.stderr)
        return 1
    return 0


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student edition of a chapter: solutions removed, starter cells shown, quick mode.

    Every cell from a ``{solution-start}`` cell to its ``{solution-end}`` cell goes. A code
    cell tagged ``starter`` (hidden from the instructor's book by ``remove-cell``) is where
    the student writes the answer; it must run as it is, so an unanswered exercise never
    stops the notebook.
    """
    cells, inside = [], False
    for cell in nb.cells:
        text = cell.source
        if "{solution-start}" in text:
            inside = True
        if not inside:
            tags = cell.metadata.get("tags", [])
            if "starter" in tags:
                cell.metadata["tags"] = [t for t in tags if t != "remove-cell"]
            if "parameters" in tags:
                cell.source = re.sub(r'^mode = "full"', 'mode = "quick"', text, flags=re.M)
            cells.append(cell)
        if "{solution-end}" in text:
            if not inside:
                raise SystemExit("a {solution-end} without its {solution-start}")
            inside = False
    if inside:
        raise SystemExit("a {solution-start} without its {solution-end}")
    nb.cells = cells
    return nb


@cache
def book_index() -> editions.Book:
    """Every label, page title and reference of the book, named as the built book names them."""
    return editions.index_book(ROOT, toc_files(), ROOT / "book" / "references.bib")


def jupyter_edition(nb: nbformat.NotebookNode, name: str, edition: str) -> nbformat.NotebookNode:
    """Chapter ``name`` in plain Jupyter Markdown (``tools/editions.py``): no MyST syntax left.

    Glued numbers come from the last book build (``_build/book/chapters``), marked with its
    mode; launch links and the Colab install cell follow ``_config.yml``'s ``repository``.
    """
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    executed = STAGING / "chapters" / f"{name}.ipynb"
    glue = editions.read_glue(json.loads(executed.read_text())) if executed.exists() else None
    return editions.convert_notebook(
        nb,
        book_index(),
        f"chapters/{name}",
        glue=glue,
        edition=edition,
        repository=repository["url"],
        branch=repository.get("branch", ""),
    )


def write_edition(folder: Path, edition: str, args: argparse.Namespace) -> int:
    """Write one edition's notebooks to ``folder/chapters``; with ``--execute`` run each in
    quick mode into ``folder/executed`` (``args.jobs`` at once)."""
    out = folder / "chapters"
    if folder.exists():
        shutil.rmtree(folder)
    out.mkdir(parents=True)
    for name in chapters():
        nb = nbformat.read(source(name), as_version=4)
        if edition == "student":
            nb = student_notebook(nb)
        nbformat.write(jupyter_edition(nb, name, edition), out / f"{name}.ipynb")
    if not args.execute:
        return 0
    os.environ.setdefault("COLLAPSE_LIB_PROGRESS", "0")
    os.environ.setdefault("COLLAPSE_LIB_THREADS", "1")
    with ThreadPoolExecutor(max_workers=job_count(args.jobs, len(chapters()))) as pool:
        results = list(
            pool.map(
                lambda n: execute(out / f"{n}.ipynb", folder / "executed", "quick", "cpu", 0),
                chapters(),
            )
        )
    print(table(results))
    failed = [r for r in results if r["error"]]
    for r in failed:
        print(f"FAILED {edition} {r['name']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def student(args: argparse.Namespace) -> int:
    status = write_edition(STUDENT, "student", args)
    print(f"student notebooks (no solutions, quick mode by default): {STUDENT / 'chapters'}")
    return status


def notebooks(args: argparse.Namespace) -> int:
    status = write_edition(NOTEBOOKS, "instructor", args)
    print(f"the Jupyter edition (solutions after each exercise): {NOTEBOOKS / 'chapters'}")
    return status


def timings(_: argparse.Namespace) -> int:
    if not TIMINGS.exists():
        print("no timings yet: run a build first", file=sys.stderr)
        return 1
    results = json.loads(TIMINGS.read_text())
    print("Execution time per chapter (a benchmark, not a pass/fail test):")
    print(table(results))
    for r in results:
        cells = ", ".join(f"cell {i}: {d} s" for i, d in r["slowest_cells"])
        print(f"  {r['name']}: slowest cells {cells}")
    return 0


def integer_at_least(low: int, flag: str):
    """An argparse type: an integer ``>= low``, with a message that names ``flag``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be at least {low}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    jobs_type = integer_at_least(1, "--jobs")
    commands = [("build", build), ("run", run_one), ("timings", timings), ("student", student)]
    commands.append(("notebooks", notebooks))
    for name, func in commands:
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        if name in ("student", "notebooks"):
            p.add_argument("--execute", action="store_true", help="run each in quick mode")
            p.add_argument("--jobs", type=jobs_type, default=2, help="notebooks executed at once")
        if name in ("timings", "student", "notebooks"):
            continue
        if name == "run":
            p.add_argument("name", help="chapter notebook name, e.g. 00_collapse_in_one_picture")
        p.add_argument("--mode", choices=sorted(BUDGETS), default="full")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
        p.add_argument("--seed", type=integer_at_least(0, "--seed"), default=0)
        if name == "build":
            p.add_argument("--jobs", type=jobs_type, default=2, help="notebooks executed at once")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
