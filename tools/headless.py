"""Headless Chromium as the book's tools and tests launch it (the PDF edition, the browser
checks): Debian's package, never a downloaded browser, with no background network traffic.

``CHROMIUM`` names the executable: the Makefile passes its own (``make test
CHROMIUM=/path/to/chromium``), else the one on ``PATH``, else Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium under Playwright, closed on exit; a clear error if it is missing."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: the Makefile installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()
