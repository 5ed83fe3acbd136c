"""The univariate Gaussian fitted by maximum likelihood, and its closed-form theory.

The learner works on a leading seed axis (data ``(S, n)``) and equally on a single
seed (data ``(n,)``), so it serves both as a batched learner and, wrapped in
:class:`collapse_lib.loop.PerSeed`, as a per-seed one. It keeps the sufficient
statistics (count, mean, sum of squared deviations) and pools them with Chan et al.'s
update, so accumulating over hundreds of generations costs constant memory.

Indexing as in :mod:`collapse_lib.regimes`: generation 0 is fitted on ``n`` real
samples; every later generation adds (accumulate) or uses (replace) ``n`` new samples.

The ``d``-dimensional Gaussian (:class:`MultivariateGaussian`, fitted by
:class:`MultivariateGaussianMLE`) keeps (count, mean, scatter matrix) the same way; its
closed forms are the Wishart/Bartlett laws of the determinant under replacement
(:func:`replace_logdet`, :func:`replace_det_mean`), and :func:`log_det_ratio` and
:func:`variance_kept` are its loop metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import digamma, polygamma

from collapse_lib.loop import Learner, as_numpy
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


# ---- the d-dimensional Gaussian ---------------------------------------------------------


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """A square root ``L`` with ``L L^T = cov`` for a batch ``(..., d, d)``.

    The Cholesky factor where it exists; for a matrix without one (singular: rank below
    ``d``) the symmetric square root ``V diag(sqrt(w)) V^T`` from ``eigh`` (eigenvalues
    below ``d eps max(w)``, rounding noise, set to 0). The
    fallback is decided matrix by matrix, so each matrix's factor does not depend on the
    others in the batch.
    """
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        pass
    flat = cov.reshape(-1, *cov.shape[-2:])
    out = np.empty_like(flat)
    for k, c in enumerate(flat):  # only after a failure: one matrix at a time
        try:
            out[k] = np.linalg.cholesky(c)
        except np.linalg.LinAlgError:
            w, v = np.linalg.eigh(c)
            w = np.where(w > len(w) * np.finfo(float).eps * w.max(), w, 0.0)  # rounding: 0
            out[k] = (v * np.sqrt(w)) @ v.T
    return out.reshape(cov.shape)


@dataclass
class MultivariateGaussian:
    """``N(mean, cov)`` in ``d`` dimensions, one model or one per seed.

    ``mean`` has shape ``(d,)`` or ``(S, d)``, ``cov`` ``(d, d)`` or ``(S, d, d)``; ``cov``
    must be symmetric and positive semi-definite up to a relative tolerance of ``1e-8``
    (it is stored symmetrised). A single ``(d,)``/``(d, d)`` truth serves any number of
    generators.
    """

    mean: np.ndarray
    cov: np.ndarray

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=float)
        cov = np.asarray(self.cov, dtype=float)
        if mean.ndim not in (1, 2) or mean.shape[-1] < 1:
            raise ValueError(f"mean must have shape (d,) or (S, d), got {mean.shape}")
        d = mean.shape[-1]
        if cov.ndim not in (2, 3) or cov.shape[-2:] != (d, d):
            raise ValueError(
                f"cov must have shape (d, d) or (S, d, d) with d = {d} (the mean's),"
                f" got {cov.shape}"
            )
        if mean.ndim == 2 and cov.ndim == 3 and mean.shape[0] != cov.shape[0]:
            raise ValueError(
                f"mean {mean.shape} and cov {cov.shape} must have the same number of seeds"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
            raise ValueError("mean and cov must be finite")
        scale = np.abs(cov).max(axis=(-2, -1), keepdims=True)
        tol = 1e-8 * np.maximum(scale, np.finfo(float).tiny)
        cov_t = np.swapaxes(cov, -1, -2)
        if np.any(np.abs(cov - cov_t) > tol):
            raise ValueError("cov must be symmetric")
        cov = (cov + cov_t) / 2
        if np.any(np.linalg.eigvalsh(cov)[..., :1] < -tol[..., 0]):
            raise ValueError("cov must be positive semi-definite")
        self.mean, self.cov = mean, cov

    @property
    def dim(self) -> int:
        """The dimension ``d``."""
        return self.mean.shape[-1]

    def sample(self, n: int, rngs: Rngs) -> np.ndarray:
        """``(S, n, d)`` draws ``mean + z @ L^T`` (``L L^T = cov``, ``z`` standard normal).

        ``z`` comes from :func:`standard_normal`; ``L`` is the Cholesky factor (an
        eigen-decomposition square root for a singular ``cov``). Replicate ``s`` draws only
        from ``rngs[s]``; one ``Generator`` (a single model, for
        :class:`~collapse_lib.loop.PerSeed`) gives ``(n, d)``.
        """
        n = check_positive_int(n, "n")
        batched = max(self.mean.ndim - 1, self.cov.ndim - 2) == 1
        seeds = self.cov.shape[0] if self.cov.ndim == 3 else len(self.mean)
        if isinstance(rngs, np.random.Generator):
            if batched:
                raise ValueError(
                    f"rngs must hold one generator per seed ({seeds}), got one Generator"
                )
        elif batched and len(rngs) != seeds:
            raise ValueError(f"rngs must hold one generator per seed ({seeds}), got {len(rngs)}")
        z = standard_normal(rngs, (n, self.dim))
        root = _psd_sqrt(self.cov)
        return self.mean[..., None, :] + z @ np.swapaxes(root, -1, -2)


@dataclass
class MultivariateGaussianStats:
    """Sufficient statistics: count ``(S,)``, mean ``(S, d)`` and scatter ``(S, d, d)``.

    ``scatter = sum_j (x_j - mean)(x_j - mean)^T``, the sum of outer products of deviations.
    """

    count: np.ndarray
    mean: np.ndarray
    scatter: np.ndarray


@dataclass
class MultivariateGaussianMLE(Learner):
    """Maximum-likelihood ``d``-dim. Gaussian: ``mu = mean(x)``, ``Sigma = scatter / (N - ddof)``.

    Data ``(S, n, d)`` (or ``(n, d)`` for one seed); batched over seeds with matrix
    products, no loop over seeds. ``ddof=0`` is the MLE, ``ddof=1`` the unbiased estimator.

    Each coordinate's fit uses that coordinate alone (its sample mean and MLE variance), and
    a sample of ``N(mu, Sigma)`` has the coordinate ``N(mu_i, Sigma_ii)``: every marginal
    evolves exactly as the 1-D chain of :class:`GaussianMLE` under every regime. Hence
    ``E tr(Sigma_t) / tr(Sigma)`` follows :func:`replace_variance_mean`,
    :func:`accumulate_variance_mean` and :func:`mixture_moments` (relative to ``var``)
    for ``replace``, ``accumulate`` and ``mixture``/``real_only``; ``accumulate_subsample``
    has no closed form here. The determinant is the genuinely multivariate quantity: see
    :func:`replace_logdet` and :func:`replace_det_mean`.
    """

    ddof: int = 0

    def summarize(self, data: np.ndarray) -> MultivariateGaussianStats:
        x = np.asarray(data, dtype=float)
        if x.ndim not in (2, 3) or x.shape[-2] < 1:
            raise ValueError(f"data must have shape (S, n, d) or (n, d) with n >= 1, got {x.shape}")
        mean = x.mean(axis=-2)
        dev = x - mean[..., None, :]
        scatter = np.swapaxes(dev, -1, -2) @ dev
        scatter = (scatter + np.swapaxes(scatter, -1, -2)) / 2  # exactly symmetric
        count = np.full(mean.shape[:-1], x.shape[-2], dtype=float)
        return MultivariateGaussianStats(count, mean, scatter)

    def merge(
        self, a: MultivariateGaussianStats, b: MultivariateGaussianStats
    ) -> MultivariateGaussianStats:
        """Chan et al.'s pairwise update: ``scatter_a + scatter_b + delta delta^T n_a n_b / n``."""
        if a.mean.shape != b.mean.shape:
            raise ValueError(f"summaries differ in shape: {a.mean.shape} and {b.mean.shape}")
        count = a.count + b.count
        delta = b.mean - a.mean
        mean = a.mean + delta * (b.count / count)[..., None]
        outer = delta[..., :, None] * delta[..., None, :]
        scatter = a.scatter + b.scatter + outer * (a.count * b.count / count)[..., None, None]
        return MultivariateGaussianStats(count, mean, scatter)

    def fit_summary(self, s: MultivariateGaussianStats) -> MultivariateGaussian:
        if np.any(s.count <= self.ddof):
            raise ValueError(f"need more than ddof={self.ddof} samples to fit a covariance")
        return MultivariateGaussian(s.mean, s.scatter / (s.count - self.ddof)[..., None, None])


def _check_dims(n: int, d: int) -> tuple[int, int]:
    n, d = check_positive_int(n, "n"), check_positive_int(d, "d")
    if n <= d:
        raise ValueError(f"n must be > d = {d} for a full-rank covariance fit, got n = {n}")
    return n, d


def replace_logdet(generations: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace regime, MLE covariance: mean and sd of ``log det(Sigma_t Sigma^{-1})``.

    Given generation ``t - 1``, ``n Sigma_t = sum_j (x_j - xbar)(x_j - xbar)^T`` with
    ``x_j ~ N(mu_{t-1}, Sigma_{t-1})``, so ``n Sigma_t ~ Wishart_d(n - 1, Sigma_{t-1})``,
    i.e. ``n Sigma_t = Sigma_{t-1}^{1/2} W Sigma_{t-1}^{1/2}`` with ``W ~ Wishart_d(n - 1, I)``
    independent of the past. Bartlett's decomposition ``W = A A^T`` (``A`` lower
    triangular, ``A_ii^2 ~ chi^2_{n-i}``, independent) gives
    ``det(Sigma_t Sigma_{t-1}^{-1}) = prod_{i=1..d} chi^2_{n-i} / n``. Generation 0 is
    already one fit, so ``log det(Sigma_t Sigma^{-1})`` sums ``t + 1`` independent copies of
    ``sum_i log(chi^2_{n-i} / n)``; with ``E log chi^2_k = psi(k/2) + log 2`` and
    ``Var log chi^2_k = psi'(k/2)``:

    ``mean_t = (t+1) [sum_{i=1..d} (psi((n-i)/2) + log 2) - d log n]``,
    ``sd_t = sqrt((t+1) sum_{i=1..d} psi'((n-i)/2))``, ``t = 0..generations-1``.

    Needs ``n > d``. For ``d = 1`` this is :func:`replace_log_variance` with ``var = 1``.
    """
    n, d = _check_dims(n, d)
    k = generation_axis(generations) + 1
    dof = (n - np.arange(1, d + 1)) / 2
    mean = k * (np.sum(digamma(dof) + np.log(2)) - d * np.log(n))
    return mean, np.sqrt(k * np.sum(polygamma(1, dof)))


def replace_det_mean(generations: int, n: int, d: int) -> np.ndarray:
    """Replace regime, MLE cov.: ``E det(Sigma_t Sigma^{-1}) = (prod_{i=1..d} (n-i)/n)^(t+1)``.

    From the Bartlett factorisation of :func:`replace_logdet`: each fit multiplies the
    determinant by an independent ``prod_i chi^2_{n-i} / n``, of mean ``prod_i (n-i)/n``.
    Needs ``n > d``; for ``d = 1`` this is :func:`replace_variance_mean`.
    """
    n, d = _check_dims(n, d)
    factor = np.prod((n - np.arange(1, d + 1)) / n)
    return factor ** (generation_axis(generations) + 1)


def _covs(step: Any) -> tuple[np.ndarray, np.ndarray]:
    fitted = np.asarray(as_numpy(step.model.cov), dtype=float)
    true = np.asarray(as_numpy(step.truth.cov), dtype=float)
    if fitted.ndim != 3 or true.shape[-2:] != fitted.shape[-2:]:
        raise ValueError(
            f"step.model.cov must be (S, d, d) and step.truth.cov (d, d) or (S, d, d), got"
            f" {fitted.shape} and {true.shape}"
        )
    return fitted, true


def log_det_ratio(step: Any) -> np.ndarray:
    """Loop metric: ``log det(Sigma_hat Sigma^{-1})`` per seed, by ``slogdet``.

    ``Sigma`` is ``step.truth.cov``, ``Sigma_hat`` ``step.model.cov``; ``-inf`` for a
    singular fit (the loop reports it as non-finite).
    """
    fitted, true = _covs(step)
    sign, logdet = np.linalg.slogdet(fitted)
    logdet = np.where(sign > 0, logdet, -np.inf)
    return logdet - np.linalg.slogdet(true)[1]


def variance_kept(step: Any) -> np.ndarray:
    """Loop metric: ``tr(Sigma_hat) / tr(Sigma)`` per seed, the fraction of total variance kept."""
    fitted, true = _covs(step)
    return np.trace(fitted, axis1=-2, axis2=-1) / np.trace(true, axis1=-2, axis2=-1)
