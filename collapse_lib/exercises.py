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


# ---- Chapter 1 ------------------------------------------------------------------------


@checker("ch1-ex-unbiased")
def _ch1_unbiased(answer: Any) -> tuple[bool, str]:
    """First generation ``t`` at which the median ``sigma_t^2`` (ddof = 1, replace, n = 20) < 1/10.

    The median of ``log sigma_t^2`` is close to its mean ``(t + 1) E log(chi^2_{n-1}/(n-1))``.
    """
    from scipy.special import digamma

    t = _number(answer)
    n = 20
    drift = digamma((n - 1) / 2) - np.log((n - 1) / 2)
    expected = int(np.ceil(np.log(0.1) / drift)) - 1
    ok = abs(t - expected) <= 5  # with 500 seeds the simulated crossing varies by about +-4
    return ok, "Find where the median over seeds, not the mean, first drops below 0.1."


@checker("ch1-ex-round2")
def _ch1_round2(answer: Any) -> tuple[bool, str]:
    """The large-n limit of ``1 - E(1 - V/4)^n``, ``V ~ Beta(1, n)``."""
    from collapse_lib.iterative_mle import spike_round2_bound

    ok = abs(_number(answer) - spike_round2_bound(10**6)) <= 0.005
    return ok, "As n grows, n V tends to an Exp(1) variable E; compute 1 - E[exp(-E/4)]."


# ---- Chapter 2 ------------------------------------------------------------------------


@checker("ch2-ex-wishart")
def _ch2_wishart(answer: Any) -> tuple[bool, str]:
    """Extra test error per generation of least squares, d = 50, T0 = 60, sigma0 = 1."""
    from collapse_lib.regression import ols_error

    expected = float(ols_error(1, d=50, T=200, T0=60, sigma=0.0, sigma0=1.0))
    ok = abs(_number(answer) - expected) <= 0.01 * expected  # an exact formula
    return ok, "The increment is sigma0^2 E tr[Sigma (X^T X)^{-1}]: use the inverse-Wishart mean."


@checker("ch2-ex-decompose")
def _ch2_decompose(answer: Any) -> tuple[bool, str]:
    """Synthetic part (iii) of the ridge error at n = 5: d = 100, T = 50, T0 = 200, lambda = 1."""
    from collapse_lib.regression import ridge_theory

    theory = ridge_theory(np.ones(100), np.full(100, 0.1), 1.0, T=50, T0=200, sigma=1.0, sigma0=1.0)
    expected = 5 * float(theory.increment())
    ok = abs(_number(answer) - expected) <= 0.1 * expected  # 100 seeds: Monte Carlo error of ~3 %
    return ok, "Average ||w_pred(X delta_5)||^2 over the seeds; the noise E plays no part in it."


# ---- Chapter 4 ------------------------------------------------------------------------


@checker("ch4-ex-threshold")
def _ch4_threshold(answer: Any) -> tuple[bool, str]:
    """The confidence C0 below which the naive growth factor a(C0) exceeds 1 (3 decimals)."""
    from collapse_lib.verification import growth_threshold

    ok = abs(_number(answer) - growth_threshold()) <= 5e-4  # "three decimals": half a unit
    return ok, "Solve (1/C0 + ln(1/C0)) / 2 = 1 numerically, e.g. with scipy.optimize.brentq."


@checker("ch4-ex-candidates")
def _ch4_candidates(answer: Any) -> tuple[bool, str]:
    """Smallest integer N with N > N*(C0) for every model over K = 50 labels."""
    from collapse_lib.verification import candidates_threshold

    expected = int(np.floor(candidates_threshold(1 / 50))) + 1
    ok = _number(answer) == expected  # an integer: exact
    return ok, "N*(C0) decreases in C0, and a top-1 probability over K labels is at least 1/K."


@checker("ch4-ex-calibration")
def _ch4_calibration(answer: Any) -> tuple[bool, str]:
    """Binned AUROC of the paper's Table 1 (log-probability as the score, ties counted half)."""
    from sklearn.metrics import roc_auc_score

    from collapse_lib.verification import calibration_table

    t = calibration_table()
    mid = (t["low"] + t["high"]).to_numpy() / 2
    scores = np.concatenate([mid, mid])
    labels = np.r_[np.ones(len(t)), np.zeros(len(t))]
    weights = np.r_[t["correct"].to_numpy(), t["incorrect"].to_numpy()]
    expected = roc_auc_score(labels, scores, sample_weight=weights)
    ok = abs(_number(answer) - expected) <= 0.005  # computed from counts: only rounding differs
    return ok, "Treat each bin as one score value shared by its correct and incorrect answers."
