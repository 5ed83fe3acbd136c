"""Helpers for the chapter notebooks: the setup banner and ``glue`` that works everywhere.

Inside the book build, :func:`glue` is myst-nb's ``glue`` (the value lands in the text
through ``{glue:text}``); on Colab or in a plain Jupyter without myst-nb it simply
shows the value, so a downloaded notebook runs as it is.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from collapse_lib.runtime import check_choice, resolve_device, set_threads


def glue(name: str, value: Any, display: bool = False) -> None:
    """Record ``value`` under ``name`` for ``{glue:text}`` in the prose (myst-nb), else print it."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # Colab, plain Jupyter: no book machinery, just show it
        print(f"{name} = {value}")
        return
    myst_glue(name, value, display=display)


def setup(mode: str, device: str, seed: int, *, uses_torch: bool = False) -> str:
    """Validate the parameters cell, fix the thread count, set the house style, print a banner.

    In the book build it also glues ``collapse_lib_version``, ``run_mode``, ``run_seed`` and
    ``run_device`` (the device the chapter really runs on) for the chapter header and the
    build's timing table.

    Returns the device to use: for a chapter that ``uses_torch``, ``"auto"`` becomes
    ``"cuda"`` when torch sees a GPU and ``"cpu"`` otherwise; a numpy-only chapter
    checks the name and runs on ``"cpu"`` without importing torch.
    """
    from collapse_lib import __version__
    from collapse_lib.plotting import set_style
    from collapse_lib.runtime import MODES, check_device, check_seed

    check_choice(mode, MODES, "mode")
    check_seed(seed)
    if uses_torch:
        resolved = resolve_device(device)
    else:  # a numpy-only chapter: the name is checked, the work runs on the CPU
        check_device(device)
        resolved = "cpu"
    threads = set_threads()
    set_style()
    print(
        f"collapse_lib {__version__} | mode={mode} | device={resolved} | seed={seed}"
        f" | threads={threads} | Python {platform.python_version()}"
    )
    try:  # for the header's "executed with" line in the book; nothing to do elsewhere
        from myst_nb import glue as myst_glue
    except ImportError:
        return resolved
    for name, value in [
        ("collapse_lib_version", __version__),
        ("run_mode", mode),
        ("run_seed", seed),
        ("run_device", resolved),
    ]:
        myst_glue(name, value, display=False)
    return resolved
