"""The univariate Gaussian fitted by maximum likelihood, and its closed-form theory.

The learner works on a leading seed axis (data ``(S, n)``) and equally on a single
seed (data ``(n,)``), so it serves both as a batched learner and, wrapped in
:class:`collapse_lib.loop.PerSeed`, as a per-seed one. It keeps the sufficient
statistics (count, mean, sum of squared deviations) and pools them with Chan et al.'s
update, so accumulating over hundreds of generations costs constant memory.

Indexing as in :mod:`collapse_lib.regimes`: generation 0 is fitted on ``n`` real
samples; every later generation adds (accumulate) or uses (replace) ``n`` new samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, polygamma

from collapse_lib.loop import Learner
from collapse_lib.runtime import Rngs, check_fraction, check_positive_int, standard_normal


@dataclass
class Gaussian:
    """``N(mean, var)``; ``mean``/``var`` are scalars or one value per seed (shape ``(S,)``)."""

    mean: np.ndarray | float
    var: np.ndarray | float

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=float)
        self.var = np.asarray(self.var, dtype=float)
        if np.any(self.var < 0):
            raise ValueError("var must be >= 0")

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def sample(self, n: int, rngs: Rngs) -> np.ndarray:
        """``mean + std * z`` with ``z`` from :func:`standard_normal`."""
        return self.mean[..., None] + self.std[..., None] * standard_normal(rngs, n)

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """Density at points ``x`` (shape ``(m,)``), per seed: shape ``(..., m)``."""
        z = (np.asarray(x) - self.mean[..., None]) / self.std[..., None]
        return np.exp(-0.5 * z**2) / (self.std[..., None] * np.sqrt(2 * np.pi))


@dataclass
class GaussianStats:
    """Sufficient statistics: sample count, mean and sum of squared deviations ``m2``."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray


@dataclass
class GaussianMLE(Learner):
    """Maximum-likelihood Gaussian: ``mu = mean(x)``, ``sigma^2 = sum (x - mu)^2 / (N - ddof)``.

    ``ddof=0`` is the MLE (the papers' choice); ``ddof=1`` the unbiased estimator.
    """

    ddof: int = 0

    def summarize(self, data: np.ndarray) -> GaussianStats:
        x = np.asarray(data, dtype=float)
        mean = x.mean(axis=-1)
        m2 = ((x - mean[..., None]) ** 2).sum(axis=-1)
        return GaussianStats(np.full(mean.shape, x.shape[-1], dtype=float), mean, m2)

    def merge(self, a: GaussianStats, b: GaussianStats) -> GaussianStats:
        """Chan, Golub & LeVeque's pairwise update of (count, mean, m2)."""
        count = a.count + b.count
        delta = b.mean - a.mean
        mean = a.mean + delta * b.count / count
        m2 = a.m2 + b.m2 + delta**2 * a.count * b.count / count
        return GaussianStats(count, mean, m2)

    def fit_summary(self, s: GaussianStats) -> Gaussian:
        if np.any(s.count <= self.ddof):
            raise ValueError(f"need more than ddof={self.ddof} samples to fit a variance")
        return Gaussian(s.mean, s.m2 / (s.count - self.ddof))


def generation_axis(generations: int) -> np.ndarray:
    """The generation indices ``t = 0, 1, ..., generations - 1`` of a closed form."""
    return np.arange(check_positive_int(generations, "generations"))


def replace_variance_mean(generations: int, n: int, var: float = 1.0) -> np.ndarray:
    """Replace regime: ``E[sigma_t^2] = var * (1 - 1/n)**(t + 1)``, ``t = 0..generations-1``.

    Each MLE refit multiplies the expected variance by ``(n - 1)/n``
    (``n sigma_hat^2 / sigma^2 ~ chi^2_{n-1}``), and generation 0 is already one fit.
    """
    n = check_positive_int(n, "n")
    return var * (1 - 1 / n) ** (generation_axis(generations) + 1)


def replace_log_variance(
    generations: int, n: int, var: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Replace regime: mean and standard deviation of ``log sigma_t^2``.

    ``log sigma_t^2 = log var + sum_{k<=t+1} log(chi^2_{n-1,k} / n)``, so the mean is
    ``log var + (t+1) [psi((n-1)/2) - log(n/2)]`` and the variance ``(t+1) psi'((n-1)/2)``.
    The mean drifts to minus infinity: the *typical* run collapses.
    """
    n = check_positive_int(n, "n")
    if n < 2:
        raise ValueError("n must be >= 2 for a variance fit")
    k = generation_axis(generations) + 1
    mean = np.log(var) + k * (digamma((n - 1) / 2) - np.log(n / 2))
    return mean, np.sqrt(k * polygamma(1, (n - 1) / 2))


def accumulate_variance_mean(generations: int, n: int, var: float = 1.0) -> np.ndarray:
    """Accumulate regime: ``E[sigma_t^2] = var * prod_{k=1}^{t+1} (1 - 1/(n k^2))``.

    Generation ``t`` is fitted on ``(t+1) n`` points; the product converges to
    ``sin(pi/sqrt(n)) / (pi/sqrt(n))`` (Barzilai & Shamir 2025; the book's derivation
    in chapter 1).
    """
    n = check_positive_int(n, "n")
    k = generation_axis(generations) + 1
    return var * np.cumprod(1 - 1 / (n * k.astype(float) ** 2))


def accumulate_variance_limit(n: int, var: float = 1.0) -> float:
    """``lim_t E[sigma_t^2] = var * sin(pi/sqrt(n)) / (pi/sqrt(n))`` under accumulation."""
    x = np.pi / np.sqrt(check_positive_int(n, "n"))
    return float(var * np.sin(x) / x)


def mixture_moments(
    generations: int, n: int, alpha: float, var: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Mixture regime with constant fresh-real fraction: ``E[sigma_t^2]`` and ``E[(mu_t - mu)^2]``.

    With ``m = round(alpha n)`` fresh real points and ``n - m`` synthetic ones from
    ``N(mu_{t-1}, sigma_{t-1}^2)``, write ``a = m/n``, ``b = 1 - a``, ``e_t = mu_t - mu``,
    ``v_t = sigma_t^2``. Conditioning on generation ``t-1`` gives the exact linear recursion

    ``E v_t   = (1 - 1/n) (a var + b E v_{t-1}) + a b E e_{t-1}^2``
    ``E e_t^2 = b^2 E e_{t-1}^2 + (a var + b E v_{t-1}) / n``

    from ``v_0 = var (1 - 1/n)``, ``e_0^2 = var / n`` (the book's derivation). For
    ``alpha > 0`` it converges to a fixed point below ``var``: bounded, not collapsed.
    """
    n = check_positive_int(n, "n")
    alpha = check_fraction(alpha, "alpha")
    a = round(alpha * n) / n
    b = 1 - a
    T = check_positive_int(generations, "generations")
    v = np.empty(T)
    e2 = np.empty(T)
    v[0], e2[0] = var * (1 - 1 / n), var / n
    for t in range(1, T):
        pooled = a * var + b * v[t - 1]
        v[t] = (1 - 1 / n) * pooled + a * b * e2[t - 1]
        e2[t] = b**2 * e2[t - 1] + pooled / n
    return v, e2
