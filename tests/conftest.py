import os
import sys
from pathlib import Path

# tools/book.py (the build) is importable as `book`: tests share its reading of _toc.yml
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

os.environ.setdefault("COLLAPSE_LIB_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

# One BLAS thread: the library's batched small solves are 5x slower when two threads
# contend for two cores (measured), and the tests must not depend on the machine's count.
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(limits=1)
