import os

os.environ.setdefault("COLLAPSE_LIB_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

# One BLAS thread: the library's batched small solves are 5x slower when two threads
# contend for two cores (measured), and the tests must not depend on the machine's count.
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(limits=1)
