"""Answer checks for the exercises: tell a student whether an answer is right, not what it is.

    >>> check("ch0-ex-halflife", 17)
    ✓ ch0-ex-halflife: correct.
    True

Each checker recomputes the expected answer from the library (nothing is stored as a
literal), compares with a tolerance that the exercise's wording justifies, and prints
a verdict without the expected value. An unanswered exercise (``None``) is reported,
not failed, so a student notebook still runs from top to bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from collapse_lib.runtime import check_choice

Checker = Callable[[Any], tuple[bool, str]]
CHECKERS: dict[str, Checker] = {}


def checker(label: str) -> Callable[[Checker], Checker]:
    """Register ``fn(answer) -> (correct, hint)`` as the checker of exercise ``label``."""

    def register(fn: Checker) -> Checker:
        if label in CHECKERS:
            raise ValueError(f"exercise {label!r} already has a checker")
        CHECKERS[label] = fn
        return fn

    return register


def check(exercise: str, answer: Any) -> bool | None:
    """Print whether ``answer`` solves ``exercise``; return True/False, or None if unanswered."""
    check_choice(exercise, sorted(CHECKERS), "exercise")
    if answer is None:
        print(f"… {exercise}: no answer yet. Replace None by your answer and run the cell again.")
        return None
    try:
        correct, hint = CHECKERS[exercise](answer)
        correct = bool(correct)
    except (TypeError, ValueError) as exc:
        correct, hint = False, f"could not read the answer ({exc})"
    print(f"✓ {exercise}: correct." if correct else f"✗ {exercise}: not yet. {hint}")
    return correct


def _number(answer: Any) -> float:
    x = float(answer)
    if not np.isfinite(x):
        raise ValueError("the answer must be a finite number")
    return x


# ---- Chapter 0 ------------------------------------------------------------------------


@checker("ch0-ex-halflife")
def _ch0_halflife(answer: Any) -> tuple[bool, str]:
    """First generation at which the median variance has halved, replace regime, n = 50."""
    from collapse_lib.gaussian import replace_log_variance

    mean_log, _ = replace_log_variance(1000, 50)
    expected = int(np.argmax(mean_log < np.log(0.5)))
    ok = abs(_number(answer) - expected) <= 1  # a simulation may land one generation off
    return ok, "Use the mean of log sigma_t^2 (it is also its median, nearly) for n = 50."


@checker("ch0-ex-alpha")
def _ch0_alpha(answer: Any) -> tuple[bool, str]:
    """Smallest alpha on the grid 0.05, 0.10, ... whose long-run variance reaches accumulation's."""
    from collapse_lib.gaussian import accumulate_variance_limit, mixture_moments

    grid = np.arange(0.05, 1.0001, 0.05)
    long_run = np.array([mixture_moments(2000, 20, a)[0][-1] for a in grid])
    expected = grid[np.argmax(long_run >= accumulate_variance_limit(20))]
    ok = abs(_number(answer) - expected) <= 0.025  # half a grid step
    return ok, "Compare the last value of mixture_moments(2000, 20, alpha)[0] with the limit."
