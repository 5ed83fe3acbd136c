"""Categorical distributions over K tokens on a seed axis, their count-based MLE, and its theory.

The model is a probability vector per seed, ``probs`` of shape ``(S, K)``; data are token
indices ``(S, n)``. The learner keeps token counts as its sufficient statistic, so the
accumulate regime pools counts (constant memory per seed) and the replace regime refits on
the newest counts alone. This is the simplest "language model": a unigram model fitted by
maximum likelihood, ``p_hat_k = count_k / N``.

Theory (the book's derivation, chapter 1): for one token ``k`` the indicator ``1[x = k]`` has
mean ``p_k`` and variance ``p_k (1 - p_k)``, and the second-moment recursion of the Gaussian
MLE (:mod:`collapse_lib.gaussian`) uses nothing but those two moments. Hence

* replace (the Wright--Fisher model of population genetics):
  ``Var p_hat_{t,k} = p_k (1 - p_k) [1 - (1 - 1/n)^(t+1)]``;
* accumulate: ``Var p_hat_{t,k} = p_k (1 - p_k) [1 - prod_{j=1}^{t+1} (1 - 1/(n j^2))]``,

with generation ``t`` indexed as in :mod:`collapse_lib.regimes` (generation 0 is fitted on
``n`` real tokens). In both regimes ``E p_hat_{t,k} = p_k`` (the fit is a martingale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collapse_lib.gaussian import accumulate_variance_mean, replace_variance_mean
from collapse_lib.loop import Learner
from collapse_lib.metrics import empirical_distribution
from collapse_lib.runtime import (
    Rngs,
    check_choice,
    check_nonnegative,
    check_positive_int,
    check_probabilities,
    uniforms,
)


def zipf(categories: int, exponent: float = 1.0) -> np.ndarray:
    """Zipf probabilities ``p_k = k^(-s) / sum_j j^(-s)``, ``k = 1..K`` (most frequent first)."""
    K = check_positive_int(categories, "categories")
    exponent = check_nonnegative(exponent, "exponent")
    w = np.arange(1, K + 1, dtype=float) ** (-exponent)
    return w / w.sum()


def stationary_distribution(transitions: np.ndarray) -> np.ndarray:
    """The stationary law ``pi = pi P`` of irreducible transition matrices ``(..., K, K)``.

    The left eigenvector of eigenvalue 1 (``numpy.linalg.eig``, batched over leading axes),
    normalised to sum to 1.
    """
    P = check_probabilities(transitions, "transitions", ndims=(2, 3))
    if P.shape[-1] != P.shape[-2]:
        raise ValueError(f"transitions must be square, (K, K) or (S, K, K), got shape {P.shape}")
    vals, vecs = np.linalg.eig(np.swapaxes(P, -1, -2))
    i = np.abs(vals - 1).argmin(axis=-1)
    pi = np.abs(np.take_along_axis(vecs, i[..., None, None], axis=-1)[..., 0].real)
    return pi / pi.sum(axis=-1, keepdims=True)


@dataclass
class Categorical:
    """A categorical distribution over ``K`` tokens: ``probs`` of shape ``(K,)`` or ``(S, K)``."""

    probs: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, dtype=float)
        if p.ndim not in (1, 2) or p.shape[-1] < 1:
            raise ValueError(f"probs must have shape (K,) or (S, K), got {p.shape}")
        if np.any(p < 0) or not np.all(np.isfinite(p)):
            raise ValueError("probs must be finite and non-negative")
        if not np.allclose(p.sum(axis=-1), 1.0, atol=1e-9):
            raise ValueError("probs must sum to 1 along the last axis")
        self.probs = p

    @property
    def categories(self) -> int:
        return self.probs.shape[-1]

    def sample(self, n: int, rngs: Rngs) -> np.ndarray:
        """``n`` tokens per seed by inverse-CDF sampling: shape ``(S, n)``.

        Replicate ``s`` draws ``n`` uniforms from ``rngs[s]`` only; a token of probability 0
        is never drawn (its CDF interval is empty).
        """
        n = check_positive_int(n, "n")
        u = uniforms(rngs, n)
        S, K = u.shape[0], self.categories
        p = np.broadcast_to(self.probs, (S, K)) if self.probs.ndim == 1 else self.probs
        if p.shape[0] != S:
            raise ValueError(f"probs has {p.shape[0]} seeds but {S} generators were given")
        cdf = np.cumsum(p, axis=-1)
        cdf[:, -1] = 1.5  # every uniform in [0, 1) lands on a token despite round-off
        # One searchsorted for all seeds: seed s lives in [2 s, 2 s + 1.5] of one sorted axis
        # (resolution ~ 2 S * 1e-16, far below any probability a count-based fit produces).
        offset = 2.0 * np.arange(S)[:, None]
        idx = np.searchsorted((cdf + offset).ravel(), (u + offset).ravel(), side="right")
        tokens = (idx.reshape(S, n) - K * np.arange(S)[:, None]).astype(np.int64)
        return tokens


@dataclass
class TokenCounts:
    """Sufficient statistic of a categorical sample: counts per token, shape ``(S, K)``."""

    counts: np.ndarray


@dataclass
class CategoricalMLE(Learner):
    """Count-based MLE ``p_hat_k = count_k / N`` on tokens ``(S, n)`` with values in ``[0, K)``."""

    categories: int

    def __post_init__(self) -> None:
        self.categories = check_positive_int(self.categories, "categories")

    def summarize(self, data: np.ndarray) -> TokenCounts:
        x = np.asarray(data)
        freq = empirical_distribution(x, self.categories)
        return TokenCounts(np.rint(freq * x.shape[-1]))

    def merge(self, a: TokenCounts, b: TokenCounts) -> TokenCounts:
        if a.counts.shape != b.counts.shape:
            raise ValueError(f"counts shapes differ: {a.counts.shape} and {b.counts.shape}")
        return TokenCounts(a.counts + b.counts)

    def fit_summary(self, s: TokenCounts) -> Categorical:
        return Categorical(s.counts / s.counts.sum(axis=-1, keepdims=True))


def surviving_tokens(probs: np.ndarray) -> np.ndarray:
    """Number of tokens with positive probability, per seed (last axis = tokens)."""
    return (np.asarray(probs) > 0).sum(axis=-1)


def token_variance(p: np.ndarray, generations: int, n: int, regime: str) -> np.ndarray:
    """``Var p_hat_{t,k}`` for ``t = 0..generations-1``: shape ``(generations, K)``.

    ``p_k (1 - p_k) (1 - P_{t+1}(n))`` under ``"accumulate"`` with
    ``P_T(n) = prod_{j<=T} (1 - 1/(n j^2))``, and ``p_k (1 - p_k) (1 - (1 - 1/n)^(t+1))``
    under ``"replace"`` (Wright--Fisher); see the module docstring.
    """
    check_choice(regime, ("accumulate", "replace"), "regime")
    p = np.asarray(p, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p must be one probability vector (K,), got shape {p.shape}")
    keep = (accumulate_variance_mean if regime == "accumulate" else replace_variance_mean)(
        generations, n
    )
    return (1 - keep)[:, None] * (p * (1 - p))[None, :]
