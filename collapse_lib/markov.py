"""Next-token (n-gram / Markov-chain) language models fitted by counting, and their theory.

A next-token model is a transition matrix ``P`` of shape ``(C, K)``: row ``c`` is the law of
the next token in context ``c`` (``C = K`` for a bigram model, ``C = K**m`` for an order-``m``
model). Its maximum-likelihood fit is the empirical conditional frequency
``P_hat(j | c) = count(c, j) / count(c)`` (the linear-softmax model on one-hot contexts of
Seddik et al. 2024 has the same MLE). Two learners share that estimator:

* :class:`NextTokenMLE` sees ``n`` next tokens *in every context* (data ``(S, n, C)``), the
  setting of Bakshi & Chakraborty's analysis: every row is an independent multinomial
  estimation problem.
* :class:`MarkovChainMLE` sees whole sequences (data ``(S, n, L)``) and counts the transitions
  in them, so a context is seen as often as the sequences visit it (beyond the analysis).

Both are batched learners for :func:`collapse_lib.loop.run` (leading seed axis) that keep counts
as their sufficient statistic, so the accumulate regime pools counts in constant memory.

Theory (per context row ``p*``, with ``sigma^2 = 1 - ||p*||^2`` and ``R_t = E||P_hat_t - p*||^2``):

* **[paper]** mixing the population law ``alpha_t p* + (1 - alpha_t) P_hat_{t-1}`` (every token
  real with probability ``alpha_t``; Bakshi & Chakraborty's process):
  ``R_t = sigma^2/n_t + (1 - 1/n_t) (1 - alpha_t)^2 R_{t-1}``, ``R_0 = sigma^2/n_0``;
* **[derived]** the loop's fixed split, ``m_t = round(alpha_t n_t)`` real tokens and the rest
  synthetic, with ``a_t = m_t/n_t``: ``R_t = sigma^2/n_t + (1 - a_t)(1 - a_t - 1/n_t) R_{t-1}``.

Both follow from ``E P_hat_t = p*`` (the fit is unbiased at every generation) and the multinomial
covariance; the same recursion holds token by token with ``sigma^2`` replaced by
``p*_j (1 - p*_j)`` (:func:`token_errors`). Generation ``t`` is indexed as in
:mod:`collapse_lib.regimes`: ``t = 0`` is fitted on ``n_0`` real tokens per context, which is also
the paper's ``P_hat_0``.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import entr

from collapse_lib.categorical import (
    Categorical,
    CategoricalMLE,
    TokenCounts,
    zipf,
)
from collapse_lib.gaussian import accumulate_variance_mean
from collapse_lib.loop import FilterContext, Learner, Step
from collapse_lib.metrics import empirical_distribution, kl_model_true, total_variation
from collapse_lib.regimes import Regime
from collapse_lib.runtime import (
    Rngs,
    check_choice,
    check_fraction,
    check_nonnegative,
    check_positive_int,
    check_probabilities,
    uniforms,
)

SPLITS: tuple[str, ...] = ("fixed", "iid")

# --------------------------------------------------------------------------------------------
# true next-token laws
# --------------------------------------------------------------------------------------------


def dirichlet_transitions(
    tokens: int,
    contexts: int | None = None,
    concentration: float = 0.5,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """A transition matrix ``(C, K)`` with i.i.d. ``Dirichlet(concentration * 1_K)`` rows.

    ``contexts`` defaults to ``tokens`` (a bigram model). A concentration below 1 gives rows
    with a few frequent tokens and a tail of rare ones.
    """
    K = check_positive_int(tokens, "tokens")
    C = K if contexts is None else check_positive_int(contexts, "contexts")
    if not (np.isfinite(concentration) and concentration > 0):
        raise ValueError(f"concentration must be a finite number > 0, got {concentration!r}")
    P = rng.dirichlet(np.full(K, float(concentration)), size=C)
    P = np.maximum(P, 1e-300)  # a Dirichlet draw can underflow to 0: keep every token possible
    return P / P.sum(axis=-1, keepdims=True)


def zipf_transitions(
    tokens: int,
    contexts: int | None = None,
    exponent: float = 1.1,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """A transition matrix ``(C, K)`` whose rows are Zipf laws (``categorical.zipf``)
    with the token ranks permuted at random in every row (heavy tails, different per context)."""
    K = check_positive_int(tokens, "tokens")
    C = K if contexts is None else check_positive_int(contexts, "contexts")
    base = zipf(K, exponent)
    return np.stack([base[rng.permutation(K)] for _ in range(C)])


def _transition_matrix(P: Any, name: str) -> np.ndarray:
    """Transition rows ``(C, K)`` or ``(S, C, K)``: one next-token distribution per context."""
    return check_probabilities(P, name, ndims=(2, 3))


# --------------------------------------------------------------------------------------------
# the analysed setting: n next tokens in every context
# --------------------------------------------------------------------------------------------


@dataclass
class NextTokenModel:
    """A next-token law per context: ``probs`` of shape ``(C, K)`` or ``(S, C, K)`` (per seed).

    A *sample* of this model is one next token for every context, so ``sample(n, rngs)`` gives
    ``n`` i.i.d. next tokens per context: shape ``(S, n, C)``.
    """

    probs: np.ndarray

    def __post_init__(self) -> None:
        self.probs = _transition_matrix(self.probs, "probs")

    @property
    def contexts(self) -> int:
        return self.probs.shape[-2]

    @property
    def tokens(self) -> int:
        return self.probs.shape[-1]

    def sample(self, n: int, rngs: Rngs) -> np.ndarray:
        """``n`` next tokens in every context: ``(S, n, C)``

        Each row is drawn by :class:`~collapse_lib.categorical.Categorical`'s inverse-CDF sampler
        from seed ``s``'s own generator (``C`` blocks of ``n`` uniforms, context by context).
        """
        n = check_positive_int(n, "n")
        gens = list(rngs)
        S, C, K = len(gens), self.contexts, self.tokens
        p = self.probs if self.probs.ndim == 3 else np.broadcast_to(self.probs, (S, C, K))
        if p.shape[0] != S:
            raise ValueError(f"probs has {p.shape[0]} seeds but {S} generators were given")
        rows = Categorical(p.reshape(S * C, K))
        x = rows.sample(n, [g for g in gens for _ in range(C)])  # (S*C, n)
        x = np.swapaxes(x.reshape(S, C, n), 1, 2)
        return x


class NextTokenMLE(CategoricalMLE):
    """Count-based MLE of a next-token model from ``n`` tokens per context, data ``(S, n, C)``.

    ``P_hat(j | c) = count(c, j) / n``: the categorical MLE of
    :class:`~collapse_lib.categorical.CategoricalMLE` applied row by row (counts ``(S, C, K)``
    are the sufficient statistic, pooled by ``merge`` under accumulation).
    """

    def summarize(self, data: np.ndarray) -> TokenCounts:
        x = np.asarray(data)
        if x.ndim != 3:
            raise ValueError(f"data must have shape (S, n, C), got {x.shape}")
        return super().summarize(np.swapaxes(x, 1, 2))  # counts (S, C, K)

    def fit_summary(self, s: TokenCounts) -> NextTokenModel:
        return NextTokenModel(s.counts / s.counts.sum(axis=-1, keepdims=True))


def discard_synthetic(ctx: FilterContext) -> np.ndarray:
    """A loop filter that keeps none of the synthetic candidates: *real-data filtration*.

    With the mixture regime, generation ``t`` then trains on its ``round(alpha_t n_t)`` fresh real
    samples alone (a perfect provenance detector throws every synthetic sample away).
    """
    return ctx.candidates[:, :0]


# --------------------------------------------------------------------------------------------
# per-seed metrics of a fitted next-token model (rows on the last axis, contexts before it)
# --------------------------------------------------------------------------------------------


def squared_error(probs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``sum_c ||P_hat(.|c) - P*(.|c)||^2`` per seed: the quantity of the recursion, all rows."""
    d = np.asarray(probs, dtype=float) - np.asarray(truth, dtype=float)
    return (d**2).sum(axis=(-2, -1))


def row_support(probs: np.ndarray) -> np.ndarray:
    """Mean over contexts of the number of tokens with positive probability."""
    return (np.asarray(probs) > 0).sum(axis=-1).mean(axis=-1)


def row_entropy(probs: np.ndarray) -> np.ndarray:
    """Mean over contexts of the next-token entropy (nats)."""
    return entr(np.asarray(probs, dtype=float)).sum(axis=-1).mean(axis=-1)


def row_collision(probs: np.ndarray) -> np.ndarray:
    """Mean over contexts of the collision probability ``||P(.|c)||^2`` (1 = a Dirac row)."""
    return (np.asarray(probs, dtype=float) ** 2).sum(axis=-1).mean(axis=-1)


def row_tv(probs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean over contexts of ``TV(P_hat(.|c), P*(.|c))``."""
    return total_variation(probs, truth).mean(axis=-1)


def row_kl(probs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean over contexts of ``KL(P_hat(.|c) || P*(.|c))`` (nats; finite while ``P*`` > 0).

    The other direction, ``KL(P* || P_hat)``, is infinite as soon as a token dies out.
    """
    return kl_model_true(probs, truth).mean(axis=-1)


def next_token_metrics() -> dict[str, Callable[[Step], np.ndarray]]:
    """The chapter's loop metrics of a :class:`NextTokenModel` against the true one."""
    return {
        "error": lambda s: squared_error(s.model.probs, s.truth.probs),
        "support": lambda s: row_support(s.model.probs),
        "entropy": lambda s: row_entropy(s.model.probs),
        "collision": lambda s: row_collision(s.model.probs),
        "tv": lambda s: row_tv(s.model.probs, s.truth.probs),
        "kl": lambda s: row_kl(s.model.probs, s.truth.probs),
    }


# --------------------------------------------------------------------------------------------
# theory: the error recursion and what follows from it
# --------------------------------------------------------------------------------------------


def gini(probs: np.ndarray) -> np.ndarray:
    """``sigma^2 = 1 - ||p||^2 = sum_j p_j (1 - p_j)`` per row: the error of one token draw."""
    p = np.asarray(probs, dtype=float)
    return 1.0 - (p**2).sum(axis=-1)


def realized_schedule(
    regime: Regime, n: int | Callable[[int], int], generations: int
) -> tuple[np.ndarray, np.ndarray]:
    """The schedules ``(alpha_t, n_t)``, ``t = 0..generations-1``, that the loop uses.

    These are what :func:`collapse_lib.loop.run` draws with this regime and sample size, with
    ``alpha_0 = 1`` (generation 0 is real data only).

    ``n`` is an int or a schedule ``t -> n_t`` (:func:`~collapse_lib.regimes.sample_sizes`), as for
    ``run``. The loop draws ``round(alpha_t n_t)`` real samples; :func:`error_recursion` with
    ``split="fixed"`` applies the same rounding.
    """
    if not isinstance(regime, Regime):
        raise ValueError(f"regime must be a Regime, got {regime!r}")
    T = check_positive_int(generations, "generations")
    n_at = (lambda t: n) if not callable(n) else n
    sizes = np.array([check_positive_int(n_at(t), f"n_{t}") for t in range(T)], dtype=np.int64)
    alpha = np.array([1.0] + [regime.alpha(t) for t in range(1, T)])
    return alpha, sizes


def _schedules(alpha: Any, n: Any) -> tuple[np.ndarray, np.ndarray]:
    alpha = np.asarray(alpha, dtype=float)
    n = np.asarray(n)
    if alpha.ndim == 0 or n.ndim == 0:
        raise ValueError("alpha and n must be arrays over generations (last axis)")
    if np.any(~np.isfinite(alpha)) or np.any((alpha < 0) | (alpha > 1)):
        raise ValueError("alpha must lie in [0, 1]")
    if not np.issubdtype(n.dtype, np.number) or np.any(n < 1) or np.any(n != np.round(n)):
        raise ValueError("n must hold integers >= 1")
    try:
        alpha, n = np.broadcast_arrays(alpha, n.astype(float))
    except ValueError:
        raise ValueError(
            f"alpha and n must broadcast, got shapes {alpha.shape} and {n.shape}"
        ) from None
    return alpha, n


def error_recursion(sigma2: Any, alpha: Any, n: Any, split: str = "fixed") -> np.ndarray:
    """``R_t = E||P_hat_t - p*||^2`` for ``t = 0..T-1`` from the exact recursion.

    ``R_0 = sigma^2/n_0`` and, for ``t >= 1``,

    * ``split="iid"`` **[paper, eq. (2.3)]**, every token real with probability ``alpha_t``:
      ``R_t = sigma^2/n_t + (1 - 1/n_t)(1 - alpha_t)^2 R_{t-1}``;
    * ``split="fixed"`` **[derived]**, the loop's mixture regime with ``round(alpha_t n_t)`` real
      tokens; with ``a_t = round(alpha_t n_t)/n_t``,
      ``R_t = sigma^2/n_t + (1 - a_t)(1 - a_t - 1/n_t) R_{t-1}``.

    Parameters
    ----------
    sigma2
        ``1 - ||p*||^2`` (summed over the rows it stands for); any shape ``(...)``.
    alpha, n
        Schedules over generations on the last axis (``alpha[..., 0]`` is not used); they
        broadcast against each other and against ``sigma2[..., None]`` (grids of schedules are
        computed in one pass).

    Returns
    -------
    numpy.ndarray
        Shape ``broadcast(sigma2[..., None], alpha, n)``.
    """
    check_choice(split, SPLITS, "split")
    alpha, n = _schedules(alpha, n)
    sigma2 = np.asarray(sigma2, dtype=float)
    if np.any(sigma2 < 0) or not np.all(np.isfinite(sigma2)):
        raise ValueError("sigma2 must be finite and >= 0")
    shape = np.broadcast_shapes(sigma2[..., None].shape, alpha.shape)
    R = np.empty(shape)
    for t in range(shape[-1]):  # one step for the whole grid at a time: memory is R alone
        a, m = alpha[..., t], n[..., t]
        if split == "fixed":
            a = np.round(a * m) / m
            damp = (1 - a) * (1 - a - 1 / m)
        else:
            damp = (1 - 1 / m) * (1 - a) ** 2
        R[..., t] = sigma2 / m + (damp * R[..., t - 1] if t else 0.0)
    return R


def fixed_point(sigma2: Any, alpha: float, n: int, split: str = "fixed") -> np.ndarray:
    """The long-run error at constant ``alpha`` and ``n`` **[derived]**:
    ``sigma^2/(n - (n-1)(1-alpha)^2)`` (iid), ``sigma^2/n / (1 - (1-a)(1-a-1/n))`` (fixed split).

    For ``n >> 1/alpha`` both are about ``sigma^2/(n alpha (2 - alpha))``: an effective sample size
    of ``2 alpha n`` for small ``alpha``, however many generations run.
    """
    check_choice(split, SPLITS, "split")
    alpha = check_fraction(alpha, "alpha")
    n = check_positive_int(n, "n")
    sigma2 = np.asarray(sigma2, dtype=float)
    if split == "iid":
        return sigma2 / (n - (n - 1) * (1 - alpha) ** 2)
    a = round(alpha * n) / n  # a = 0 gives sigma^2: collapse
    return sigma2 / n / (1 - (1 - a) * (1 - a - 1 / n))


def token_errors(probs: np.ndarray, alpha: Any, n: Any, split: str = "fixed") -> np.ndarray:
    """``e_t(c, j) = E(P_hat_t(j|c) - p*_j(c))^2``: the recursion with ``sigma^2 = p (1 - p)``.

    Shape ``(..., C, K, T)`` for ``probs`` of shape ``(..., C, K)``.
    """
    p = np.asarray(probs, dtype=float)
    return error_recursion(p * (1 - p), alpha, n, split)


def tv_approximation(probs: np.ndarray, alpha: Any, n: Any, split: str = "fixed") -> np.ndarray:
    """Mean over contexts of ``E TV(P_hat_t, p*) ~ 1/2 sum_j sqrt(2 e_t(j)/pi)`` **[derived]**.

    The normal approximation of each token's error; it needs ``n_t p*_j >> 1`` and fails once
    rare tokens die out (collapse).
    """
    e = token_errors(probs, alpha, n, split)
    return (0.5 * np.sqrt(2 * e / np.pi).sum(axis=-2)).mean(axis=-2)


def kl_approximation(probs: np.ndarray, alpha: Any, n: Any, split: str = "fixed") -> np.ndarray:
    """Mean over contexts of ``E KL(P_hat_t || p*) ~ E chi^2 / 2 = sum_j e_t(j)/(2 p*_j)``.

    **[derived]**.

    The second-order expansion of the KL divergence; like :func:`tv_approximation` it assumes
    every token is still alive.
    """
    p = np.asarray(probs, dtype=float)
    e = token_errors(p, alpha, n, split)
    return (0.5 * (e / p[..., None]).sum(axis=-2)).mean(axis=-2)


def accumulate_error(sigma2: Any, generations: int, n: int) -> np.ndarray:
    """Accumulate regime, no fresh data (Gerstgrasser et al.): ``R_t = sigma^2 [1 - prod_{k=1}^{t+1}
    (1 - 1/(n k^2))]`` **[derived]**; bounded by about ``(pi^2/6) sigma^2/n`` for every ``t``.

    Token by token this is :func:`collapse_lib.categorical.token_variance` (``"accumulate"``).
    """
    keep = accumulate_variance_mean(generations, n)
    return np.asarray(sigma2, dtype=float)[..., None] * (1 - keep)


def filtered_error(sigma2: Any, alpha: float, n: int) -> np.ndarray:
    """Real-data filtration: each generation trains on its ``m = round(alpha n)`` fresh real tokens
    only, so ``R = sigma^2/m`` at every generation **[derived]**."""
    m = round(check_fraction(alpha, "alpha") * check_positive_int(n, "n"))
    if m < 1:
        raise ValueError(f"alpha * n must round to at least one real token, got alpha={alpha}")
    return np.asarray(sigma2, dtype=float) / m


def collapse_time(probs: np.ndarray, n: int) -> np.ndarray:
    """Expected number of sampling rounds until a row is a Dirac mass, with no fresh data:
    ``-2 n sum_j (1 - p_j) log(1 - p_j)``: the diffusion approximation of the neutral
    Wright-Fisher model (population genetics, not the paper; for two tokens it is Kimura & Ohta's
    1969 mean time to fixation or loss, ``-2n [p log p + (1 - p) log(1 - p)]`` for ``n`` gene
    copies). Generation ``t`` has had ``t + 1`` rounds."""
    p = np.asarray(probs, dtype=float)
    n = check_positive_int(n, "n")
    q = np.clip(1 - p, 1e-300, None)
    return -2.0 * n * (q * np.log(q)).sum(axis=-1)


def late_slope(values: np.ndarray, start: float = 0.1) -> np.ndarray:
    """Slope of ``log values`` against ``log t`` over ``t`` in ``[start T, T-1]`` (last axis)."""
    v = np.asarray(values, dtype=float)
    if not 0 < start < 1:
        raise ValueError(f"start must lie in (0, 1), got {start}")
    T = v.shape[-1]
    t = np.arange(max(1, int(start * T)), T)
    if t.size < 2:
        raise ValueError("need at least two generations in the fitting window")
    if np.any(v[..., t] <= 0):
        raise ValueError("values must be > 0 in the fitting window")
    x = np.log(t) - np.log(t).mean()
    y = np.log(v[..., t])
    return (y - y.mean(axis=-1, keepdims=True)) @ x / (x @ x)


def asymptotic_slope(beta: float, gamma: float, c: float = 1.0) -> float:
    """Long-run exponent of ``R_t`` for ``alpha_t = min(1, c t^-beta)``, ``n_t = n0 t^gamma``.

    **[derived]** from the recursion.

    ``R_t ~ t^slope``: ``beta - gamma`` when ``beta < 1`` and ``gamma > beta`` (recovery at the
    quasi-static rate ``sigma^2 / (n_t (1 - (1 - alpha_t)^2))``); ``-min(gamma - 1, 2c)`` when
    ``beta = 1`` and ``gamma > 1``; otherwise ``0``: the error tends to a positive level (bounded,
    frozen, or the collapse level ``sigma^2``). Recovery needs ``sum alpha_t = inf`` and
    ``n_t alpha_t -> inf``.
    """
    for name, v in (("beta", beta), ("gamma", gamma), ("c", c)):
        check_nonnegative(v, name)
    if beta < 1 and gamma > beta:
        return float(beta - gamma)
    if beta == 1 and gamma > 1 and c > 0:
        return float(-min(gamma - 1, 2 * c))
    return 0.0


def regime_map(
    betas: Sequence[float],
    gammas: Sequence[float],
    generations: int,
    n0: int,
    c: float = 1.0,
    split: str = "fixed",
) -> dict[str, np.ndarray]:
    """The recursion on a grid: ``alpha_t = min(1, c t^-beta)``, ``n_t = round(n0 t^gamma)``.

    Returns ``{"ratio": R_T/R_0, "slope": late log-log slope}``, each of shape
    ``(len(betas), len(gammas))``. ``sigma^2`` cancels in both.
    """
    b = np.asarray(betas, dtype=float)
    g = np.asarray(gammas, dtype=float)
    if b.ndim != 1 or g.ndim != 1 or b.size < 1 or g.size < 1:
        raise ValueError("betas and gammas must be non-empty 1-d sequences")
    if np.any(b < 0) or np.any(g < 0):
        raise ValueError("betas and gammas must be >= 0")
    if not c >= 0:
        raise ValueError(f"c must be >= 0, got {c}")
    T = check_positive_int(generations, "generations")
    n0 = check_positive_int(n0, "n0")
    t = np.maximum(np.arange(T), 1).astype(float)
    alpha = np.minimum(1.0, c * t[None, None, :] ** (-b[:, None, None]))
    alpha[..., 0] = 1.0
    sizes = np.maximum(1, np.round(n0 * t[None, None, :] ** g[None, :, None]))
    R = error_recursion(1.0, alpha, sizes, split)
    return {"ratio": R[..., -1] / R[..., 0], "slope": late_slope(R)}


# --------------------------------------------------------------------------------------------
# beyond the analysis: a Markov-chain language model fitted on whole sequences
# --------------------------------------------------------------------------------------------


@dataclass
class MarkovChain:
    """An order-``m`` Markov chain over ``K`` tokens that emits sequences of ``length`` tokens.

    ``transitions`` ``(C, K)`` or ``(S, C, K)`` with ``C = K**order`` (context ``c`` encodes the
    last ``order`` tokens in base ``K``, the most recent last); ``start`` ``(C,)`` or ``(S, C)`` is
    the law of a sequence's first context. ``counts`` (optional) are the transition counts it was
    fitted from.
    """

    transitions: np.ndarray
    start: np.ndarray
    length: int
    order: int = 1
    counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.transitions = _transition_matrix(self.transitions, "transitions")
        self.order = check_positive_int(self.order, "order")
        self.length = check_positive_int(self.length, "length")
        K, C = self.tokens, self.transitions.shape[-2]
        if C != K**self.order:
            raise ValueError(f"transitions must have K**order = {K**self.order} rows, got {C}")
        if self.length <= self.order:
            raise ValueError(f"length must exceed order ({self.order}), got {self.length}")
        self.start = np.asarray(self.start, dtype=float)
        if self.start.shape[-1] != C or self.start.ndim != self.transitions.ndim - 1:
            raise ValueError(f"start must have shape {self.transitions.shape[:-1]}")
        Categorical(self.start)  # validates the start law

    @property
    def tokens(self) -> int:
        return self.transitions.shape[-1]

    def sample(self, n: int, rngs: Rngs) -> np.ndarray:
        """``n`` sequences per seed: ``(S, n, length)`` int tokens

        The first context comes from ``start`` (by inverse CDF), then each token is drawn from its
        context's row with one uniform per position, all seeds and sequences at once.
        """
        n = check_positive_int(n, "n")
        gens = list(rngs)
        S, K, m, L = len(gens), self.tokens, self.order, self.length
        C = K**m
        P = self.transitions
        if P.ndim == 3 and P.shape[0] != S:
            raise ValueError(f"transitions has {P.shape[0]} seeds but {S} generators were given")
        start = self.start if self.start.ndim == 2 else np.broadcast_to(self.start, (S, C))
        ctx = Categorical(start).sample(n, gens)  # (S, n)
        ctx = ctx.reshape(S, n)
        u = uniforms(gens, (n, L - m))  # (S, n, L - m)
        cdf = np.cumsum(P, axis=-1)
        cdf = cdf if cdf.ndim == 3 else np.broadcast_to(cdf, (S, C, K))
        x = np.empty((S, n, L), dtype=np.int64)
        for i in range(m):  # decode the first context into its tokens
            x[..., i] = (ctx // K ** (m - 1 - i)) % K
        seeds = np.arange(S)[:, None]
        for i in range(m, L):
            rows = cdf[seeds, ctx]  # (S, n, K)
            nxt = np.minimum((u[..., i - m, None] >= rows).sum(axis=-1), K - 1)
            x[..., i] = nxt
            ctx = (ctx * K + nxt) % C
        return x


@dataclass
class ChainCounts:
    """Sufficient statistic of sequences: transition counts ``(S, C, K)``, context counts
    ``(S, C)`` (every position, for the start law) and the sequence length."""

    transitions: np.ndarray
    contexts: np.ndarray
    length: int


def _context_ids(x: np.ndarray, K: int, m: int) -> np.ndarray:
    """Context ids of every window of ``m`` tokens along the last axis: ``(..., L - m + 1)``."""
    L = x.shape[-1]
    ids = np.zeros((*x.shape[:-1], L - m + 1), dtype=np.int64)
    for i in range(m):
        ids = ids * K + x[..., i : L - m + 1 + i]
    return ids


@dataclass
class MarkovChainMLE(Learner):
    """Count-based MLE of an order-``m`` Markov chain from sequences ``(S, n, L)``.

    ``P_hat(j | c) = (count(c, j) + smoothing) / (count(c) + K smoothing)``; the start law is the
    empirical law of all length-``m`` contexts in the data (the unigram for a bigram model, close
    to the fitted chain's stationary law). A context never followed by a token in the data backs
    off to the data's unigram of next tokens, so no token is invented. ``smoothing > 0`` adds
    pseudo-counts to every row: it injects uniform "data" each generation and changes the dynamics.
    """

    tokens: int
    order: int = 1
    smoothing: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = check_positive_int(self.tokens, "tokens")
        self.order = check_positive_int(self.order, "order")
        check_nonnegative(self.smoothing, "smoothing")

    def summarize(self, data: np.ndarray) -> ChainCounts:
        x = np.asarray(data)
        K, m = self.tokens, self.order
        if x.ndim != 3:
            raise ValueError(f"data must have shape (S, n, L), got {x.shape}")
        if x.shape[-1] <= m:
            raise ValueError(f"sequences must be longer than the order ({m}), got {x.shape[-1]}")
        if not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() >= K:
            raise ValueError(f"data must hold integer tokens in [0, {K})")
        S, C = x.shape[0], K**m
        ids = _context_ids(x, K, m)  # (S, n, L - m + 1)
        ctx_counts = empirical_distribution(ids.reshape(S, -1), C) * ids[0].size
        pair = ids[..., :-1] * K + x[..., m:]  # (context, next) pairs
        trans = empirical_distribution(pair.reshape(S, -1), C * K) * pair[0].size
        return ChainCounts(np.rint(trans).reshape(S, C, K), np.rint(ctx_counts), x.shape[-1])

    def merge(self, a: ChainCounts, b: ChainCounts) -> ChainCounts:
        if a.transitions.shape != b.transitions.shape or a.length != b.length:
            raise ValueError("summaries to merge must have the same shapes and sequence length")
        return ChainCounts(a.transitions + b.transitions, a.contexts + b.contexts, a.length)

    def fit_summary(self, s: ChainCounts) -> MarkovChain:
        counts = s.transitions + self.smoothing
        total = counts.sum(axis=-1, keepdims=True)
        unigram = s.transitions.sum(axis=-2, keepdims=True)  # next-token counts (S, 1, K)
        unigram = unigram / unigram.sum(axis=-1, keepdims=True)
        P = np.where(total > 0, counts / np.where(total > 0, total, 1), unigram)
        start = s.contexts / s.contexts.sum(axis=-1, keepdims=True)
        return MarkovChain(P, start, s.length, self.order, counts=s.transitions)


def weighted_tv(transitions: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_c w_c TV(P_hat(.|c), P*(.|c))`` per seed (``w``: e.g. the true stationary law)."""
    w = np.asarray(weights, dtype=float)
    if w.shape != np.shape(truth)[-2:-1] or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError("weights must be a probability vector over the contexts")
    return total_variation(transitions, truth) @ w


def transition_support(model: MarkovChain) -> np.ndarray:
    """Per seed, the number of distinct (context, next token) pairs in the fitted counts."""
    if model.counts is None:
        raise ValueError("the model carries no counts (it was not fitted by MarkovChainMLE)")
    return (np.asarray(model.counts) > 0).sum(axis=(-2, -1))


def chain_metrics(
    truth: np.ndarray, weights: np.ndarray
) -> dict[str, Callable[[Step], np.ndarray]]:
    """Loop metrics of a fitted :class:`MarkovChain`: the ``weights``-averaged TV to ``truth``,
    the number of distinct transitions, the same count per context (``next_tokens``: distinct
    next tokens seen after a context, mean over all contexts), and the TV of the start law to
    ``weights``."""
    contexts = np.shape(truth)[-2]
    return {
        "tv": lambda s: weighted_tv(s.model.transitions, truth, weights),
        "transitions": lambda s: transition_support(s.model),
        "next_tokens": lambda s: transition_support(s.model) / contexts,
        "start_tv": lambda s: total_variation(s.model.start, weights),
    }


# --------------------------------------------------------------------------------------------
# text shipped with Python: a character-level corpus without downloads
# --------------------------------------------------------------------------------------------

ALPHABET: str = " " + string.ascii_lowercase  #: token 0 is the space, then a..z


def encode(text: str) -> np.ndarray:
    """Characters of :data:`ALPHABET` to token ids ``0..26``."""
    lookup = {ch: i for i, ch in enumerate(ALPHABET)}
    try:
        return np.fromiter((lookup[ch] for ch in text), dtype=np.int64, count=len(text))
    except KeyError as exc:
        raise ValueError(f"text must contain only {ALPHABET!r}, found {exc.args[0]!r}") from None


def decode(ids: np.ndarray) -> str:
    """Token ids back to text."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= len(ALPHABET)):
        raise ValueError(f"ids must lie in [0, {len(ALPHABET)})")
    return "".join(ALPHABET[i] for i in ids.ravel())


@dataclass
class TextWindows:
    """The "real data" of a text: windows of ``length`` consecutive tokens at uniform positions."""

    ids: np.ndarray
    length: int

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids)
        self.length = check_positive_int(self.length, "length")
        if self.ids.ndim != 1 or self.ids.size < self.length:
            raise ValueError(f"ids must be a 1-d token sequence of at least {self.length} tokens")

    def sample(self, n: int, rngs: Rngs) -> np.ndarray:
        """``n`` windows per seed: ``(S, n, length)``"""
        n = check_positive_int(n, "n")
        gens = list(rngs)
        hi = self.ids.size - self.length + 1
        starts = np.stack([g.integers(0, hi, n) for g in gens])  # (S, n)
        x = self.ids[starts[..., None] + np.arange(self.length)]
        return x


def empirical_chain(ids: np.ndarray, tokens: int, order: int = 1, length: int = 2) -> MarkovChain:
    """The order-``m`` chain fitted to one long token sequence (e.g. a whole text): its "truth"."""
    x = np.asarray(ids)
    if x.ndim != 1:
        raise ValueError(f"ids must be 1-d, got shape {x.shape}")
    fit = MarkovChainMLE(tokens, order).fit(x[None, None, :])
    return MarkovChain(fit.transitions[0], fit.start[0], length, order, counts=fit.counts[0])
