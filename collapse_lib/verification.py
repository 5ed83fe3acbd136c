"""Self-verification: best-of-N under a frozen verifier, as a filter of the generation loop.

The mechanism of Fu, Wang, Chen, Shen & Tao (NeurIPS 2025, "Self-verification provably prevents
model collapse in recursive synthetic training") [paper, Sec. 5]: to label a fresh input ``x``
at generation ``t``,

1. draw ``N`` candidates ``y_1..y_N ~ G_{t-1}(. | x)``;
2. score them with the *generation-0* model, ``s(y) = log G_0(y | x)`` (trained on real data
   only, and frozen);
3. keep the candidates within a margin ``gamma`` of the best one *in the sample*,
   ``s(y_k) >= max_k' s(y_k') - gamma``;
4. pick one of them with probability proportional to ``exp(s / temperature)`` (the paper's
   "softmax over the scores"; its temperature is not stated, 1 here is this book's choice).

:class:`SelfVerification` is this filter for any model with the conditional-generator protocol
of :mod:`collapse_lib.conditional` (``split``/``join``/``propose``/``log_prob``): a tabular
generator, a linear-Gaussian regressor, or a language model, whose continuation is verified as a
whole (``level="output"``) or token by token (``level="token"``).

Metrics [paper, Definitions 1-2 and the coverage coefficient of Sec. 4]. With the *verified set*
``y+_gamma(x) = {y : log G_0(y | x) >= max_y' log G_0(y' | x) - gamma}`` (tie-aware: a set, not
one argmax),

* coverage coefficient ``C_{gamma,t} = E_x[1 / G_t(y+_gamma(x) | x)]``;
* minimum confidence ``C0 = min_x max_y G_t(y | x)`` (the paper also minimises over ``t``);
* test error ``Err(G_t) = P_x[argmax_y G_t(y | x) != y*(x)]``.

Theory [paper, Theorems 1-3; only these factors and conditions are quoted verbatim]:

* naive recursion: the coverage obeys a linear recursion with factor
  ``a(C0) = (1/C0 + ln(1/C0)) / 2``, which exceeds 1 when ``C0 < 0.6422`` [the root is derived];
* a fresh-real fraction ``alpha > alpha*(C0) = 1 - 1 / (2 (1/C0 - 1))`` keeps the bound finite;
* self-verification with ``N > N*(C0) = ln(1/C0) / C0`` candidates removes the exponential term.

The contraction factors of the real-data and verified recursions (:func:`contraction`) are
*reconstructed* [R]: the unique linear factors whose "< 1" conditions are the quoted ones. The
paper's display formulas could not be read, so their constants are not the paper's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import rel_entr, xlogy

from collapse_lib.conditional import ConditionalCategorical, inverse_cdf, uniforms
from collapse_lib.loop import FilterContext, Step, run
from collapse_lib.metrics import entropy, total_variation
from collapse_lib.regimes import Regime
from collapse_lib.results import Results
from collapse_lib.runtime import check_choice, check_fraction, check_positive_int

#: Two log-scores closer than this are a tie (count-based models produce exactly equal floats for
#: equal counts; the tolerance only absorbs round-off). Used by the filter and the verified set.
TIE_TOL = 1e-9

VERIFIERS = ("base", "current")
SELECTIONS = ("softmax", "uniform")
LEVELS = ("output", "token")


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _nonneg(value: Any, name: str, allow_inf: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if np.isnan(v) or v < 0 or (np.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a {'' if allow_inf else 'finite '}number >= 0, got {v}")
    return v


def _confidence(c0: Any) -> np.ndarray:
    c = np.asarray(c0, dtype=float)
    if not np.all((c > 0) & (c <= 1)):
        raise ValueError("c0 (a top-1 probability) must lie in (0, 1]")
    return c


def _probs(p: Any, name: str) -> np.ndarray:
    q = np.asarray(p, dtype=float)
    if q.ndim < 1 or np.any(q < 0) or not np.all(np.isfinite(q)):
        raise ValueError(f"{name} must be finite, non-negative probabilities (..., K)")
    return q


def _same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {a.shape} and {names[1]} {b.shape} must have the same shape")


def _weights(weights: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Input weights over the second-to-last axis, normalised; uniform when ``None``."""
    if weights is None:
        return np.full(shape, 1.0 / shape[-1])
    w = np.asarray(weights, dtype=float)
    try:
        w = np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(f"weights {w.shape} must broadcast to the inputs' shape {shape}") from None
    if np.any(w < 0) or not np.all(w.sum(axis=-1) > 0):
        raise ValueError("weights must be non-negative with a positive sum")
    return w / w.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# theory: the factors and thresholds of Theorems 1-3
# --------------------------------------------------------------------------------------------


def growth_factor(c0: Any) -> np.ndarray:
    """``a(C0) = (1/C0 + ln(1/C0)) / 2`` [paper, Theorem 1: quoted verbatim].

    The factor of the naive recursion of the coverage coefficient; ``a > 1`` (exponential
    growth of the bound) for ``C0 <`` :func:`growth_threshold`.
    """
    c = _confidence(c0)
    return 0.5 * (1 / c + np.log(1 / c))


def growth_threshold() -> float:
    """The root ``C0 ~ 0.642201`` of ``a(C0) = 1`` [derived; the paper says "C0 <= 0.5"]."""
    return float(brentq(lambda c: growth_factor(c) - 1, 0.3, 0.99, xtol=1e-14))


def real_fraction_threshold(c0: Any) -> np.ndarray:
    """``alpha*(C0) = 1 - 1 / (2 (1/C0 - 1))`` [paper, Theorem 2: quoted verbatim].

    A fresh-real fraction ``alpha > alpha*`` keeps the bound finite. ``alpha* <= 0`` (any
    ``alpha`` works) for ``C0 >= 2/3``, and ``-inf`` at ``C0 = 1``.
    """
    c = _confidence(c0)
    with np.errstate(divide="ignore"):
        return 1 - 1 / (2 * (1 / c - 1))


def candidates_threshold(c0: Any) -> np.ndarray:
    """``N*(C0) = ln(1/C0) / C0`` [paper, Theorem 3: quoted verbatim].

    Self-verification with ``N > N*`` candidates keeps the bound finite. ``N*`` decreases on
    ``(0, 1]`` and ``C0 >= 1/K`` for ``K`` labels, so ``N > K ln K`` always suffices [derived].
    """
    c = _confidence(c0)
    return np.log(1 / c) / c


def contraction(
    c0: Any, remedy: str, *, alpha: float | None = None, candidates: int | None = None
) -> np.ndarray:
    """The factor ``kappa`` of ``C_t <= kappa C_{t-1} + b`` for each remedy.

    * ``"naive"``: ``a(C0)`` [paper];
    * ``"real"``: ``2 (1 - alpha) (1/C0 - 1)`` [reconstructed: ``< 1`` iff ``alpha > alpha*``];
    * ``"verified"``: ``ln(1/C0) / (N C0)`` [reconstructed: ``< 1`` iff ``N > N*``].
    """
    check_choice(remedy, ("naive", "real", "verified"), "remedy")
    c = _confidence(c0)
    if remedy == "naive":
        return growth_factor(c)
    if remedy == "real":
        if alpha is None:
            raise ValueError("the 'real' remedy needs alpha")
        return 2 * (1 - check_fraction(alpha, "alpha")) * (1 / c - 1)
    if candidates is None:
        raise ValueError("the 'verified' remedy needs candidates")
    return candidates_threshold(c) / check_positive_int(candidates, "candidates")


def coverage_bound(kappa: float, b: float, start: float, generations: int) -> np.ndarray:
    """Solution of ``C_t = kappa C_{t-1} + b``, ``C_0 = start``, for ``t = 0..generations-1``.

    ``C_t = kappa^t C_0 + b (kappa^t - 1) / (kappa - 1)`` (``C_0 + b t`` for ``kappa = 1``):
    the shape of the paper's bounds [reconstructed; the paper's ``b`` is not recoverable].
    """
    kappa, b, start = _nonneg(kappa, "kappa"), _nonneg(b, "b"), _nonneg(start, "start")
    t = np.arange(check_positive_int(generations, "generations"), dtype=float)
    if kappa == 1:
        return start + b * t
    k = kappa**t
    return k * start + b * (k - 1) / (kappa - 1)


def miss_probability(p: Any, candidates: int) -> np.ndarray:
    """``(1 - p)^N``: no candidate lands in a set of probability ``p`` [paper's Monte-Carlo step].

    For ``gamma = 0`` the filter's pick misses ``y+_0(x)`` exactly when no candidate hits it, so
    the miss rate is ``E_x (1 - p(x))^N <= E_x exp(-N p(x))`` (:func:`miss_bound`).
    """
    q = _probs(p, "p")
    if np.any(q > 1):
        raise ValueError("p must lie in [0, 1]")
    return (1 - q) ** check_positive_int(candidates, "candidates")


def miss_bound(p: Any, candidates: int) -> np.ndarray:
    """``exp(-N p) >= (1 - p)^N``, the form used in the paper's proof."""
    q = _probs(p, "p")
    if np.any(q > 1):
        raise ValueError("p must lie in [0, 1]")
    return np.exp(-check_positive_int(candidates, "candidates") * q)


def verified_map(p: Any, candidates: int, generations: int) -> np.ndarray:
    """Iterates of ``p -> 1 - (1 - p)^N`` [derived]: ``(generations, *p.shape)``, row 0 = ``p``.

    The population map of ``p_t(x) = G_t(y+_0(x) | x)`` under self-verification with
    ``gamma = 0`` and no smoothing: a pick lands in ``y+_0`` unless all ``N`` candidates miss.
    For ``N >= 2``, ``p = 1`` attracts every ``p > 0`` (the slope at 0 is ``N``).
    """
    q = _probs(p, "p")
    N = check_positive_int(candidates, "candidates")
    out = np.empty((check_positive_int(generations, "generations"), *q.shape))
    out[0] = q
    for t in range(1, out.shape[0]):
        out[t] = 1 - (1 - out[t - 1]) ** N
    return out


# --------------------------------------------------------------------------------------------
# metrics of conditional categorical models (last axis: labels, second-to-last: inputs)
# --------------------------------------------------------------------------------------------


def verified_set(base_probs: Any, margin: float = 0.0) -> np.ndarray:
    """``y+_gamma(x)`` as a boolean mask: ``log G_0(y|x) >= max_y' log G_0(y'|x) - gamma``.

    Tie-aware (every maximiser belongs to ``y+_0``). ``base_probs`` is ``(..., K)``.
    """
    p = _probs(base_probs, "base_probs")
    g = _nonneg(margin, "margin", allow_inf=True)
    with np.errstate(divide="ignore"):
        lp = np.log(p)
    return lp >= lp.max(axis=-1, keepdims=True) - g - TIE_TOL


def verified_mass(probs: Any, verified: Any) -> np.ndarray:
    """``G(y+(x) | x) = sum_{y in y+(x)} G(y | x)``: ``(..., K)`` -> ``(...)``."""
    p, v = _probs(probs, "probs"), np.asarray(verified, dtype=bool)
    _same_shape(p, v, ("probs", "verified"))
    return (p * v).sum(axis=-1)


def coverage_coefficient(probs: Any, verified: Any, weights: Any = None) -> np.ndarray:
    """``C = E_x[1 / G(y+(x) | x)]`` [paper], ``x`` weighted by ``weights`` (uniform default).

    ``probs (..., m, K)`` -> ``(...)``; infinite if the model gives ``y+(x)`` no mass somewhere.
    """
    mass = verified_mass(probs, verified)
    with np.errstate(divide="ignore"):
        return (_weights(weights, mass.shape) / mass).sum(axis=-1)


def min_confidence(probs: Any, weights: Any = None) -> np.ndarray:
    """``C0 = min_x max_y G(y | x)`` over inputs of positive weight [paper, Definition 1]."""
    p = _probs(probs, "probs")
    top = p.max(axis=-1)
    w = _weights(weights, top.shape)
    return np.where(w > 0, top, np.inf).min(axis=-1)


def top1_error(probs: Any, labels: Any, weights: Any = None) -> np.ndarray:
    """``P_x[argmax_y G(y|x) != y*(x)]`` with ties broken uniformly at random [paper, Def. 2].

    ``probs (..., m, K)``, ``labels (..., m)`` (the ground truth ``y*``) -> ``(...)``.
    """
    p = _probs(probs, "probs")
    y = np.asarray(labels)
    if y.shape != p.shape[:-1]:
        raise ValueError(f"labels must have shape {p.shape[:-1]}, got {y.shape}")
    top = p >= p.max(axis=-1, keepdims=True)
    hit = np.take_along_axis(top, y[..., None].astype(np.int64), axis=-1)[..., 0]
    err = 1 - hit / top.sum(axis=-1)
    return (_weights(weights, err.shape) * err).sum(axis=-1)


def calibration_residual(base_probs: Any, labels: Any, margin: float = 0.0, weights: Any = None):
    """``eps_hat = P_x[y*(x) not in y+(x) or |y+(x)| > 1]`` [derived from Assumption 1].

    For ``gamma = 0`` and ``tau <= 1/2``: a model with ``G(y+(x)|x) > 1 - tau`` predicts
    ``y*(x)`` except on this set, so ``Err <= eps_hat + P_x[G(y+|x) <= 1 - tau]`` exactly.
    """
    v = verified_set(base_probs, margin)
    y = np.asarray(labels)
    if y.shape != v.shape[:-1]:
        raise ValueError(f"labels must have shape {v.shape[:-1]}, got {y.shape}")
    inside = np.take_along_axis(v, y[..., None].astype(np.int64), axis=-1)[..., 0]
    bad = (~inside) | (v.sum(axis=-1) > 1)
    return (_weights(weights, bad.shape) * bad).sum(axis=-1)


def fixation_error(base_probs: Any, labels: Any, weights: Any = None) -> np.ndarray:
    """``E_x[1 - G_0(y*(x) | x)]``: the error the naive chain fixes at without smoothing [derived].

    Without smoothing each ``G_t(. | x)`` is a Wright-Fisher chain; it fixes on label ``y`` with
    probability ``G_0(y | x)``, so the long-run error is the base model's *soft* error mass.
    """
    p = _probs(base_probs, "base_probs")
    y = np.asarray(labels)
    if y.shape != p.shape[:-1]:
        raise ValueError(f"labels must have shape {p.shape[:-1]}, got {y.shape}")
    hit = np.take_along_axis(p, y[..., None].astype(np.int64), axis=-1)[..., 0]
    return (_weights(weights, hit.shape) * (1 - hit)).sum(axis=-1)


def verified_coverage_floor(
    n: int, n_inputs: int, labels: int, smoothing: float, sizes: Any = 1
) -> np.ndarray:
    """``E_x E[(n_x + K lam) / (n_x + |y+(x)| lam)]``, ``n_x ~ Binomial(n, 1/m)`` [derived].

    The coverage coefficient of a smoothed tabular fit (uniform inputs) whose every training label
    lies in the verified set: ``G_t(y+|x) = (n_x + |y+(x)| lam) / (n_x + K lam)``.
    Self-verification drives ``C_{gamma,t}`` to this floor (1 without smoothing). ``sizes``:
    ``|y+(x)|``, a number or an array ``(..., m)``; the result has its leading shape.
    """
    from scipy.stats import binom

    n = check_positive_int(n, "n")
    m = check_positive_int(n_inputs, "n_inputs")
    K = check_positive_int(labels, "labels")
    lam = _nonneg(smoothing, "smoothing")
    size = np.asarray(sizes, dtype=float)
    if np.any(size < 1) or np.any(size > K):
        raise ValueError(f"sizes must lie in [1, K={K}]")
    k = np.arange(n + 1, dtype=float)
    pmf = binom.pmf(k, n, 1 / m)
    den = k + size[..., None] * lam
    ratio = np.where(den > 0, (k + K * lam) / np.where(den > 0, den, 1), 1.0)
    per_input = (pmf * ratio).sum(axis=-1)
    return per_input.mean(axis=-1) if size.ndim else per_input


def bound_chain(
    residual: Any, low_confidence: Any, coverage: Any, tau: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """The two upper bounds on the error of :func:`calibration_residual` [derived, exact]:

    ``Err_t <= eps_hat + P_x[G_t(y+|x) <= 1 - tau] <= eps_hat + (1 - tau) C_{gamma,t}``
    (Markov's inequality for ``1 / G_t(y+|x)``), for ``gamma = 0`` and ``tau <= 1/2``.
    """
    tau = check_fraction(tau, "tau")
    r = np.asarray(residual, dtype=float)
    return r + np.asarray(low_confidence, dtype=float), r + (1 - tau) * np.asarray(coverage)


# --------------------------------------------------------------------------------------------
# the filter
# --------------------------------------------------------------------------------------------


def select(
    scores: Any,
    rngs: Sequence[np.random.Generator],
    *,
    margin: float = 0.0,
    temperature: float = 1.0,
    selection: str = "softmax",
) -> np.ndarray:
    """The index of the chosen candidate: ``scores (S, n, N)`` -> ``(S, n)`` [paper, Sec. 5].

    Keep ``s_k >= max_k' s_k' - margin`` (relative to the best candidate *in the sample*), then
    draw one with weight ``exp(s_k / temperature)`` (``selection="softmax"``) or uniformly
    (``"uniform"``, not the paper's). Duplicated candidates count separately. If no candidate has
    a finite score, all are kept.
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 3 or s.shape[-1] < 1:
        raise ValueError(f"scores must have shape (S, n, N), got {s.shape}")
    g = _nonneg(margin, "margin", allow_inf=True)
    temp = _nonneg(temperature, "temperature")
    if temp == 0:
        raise ValueError("temperature must be > 0")
    check_choice(selection, SELECTIONS, "selection")
    mx = s.max(axis=-1, keepdims=True)
    anchored = np.isfinite(mx)
    keep = np.where(anchored, s >= np.where(anchored, mx, 0) - g - TIE_TOL, True)
    if selection == "softmax":
        with np.errstate(invalid="ignore", over="ignore"):
            logw = np.where(anchored, (s - np.where(anchored, mx, 0)) / temp, 0.0)
        w = np.where(keep, np.exp(np.nan_to_num(logw, nan=-np.inf)), 0.0)
    else:
        w = keep.astype(float)
    cdf = np.cumsum(w, axis=-1)
    cdf /= cdf[..., -1:]
    return inverse_cdf(cdf, uniforms(rngs, (s.shape[1], 1)))[..., 0]


@dataclass
class SelfVerification:
    """The self-verification filter for :func:`collapse_lib.loop.run` [paper, Sec. 5].

    Parameters
    ----------
    candidates
        ``N``, candidates per input (the loop's own synthetic draw is the first of them, so
        ``N = 1`` returns the candidates unchanged: the naive chain, number for number).
    margin
        ``gamma >= 0``: keep candidates within ``gamma`` of the best score in the sample.
        ``gamma = 0`` picks among the best; ``inf`` keeps all.
    temperature
        Softmax temperature of the pick (the paper's is not stated; 1 is the book's choice).
    verifier
        ``"base"``: score with the frozen generation-0 model ``G_0`` [paper];
        ``"current"``: with the model that proposed, ``G_{t-1}`` (self-sharpening; not the paper's).
    selection
        ``"softmax"`` [paper] or ``"uniform"`` among the retained candidates.
    level
        ``"output"``: verify the model's whole output for an input (a label, a regression target,
        a language model's continuation of its prompt); ``"token"``: verify every next token of
        an autoregressive model (needs ``model.generate`` and ``model.transition``).
    """

    candidates: int = 8
    margin: float = 0.0
    temperature: float = 1.0
    verifier: str = "base"
    selection: str = "softmax"
    level: str = "output"

    def __post_init__(self) -> None:
        self.candidates = check_positive_int(self.candidates, "candidates")
        self.margin = _nonneg(self.margin, "margin", allow_inf=True)
        self.temperature = _nonneg(self.temperature, "temperature")
        if self.temperature == 0:
            raise ValueError("temperature must be > 0")
        check_choice(self.verifier, VERIFIERS, "verifier")
        check_choice(self.selection, SELECTIONS, "selection")
        check_choice(self.level, LEVELS, "level")

    def choose(self, inputs: Any, proposals: Any, verifier: Any, rngs: Sequence[Any]) -> Any:
        """Score ``proposals (S, n, N, ...)`` with ``verifier.log_prob``; return the picks."""
        scores = verifier.log_prob(inputs, proposals)
        k = select(
            scores,
            rngs,
            margin=self.margin,
            temperature=self.temperature,
            selection=self.selection,
        )
        idx = k.reshape(*k.shape, *([1] * (np.ndim(proposals) - 2)))
        return np.take_along_axis(np.asarray(proposals), idx, axis=2)[:, :, 0]

    def __call__(self, ctx: FilterContext) -> Any:
        if self.candidates == 1:
            return ctx.candidates
        model = ctx.model
        judge = ctx.model0 if self.verifier == "base" else ctx.model
        inputs, outputs = model.split(ctx.candidates)
        if self.level == "token":
            proposer, scorer = model.transition, judge.transition

            def step(prev: np.ndarray, rngs: Sequence[Any]) -> np.ndarray:
                return self.choose(
                    prev, proposer.propose(prev, self.candidates, rngs), scorer, rngs
                )

            return model.generate(inputs, ctx.rngs, step)
        more = model.propose(inputs, self.candidates - 1, ctx.rngs)
        proposals = np.concatenate([np.asarray(outputs)[:, :, None], more], axis=2)
        return model.join(inputs, self.choose(inputs, proposals, judge, ctx.rngs))


# --------------------------------------------------------------------------------------------
# loop metrics anchored at generation 0
# --------------------------------------------------------------------------------------------


class ChainMetrics:
    """Loop metrics of a chain of conditional categorical models, anchored at generation 0.

    At generation 0 the loop's model *is* ``G_0`` (fitted on real data only): the metrics keep
    its verified set ``y+_gamma`` and compare every later ``G_t`` with it; they also keep the
    previous generation's model for the one-step total variation. Inputs are weighted by the
    truth's input distribution (``truth.inputs``). ``part`` picks the conditional categorical
    of a model (``lambda lm: lm.transition`` for a :class:`~collapse_lib.conditional.BigramLM`).

    After a run, :attr:`base` holds ``G_0``'s table ``(S, m, K)`` and :attr:`verified` its
    verified set (the last run's; every condition of :func:`run_conditions` shares ``G_0``).

    Call with metric names (all by default) to get the ``metrics`` mapping of
    :func:`collapse_lib.loop.run`:

    ============== ===========================================================================
    error          ``P_x[argmax G_t(.|x) != y*(x)]``, ``y*`` = the truth's top label
    coverage       ``C_{gamma,t} = E_x 1 / G_t(y+|x)``
    verified_mass  ``E_x G_t(y+|x)``
    low_confidence ``P_x[G_t(y+|x) <= 1 - tau]``
    min_confidence ``C0_t = min_x max_y G_t(y|x)``
    residual       ``eps_hat`` of :func:`calibration_residual` (constant in ``t``)
    tv_step        ``E_x TV(G_t(.|x), G_{t-1}(.|x))`` (0 at ``t = 0``)
    entropy        ``E_x H(G_t(.|x))`` (nats)
    kl             ``E_x KL(P*(.|x) || G_t(.|x))`` (nats)
    cross_entropy  ``E_x sum_y P*(y|x) (-log G_t(y|x))``: the expected held-out log-loss (nats)
    ============== ===========================================================================
    """

    NAMES = (
        "error",
        "coverage",
        "verified_mass",
        "low_confidence",
        "min_confidence",
        "residual",
        "tv_step",
        "entropy",
        "kl",
        "cross_entropy",
    )

    def __init__(
        self,
        margin: float = 0.0,
        tau: float = 0.5,
        part: Callable[[Any], ConditionalCategorical] | None = None,
    ) -> None:
        self.margin = _nonneg(margin, "margin", allow_inf=True)
        self.tau = check_fraction(tau, "tau")
        self.part = part or (lambda model: model)
        self._model: Any = None
        self.base: np.ndarray | None = None
        self.verified: np.ndarray | None = None
        self._values: dict[str, np.ndarray] = {}

    def __call__(self, *names: str) -> dict[str, Callable[[Step], np.ndarray]]:
        for name in names:
            check_choice(name, self.NAMES, "metric")
        return {
            name: (lambda step, name=name: self.value(step, name)) for name in names or self.NAMES
        }

    def value(self, step: Step, name: str) -> np.ndarray:
        """Metric ``name`` of ``step`` (computed once per generation, cached)."""
        check_choice(name, self.NAMES, "metric")
        if step.model is not self._model:
            self._update(step)
        return self._values[name]

    def _update(self, step: Step) -> None:
        G = self.part(step.model).probs
        truth = self.part(step.truth)
        if G.shape != truth.probs.shape:
            raise ValueError(f"model {G.shape} and truth {truth.probs.shape} tables differ")
        w, ystar = truth.inputs, truth.top1()
        if step.generation != 0 and self._model is None:
            raise ValueError("ChainMetrics must see generation 0 first (it anchors on G_0)")
        if step.generation == 0:
            self.base = G
            self.verified = verified_set(G, self.margin)
            self._residual = calibration_residual(G, ystar, self.margin, w)
            self._prev = G
        mass = verified_mass(G, self.verified)
        with np.errstate(divide="ignore"):
            cross = -xlogy(truth.probs, G).sum(axis=-1)
        self._values = {
            "error": top1_error(G, ystar, w),
            "coverage": coverage_coefficient(G, self.verified, w),
            "verified_mass": (w * mass).sum(-1),
            "low_confidence": (w * (mass <= 1 - self.tau)).sum(-1),
            "min_confidence": min_confidence(G, w),
            "residual": self._residual,
            "tv_step": (w * total_variation(G, self._prev)).sum(-1),
            "entropy": (w * entropy(G)).sum(-1),
            "kl": (w * rel_entr(truth.probs, G).sum(-1)).sum(-1),
            "cross_entropy": (w * cross).sum(-1),
        }
        self._prev, self._model = G, step.model


def run_conditions(
    conditions: Mapping[str, tuple[Regime, Callable[[FilterContext], Any] | None]], **kwargs: Any
) -> Results:
    """:func:`collapse_lib.loop.run` once per ``{label: (regime, filter)}``, on the same seeds.

    Like :func:`collapse_lib.loop.compare`, but each condition has its own filter (``None``: no
    curation). All share the root seed, so generation 0 is identical across conditions.
    """
    if not conditions:
        raise ValueError("conditions must name at least one (regime, filter) pair")
    runs = []
    for label, pair in conditions.items():
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"condition {label!r} must be a (regime, filter) pair")
        runs.append(run(regime=pair[0], filter=pair[1], condition=label, **kwargs))
    return Results.concat(runs)


# --------------------------------------------------------------------------------------------
# the paper's calibration evidence (Appendix K.1, Table 1)
# --------------------------------------------------------------------------------------------


def calibration_table() -> pd.DataFrame:
    """Phi-3.5-mini on MATH: correct/incorrect answers per log-probability bin [paper, Table 1].

    Columns ``low, high`` (bin edges of the log-probability), ``correct``, ``incorrect``. Whether
    the log-probabilities are summed or length-normalised is not stated in the paper.
    """
    return pd.DataFrame(
        {
            "low": [-0.6, -1.2, -1.8, -2.4, -3.0],
            "high": [0.0, -0.6, -1.2, -1.8, -2.4],
            "correct": [1032, 413, 73, 24, 6],
            "incorrect": [83, 462, 386, 95, 18],
        }
    )
