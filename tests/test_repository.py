"""Repository hygiene: notebooks stored clean, one repository URL, pins that agree."""

import json
import re
import statistics
from pathlib import Path

import pytest
import yaml

import book

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)")


def pins(lines):
    out = {}
    for line in lines:
        m = PIN.match(line.strip().lstrip("- ").strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def repository_url():
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_there_are_chapters_and_all_are_in_the_toc():
    assert NOTEBOOKS, "no chapter notebooks"
    listed = {f for f in book.toc_files() if f.startswith("chapters/")}
    assert listed == {f"chapters/{p.stem}" for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: stored outputs"
            assert cell.get("execution_count") is None, f"{path.name}: stored execution count"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_anatomy(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    first = code[0]
    assert "parameters" in first["metadata"].get("tags", []), "first code cell must be tagged"
    params = "".join(first["source"])
    for name, default in [("mode", '"full"'), ("device", '"auto"'), ("seed", "0")]:
        assert re.search(rf"^{name} = {re.escape(default)}", params, re.M), name
    guard = "".join(code[1]["source"])
    assert '"google.colab" in sys.modules' in guard and "%pip install" in guard
    assert f"git+{repository_url()}" in guard, "Colab install must use _config.yml's repository"
    header = "".join(cells[0]["source"])
    assert header.startswith("# Chapter"), "first cell: the chapter's title"
    assert repository_url().removeprefix("https://github.com/") in header, "badges: same repo"
    text = "".join("".join(c["source"]) for c in cells)
    assert "{bibliography}" not in text, "the book has one references page"
    assert text.count("{exercise-start}") >= 3, "at least three exercises"
    assert text.count("{solution-start}") >= text.count("{exercise-start}")
    assert "{prf:theorem}" in text
    assert "setup(mode, device, seed" in text, "the setup cell validates the parameters"


def test_environment_yml_agrees_with_lock():
    lock = pins((ROOT / "requirements/lock.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lines = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = pins(pip_lines)
    direct = pins((ROOT / "requirements/pins.txt").read_text().splitlines())
    assert env_pins, "environment.yml pins nothing"
    for name, version in env_pins.items():
        assert lock.get(name) == version, (
            f"{name}: environment.yml {version}, lock {lock.get(name)}"
        )
    for name, version in direct.items():
        assert lock.get(name) == version, f"{name}: pins.txt {version}, lock {lock.get(name)}"
    dev_tools = {"pytest", "ruff", "playwright", "check-jsonschema", "nbconvert"}
    book_deps = set(direct) - dev_tools
    assert book_deps <= set(env_pins), f"missing in environment.yml: {book_deps - set(env_pins)}"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip_lines


def test_torch_is_pinned_only_in_the_lock_and_is_the_cpu_build():
    project = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"torch>=\d', project) and "torch==" not in project
    lock = (ROOT / "requirements/lock.txt").read_text().splitlines()
    assert pins(lock)["torch"] == "2.13.0+cpu", "the lock pins the CPU build explicitly"
    gpu_stack = [p for p in pins(lock) if p.startswith(("nvidia-", "triton"))]
    assert not gpu_stack, f"the lock pulls in a CUDA stack: {gpu_stack}"


def test_the_install_asks_the_torch_index_for_torch_alone():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_INDEX \?= https://download\.pytorch\.org/whl/cpu$", make, re.M)
    install = re.search(r"^\$\(STAMP\):.*?(?=^\S)", make, re.M | re.S).group(0)
    torch_step = [line for line in install.splitlines() if "TORCH_INDEX" in line]
    assert len(torch_step) == 1 and "--no-deps" in torch_step[0], torch_step
    assert "grep -v '^torch==' $(LOCK)" in install, "the rest must not re-pin torch"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci/run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make book" in (ROOT / "README.md").read_text()


def _code_cell_lengths(path: Path) -> list[int]:
    nb = json.loads(path.read_text())
    return [len("".join(c["source"]).splitlines()) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_short(path):
    """A chapter reads as prose with short code (QuantEcon's lectures run 2-20 lines a cell):
    the median code cell has at most 15 lines and none has more than 40."""
    lengths = _code_cell_lengths(path)
    long = [(i, n) for i, n in enumerate(lengths) if n > 40]
    assert not long, f"code cells over 40 lines (index, lines): {long}"
    median = statistics.median(lengths)
    assert median <= 15, f"median code cell is {median} lines"


# The import graph: core modules at the bottom, the base learners (Gaussian, categorical) above
# them, then the paper modules; a paper module builds only on modules below it in its own
# chapter. Anything else is a sideways import (shared code belongs further down).
CORE = {"loop", "results", "regimes", "runtime", "data", "metrics", "plotting", "notebook", "sweep"}
BASE = {"gaussian", "categorical"}
BELOW = {
    "categorical": {"gaussian"},
    "smoothed_score": {"diffusion"},  # chapter 3: the closed-form sampler reuses the schedule
    "verification": {"conditional"},  # chapter 4: the verifier filters the conditional learners
    "curation": {"modular"},  # chapter 5: curation filters answers of modular's prompt model
    "bitwise": {"watermark"},  # chapter 8: the bit-plane model scores with the watermark
    # chapter 9, the capstone: every remedy of the book on one protocol
    "remedies": {"conditional", "verification", "selection", "markov", "regression"},
}


def test_paper_modules_import_only_downward():
    lib = ROOT / "collapse_lib"
    for path in sorted(lib.glob("*.py")):
        name = path.stem
        if name in CORE or name in {"__init__", "exercises"}:
            continue
        text = path.read_text()
        imported = set(re.findall(r"from collapse_lib\.(\w+) import", text))
        imported |= set(re.findall(r"from collapse_lib import (\w+)", text))
        allowed = CORE | (BASE - {name}) | BELOW.get(name, set())
        if name == "gaussian":
            allowed = CORE
        sideways = sorted(imported - allowed - {"__version__"})
        assert not sideways, f"{name} imports {sideways}, which are not below it"


NAMED_STREAM = re.compile(
    r"\b(?:rng|digits_order)\((?:self\.)?seed, (?P<purpose>[^,)]+)(?P<index>,[^)]*)?\)"
)


def test_the_library_and_the_chapters_name_every_stream():
    """Every ``rng(seed, ...)`` of the library and the chapters names a ``Stream`` and an index."""
    sources = {p: p.read_text() for p in sorted((ROOT / "collapse_lib").glob("*.py"))}
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        sources[nb] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    bad = []
    for path, text in sources.items():
        if path.name == "runtime.py":
            continue
        for m in NAMED_STREAM.finditer(text):
            forwarded = m["purpose"] == "*key"  # digits_order passes its caller's key on
            if not forwarded and (not m["purpose"].startswith("Stream.") or not m["index"]):
                bad.append(f"{path.name}: {m[0]}")
        if "SeedSequence(" in text:
            bad.append(f"{path.name}: SeedSequence outside runtime")
    assert not bad, bad


INCLUDE = re.compile(
    r"```\{literalinclude\} \.\./collapse_lib/(\w+)\.py\n(?::\w+: .*\n)*?:pyobject: (\S+)"
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_shows_the_code_that_ran(path):
    """Each chapter shows its learner (or filter) with a literalinclude of the library object."""
    cells = json.loads(path.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    shown = INCLUDE.findall(text)
    assert shown, f"{path.name} shows no library code"
    for module, obj in shown:
        code = (ROOT / "collapse_lib" / f"{module}.py").read_text()
        name = re.escape(obj.split(".")[-1])
        assert re.search(rf"^(class|def) {name}\b", code, re.M), (module, obj)
