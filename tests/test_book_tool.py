"""The build tool refuses bad arguments before it touches anything, and never loses a book.

Each test drives ``tools/book.py`` (imported as ``book``) on tiny notebooks written here, with
its folders pointed at ``tmp_path``: the real ``_build/`` is never touched.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import book

ROOT = Path(__file__).resolve().parents[1]


def notebook(path: Path, *sources: str) -> Path:
    """A notebook whose first cell is the tagged parameters cell, then one code cell per source."""
    params = nbformat.v4.new_code_cell('mode = "full"\ndevice = "auto"\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(
        cells=[params, *(nbformat.v4.new_code_cell(s) for s in sources)],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def build_dir(tmp_path, monkeypatch):
    """``book``'s build folders moved under ``tmp_path``, with a previous good book in place."""
    build = tmp_path / "_build"
    monkeypatch.setattr(book, "BUILD", build)
    monkeypatch.setattr(book, "STAGING", build / "book")
    monkeypatch.setattr(book, "NEXT", build / "book.next")
    monkeypatch.setattr(book, "HTML", build / "book" / "_build" / "html")
    monkeypatch.setattr(book, "TIMINGS", build / "timings.json")
    monkeypatch.setattr(book, "ROOT", tmp_path)
    (build / "book").mkdir(parents=True)
    (build / "book" / "previous.txt").write_text("the last good book")
    return build


def forbid_staging(monkeypatch):
    def stage(folder):
        raise AssertionError(f"{folder} was staged before the arguments were checked")

    monkeypatch.setattr(book, "stage", stage)


# -- 7 and 8: arguments are checked before anything is deleted or any kernel starts ----------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "--jobs", "0"], "--jobs must be at least 1, got 0"),
        (["build", "--jobs", "two"], "--jobs must be an integer, got 'two'"),
        (["student", "--jobs", "-1"], "--jobs must be at least 1, got -1"),
        (["build", "--seed", "-3"], "--seed must be at least 0, got -3"),
        (["run", "00_collapse_in_one_picture", "--seed", "1.5"], "--seed must be an integer"),
    ],
)
def test_bad_numbers_stop_before_the_build_starts(argv, message, monkeypatch, capsys):
    forbid_staging(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        book.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("device", ["gpu", "cpu:abc"])
def test_an_unknown_device_stops_before_the_build_starts(device, monkeypatch):
    forbid_staging(monkeypatch)
    with pytest.raises(SystemExit, match=r"^--device: .*device"):
        book.main(["build", "--device", device])


def test_cuda_without_a_gpu_stops_at_once_with_the_librarys_message(monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from collapse_lib.runtime import resolve_device

    with pytest.raises(ValueError) as library:
        resolve_device("cuda")
    forbid_staging(monkeypatch)
    for command in (["build"], ["run", "00_collapse_in_one_picture"]):
        with pytest.raises(SystemExit) as exit_:
            book.main([*command, "--device", "cuda"])
        assert str(exit_.value) == f"--device: {library.value}"


def test_jobs_are_capped_at_the_chapters_and_warned_above_the_cores(monkeypatch, capsys):
    monkeypatch.setattr(book.os, "cpu_count", lambda: 2)
    assert book.job_count(99, 9) == 9
    out = capsys.readouterr()
    assert "--jobs 99: only 9 notebook(s) to run, so 9 at once" in out.out
    assert "warning: --jobs 9 is more than the 2 CPU cores here" in out.err
    assert book.job_count(2, 9) == 2
    assert capsys.readouterr().err == ""


# -- 9: a failed build keeps the previous book ---------------------------------------------


def build_with(monkeypatch, src, jupyter_book_status):
    """Run ``book.build`` on one tiny chapter, with Jupyter Book replaced by a stub."""
    monkeypatch.setattr(book, "chapters", lambda: [src.stem])
    monkeypatch.setattr(book, "source", lambda name: src)
    monkeypatch.setattr(book, "stage", lambda folder: (folder / "chapters").mkdir(parents=True))
    monkeypatch.setattr(book, "write_reproducibility", lambda folder, results: None)
    monkeypatch.setattr(book, "write_troubleshooting", lambda folder, results: None)
    calls = []

    def jupyter_book(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, jupyter_book_status)

    monkeypatch.setattr(book.subprocess, "run", jupyter_book)
    args = book.argparse.Namespace(mode="quick", device="cpu", seed=0, jobs=1)
    return book.build(args), calls


def test_a_failing_chapter_leaves_the_previous_book_readable(build_dir, tmp_path, monkeypatch):
    src = notebook(tmp_path / "src" / "tiny.ipynb", "raise RuntimeError('boom')")
    status, calls = build_with(monkeypatch, src, jupyter_book_status=0)
    assert status == 1 and not calls, "a failed chapter must stop before the HTML build"
    assert (build_dir / "book" / "previous.txt").read_text() == "the last good book"
    assert (build_dir / "book.next" / "chapters" / "tiny.ipynb").exists(), "kept for inspection"


def test_a_failing_html_build_leaves_the_previous_book(build_dir, tmp_path, monkeypatch):
    src = notebook(tmp_path / "src" / "tiny.ipynb", "x = 1")
    status, calls = build_with(monkeypatch, src, jupyter_book_status=2)
    assert status == 2 and len(calls) == 1
    assert (build_dir / "book" / "previous.txt").exists()


def test_a_successful_build_replaces_the_previous_book(build_dir, tmp_path, monkeypatch):
    src = notebook(tmp_path / "src" / "tiny.ipynb", "x = 1")
    status, _ = build_with(monkeypatch, src, jupyter_book_status=0)
    assert status == 0
    assert (build_dir / "book" / "chapters" / "tiny.ipynb").exists()
    assert not (build_dir / "book" / "previous.txt").exists()
    assert not (build_dir / "book.next").exists() and not (build_dir / "book.previous").exists()


# -- 10: Ctrl-C marks the executed copy as interrupted ---------------------------------------


def test_ctrl_c_marks_the_copy_interrupted_and_exits_nonzero(tmp_path):
    src = notebook(
        tmp_path / "tiny.ipynb", "print('first')", "import time\ntime.sleep(120)", "y = 2"
    )
    out = tmp_path / "run" / "tiny.ipynb"
    # Python's Ctrl-C handler, restored: a job started in the background of a non-interactive
    # shell inherits SIGINT ignored, and so would this build (a terminal never ignores it).
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler);"
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import book;"
        "book.execute(Path(sys.argv[2]), Path(sys.argv[3]), 'quick', 'cpu', 0)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(ROOT / "tools"), str(src), str(out.parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # wait until the sleeping cell is running
        if out.exists():
            try:
                cells = nbformat.read(out, as_version=4).cells
            except Exception:  # written while we read
                cells = []
            if any(c.get("execution_count") == 2 for c in cells):
                break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the tiny notebook never reached its second cell")
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"the partial copy, marked as interrupted, is {out}" in err
    nb = nbformat.read(out, as_version=4)
    assert nb.metadata["collapse_lib"]["interrupted"] is True
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("**Interrupted")
    last = nb.cells[-1]
    assert last.execution_count is None and last.metadata["papermill"]["status"] == "pending"


# -- 11 and 12: where a chapter failed, and the device it really ran on ---------------------


def test_a_failure_names_the_cell_position_count_and_source(tmp_path):
    src = notebook(
        tmp_path / "tiny.ipynb",
        "a = 1",
        "b = 2",
        "# the failing cell\nvalue = undefined_name + 1\nmore = 2\nand_more = 3",
    )
    result = book.execute(src, tmp_path / "run", "quick", "cpu", 0)
    error = result["error"]
    assert error.startswith("NameError: name 'undefined_name' is not defined")
    # the fourth of the source's four cells; in the executed copy, after papermill's injected
    # parameters cell, it is In [5]
    assert "in cell 4 of 4 (execution count 5)" in error, error
    assert "    # the failing cell\n    value = undefined_name + 1\n    more = 2\n    ..." in error


@pytest.mark.parametrize(("uses_torch", "requested"), [(False, "cuda"), (True, "auto")])
def test_the_table_records_the_device_the_chapter_ran_on(tmp_path, uses_torch, requested):
    setup = (
        "from collapse_lib.notebook import setup\n"
        f"device = setup(mode, device, seed, uses_torch={uses_torch})"
    )
    src = notebook(tmp_path / "tiny.ipynb", setup)
    result = book.execute(src, tmp_path / "run", "quick", requested, 0)
    assert result["error"] is None
    torch_gpu = uses_torch and __import__("torch").cuda.is_available()
    assert result["device"] == ("cuda" if torch_gpu else "cpu")


def test_the_executed_copy_shows_the_parameters_it_ran_with(tmp_path):
    """The visible parameters cell says what papermill ran (comments kept); papermill's injected
    copy is hidden, so the page never shows mode = "full" above a quick-mode banner."""
    src = notebook(tmp_path / "tiny.ipynb", "print(mode, device, seed)")
    nb = nbformat.read(src, as_version=4)
    nb.cells[0].source = 'mode = "full"  # "quick" or "full"\ndevice = "auto"\nseed = 0  # seeds'
    nbformat.write(nb, src)
    result = book.execute(src, tmp_path / "run", "quick", "cpu", 7)
    assert result["error"] is None
    cells = nbformat.read(tmp_path / "run" / "tiny.ipynb", as_version=4).cells
    shown = [c for c in cells if "remove-cell" not in c.metadata.get("tags", [])]
    assert (
        shown[0].source == 'mode = "quick"  # "quick" or "full"\ndevice = "cpu"\nseed = 7  # seeds'
    )
    hidden = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(hidden) == 1 and "remove-cell" in hidden[0].metadata["tags"]
    assert shown[1].outputs[0]["text"] == "quick cpu 7\n"
    assert nbformat.read(src, as_version=4).cells[0].source.startswith('mode = "full"')


def test_troubleshooting_states_the_measured_full_times(build_dir, monkeypatch):
    page = build_dir / "book.next" / "book" / "troubleshooting.md"
    page.parent.mkdir(parents=True)
    row = {"name": "03_memorization", "mode": "full", "seconds": 412.3}
    for results, expected in [
        ([{**row, "mode": "quick"}], "no full-mode build has been timed"),
        ([row], "measured in full mode by this build on"),
    ]:
        page.write_text(f"Full mode: {book.FULL_TIMES}\n")
        book.write_troubleshooting(build_dir / "book.next", results)
        text = page.read_text()
        assert expected in text and book.FULL_TIMES not in text
    assert "03: 412 s." in text
    # a quick build after a full one still states the full build's times
    (build_dir / "timings_full.json").write_text(book.json.dumps([row]))
    page.write_text(f"Full mode: {book.FULL_TIMES}\n")
    book.write_troubleshooting(build_dir / "book.next", [{**row, "mode": "quick"}])
    assert "by the full-mode build of" in page.read_text()
    page.write_text("no marker")
    with pytest.raises(SystemExit, match="lost its"):
        book.write_troubleshooting(build_dir / "book.next", [row])


def test_a_chapter_that_never_reached_setup_says_so(tmp_path):
    src = notebook(tmp_path / "tiny.ipynb", "raise RuntimeError('before setup')")
    result = book.execute(src, tmp_path / "run", "quick", "auto", 0)
    assert result["device"] == "auto (requested; setup never ran)"


# -- 13: make lab ------------------------------------------------------------------------------


def test_make_lab_is_pinned_and_runs_as_root():
    make = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^lab:.*?(?=^\S)", make, re.M | re.S).group(0)
    assert '-c $(VENV)/constraints.txt -e ".[lab]"' in recipe
    assert "--allow-root" in recipe and "running as root" in recipe
    lock = (ROOT / "requirements/lock.txt").read_text()
    for package in ("jupyterlab==", "jupyterlab_myst=="):
        assert re.search(rf"^{package}", lock, re.M | re.I), f"{package} is not pinned"
    root_flag = re.search(r"\$\$\((\[ .*? \] && echo --allow-root)\)", recipe).group(1)
    shell = root_flag.replace("$$", "$")
    flag = subprocess.run(["bash", "-c", shell], capture_output=True, text=True).stdout.strip()
    assert flag == ("--allow-root" if os.geteuid() == 0 else "")


# -- a quiet build: ipykernel's harmless messages silenced, real warnings kept ----------------


def test_a_notebook_run_prints_no_kernel_warnings_but_keeps_real_ones(tmp_path, capfd):
    """No "running over TCP without encryption" (CurveZMQ keys) and no SIGINT before
    shutdown; a warning raised by the notebook still reaches its output."""
    src = notebook(tmp_path / "probe.ipynb", "import warnings\nwarnings.warn('a real one')")
    for _ in range(3):
        assert book.execute(src, tmp_path / "out", "quick", "cpu", 0)["error"] is None
    err = capfd.readouterr().err
    assert "without encryption" not in err and "KeyboardInterrupt" not in err, err
    out = nbformat.read(tmp_path / "out" / "probe.ipynb", as_version=4)
    (output,) = out.cells[-1].outputs
    assert output.name == "stderr" and "a real one" in output.text


def test_the_staged_book_holds_the_library_the_chapters_include(tmp_path):
    """Chapters show library code with ``{literalinclude} ../collapse_lib/...``: the staged copy
    the book is built from must hold those modules (and every included one must exist)."""
    book.stage(tmp_path / "stage")
    staged = tmp_path / "stage" / "collapse_lib"
    for nb in (ROOT / "chapters").glob("*.ipynb"):
        for target in re.findall(r"\{literalinclude\} \.\./collapse_lib/(\w+\.py)", nb.read_text()):
            assert (staged / target).is_file(), f"{nb.name} includes {target}"
    assert (staged / "loop.py").is_file()
