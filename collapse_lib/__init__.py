"""collapse_lib: the shared library of *Model Collapse: Executable Tutorials*.

One generation loop (:mod:`collapse_lib.loop`) parameterised by a learner, a regime
(:mod:`collapse_lib.regimes`) and an optional filter; metrics, plotting, runtime
presets; and, per chapter, a learner with its closed-form theory.
"""

from collapse_lib.loop import Learner, PerSeed, compare, run
from collapse_lib.regimes import regime
from collapse_lib.results import Results
from collapse_lib.runtime import Presets, resolve_device, set_threads

__version__ = "0.2.0"

__all__ = [
    "Learner",
    "PerSeed",
    "Presets",
    "Results",
    "__version__",
    "compare",
    "regime",
    "resolve_device",
    "run",
    "set_threads",
]
