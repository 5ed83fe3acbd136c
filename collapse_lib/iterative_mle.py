"""Iterative maximum likelihood with accumulating synthetic data (Barzilai & Shamir, NeurIPS 2025).

What this module adds to the shared loop (:func:`collapse_lib.loop.run`):

* batched learners with sufficient statistics for the paper's smooth families: the Gaussian
  mean with known variance (:class:`KnownVarianceGaussianMLE`) and the "Beta" family
  ``p(x; theta) = theta x^(theta - 1)`` on (0, 1) of the paper's Appendix G
  (:class:`BetaOneMLE`); the Gaussian (mu, sigma) MLE and the
  categorical MLE live in :mod:`collapse_lib.gaussian` and :mod:`collapse_lib.categorical`;
* the closed forms of the book's derivations (``H_T``, the known-variance mean error, the
  accumulate/replace mean error of the (mu, sigma) fit, the round-2 collapse probabilities
  of Construction 1);
* Construction 1 of Theorem 5.1 (:class:`SpikeFamily`, :class:`SpikeMixture`,
  :class:`SpikeMixtureMLE`): a mixture of uniforms with a near-delta spike whose exact MLE
  collapses at round 2;
* the creeping h-family of Theorem 5.2's Construction 2 (:class:`IntervalFamily`,
  :class:`IntervalFamilyMLE`), simulated through per-interval sufficient statistics.

Indexing. The paper's ``theta^(t)`` is fitted on ``t n`` points, ``theta^(1)`` on the real data
only. The loop's generation ``t`` is fitted on ``(t + 1) n`` points, so **paper round
``T`` = generation ``T - 1``**; every theory function here returns values indexed by the
generation ``t = 0 .. generations - 1``, ready to overlay on the loop's tables.

RECONSTRUCTED. The paper's display formulas for f (its Eq. 26), the spike density (Eq. 27) and
the g-family of Construction 2 were not available to the book; the versions here are rebuilt
from every expression that survives in the proofs (see the chapter and its spec). Assertions
about them are properties of *this* construction, not of the paper's constants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from scipy import integrate

from collapse_lib.gaussian import (
    Gaussian,
    GaussianMLE,
    GaussianStats,
    accumulate_variance_limit,
    accumulate_variance_mean,
    generation_axis,
    replace_log_variance,
    replace_variance_mean,
)
from collapse_lib.loop import Learner
from collapse_lib.results import Results
from collapse_lib.runtime import Rngs, check_choice, check_nonnegative, check_positive_int

SCHEMES: tuple[str, ...] = ("accumulate", "replace")


def _n_seeds(rngs: Sequence[np.random.Generator]) -> int:
    if isinstance(rngs, np.random.Generator) or len(rngs) == 0:
        raise ValueError("rngs must be a non-empty sequence of numpy Generators (one per seed)")
    return len(rngs)


def _per_seed(value: np.ndarray | float, S: int, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    if v.ndim == 0:
        return np.full(S, float(v))
    if v.shape != (S,):
        raise ValueError(f"{name} must be a scalar or have one value per seed ({S}), got {v.shape}")
    return v


# --------------------------------------------------------------------------- closed forms


def squared_harmonic(generations: int) -> np.ndarray:
    """``H_T = sum_{k=1}^T k^(-2)`` at ``T = t + 1`` for ``t = 0..generations-1``.

    ``H_T`` increases to ``pi^2/6 = 1.64493``: the sum of the squared martingale weights
    ``1/(t+1)`` in the proof of Theorem 4.1 (the "pi^2/6 pathway").
    """
    k = generation_axis(generations) + 1.0
    return np.cumsum(k**-2)


def known_variance_mean_mse(
    generations: int, n: int, scheme: str = "accumulate", var: float = 1.0
) -> np.ndarray:
    """``E (mu_t - mu*)^2`` for the Gaussian mean with known variance, ``t = 0..generations-1``.

    Accumulate: ``mu_{t} - mu* = (sigma/sqrt(n)) sum_{j<=t} eps_j / (j + 1)`` exactly (each round's
    sample mean enters the pooled mean with weight ``1/(j+1)``), so ``E (mu_t - mu*)^2 =
    (var/n) H_{t+1}`` (book's derivation; the martingale term of the paper's Eq. 2).
    Replace: a Gaussian random walk, ``(var/n) (t + 1)``.
    """
    check_choice(scheme, SCHEMES, "scheme")
    n = check_positive_int(n, "n")
    t = generation_axis(generations)
    steps = squared_harmonic(generations) if scheme == "accumulate" else t + 1.0
    return var / n * steps


def gaussian_mean_mse(
    generations: int, n: int, scheme: str = "accumulate", var: float = 1.0
) -> np.ndarray:
    """``E (mu_hat_t - mu*)^2`` of the Gaussian (mu, sigma) MLE, ``t = 0..generations-1``.

    By the conservation law ``E[sigma_hat_t^2 + (mu_hat_t - mu*)^2] = var`` (the pooled second
    moment about ``mu*`` is a martingale; book's derivation), this is ``var - E sigma_hat_t^2``:
    ``var (1 - prod_{k<=t+1} (1 - 1/(n k^2)))`` under accumulate and
    ``var (1 - (1 - 1/n)^(t+1))`` under replace.
    """
    check_choice(scheme, SCHEMES, "scheme")
    fn = accumulate_variance_mean if scheme == "accumulate" else replace_variance_mean
    return var - fn(generations, n, var)


# ------------------------------------------------------------- smooth families (Theorem 4.1)


@dataclass
class KnownVarianceGaussianMLE(GaussianMLE):
    """MLE of the mean of ``N(mu, var)`` with ``var`` known: ``mu_hat = pooled sample mean``.

    The family satisfies all of Assumptions 1-3 of Theorem 4.1 (score ``(x - mu)/var`` is
    Gaussian, Hessian ``-1/var``, third derivative 0). Keeps the pooled (count, mean, m2) of
    :class:`~collapse_lib.gaussian.GaussianMLE` (Chan's merge); only the fit differs.
    """

    var: float = 1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.var) or self.var <= 0:
            raise ValueError(f"var must be a finite number > 0, got {self.var!r}")

    def fit_summary(self, s: GaussianStats) -> Gaussian:
        return Gaussian(s.mean, np.full(np.shape(s.mean), float(self.var)))


@dataclass
class BetaOne:
    """``p(x; theta) = theta x^(theta - 1)`` on (0, 1): Beta(theta, 1), ``-log X ~ Exp(theta)``.

    Sampling uses ``X = U^(1/theta)`` with ``U`` uniform on (0, 1]: with common uniforms, the
    samples of every ``theta`` are powers of the same ``U`` (the scale invariance behind the
    chapter's check of the paper's Fig. 4).
    """

    theta: np.ndarray | float

    def __post_init__(self) -> None:
        self.theta = np.asarray(self.theta, dtype=float)
        if np.any(~np.isfinite(self.theta)) or np.any(self.theta <= 0):
            raise ValueError("theta must be finite and > 0")

    def sample(self, n: int, rngs: Rngs) -> np.ndarray:
        n = check_positive_int(n, "n")
        if isinstance(rngs, np.random.Generator):
            return (1.0 - rngs.random(n)) ** (1.0 / self.theta)
        u = 1.0 - np.stack([g.random(n) for g in rngs])
        theta = _per_seed(self.theta, len(rngs), "theta")
        return u ** (1.0 / theta[:, None])


@dataclass
class BetaOneStats:
    """Sufficient statistics of Beta(theta, 1) data: count and ``sum(-log x)``, per seed."""

    count: np.ndarray
    neg_log_sum: np.ndarray


class BetaOneMLE(Learner):
    """Exact MLE of Beta(theta, 1): ``theta_hat = N / sum(-log x)`` (Exp-rate MLE of ``-log x``).

    The score ``1/theta + log x`` is sub-exponential, not sub-Gaussian, so the family sits
    slightly outside Assumption 2(A) of Theorem 4.1 (the paper uses it in Appendix G).
    """

    def summarize(self, data: np.ndarray) -> BetaOneStats:
        x = np.asarray(data, dtype=float)
        if np.any(x <= 0) or np.any(x > 1):
            raise ValueError("Beta(theta, 1) data must lie in (0, 1]")
        return BetaOneStats(np.full(x.shape[:-1], float(x.shape[-1])), -np.log(x).sum(axis=-1))

    def merge(self, a: BetaOneStats, b: BetaOneStats) -> BetaOneStats:
        return BetaOneStats(a.count + b.count, a.neg_log_sum + b.neg_log_sum)

    def fit_summary(self, s: BetaOneStats) -> BetaOne:
        return BetaOne(s.count / s.neg_log_sum)


# ------------------------------------------------------ Construction 1 (Theorem 5.1), spike

LOG39 = float(np.log(39.0))


@dataclass(frozen=True)
class SpikeFamily:
    """The parameters of Construction 1 that do not change over rounds: ``N`` and ``lam``.

    RECONSTRUCTED width function (the paper's Eq. 26 was not available):
    ``log f(alpha) = -log 39 - lam * N * max(alpha - 0.1, 0)``, so ``f = 1/39`` on
    ``[0, 1/10]`` (verified in the paper's proof) and ``f(1/8) = e^(-5N)/39`` for ``lam = 200``.
    The proof takes ``N = n``, the per-round sample size. ``lam = 0`` gives the smoothness
    ablation: the spike never becomes narrower than 1/39.
    """

    N: int
    lam: float = 200.0

    def __post_init__(self) -> None:
        check_positive_int(self.N, "N")
        check_nonnegative(self.lam, "lam")

    def log_width(self, alpha: np.ndarray | float) -> np.ndarray:
        """``log f(alpha)`` (never ``f`` itself: ``e^(-30 N)`` underflows for N > 24)."""
        a = np.asarray(alpha, dtype=float)
        return -LOG39 - self.lam * self.N * np.maximum(a - 0.1, 0.0)

    def alpha_at_log_width(self, log_w: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`log_width` on ``alpha > 0.1``: the spike is ``e^log_w`` wide."""
        if self.lam == 0:
            raise ValueError("with lam = 0 the width is constant and has no inverse")
        return 0.1 + (-LOG39 - np.asarray(log_w, dtype=float)) / (self.lam * self.N)

    def truth(self) -> SpikeMixture:
        """``theta* = (alpha = 0, mu = 2)``: the uniform distribution on [0, 1]."""
        return SpikeMixture(0.0, 2.0, self)


@dataclass
class SpikeMixture:
    """Construction 1's density, RECONSTRUCTED (the paper's Eq. 27 was not available)::

        p(x) = 1/2 U[0,1] + (1 - alpha)/2 U[0, 1 - 2 alpha] + alpha/4 U[2, 3]
               + alpha/4 U[mu, mu + f(alpha)],      alpha in [0, 1/4], mu in [2, 3 - f(alpha)]

    consistent with every expression in the paper's proof (Appendix E): density
    ``1/2 + (1 - alpha)/(2 (1 - 2 alpha))`` on ``[0, 1 - 2 alpha]``, ``(alpha/4)(1 + 1/f)`` on the
    spike, ``f = 1/39`` for ``alpha <= 1/10``. ``TV(p, U[0,1]) = alpha`` exactly for every ``mu``
    (book's derivation: excess ``alpha/2`` on ``[0, 1-2 alpha]``, deficit ``alpha`` on
    ``(1 - 2 alpha, 1]``, mass ``alpha/2`` outside [0, 1]).
    ``alpha`` and ``mu`` are scalars or one value per seed (a scalar ``mu`` is shared).
    """

    alpha: np.ndarray | float
    mu: np.ndarray | float
    family: SpikeFamily

    def __post_init__(self) -> None:
        self.alpha = np.asarray(self.alpha, dtype=float)
        self.mu = np.asarray(self.mu, dtype=float)
        if self.mu.ndim and self.mu.shape != self.alpha.shape:
            raise ValueError(
                f"mu must be a scalar or have the shape of alpha {self.alpha.shape}, "
                f"got {self.mu.shape}"
            )
        if np.any(self.alpha < 0) or np.any(self.alpha > 0.25):
            raise ValueError("alpha must lie in [0, 1/4]")
        top = 3.0 - np.exp(self.family.log_width(self.alpha))
        if np.any(self.mu < 2.0) or np.any(self.mu > top + 1e-12):
            raise ValueError("mu must lie in [2, 3 - f(alpha)]")

    @property
    def tv(self) -> np.ndarray:
        """``TV(p_theta, U[0,1]) = alpha`` (exact for this family)."""
        return self.alpha

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """``n`` points per seed, shape ``(S, n)``: pick a mixture component, then a uniform in it.

        Spike points ``mu + f u`` equal ``mu`` exactly in float64 once ``f < 1e-16``; the MLE
        counts such duplicates correctly.
        """
        n = check_positive_int(n, "n")
        S = _n_seeds(rngs)
        draws = np.stack([g.random((2, n)) for g in rngs])
        u, v = draws[:, 0], draws[:, 1]
        a = _per_seed(self.alpha, S, "alpha")[:, None]
        mu = _per_seed(self.mu, S, "mu")[:, None]
        w = np.exp(self.family.log_width(a))
        b1, b2 = 0.5, 0.5 + 0.5 * (1 - a)
        b3 = b2 + a / 4
        return np.where(
            u < b1,
            v,
            np.where(u < b2, v * (1 - 2 * a), np.where(u < b3, 2.0 + v, mu + w * v)),
        )

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """``log p(x)`` at points ``x`` of shape ``(m,)``, per seed, shape ``(S, m)``.

        Computed in log space: the spike term uses ``log f``, so nothing underflows.
        """
        x = np.asarray(x, dtype=float)
        a, mu = self.alpha[..., None], self.mu[..., None]
        lw = self.family.log_width(a)
        with np.errstate(divide="ignore"):
            low = np.where(x <= 1 - 2 * a, np.log(0.5 + (1 - a) / (2 * (1 - 2 * a))), np.log(0.5))
            in01 = (x >= 0) & (x <= 1)
            in23 = (x >= 2) & (x <= 3)
            spike = (x >= mu) & (x - mu <= np.exp(lw))
            high = np.log(a / 4) + np.where(spike, np.logaddexp(0.0, -lw), 0.0)
        return np.where(in01, low, np.where(in23, high, -np.inf))

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """``p(x)`` (may overflow to ``inf`` on a spike narrower than ``1e-308``)."""
        with np.errstate(over="ignore"):
            return np.exp(self.logpdf(x))


def _window_count(B: np.ndarray, width: float) -> tuple[int, int]:
    """Most sorted points ``B`` in one closed window ``[B_i, B_i + width]``, and that ``i``."""
    k = np.searchsorted(B, B + width, side="right") - np.arange(len(B))
    i = int(np.argmax(k))
    return int(k[i]), i


def spike_mle(x: np.ndarray, family: SpikeFamily, mu_ref: float = 2.0) -> tuple[float, float]:
    """Exact MLE ``(alpha, mu)`` of :class:`SpikeMixture` on one seed's points ``x``.

    Split ``x`` into ``A`` (points in [0, 1]) and ``B`` (points in [2, 3]). For candidate
    ``alpha`` the log-likelihood is

    ``LL = n_le log(1/2 + (1-alpha)/(2(1-2 alpha))) + (|A| - n_le) log(1/2)
    + |B| log(alpha/4) + c(alpha) log(1 + 1/f(alpha))``

    with ``n_le = #{x in A: x <= 1 - 2 alpha}`` and ``c(alpha)`` the most ``B`` points in one
    window of width ``f(alpha)``. ``LL`` increases in ``alpha`` except where ``n_le`` or ``c``
    drop, so the maximum is at one of: the breakpoints ``(1 - x)/2`` of ``A`` (exact: ``1 - 2
    alpha`` reproduces ``x`` bit for bit), ``1/10``, ``1/4``, and the ``alpha`` at which the
    spike is exactly as wide as the tightest window of ``k`` points of ``B``, for every count
    ``k`` the width can change. ``alpha = 0`` is excluded once ``B`` is non-empty
    (``LL = -inf``). Ties go to the smallest ``alpha``; ``mu`` is the left end of the fullest
    window (``mu_ref`` when ``B`` is empty, the paper's tie-break towards the reference point).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {x.shape}")
    outside = ~(((x >= 0) & (x <= 1)) | ((x >= 2) & (x <= 3)))
    if np.any(outside):
        raise ValueError("x must lie in [0, 1] or [2, 3] (the family's support)")
    A = np.sort(x[x <= 1])
    B = np.sort(x[x >= 2])
    nA, nB = len(A), len(B)
    cand = [(1.0 - A[A >= 0.5]) / 2.0, np.array([0.1, 0.25])]
    levels_a = np.empty(0)
    levels_i = np.empty(0, dtype=int)
    c_low = c_high = 0
    if nB:
        c_low, i_low = _window_count(B, float(np.exp(family.log_width(0.1))))
        c_high, i_high = _window_count(B, float(np.exp(family.log_width(0.25))))
        if family.lam > 0 and c_low > c_high:
            # tightest window holding k points, for the counts the width can change
            ks = np.arange(c_high + 1, c_low + 1)
            gaps = [B[k - 1 :] - B[: nB - k + 1] for k in ks]
            levels_i = np.array([int(np.argmin(g)) for g in gaps])
            widths = np.array([g[i] for g, i in zip(gaps, levels_i, strict=True)])
            with np.errstate(divide="ignore"):
                levels_a = np.minimum(family.alpha_at_log_width(np.log(widths)), 0.25)
            cand.append(levels_a)
    else:
        cand.append(np.array([0.0]))
    a = np.unique(np.concatenate(cand))
    a = a[(a >= 0) & (a <= 0.25)]
    if nB:
        a = a[a > 0]
    n_le = np.searchsorted(A, 1.0 - 2.0 * a, side="right")
    ll = n_le * np.log(0.5 + (1 - a) / (2 * (1 - 2 * a))) + (nA - n_le) * np.log(0.5)
    if nB:
        # c(alpha): c_low up to 0.1; above it, c_high plus the levels still reachable
        c = np.where(a <= 0.1, c_low, c_high + (levels_a[None, :] >= a[:, None]).sum(axis=1))
        ll = ll + nB * np.log(a / 4) + c * np.logaddexp(0.0, -family.log_width(a))
    best = int(np.argmax(ll))
    alpha = float(a[best])
    if not nB:
        return alpha, float(mu_ref)
    width = float(np.exp(family.log_width(alpha)))
    if alpha <= 0.1:
        start = i_low
    else:
        k = int(c[best])
        start = i_high if k <= c_high else int(levels_i[k - c_high - 1])
    return alpha, float(min(B[start], 3.0 - width))


@dataclass
class SpikeMixtureMLE(Learner):
    """Exact MLE of Construction 1 per seed (:func:`spike_mle`), on raw data ``(S, N)``.

    The family has no finite sufficient statistic, so accumulation pools the raw points (the
    :class:`~collapse_lib.loop.Learner` default); refitting costs O(pool size) per round.
    """

    family: SpikeFamily

    def fit(self, data: np.ndarray) -> SpikeMixture:
        x = np.asarray(data, dtype=float)
        if x.ndim != 2:
            raise ValueError(f"data must have shape (seeds, points), got {x.shape}")
        fits = np.array([spike_mle(row, self.family) for row in x])
        return SpikeMixture(fits[:, 0], fits[:, 1], self.family)


def spike_round2_bound(n: int) -> float:
    """``1 - E[(1 - V/4)^n]``, ``V ~ Beta(1, n)``: P(collapse at round 2) if ``alpha^(1) = V/2``.

    (Book's derivation; ``V = 1 - x_max``.) Each of the ``n`` synthetic points of round 1 lands
    in [2, 3] with
    probability ``alpha^(1)/2``; once one does, the spike takes it (in this construction).
    The exact MLE has ``alpha^(1) >= (1 - x_max)/2``, so this is a lower bound; it tends to
    ``1 - E e^(-E/4) = 1/5``.
    """
    n = check_positive_int(n, "n")

    def integrand(u: float) -> float:  # u = n v; the density of n V is (1 - u/n)^(n-1)
        return float(np.exp((n - 1) * np.log1p(-u / n) + n * np.log1p(-u / (4 * n))))

    # the integrand decays like exp(-5u/4): nothing beyond u = 100 counts in float64
    val, _ = integrate.quad(integrand, 0.0, min(float(n), 100.0))
    return 1.0 - val


def spike_round1_limit(size: int, rng: np.random.Generator, depth: int = 80) -> np.ndarray:
    """Draws of the large-``n`` limit of ``n alpha^(1)``: ``Gamma_K / 2`` (book's derivation).

    ``Gamma_k`` is the ``k``-th point of a rate-1 Poisson process (the ``k``-th largest real point
    sits at ``1 - Gamma_k / n``), and the MLE gives up the top ``K - 1`` points where
    ``K = argmax_k [Gamma_k / 4 - (k - 1) log 2]``. The round-2 collapse probability tends to
    ``1 - E exp(-Gamma_K / 4)`` (about 0.241).
    """
    size = check_positive_int(size, "size")
    depth = check_positive_int(depth, "depth")
    gam = np.cumsum(rng.exponential(size=(size, depth)), axis=1)
    score = gam / 4 - np.arange(depth) * np.log(2.0)
    return gam[np.arange(size), np.argmax(score, axis=1)] / 2


# ------------------------------------------------- Construction 2 (Theorem 5.2), the h-family


@dataclass
class IntervalSample:
    """``n`` points per seed of an h-family, kept as their sufficient statistics.

    ``counts[s, j]`` points fell in interval ``[j, j + 1)``, the largest at offset
    ``maxima[s, j]`` from ``j`` (0 where the count is 0). ``shape`` is ``(S, n)``, so the
    loop treats the batch like ``n`` raw points per seed; it is exact in distribution for the
    MLE, which depends on the data only through these statistics.
    """

    counts: np.ndarray
    maxima: np.ndarray
    n: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.counts.shape[0], self.n)


def h_family_probs(alpha: np.ndarray) -> np.ndarray:
    """Interval masses ``pi_j = (1 - alpha_j) prod_{k<j} alpha_k`` of ``h_alpha``."""
    a = np.asarray(alpha, dtype=float)
    reach = np.cumprod(np.concatenate([np.ones(a.shape[:-1] + (1,)), a[..., :-1]], axis=-1), -1)
    return reach * (1 - a)


@dataclass
class IntervalFamily:
    """Construction 2's h-family (verified, the paper's Appendix F), truncated to ``J`` intervals::

        h_alpha = sum_j (1 - alpha_j) (prod_{k<j} alpha_k) U[j, j + 1 - 2 alpha_j]

    Sampling: start in interval 0; move on from interval ``j`` with probability ``alpha_j``,
    else draw uniformly on ``[j, j + 1 - 2 alpha_j]``. ``alpha`` has shape ``(S, J)`` (or
    ``(J,)``); the last interval must keep ``alpha = 0``. ``compressed=True`` draws only the
    per-interval counts (``Multinomial(n, pi)``) and maxima (``(1 - 2 alpha_j) U^(1/m_j)``),
    which makes ``n = 10^6`` as cheap as ``n = 10``; ``compressed=False`` draws raw points.
    """

    alpha: np.ndarray
    compressed: bool = True

    def __post_init__(self) -> None:
        self.alpha = np.asarray(self.alpha, dtype=float)
        if self.alpha.ndim not in (1, 2) or self.alpha.shape[-1] < 2:
            raise ValueError(
                f"alpha must have shape (J,) or (S, J) with J >= 2, got {self.alpha.shape}"
            )
        if np.any(self.alpha < 0) or np.any(self.alpha > 0.25):
            raise ValueError("alpha must lie in [0, 1/4]")
        if np.any(self.alpha[..., -1] > 0):
            raise ValueError("the last interval must have alpha = 0 (increase J)")

    @property
    def frontier(self) -> np.ndarray:
        """The right-most interval seen in the data: the largest ``j`` with ``alpha_j > 0``."""
        pos = self.alpha > 0
        J = self.alpha.shape[-1]
        return np.where(pos.any(-1), J - 1 - np.argmax(pos[..., ::-1], axis=-1), 0)

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> IntervalSample | np.ndarray:
        n = check_positive_int(n, "n")
        S = _n_seeds(rngs)
        a = np.broadcast_to(self.alpha, (S, self.alpha.shape[-1]))
        pi = h_family_probs(a)
        pi = pi / pi.sum(axis=-1, keepdims=True)
        if self.compressed:
            draws = [(g.multinomial(n, p), g.random(p.size)) for g, p in zip(rngs, pi, strict=True)]
            counts = np.stack([d[0] for d in draws]).astype(float)
            u = np.stack([d[1] for d in draws])
            with np.errstate(divide="ignore"):
                top = np.where(counts > 0, (1 - 2 * a) * u ** (1 / np.maximum(counts, 1)), 0.0)
            return IntervalSample(counts, top, n)
        draws = np.stack([g.random((2, n)) for g in rngs])
        cdf = np.cumsum(pi, axis=-1)
        j = (draws[:, 0, :, None] >= cdf[:, None, :-1]).sum(-1)
        width = np.take_along_axis(1 - 2 * a, j, axis=1)
        return j + width * draws[:, 1]


@dataclass
class IntervalFamilyMLE(Learner):
    """MLE within the h-family from per-interval counts and maxima (the paper's Lemma F.2).

    ``alpha_j = min(1/4, (1 - M_j)/2)`` if interval ``j`` holds data (``M_j`` its largest
    offset); ``1/4`` if it holds none but a later interval does; 0 otherwise (no data at or
    beyond ``j``: the likelihood does not depend on ``alpha_j``, and the tie-break keeps the
    previous value, which is 0). The cap at 1/4 is the parameter space's; whether the paper
    caps is not visible in the text the book used.
    """

    intervals: int = 16

    def __post_init__(self) -> None:
        self.intervals = check_positive_int(self.intervals, "intervals")
        if self.intervals < 2:
            raise ValueError("intervals must be >= 2")

    def summarize(self, data: IntervalSample | np.ndarray) -> IntervalSample:
        J = self.intervals
        if isinstance(data, IntervalSample):
            if data.counts.shape[-1] != J:
                raise ValueError(f"data has {data.counts.shape[-1]} intervals, the learner {J}")
            return data
        x = np.asarray(data, dtype=float)
        if x.ndim != 2 or np.any(x < 0) or np.any(x >= J):
            raise ValueError(f"raw data must have shape (seeds, n) with values in [0, {J})")
        j = np.floor(x).astype(int)
        S = x.shape[0]
        counts = np.zeros((S, J))
        maxima = np.zeros((S, J))
        rows = np.repeat(np.arange(S), x.shape[1])
        np.add.at(counts, (rows, j.ravel()), 1.0)
        np.maximum.at(maxima, (rows, j.ravel()), (x - j).ravel())
        return IntervalSample(counts, maxima, x.shape[1])

    def merge(self, a: IntervalSample, b: IntervalSample) -> IntervalSample:
        return IntervalSample(a.counts + b.counts, np.maximum(a.maxima, b.maxima), a.n + b.n)

    def fit_summary(self, s: IntervalSample) -> IntervalFamily:
        has = s.counts > 0
        later = np.flip(np.cumsum(np.flip(has, -1), -1), -1) - has  # data strictly beyond j
        alpha = np.where(has, np.minimum(0.25, (1 - s.maxima) / 2), np.where(later > 0, 0.25, 0.0))
        if np.any(has[:, -1]):
            raise ValueError(
                f"data reached the last of {self.intervals} intervals; increase intervals"
            )
        return IntervalFamily(alpha)


def first_arrival(frontier: np.ndarray, interval: int) -> np.ndarray:
    """Per seed, the first generation whose frontier is ``>= interval`` (``-1`` if never).

    ``frontier`` has shape ``(generations, S)`` (from :func:`collapse_lib.loop.wide`, transposed).
    """
    f = np.asarray(frontier)
    if f.ndim != 2:
        raise ValueError(f"frontier must have shape (generations, seeds), got {f.shape}")
    check_positive_int(interval, "interval")
    hit = f >= interval
    return np.where(hit.any(axis=0), np.argmax(hit, axis=0), -1)


# ------------------------------------- Construction 2 (Theorem 5.2), the h-family plus a spike


def tower_log_inv_width(J: np.ndarray | float) -> np.ndarray:
    """The book's spike width for Construction 2: ``log(1/f(J)) = 10^(10^(J - 2))``.

    So ``log(1/f(2)) = 10``, ``log(1/f(3)) = 10^10``, ``log(1/f(4)) = 10^100`` (capped at
    ``10^300``, still astronomically narrow, to stay finite in float64). RECONSTRUCTED: the
    paper only needs ``f`` to fall fast enough in ``J``; this tower is the book's choice.
    """
    J = np.asarray(J, dtype=float)
    return 10.0 ** np.minimum(10.0 ** (J - 2.0), 300.0)


@dataclass
class SpikedIntervalSample(IntervalSample):
    """:class:`IntervalSample` plus ``spike[s]``: points lying exactly on the spike of a g-model."""

    spike: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.spike is None:
            self.spike = np.zeros(self.counts.shape[0])


@dataclass
class SpikedIntervalFamily:
    """Construction 2 (the paper's Appendix F): per seed either ``h_alpha`` or ``g_{beta,J}``.

    ``g_{beta,J} = 1/2 U[0, J] + 1/2 U[J - beta, J - beta + f(J)]`` (RECONSTRUCTED from the
    proof's ``g = 1/(2J)`` away from the spike) puts density ``1/(2J)`` on ``[0, 1]``, so
    ``TV(g, U[0,1]) = 1 - 1/(2J) >= 3/4`` for ``J >= 2`` (the theorem needs ``>= 3/8``).
    ``TV(h_alpha, U[0,1]) = 2 alpha_0`` (excess ``alpha_0`` on ``[0, 1 - 2 alpha_0]`` plus the
    mass ``alpha_0`` beyond 1). ``spiked[s]`` says which member seed ``s`` uses; the spike's
    width ``f(J)`` is so small that its samples all equal its left end in float64, so a
    g-sample is kept as per-interval counts and maxima plus the number of spike points.
    """

    alpha: np.ndarray
    spiked: np.ndarray
    J: np.ndarray

    def __post_init__(self) -> None:
        self.alpha = np.asarray(self.alpha, dtype=float)
        self.spiked = np.asarray(self.spiked, dtype=bool)
        self.J = np.asarray(self.J, dtype=int)
        if self.alpha.ndim != 2 or self.spiked.shape != self.alpha.shape[:1]:
            raise ValueError("alpha must have shape (S, intervals) and spiked shape (S,)")
        if np.any(self.J[self.spiked] < 2) or np.any(self.J >= self.alpha.shape[-1]):
            raise ValueError("a spiked seed needs 2 <= J < intervals")

    @property
    def tv(self) -> np.ndarray:
        """Total variation distance to the truth ``U[0, 1]``."""
        return np.where(self.spiked, 1 - 1 / (2 * np.maximum(self.J, 1)), 2 * self.alpha[:, 0])

    @property
    def frontier(self) -> np.ndarray:
        """Right-most interval the model can reach (``J - 1`` for a spiked seed)."""
        return np.where(self.spiked, self.J - 1, IntervalFamily(self.alpha).frontier)

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> SpikedIntervalSample:
        n = check_positive_int(n, "n")
        S = _n_seeds(rngs)
        if S != self.alpha.shape[0]:
            raise ValueError(f"the model has {self.alpha.shape[0]} seeds, got {S} generators")
        h = IntervalFamily(self.alpha).sample(n, rngs)
        counts, maxima, spike = h.counts.copy(), h.maxima.copy(), np.zeros(S)
        idx = np.flatnonzero(self.spiked)
        if idx.size:  # g: half the points on the spike, the rest uniform on [0, J]
            J_max = counts.shape[1]
            m = np.zeros((idx.size, J_max))
            u = np.ones((idx.size, J_max))
            equal = {J: np.full(J, 1.0 / J) for J in np.unique(self.J[idx]).tolist()}
            for r, s in enumerate(idx):
                g, J = rngs[s], int(self.J[s])
                spike[s] = g.binomial(n, 0.5)
                m[r, :J] = g.multinomial(n - int(spike[s]), equal[J])
                u[r, :J] = g.random(J)
            with np.errstate(divide="ignore"):
                maxima[idx] = np.where(m > 0, u ** (1 / np.maximum(m, 1)), 0.0)
            m[np.arange(idx.size), self.J[idx] - 1] += spike[idx]  # the spike's points sit at
            counts[idx] = m  # its left end, in interval J - 1 (the largest offset seen there)
        return SpikedIntervalSample(counts, maxima, n, spike)


@dataclass
class SpikedIntervalFamilyMLE(IntervalFamilyMLE):
    """Exact MLE over the union of the h-family and the g-family of Construction 2.

    Within h, :class:`IntervalFamilyMLE` (the paper's Lemma F.2); its log-likelihood is
    ``sum_j m_j [log(1 - alpha_j) - log(1 - 2 alpha_j) + sum_{k<j} log alpha_k]``. Within g
    the data must lie in ``[0, J]`` and the spike in ``[J - 1, J]``, so the only candidate is
    ``J = frontier + 1`` (``J >= 2``) with the spike on the largest point of the last
    occupied interval (plus any points already on it):
    ``LL_g = -N log(2J) + c log(1 + J/f(J))``, ``c = 1 + spike``. The g-model wins when the
    spike's gain ``~ log(1/f(J))`` beats the ``~ N log(2J)`` that spreading the pool over
    ``[0, J]`` costs: a spike can beat a pool of up to about ``log(1/f(J)) / log(2J)`` points.
    """

    log_inv_width: Callable[[np.ndarray], np.ndarray] = tower_log_inv_width

    def summarize(self, data: IntervalSample | np.ndarray) -> SpikedIntervalSample:
        s = super().summarize(data)
        spike = getattr(s, "spike", None)
        return SpikedIntervalSample(s.counts, s.maxima, s.n, spike)

    def merge(self, a: SpikedIntervalSample, b: SpikedIntervalSample) -> SpikedIntervalSample:
        m = super().merge(a, b)
        return SpikedIntervalSample(m.counts, m.maxima, m.n, a.spike + b.spike)

    def fit_summary(self, s: SpikedIntervalSample) -> SpikedIntervalFamily:
        alpha = super().fit_summary(s).alpha
        counts = s.counts
        S, J_max = counts.shape
        with np.errstate(divide="ignore", invalid="ignore"):
            log_a = np.log(alpha)
            before = np.concatenate([np.zeros((S, 1)), np.cumsum(log_a[:, :-1], axis=1)], 1)
            per_point = np.log1p(-alpha) - np.log1p(-2 * alpha) + before
            ll_h = np.where(counts > 0, counts * per_point, 0.0).sum(axis=1)
        has = counts > 0
        frontier = J_max - 1 - np.argmax(has[:, ::-1], axis=1)
        J = frontier + 1
        N = counts.sum(axis=1)
        gain = np.logaddexp(0.0, np.log(J) + self.log_inv_width(J))
        ll_g = -N * np.log(2.0 * J) + (1.0 + s.spike) * gain
        spiked = (frontier >= 1) & (ll_g > ll_h)
        return SpikedIntervalFamily(alpha, spiked, np.where(spiked, J, 0))


def spike_pool_limit(J: int, log_inv_width: Callable = tower_log_inv_width) -> float:
    """Largest pool a single spike point at ``J`` can beat: ``log(1 + J/f(J)) / log(2J)``.

    (Ignoring the h-family's own log-likelihood, which is small next to both terms.)
    """
    J = check_positive_int(J, "J")
    return float(np.logaddexp(0.0, np.log(J) + log_inv_width(J)) / np.log(2.0 * J))


# ------------------------------------------------------------------------------ figures
# The chapter's larger panels, drawn with exactly the calls the chapter used inline.


def plot_variance_closed_forms(
    ax: plt.Axes, generations: int, ns: Sequence[int], colors: Mapping[str, Any]
) -> None:
    """Gaussian ``(mu, sigma)``: expected fitted variance against the paper's round ``T``.

    Accumulate (dashed, with its ``T -> infinity`` limit dotted) and replace (dash-dotted)
    for every ``n`` in ``ns``; ``colors`` maps ``"accumulate, n=..."`` / ``"replace, n=..."``.
    """
    T_axis = np.arange(1, generations + 1)
    for n in ns:
        c_acc, c_rep = colors[f"accumulate, n={n}"], colors[f"replace, n={n}"]
        ax.plot(
            T_axis,
            accumulate_variance_mean(generations, n),
            "--",
            color=c_acc,
            label=f"accumulate, n={n}",
        )
        ax.axhline(accumulate_variance_limit(n), color=c_acc, ls=":", lw=1)
        ax.plot(
            T_axis,
            replace_variance_mean(generations, n),
            "-.",
            color=c_rep,
            label=f"replace, n={n}",
        )
    ax.set(
        xscale="log",
        xlabel="paper round $T = t + 1$",
        ylabel=r"$\mathbb{E}\hat\sigma_T^2/\sigma^2$",
        title=r"Gaussian $(\mu, \sigma)$: fitted variance (dotted: $T \to \infty$)",
    )
    ax.legend()


def plot_replace_mean_median(
    ax: plt.Axes,
    results: Results,
    generations: int,
    ns: Sequence[int],
    colors: Mapping[str, Any],
) -> None:
    """Replace loop: mean (±2 SE) and median (IQR) of the fitted variance, with both theories.

    ``results`` holds the conditions ``"replace, n=..."`` with the metric ``"variance"``;
    the dashed line is ``E sigma_t^2``, the dotted one ``exp E log sigma_t^2``.
    """
    T = generations
    mean_s, med_s = results.band("variance", "se"), results.band("variance", "iqr")
    for n in ns:
        c, key = colors[f"replace, n={n}"], f"replace, n={n}"
        m, q = mean_s[mean_s["condition"] == key], med_s[med_s["condition"] == key]
        ax.plot(m["generation"], m["center"], color=c, label=f"n={n}: mean (±2 SE)")
        ax.fill_between(
            m["generation"], m["low"], m["high"], where=m["low"] > 0, color=c, alpha=0.25, lw=0
        )  # on a log axis, draw the band only where mean - 2 SE is positive
        ax.plot(q["generation"], q["center"], color=c, ls="-.", label=f"n={n}: median (IQR)")
        ax.fill_between(q["generation"], q["low"], q["high"], color=c, alpha=0.12, lw=0)
        ax.plot(replace_variance_mean(T, n), color=c, ls="--", lw=1.4, label=f"n={n}: theory mean")
        ax.plot(
            np.exp(replace_log_variance(T, n)[0]),
            color=c,
            ls=":",
            lw=1.4,
            label=rf"n={n}: theory $\exp\,\mathbb{{E}}\log\hat\sigma^2$",
        )
    ax.set(
        yscale="log",
        xlabel="generation $t$",
        ylabel=r"$\hat\sigma_t^2/\sigma^2$",
        title="replace: the mean hides the typical run",
    )
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below the data


def plot_conservation(ax: plt.Axes, results: Results, total: np.ndarray, title: str) -> None:
    """One regime: the mean (±2 SE) of ``total`` (generation x seed) and of its two parts.

    ``results`` holds one condition with the metrics ``"variance"`` and ``"location"``;
    ``total`` is their sum per seed, whose expectation is conserved at 1.
    """
    parts = {
        "variance": r"width $\hat\sigma_t^2$",
        "location": r"location $(\hat\mu_t-\mu^\star)^2$",
    }
    center = total.mean(axis=1)
    band = 2 * total.std(axis=1, ddof=1) / np.sqrt(total.shape[1])
    ax.plot(center, color="black", label="sum (mean, ±2 SE)")
    ax.fill_between(
        np.arange(len(center)), center - band, center + band, color="black", alpha=0.2, lw=0
    )
    for (metric, label), c in zip(parts.items(), ("C2", "C4"), strict=True):
        s = results.band(metric, "se")
        ax.plot(s["generation"], s["center"], color=c, label=label)
    ax.axhline(1.0, color="black", ls="--", lw=1.2, label=r"theory: $\sigma^2 = 1$")
    ax.set(xlabel="generation $t$", ylabel="expected value (over seeds)", title=title)
    ax.legend(fontsize=8)


def plot_spike_log_density(ax: plt.Axes, family: SpikeFamily, x: np.ndarray, n: int) -> float:
    """Construction 1 at ``alpha = 1/8`` on a log scale, the spike drawn as a vertical line.

    Returns the spike's ``log10`` density (far off the axis).
    """
    a = 0.125
    model = SpikeMixture(a, 2.4, family)
    log10p = model.logpdf(x) / np.log(10)
    ax.plot(x, np.where(np.isfinite(log10p), log10p, np.nan), label=rf"$\alpha={a}$ off the spike")
    spike_log10 = float(model.logpdf(np.array([2.4]))[0] / np.log(10))
    ax.vlines(
        2.4,
        log10p[np.isfinite(log10p)].min(),
        3,
        color="C3",
        lw=2,
        label=f"spike: width $e^{{-5n}}/39$, log10 density {spike_log10:.0f} (off scale)",
    )
    ax.set(
        xlabel="$x$",
        ylabel="$\\log_{10} p(x)$",
        ylim=(-2.5, 3),
        title=f"$\\alpha = 1/8$, $n = N = {n}$: a near-delta spike",
    )
    ax.legend(fontsize=8, loc="lower left")
    return spike_log10


def plot_spike_round1(
    ax: plt.Axes, ns: np.ndarray, tv1: Sequence[np.ndarray], limit_draws: np.ndarray
) -> None:
    """Construction 1, round 1: median (IQR) of ``TV_1`` over seeds against ``n``.

    ``tv1[i]`` holds the seeds' ``TV_1`` at ``n = ns[i]``; ``limit_draws`` are draws of
    ``Gamma_K / 2`` (:func:`spike_round1_limit`), whose median over ``n`` is the dashed line.
    """
    med = np.array([np.median(v) for v in tv1])
    lo, hi = (
        np.array([np.quantile(v, 0.25) for v in tv1]),
        np.array([np.quantile(v, 0.75) for v in tv1]),
    )
    ax.errorbar(
        ns, med, yerr=[med - lo, hi - med], marker="o", capsize=3, label="median (IQR) over seeds"
    )
    ax.plot(
        ns,
        np.median(limit_draws) / ns,
        "--",
        color="black",
        lw=1.2,
        label=r"large-$n$ limit: median$(\Gamma_K/2)/n$",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="$n$",
        ylabel=r"$\mathrm{TV}_1 = \alpha^{(1)}$",
        title="round 1 (real data only): consistent",
    )
    ax.set_xticks(ns, [f"{n:.0f}" for n in ns])
    ax.minorticks_off()
    ax.legend(fontsize=8)


def plot_spike_round2(
    ax: plt.Axes, ns: np.ndarray, tv2: Sequence[np.ndarray], seeds: int, p_limit: float
) -> None:
    """Construction 1, round 2: the fraction of ``seeds`` seeds with ``TV_2 > 1/10`` (±2 SE).

    Drawn against ``n`` with the bound :func:`spike_round2_bound` and the large-``n`` limit.
    """
    S = seeds
    frac = np.array([np.mean(v > 0.1) for v in tv2])
    band = 2 * np.sqrt(frac * (1 - frac) / S)
    ax.errorbar(ns, frac, yerr=band, marker="o", capsize=3, label="simulation (±2 SE)")
    ax.plot(
        ns,
        [spike_round2_bound(int(n)) for n in ns],
        "--",
        color="black",
        lw=1.2,
        label=r"bound $1-\mathbb{E}(1-V/4)^n$ (tends to 1/5)",
    )
    ax.axhline(p_limit, color="grey", ls=":", label=rf"large-$n$ limit $\approx {p_limit:.3f}$")
    ax.set(
        xscale="log",
        ylim=(0, 0.5),
        xlabel="$n$",
        ylabel=r"$P(\mathrm{TV}_2 > 1/10)$",
        title="round 2 (real + one synthetic round): collapsed",
    )
    ax.set_xticks(ns, [f"{n:.0f}" for n in ns])
    ax.minorticks_off()
    ax.legend(fontsize=8)


def plot_final_n_alpha(
    ax: plt.Axes,
    final_alpha: Mapping[str, np.ndarray],
    ns: Sequence[int],
    colors: Mapping[str, Any],
) -> None:
    """Empirical distribution over seeds of ``n alpha_T`` per condition (``"n=50..."``).

    Bounded-spike conditions are dashed; the dotted lines mark ``alpha = 1/10`` for each ``n``.
    """
    for c, a_T in final_alpha.items():
        n_c = int(c.split(",")[0][2:])
        x_c = np.sort(n_c * a_T)
        ls = "--" if "bounded" in c else "-"
        ax.step(
            x_c,
            np.arange(1, x_c.size + 1) / x_c.size,
            where="post",
            color=colors[c],
            ls=ls,
            label=c,
        )
    for n_c in ns:
        ax.axvline(n_c / 10, color=colors[f"n={n_c}"], ls=":", lw=1.2)
    ax.set(
        xscale="log",
        xlabel=r"$n\,\alpha_T$ at the last generation (dotted: $\alpha = 1/10$, i.e. $n/10$)",
        ylabel="fraction of seeds at or below",
        title=r"bounded spike: $n\,\alpha_T$ is spread alike for both $n$",
    )
    ax.legend(fontsize=8, loc="upper left")


def plot_batch_ratios(
    ax: plt.Axes, batch_ratio: np.ndarray, all_ratio: float, generations: int, runs: int
) -> None:
    """Histogram of error(T)/error(1) over batches, against all ``runs`` and ``sqrt(H_T)``."""
    ax.hist(batch_ratio, bins=20, color="C0", alpha=0.8, label="batches of 50 runs")
    # the two reference values nearly coincide: a wide pale line under a thin dashed one
    ax.axvline(
        np.sqrt(squared_harmonic(generations)[-1]),
        color="grey",
        lw=5,
        alpha=0.5,
        label=r"$\sqrt{H_{100}}$ (root-mean-square analogue)",
    )
    ax.axvline(all_ratio, color="black", ls="--", label=f"all {runs} runs: {all_ratio:.3f}")
    ax.set(
        xlabel="error(T) / error(1), mean absolute error over the batch",
        ylabel="batches",
        title="the same for every $\\theta_0$: only Monte Carlo spread",
    )
    ax.legend(fontsize=8)
