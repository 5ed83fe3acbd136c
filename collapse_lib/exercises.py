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


# ---- Chapter 6 ------------------------------------------------------------------------


@checker("ch6-ex-recursion")
def _ch6_recursion(answer: Any) -> tuple[bool, str]:
    """Long-run error / generation-0 error at constant alpha = 0.2, n = n_0 = 200 (iid mixing)."""
    from collapse_lib.markov import fixed_point

    expected = float(fixed_point(1.0, 0.2, 200, split="iid")) * 200  # R_inf / R_0, R_0 = 1/n
    ok = (
        abs(_number(answer) - expected) <= 0.01 * expected
    )  # an exact formula (fixed split: -0.2 %)
    return ok, "Set R_t = R_{t-1} in the recursion and divide the fixed point by R_0 = sigma^2/n."


@checker("ch6-ex-filter")
def _ch6_filter(answer: Any) -> tuple[bool, str]:
    """Long-run error of real-data filtration / agnostic training, alpha = 0.2, n = 200."""
    from collapse_lib.markov import filtered_error, fixed_point

    expected = float(filtered_error(1.0, 0.2, 200) / fixed_point(1.0, 0.2, 200))
    ok = abs(_number(answer) - expected) <= 0.05 * expected  # the exercise's sizes: MC error ~1.5 %
    return ok, "Average the error over the last generations of both runs, then take the ratio."


@checker("ch6-ex-collapse-time")
def _ch6_collapse_time(answer: Any) -> tuple[bool, str]:
    """Mean number of sampling rounds to a Dirac row per unit of n, uniform row over 4 tokens."""
    from collapse_lib.markov import collapse_time

    expected = float(collapse_time(np.full(4, 0.25), 1))
    ok = abs(_number(answer) - expected) <= 0.08 * expected  # diffusion approx. + MC: a few %
    return ok, "Count sampling rounds (generation + 1) until the row is a Dirac mass, divide by n."


# ---- Chapter 5 ------------------------------------------------------------------------


@checker("ch5-ex-ratio")
def _ch5_ratio(answer: Any) -> tuple[bool, str]:
    """Rounds for q0 = 0.1 to reach q >= 0.99 under filters (1, 0.5) and (0.6, 0.1), k -> inf."""
    from collapse_lib.curation import odds_law

    t = np.arange(200)
    expected = [
        int(np.argmax(odds_law(0.1, tpr, fpr, t) >= 0.99)) for tpr, fpr in ((1.0, 0.5), (0.6, 0.1))
    ]
    got = [_number(a) for a in answer]
    if len(got) != 2:
        raise ValueError("the answer must be a pair (rounds for (1, 0.5), rounds for (0.6, 0.1))")
    ok = all(g == e for g, e in zip(got, expected, strict=True))  # whole rounds: exact
    return ok, "The odds must grow from 1/9 to 99; each round multiplies them by tpr / fpr."


@checker("ch5-ex-anatomy")
def _ch5_anatomy(answer: Any) -> tuple[bool, str]:
    """Rounds until E mean q(1 - q) halves without curation, k = 8, lambda = 2."""
    from collapse_lib.curation import heterozygosity_factor

    expected = np.log(2) / -np.log(heterozygosity_factor(8, 2.0))
    ok = abs(_number(answer) - expected) <= 0.5  # a closed form; accepts rounding to a whole round
    return ok, "Each round multiplies the expected heterozygosity by 1 - k/(k + lambda)^2."


@checker("ch5-ex-weak")
def _ch5_weak(answer: Any) -> tuple[bool, str]:
    """Expected pass@1 after 20 rounds of uniform weak labels, beta = 0.6, mean q0 = 0.28."""
    from collapse_lib.curation import weak_only_mean

    expected = weak_only_mean(
        0.28, 0.6, budget_fraction=1 / 20, k=8, lam=2.0, weight=1.0, rounds=20
    )[-1]
    ok = abs(_number(answer) - expected) <= 0.001  # a closed form: only rounding is allowed
    return (
        ok,
        "A labelled prompt moves by w (beta - q)/(k + lambda + w); a prompt is labelled w.p. B/N.",
    )


@checker("ch5-ex-budget")
def _ch5_budget(answer: Any) -> tuple[bool, str]:
    """Labels to clear the unsolved set (rho = 0.3 -> eps = 0.01, beta = 0.3): uniform / focused."""
    from collapse_lib.curation import labels_to_clear

    expected = labels_to_clear(0.3, 0.01, 0.3, 1000, "uniform") / labels_to_clear(
        0.3, 0.01, 0.3, 1000, "hard"
    )
    ok = abs(_number(answer) - expected) <= 0.05 * expected  # leading-order formulas: 5 %
    return (
        ok,
        "Focused: sum over rounds of |H_t|. Uniform: B labels per round for many more rounds.",
    )


# ---- Chapter 7 ------------------------------------------------------------------------


@checker("ch7-ex-null")
def _ch7_null(answer: Any) -> tuple[bool, str]:
    """Mean canonical correlation of independent N(0,1) blocks, N = 1000, p = 10 (3 decimals)."""
    from collapse_lib.cca import canonical_correlations_np

    r = np.random.default_rng(0)
    expected = np.mean(
        [
            canonical_correlations_np(
                r.standard_normal((1000, 10)), r.standard_normal((1000, 10))
            ).mean()
            for _ in range(50)
        ]
    )
    # one draw has sd ~0.005, so a 20-draw average has SE ~0.0011 and the 50-draw reference ~0.0007;
    # 0.005 is > 3 combined SEs and still rejects p = 50 (~0.19) or per-draw sums (~0.85)
    ok = abs(_number(answer) - expected) <= 0.005
    return ok, "Average the mean of the singular values over the draws; eps = 0, p = 10 per block."


# ---- Chapter 8 ------------------------------------------------------------------------


@checker("ch8-ex-bitplanes")
def _ch8_bitplanes(answer: Any) -> tuple[bool, str]:
    """Mean z of the 1797 real digits as 4 pixel bit planes (tokens of 64 bits, all 4 scored)."""
    from collapse_lib.bitwise import bitplanes
    from collapse_lib.data import digits
    from collapse_lib.watermark import zscore

    expected = zscore(bitplanes(digits()[0], 4), 64, range(4)).mean()
    ok = abs(_number(answer) - expected) <= 0.01  # deterministic: only rounding to 2 decimals
    return ok, "Score all four planes (bits_per_token=64, stages=range(4)) and average over digits."


@checker("ch8-ex-budget")
def _ch8_budget(answer: Any) -> tuple[bool, str]:
    """Smallest delta with E z - 2.326 sd z = 4 under the exact model, T = 124."""
    from scipy.optimize import brentq

    from collapse_lib.watermark import expected_z, z_sd

    expected = brentq(lambda d: expected_z(d, 124) - 2.326 * z_sd(d) - 4, 1e-4, 20)
    ok = abs(_number(answer) - expected) <= 0.01  # a closed-form root: two decimals asked
    return ok, "E z = 2 (sigmoid(delta) - 1/2) sqrt(T), sd z = 2 sqrt(s (1 - s)); solve for delta."


@checker("ch8-ex-capacity")
def _ch8_capacity(answer: Any) -> tuple[bool, str]:
    """P(a unit of degree j - 1 in both hidden layers), H = 128, degrees uniform on 1..191."""
    from collapse_lib.bitwise import made_path_probability

    expected = made_path_probability(192, 128)
    ok = abs(_number(answer) - expected) <= 0.006  # a closed form asked to two decimals
    return ok, "A layer misses a given degree with probability (1 - 1/(L - 1))^H; both must hit it."


# ---- Chapter 3 ------------------------------------------------------------------------


@checker("ch3-ex-relative")
def _ch3_relative(answer: Any) -> tuple[bool, str]:
    """KL entropy (k = 1, pixels in [-1, 1]) of the first 64 digits minus that of all 1797."""
    from collapse_lib.data import digits
    from collapse_lib.metrics import kl_entropy

    x = 2 * digits()[0] - 1
    expected = kl_entropy(x[:64]) - kl_entropy(x)
    ok = abs(_number(answer) - expected) <= 0.05  # deterministic: allows rounding to 0.1 nat
    return ok, "Use metrics.kl_entropy with k = 1 on the 64 pixels, both sets on the same scale."


@checker("ch3-ex-structural")
def _ch3_structural(answer: Any) -> tuple[bool, str]:
    """Slope of log GS against the KL entropy for training/sample sets shrunk by c, in d = 16."""
    from collapse_lib.metrics import generalization_score, kl_entropy

    r = np.random.default_rng(0)  # any data: the slope of a pure contraction is exact
    d, e = r.standard_normal((64, 16)), r.standard_normal((500, 16))
    cs = (1.0, 0.5, 0.25)
    h = [kl_entropy(c * d) for c in cs]
    lg = [np.log(generalization_score(c * e, c * d)) for c in cs]
    expected = np.polyfit(h, lg, 1)[0]
    ok = abs(_number(answer) - expected) <= 1e-3  # exact up to rounding to 3 decimals
    return ok, "Distances scale by c: GS by c^2, the entropy estimate by d log c."


# ---- Chapter 9 ------------------------------------------------------------------------


@checker("ch9-ex-bartlett")
def _ch9_bartlett(answer: Any) -> tuple[bool, str]:
    """Per-generation change of ``E log det`` under replace for ``n = 50``, ``d = 10``."""
    from collapse_lib.gaussian import replace_logdet

    mean, _ = replace_logdet(2, 50, 10)
    expected = mean[1] - mean[0]
    ok = abs(_number(answer) - expected) <= 0.01  # deterministic: allows rounding to 0.01
    return ok, "Sum psi((n - i)/2) + log 2 over i = 1..d, then subtract d log n."


@checker("ch9-ex-alpha")
def _ch9_alpha(answer: Any) -> tuple[bool, str]:
    """Smallest alpha on the grid 0.01, 0.02, ... whose long-run categorical error is <= 2 R_0."""
    from collapse_lib.markov import fixed_point

    n = 100
    grid = np.round(np.arange(0.01, 1.0001, 0.01), 2)
    ratio = np.array([fixed_point(1.0, a, n) * n for a in grid])
    expected = grid[np.argmax(ratio <= 2)]
    ok = abs(_number(answer) - expected) <= 0.005  # the grid's own value
    return ok, "Use the fixed point of the mixture recursion in units of R_0 = sigma^2 / n."
