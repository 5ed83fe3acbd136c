"""Execute the chapters with papermill and build the book with Jupyter Book 1.

    python tools/book.py build [--mode full|quick] [--device auto|cpu|cuda] [--seed 0] [--jobs 2]
    python tools/book.py run NAME [--mode quick] ...   # one chapter, into _build/run/NAME.ipynb
    python tools/book.py timings                       # the last build's times against budgets
    python tools/book.py student [--execute]           # the student edition, in _build/student

The source notebooks in ``chapters/`` are never written. ``build`` copies the book's
sources into a staging folder (``_build/book``), executes every chapter listed in
``_toc.yml`` into it (a failing notebook is kept there, partially executed, for
inspection), fills ``book/reproducibility.md`` with the measured times and the
environment's versions, and runs ``jupyter-book build -W -n --keep-going`` on it
(execution is off in ``_config.yml``: each notebook runs exactly once).
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
from importlib import metadata
from pathlib import Path

import nbformat
import papermill as pm
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
STAGING = BUILD / "book"
HTML = STAGING / "_build" / "html"
TIMINGS = BUILD / "timings.json"
STUDENT = BUILD / "student"
BUDGETS = {"quick": 60.0, "full": 300.0}  # seconds on a 2-core CPU, unless a chapter says more
MARKER = "<!-- execution-times -->"
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


def execute(src: Path, out_dir: Path, mode: str, device: str, seed: int) -> dict:
    """Run one notebook with papermill into ``out_dir``; the source is never written."""
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
            cwd=str(out_dir),
            progress_bar=False,
            log_output=False,
        )
    except pm.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue} (cell {exc.exec_count})"
    seconds = time.perf_counter() - start
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:  # the banner prints the parameters; hide papermill's copy of them
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [*cell.metadata["tags"], "remove-cell"]
    nbformat.write(nb, out)
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
        "device": device,
        "seconds": round(seconds, 1),
        "budget": budget(src, mode),
        "error": error,
        "output": str(out.relative_to(ROOT)),
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


def write_reproducibility(results: list[dict]) -> None:
    page = STAGING / "book" / "reproducibility.md"
    env = "\n".join(
        ["| package | version |", "|---|---|", *(f"| {k} | {v} |" for k, v in versions())]
    )
    generated = (
        f"Measured by the build of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"on {os.cpu_count()} CPU cores ({platform.machine()}).\n\n"
        f"{table(results)}\n\n### Environment\n\n{env}\n"
    )
    text = page.read_text()
    if MARKER not in text:
        raise SystemExit(f"{page} lost its {MARKER} marker")
    page.write_text(text.replace(MARKER, generated))


def stage() -> None:
    if STAGING.exists():
        shutil.rmtree(STAGING)
    STAGING.mkdir(parents=True)
    for item in ["_config.yml", "_toc.yml", "book"]:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, STAGING / item)


def build(args: argparse.Namespace) -> int:
    names = chapters()
    stage()
    os.environ.setdefault("COLLAPSE_LIB_PROGRESS", "0")
    os.environ.setdefault("COLLAPSE_LIB_THREADS", "1")
    print(
        f"executing {len(names)} chapter(s) in {args.mode} mode with {args.jobs} job(s)", flush=True
    )
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(
            pool.map(
                lambda n: execute(
                    source(n), STAGING / "chapters", args.mode, args.device, args.seed
                ),
                names,
            )
        )
    TIMINGS.write_text(json.dumps(results, indent=1))
    print(table(results), flush=True)
    failed = [r for r in results if r["error"]]
    for r in failed:
        print(
            f"FAILED {r['name']}: {r['error']}\n  partially executed copy: {r['output']}",
            file=sys.stderr,
        )
    if failed:
        return 1
    write_reproducibility(results)
    cmd = ["jupyter-book", "build", str(STAGING), "--builder", "html", "-W", "-n", "--keep-going"]
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    proc = subprocess.run([jb, *cmd[1:]], cwd=ROOT)
    if proc.returncode:
        print("the book build failed (warnings count as errors)", file=sys.stderr)
        return proc.returncode
    print(f"\nThe book: {HTML / 'index.html'}")
    return 0


def run_one(args: argparse.Namespace) -> int:
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


def student(args: argparse.Namespace) -> int:
    out = STUDENT / "chapters"
    if STUDENT.exists():
        shutil.rmtree(STUDENT)
    out.mkdir(parents=True)
    for name in chapters():
        nb = nbformat.read(source(name), as_version=4)
        nbformat.write(student_notebook(nb), out / f"{name}.ipynb")
    print(f"student notebooks (no solutions, quick mode by default): {out}")
    if not args.execute:
        return 0
    os.environ.setdefault("COLLAPSE_LIB_PROGRESS", "0")
    os.environ.setdefault("COLLAPSE_LIB_THREADS", "1")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(
            pool.map(
                lambda n: execute(out / f"{n}.ipynb", STUDENT / "executed", "quick", "cpu", 0),
                chapters(),
            )
        )
    print(table(results))
    failed = [r for r in results if r["error"]]
    for r in failed:
        print(f"FAILED student {r['name']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    commands = [("build", build), ("run", run_one), ("timings", timings), ("student", student)]
    for name, func in commands:
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        if name == "student":
            p.add_argument("--execute", action="store_true", help="run each in quick mode")
            p.add_argument("--jobs", type=int, default=2, help="notebooks executed at once")
        if name in ("timings", "student"):
            continue
        if name == "run":
            p.add_argument("name", help="chapter notebook name, e.g. 00_collapse_in_one_picture")
        p.add_argument("--mode", choices=sorted(BUDGETS), default="full")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
        p.add_argument("--seed", type=int, default=0)
        if name == "build":
            p.add_argument("--jobs", type=int, default=2, help="notebooks executed at once")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
