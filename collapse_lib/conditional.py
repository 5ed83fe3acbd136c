"""Conditional generators ``G(y | x)`` that propose candidate outputs and score them.

Some papers study a *conditional* model retrained on its own labels: each generation draws fresh
inputs ``x`` from the true input distribution, labels them with the previous model, and refits
from scratch. A curation filter (self-verification, :mod:`collapse_lib.verification`) then needs
two more things from a model: several candidate outputs for the *same* input, and a score for a
given output. Every model here therefore follows one protocol, on a leading seed axis ``S``:

``sample(n, rngs) -> batch (S, n, ...)``
    fresh inputs from the input distribution, labelled by the model (what the loop calls);
``split(batch) -> (inputs (S, n, ...), outputs (S, n, ...))`` and ``join(inputs, outputs)``
    the two halves of a batch, and back;
``propose(inputs, k, rngs) -> (S, n, k, ...)``
    ``k`` independent outputs per input, ``y ~ G(. | x)``;
``log_prob(inputs, outputs (S, n, k, ...)) -> (S, n, k)``
    the log-likelihood ``log G(y | x)`` of each candidate.

Three conditional generators follow it, each with its maximum-likelihood learner
(:class:`collapse_lib.loop.Learner`):

* :class:`ConditionalCategorical` / :class:`TabularMLE`: one categorical over ``K`` labels per
  input ``x in {0..m-1}``, fitted by counts with add-``lam`` smoothing,
  ``G(y | x) = (count(x, y) + lam) / (n_x + K lam)`` [exact MLE for ``lam = 0``]. The sufficient
  statistic is the count table, so accumulation pools counts.
* :class:`LinearGaussian` / :class:`LinearGaussianMLE`: ``G(y | x) = N(w^T x, s^2)`` with ``w`` by
  least squares and ``s^2`` by maximum likelihood (the mean squared residual).
* :class:`BigramLM` / :class:`BigramMLE`: a bigram (first-order Markov) language model over ``V``
  symbols: a :class:`ConditionalCategorical` from the previous symbol to the next (``transition``)
  used autoregressively; a sequence's input is its first symbol (the prompt), its output the
  continuation. Its ``generate(prompts, rngs, step)`` lets a filter choose every next token itself
  (per-token verification).

Sampling is by inverse CDF; replicate ``s`` draws only from ``rngs[s]`` (see
:mod:`collapse_lib.runtime`), so a seed alone gives the same numbers as inside a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import softmax

from collapse_lib.categorical import stationary_distribution
from collapse_lib.loop import Learner, pack, unpack
from collapse_lib.metrics import empirical_distribution
from collapse_lib.runtime import (
    Stream,
    check_nonnegative,
    check_positive_int,
    check_probabilities,
    rng,
    seed_list,
    standard_normal,
)
from collapse_lib.runtime import uniforms as runtime_uniforms

Generators = Sequence[np.random.Generator]

#: Spawn-key prefixes of this module's random truths (two-element keys never collide with the
#: loop's one-element replicate streams).


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _generators(rngs: Any) -> list[np.random.Generator]:
    if isinstance(rngs, np.random.Generator) or not all(
        isinstance(g, np.random.Generator) for g in rngs
    ):
        raise ValueError("rngs must be a sequence of numpy Generators, one per seed")
    return list(rngs)


def uniforms(rngs: Generators, shape: tuple[int, ...]) -> np.ndarray:
    """Uniforms on [0, 1) per replicate: ``(S, *shape)``; replicate ``s`` uses ``rngs[s]`` only."""
    return runtime_uniforms(_generators(rngs), shape)


def _probability_table(probs: Any, name: str) -> np.ndarray:
    """Conditional distributions ``(S, m, K)``: one distribution over the labels per input."""
    p = check_probabilities(probs, name, ndims=(3,))
    if min(p.shape) < 1:
        raise ValueError(f"{name} must have sizes >= 1, got {p.shape}")
    return p


def _distribution(p: Any, S: int, size: int, name: str) -> np.ndarray:
    """A distribution over ``size`` items, ``(size,)`` or ``(S, size)``, as ``(S, size)``."""
    q = np.asarray(p, dtype=float)
    if q.shape not in ((size,), (S, size)):
        raise ValueError(f"{name} must have shape ({size},) or ({S}, {size}), got {q.shape}")
    if np.any(q < 0) or not np.allclose(q.sum(axis=-1), 1.0, atol=1e-9):
        raise ValueError(f"{name} must be non-negative and sum to 1")
    return np.broadcast_to(q, (S, size)).copy()


def _indices(x: Any, S: int, size: int, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim < 2 or a.shape[0] != S:
        raise ValueError(f"{name} must have shape (S={S}, n, ...), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer) or (a.size and (a.min() < 0 or a.max() >= size)):
        raise ValueError(f"{name} must be integers in [0, {size})")
    return a.astype(np.int64, copy=False)


def inverse_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The label ``y`` with ``cdf[y-1] <= u < cdf[y]``: rows ``cdf (..., K)``, ``u (..., k)``.

    ``cdf`` and ``u`` share their leading axes; the result has the shape of ``u``. The last CDF
    entry is treated as above every uniform (round-off never yields ``K``), and a label of
    probability 0 is never drawn (its CDF interval is empty).
    """
    c = cdf[..., None, :-1]  # the last entry never counts
    return (u[..., None] >= c).sum(-1)


def draw_categorical(probs: np.ndarray, n: int, rngs: Generators) -> np.ndarray:
    """``n`` draws per replicate from ``probs (S, K)``: ``(S, n)`` (``searchsorted`` per seed)."""
    p = np.asarray(probs, dtype=float)
    u = uniforms(rngs, (check_positive_int(n, "n"),))
    if p.ndim != 2 or p.shape[0] != u.shape[0]:
        raise ValueError(f"probs must have shape (S={u.shape[0]}, K), got {p.shape}")
    cdf = np.cumsum(p, axis=-1)
    out = np.stack([np.searchsorted(c, row, side="right") for c, row in zip(cdf, u, strict=True)])
    return np.minimum(out, p.shape[-1] - 1).astype(np.int64)


def stacked_cdf(probs: np.ndarray) -> np.ndarray:
    """The CDFs of a table ``(S, m, K)`` on one sorted axis: row ``r = s m + x`` lies in
    ``[2 r, 2 r + 1.5]`` (its last entry is set to 1.5, above every uniform despite round-off)."""
    c = np.cumsum(probs, axis=-1)
    c[..., -1] = 1.5
    S, m, _ = c.shape
    return (c + 2.0 * np.arange(S * m, dtype=float).reshape(S, m, 1)).ravel()


def _draw_rows(flat_cdf: np.ndarray, shape: tuple[int, int, int], x: np.ndarray, k: int, rngs):
    """``k`` labels per input by inverse CDF: ``x (S, n)`` -> ``(S, n, k)``.

    One ``np.searchsorted`` on :func:`stacked_cdf` serves every seed and input (no ``(S, n, K)``
    gather). Its resolution, ``~ 4 S m 1e-16``, is far below any probability a count-based fit
    produces; a label of probability 0 is never drawn (its CDF interval is empty).
    """
    S, m, K = shape
    rows = np.arange(S)[:, None] * m + x
    q = uniforms(rngs, (x.shape[1], k)) + 2.0 * rows[..., None]
    idx = np.searchsorted(flat_cdf, q.ravel(), side="right").reshape(q.shape)
    return idx - rows[..., None] * K


# --------------------------------------------------------------------------------------------
# tabular conditional generator
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ConditionalCategorical:
    """A categorical ``G(. | x)`` over ``K`` labels for each input ``x in {0..m-1}``.

    Attributes
    ----------
    probs : ndarray, shape (S, m, K)
        ``probs[s, x, y] = G_s(y | x)``.
    inputs : ndarray, shape (m,) or (S, m), optional
        The input distribution ``x ~ X`` used by :meth:`sample` (uniform by default). For a
        fitted model it is the *true* input distribution: each generation labels fresh inputs.

    A batch is an int array ``(S, n, 2)``: column 0 the input, column 1 the label.
    """

    probs: np.ndarray
    inputs: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.probs = _probability_table(self.probs, "probs")
        S, m, _ = self.probs.shape
        self.inputs = _distribution(
            np.full(m, 1.0 / m) if self.inputs is None else self.inputs, S, m, "inputs"
        )
        self._cdf: np.ndarray | None = None

    @property
    def seeds(self) -> int:
        return self.probs.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.probs.shape[1]

    @property
    def labels(self) -> int:
        return self.probs.shape[2]

    def cdf(self) -> np.ndarray:
        """The table's CDFs stacked on one sorted axis (:func:`stacked_cdf`), cached."""
        if self._cdf is None:
            self._cdf = stacked_cdf(self.probs)
        return self._cdf

    def sample_inputs(self, n: int, rngs: Generators) -> np.ndarray:
        """``n`` fresh inputs per seed from :attr:`inputs`: ``(S, n)``."""
        return draw_categorical(self.inputs, n, rngs)

    def propose(self, inputs: np.ndarray, k: int, rngs: Generators) -> np.ndarray:
        """``k`` labels ``y ~ G(. | x)`` per input: ``inputs (S, n)`` -> ``(S, n, k)``."""
        k = check_positive_int(k, "k")
        x = _indices(inputs, self.seeds, self.n_inputs, "inputs")
        if x.ndim != 2:
            raise ValueError(f"inputs must have shape (S, n), got {x.shape}")
        return _draw_rows(self.cdf(), self.probs.shape, x, k, rngs)

    def log_prob(self, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """``log G(y | x)`` for ``inputs (S, n)`` and ``outputs (S, n)`` or ``(S, n, k)``."""
        x = _indices(inputs, self.seeds, self.n_inputs, "inputs")
        y = _indices(outputs, self.seeds, self.labels, "outputs")
        if y.shape[:2] != x.shape:
            raise ValueError(f"outputs {y.shape} must start with the inputs' shape {x.shape}")
        rows = np.take_along_axis(self.probs, x[..., None], axis=1)  # (S, n, K)
        flat = y.reshape(*x.shape, -1)
        with np.errstate(divide="ignore"):
            out = np.log(np.take_along_axis(rows, flat, axis=-1))
        return out.reshape(y.shape)

    def sample(self, n: int, rngs: Generators) -> np.ndarray:
        """``n`` labelled pairs per seed: fresh ``x ~ inputs``, ``y ~ G(. | x)``; ``(S, n, 2)``."""
        x = self.sample_inputs(n, rngs)
        return self.join(x, self.propose(x, 1, rngs)[..., 0])

    def split(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = np.asarray(batch)
        if b.ndim != 3 or b.shape[-1] != 2:
            raise ValueError(f"batch must have shape (S, n, 2) (input, label), got {b.shape}")
        return b[..., 0], b[..., 1]

    def join(self, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(inputs), np.asarray(outputs)], axis=-1).astype(np.int64)

    def top1(self) -> np.ndarray:
        """``argmax_y G(y | x)`` (first maximiser), ``(S, m)``."""
        return self.probs.argmax(axis=-1)


@dataclass
class PairCounts:
    """Sufficient statistic of labelled pairs: ``counts[s, x, y]``, shape ``(S, m, K)``."""

    counts: np.ndarray


def pair_counts(batch: np.ndarray, m: int, K: int) -> np.ndarray:
    """Counts of ``(x, y)`` pairs per seed, one ``np.bincount``: ``(S, n, 2)`` -> ``(S, m, K)``."""
    b = np.asarray(batch)
    if b.ndim != 3 or b.shape[-1] != 2:
        raise ValueError(f"batch must have shape (S, n, 2) (input, label), got {b.shape}")
    x = _indices(b[..., 0], b.shape[0], m, "inputs")
    y = _indices(b[..., 1], b.shape[0], K, "labels")
    S = b.shape[0]
    idx = (np.arange(S)[:, None] * m + x) * K + y
    return np.bincount(idx.ravel(), minlength=S * m * K).reshape(S, m, K).astype(float)


def smoothed_probs(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """``(count + lam) / (n_x + K lam)`` along the last axis; a row without data is uniform."""
    c = np.asarray(counts, dtype=float) + smoothing
    tot = c.sum(axis=-1, keepdims=True)
    K = c.shape[-1]
    return np.where(tot > 0, c / np.where(tot > 0, tot, 1.0), 1.0 / K)


@dataclass
class TabularMLE(Learner):
    """Maximum likelihood for :class:`ConditionalCategorical`, with add-``smoothing`` counts.

    ``G(y | x) = (count(x, y) + lam) / (n_x + K lam)``: the exact MLE for ``lam = 0`` (a row with
    no data is then uniform). The fitted model samples inputs from ``inputs`` (the true input
    distribution, uniform by default).
    """

    n_inputs: int
    labels: int
    smoothing: float = 0.0
    inputs: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.n_inputs = check_positive_int(self.n_inputs, "n_inputs")
        self.labels = check_positive_int(self.labels, "labels")
        self.smoothing = check_nonnegative(self.smoothing, "smoothing")

    def summarize(self, data: np.ndarray) -> PairCounts:
        return PairCounts(pair_counts(data, self.n_inputs, self.labels))

    def merge(self, a: PairCounts, b: PairCounts) -> PairCounts:
        if a.counts.shape != b.counts.shape:
            raise ValueError(f"counts shapes differ: {a.counts.shape} and {b.counts.shape}")
        return PairCounts(a.counts + b.counts)

    def fit_summary(self, summary: PairCounts) -> ConditionalCategorical:
        return ConditionalCategorical(smoothed_probs(summary.counts, self.smoothing), self.inputs)


def random_tabular(
    n_inputs: int, labels: int, beta: float, seed: int, seeds: int | Sequence[int]
) -> ConditionalCategorical:
    """A random truth ``P*(. | x) = softmax(beta z_x)``, ``z_x ~ N(0, I_K)`` i.i.d. [book's toy].

    Replicate ``s`` draws its table from ``rng(seed, Stream.TABULAR_TRUTH, s)``; inputs are uniform.
    ``beta`` sets how peaked the truth is (larger: higher top-1 confidence).
    """
    m = check_positive_int(n_inputs, "n_inputs")
    K = check_positive_int(labels, "labels")
    check_nonnegative(beta, "beta")
    z = np.stack(
        [rng(seed, Stream.TABULAR_TRUTH, s).standard_normal((m, K)) for s in seed_list(seeds)]
    )
    return ConditionalCategorical(softmax(beta * z, axis=-1))


# --------------------------------------------------------------------------------------------
# linear-Gaussian conditional generator
# --------------------------------------------------------------------------------------------

#: Smallest variance used to *score* (the fitted variance may reach 0 under self-verification).
MIN_VARIANCE = 1e-300


@dataclass(eq=False)
class LinearGaussian:
    """``G(y | x) = N(w^T x, var)`` with covariates from ``design``; ``w (S, d)``, ``var (S,)``.

    A batch is the packed ``(S, n, d + 1)`` array of :func:`collapse_lib.loop.pack`. With
    ``var = noise^2`` and the true ``w`` it is the truth of the regression chapter.
    """

    w: np.ndarray
    var: np.ndarray
    design: Any

    def __post_init__(self) -> None:
        self.w = np.asarray(self.w, dtype=float)
        if self.w.ndim != 2 or self.w.shape[1] != self.design.dim:
            raise ValueError(f"w must have shape (S, {self.design.dim}), got {self.w.shape}")
        var = np.asarray(self.var, dtype=float)
        if (
            var.shape not in ((), (self.w.shape[0],))
            or np.any(var < 0)
            or not np.all(np.isfinite(var))
        ):
            raise ValueError(f"var must be finite, >= 0, a number or shape ({self.w.shape[0]},)")
        self.var = np.broadcast_to(var, (self.w.shape[0],)).copy()

    @property
    def seeds(self) -> int:
        return self.w.shape[0]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X w`` per seed: ``(S, n, d)`` -> ``(S, n)``."""
        return (np.asarray(X) @ self.w[:, :, None])[..., 0]

    def _check_inputs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 3 or X.shape[0] != self.seeds or X.shape[2] != self.design.dim:
            raise ValueError(f"inputs must have shape (S={self.seeds}, n, d), got {X.shape}")
        return X

    def propose(self, inputs: np.ndarray, k: int, rngs: Generators) -> np.ndarray:
        """``k`` draws ``y = w^T x + sqrt(var) eps`` per input: ``(S, n, d)`` -> ``(S, n, k)``."""
        X = self._check_inputs(inputs)
        k = check_positive_int(k, "k")
        eps = standard_normal(_generators(rngs), (X.shape[1], k))
        return self.predict(X)[..., None] + np.sqrt(self.var)[:, None, None] * eps

    def log_prob(self, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """``log N(y; w^T x, var)`` for ``outputs (S, n)`` or ``(S, n, k)``."""
        X = self._check_inputs(inputs)
        y = np.asarray(outputs, dtype=float)
        if y.shape[:2] != X.shape[:2]:
            raise ValueError(f"outputs {y.shape} must start with (S, n) = {X.shape[:2]}")
        mu = self.predict(X).reshape(*X.shape[:2], *([1] * (y.ndim - 2)))
        v = np.maximum(self.var, MIN_VARIANCE).reshape(-1, *([1] * (y.ndim - 1)))
        return -0.5 * ((y - mu) ** 2 / v + np.log(2 * np.pi * v))

    def sample(self, n: int, rngs: Generators) -> np.ndarray:
        X = self.design.sample(check_positive_int(n, "n"), _generators(rngs))
        return self.join(X, self.propose(X, 1, rngs)[..., 0])

    def split(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, Y = unpack(batch, self.design.dim)
        return X, Y[..., 0]

    def join(self, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        return pack(inputs, outputs)


@dataclass(eq=False)
class LinearGaussianMLE(Learner):
    """Maximum likelihood for :class:`LinearGaussian`: least squares ``w``, mean squared residual.

    Needs ``n >= d`` samples per generation. The fitted model draws fresh covariates from
    ``design`` (the true input distribution).
    """

    design: Any

    def fit(self, data: np.ndarray) -> LinearGaussian:
        d = self.design.dim
        X, Y = unpack(data, d)
        y = Y[..., 0]
        if X.ndim != 3 or X.shape[1] < d:
            raise ValueError(f"data must have shape (S, n >= d={d}, d + 1), got {data.shape}")
        Xt = np.swapaxes(X, 1, 2)
        w = np.linalg.solve(Xt @ X, Xt @ y[..., None])[..., 0]
        resid = y - (X @ w[:, :, None])[..., 0]
        return LinearGaussian(w, np.mean(resid**2, axis=1), self.design)


def linear_gaussian_error(generations: int, dim: int, n: int, noise: float) -> np.ndarray:
    """``E ||w_t - w*||^2`` of the naive chain of :class:`LinearGaussianMLE`, isotropic design.

    ``noise^2 d / (n - d - 1) * sum_{j=0}^{t} ((n - d) / n)^j`` for ``t = 0..generations-1``
    [derived]: generation ``t`` adds ``E s_{t-1}^2 E tr (X^T X)^{-1} = E s_{t-1}^2 d / (n - d - 1)``
    (inverse-Wishart mean; the residual variance is independent of the coefficients), and the
    MLE variance shrinks in expectation, ``E s_t^2 = E s_{t-1}^2 (n - d) / n`` (``s_{-1} = noise``).
    So the error grows by ever smaller steps toward ``noise^2 n / (n - d - 1)``.
    """
    T = check_positive_int(generations, "generations")
    d = check_positive_int(dim, "dim")
    n = check_positive_int(n, "n")
    if n <= d + 1:
        raise ValueError(f"n must exceed dim + 1 = {d + 1}, got {n}")
    check_nonnegative(noise, "noise")
    rho = (n - d) / n
    return noise**2 * d / (n - d - 1) * np.cumsum(rho ** np.arange(T))


def random_linear(
    dim: int, noise: float, seed: int, seeds: int | Sequence[int], design: Any
) -> LinearGaussian:
    """A random truth ``y = w*^T x + noise eps`` with ``w* ~ N(0, I/d)`` per replicate [book's toy].

    Replicate ``s`` draws ``w*`` from ``rng(seed, Stream.LINEAR_TRUTH, s)``.
    """
    d = check_positive_int(dim, "dim")
    if d != design.dim:
        raise ValueError(f"dim ({d}) must equal the design's dimension ({design.dim})")
    check_nonnegative(noise, "noise")
    w = np.stack(
        [
            rng(seed, Stream.LINEAR_TRUTH, s).standard_normal(d) / np.sqrt(d)
            for s in seed_list(seeds)
        ]
    )
    return LinearGaussian(w, noise**2, design)


# --------------------------------------------------------------------------------------------
# bigram language model
# --------------------------------------------------------------------------------------------

Step = Callable[[np.ndarray, Generators], np.ndarray]


@dataclass(eq=False)
class BigramLM:
    """A bigram language model: ``length`` symbols, the first from ``start``, then ``transition``.

    Attributes
    ----------
    transition : ConditionalCategorical
        ``G(next | previous)``, probs ``(S, V, V)``. Its ``inputs`` weight the contexts in metrics
        (for the truth: the stationary distribution).
    start : ndarray, shape (V,) or (S, V)
        Distribution of the first symbol (the prompt).
    length : int
        Symbols per sequence (>= 2). A batch is an int array ``(S, n, length)``.
    """

    transition: ConditionalCategorical
    start: np.ndarray
    length: int

    def __post_init__(self) -> None:
        V = self.transition.labels
        if self.transition.n_inputs != V:
            raise ValueError("transition must map each of the V symbols to the V symbols")
        self.start = _distribution(self.start, self.transition.seeds, V, "start")
        self.length = check_positive_int(self.length, "length")
        if self.length < 2:
            raise ValueError(f"length must be >= 2 (prompt and continuation), got {self.length}")

    @property
    def seeds(self) -> int:
        return self.transition.seeds

    @property
    def vocabulary(self) -> int:
        return self.transition.labels

    def _next(self, prev: np.ndarray, rngs: Generators) -> np.ndarray:
        return self.transition.propose(prev, 1, rngs)[..., 0]

    def generate(
        self, prompts: np.ndarray, rngs: Generators, step: Step | None = None
    ) -> np.ndarray:
        """Continue ``prompts (S, n)`` to sequences ``(S, n, length)``, one symbol at a time.

        ``step(previous (S, n), rngs) -> next (S, n)`` chooses each next symbol; by default a draw
        from :attr:`transition` (ancestral sampling). A filter passes its own ``step`` to verify
        every token.
        """
        x = _indices(prompts, self.seeds, self.vocabulary, "prompts")
        if x.ndim != 2:
            raise ValueError(f"prompts must have shape (S, n), got {x.shape}")
        step = self._next if step is None else step
        out = np.empty((*x.shape, self.length), dtype=np.int64)
        out[..., 0] = x
        for j in range(1, self.length):
            out[..., j] = step(out[..., j - 1], rngs)
        return out

    def sample(self, n: int, rngs: Generators) -> np.ndarray:
        return self.generate(draw_categorical(self.start, n, rngs), rngs)

    def split(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = np.asarray(batch)
        if b.ndim != 3 or b.shape[-1] != self.length:
            raise ValueError(f"batch must have shape (S, n, {self.length}), got {b.shape}")
        return b[..., 0], b[..., 1:]

    def join(self, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(inputs)[..., None], np.asarray(outputs)], axis=-1)

    def propose(self, inputs: np.ndarray, k: int, rngs: Generators) -> np.ndarray:
        """``k`` continuations per prompt: ``(S, n)`` -> ``(S, n, k, length - 1)``."""
        k = check_positive_int(k, "k")
        x = _indices(inputs, self.seeds, self.vocabulary, "inputs")
        seqs = self.generate(np.repeat(x, k, axis=1), rngs)
        return seqs[..., 1:].reshape(*x.shape, k, self.length - 1)

    def log_prob(self, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """Mean per-symbol ``log G`` of continuations ``(S, n, k, length - 1)`` -> ``(S, n, k)``."""
        x = _indices(inputs, self.seeds, self.vocabulary, "inputs")
        y = _indices(outputs, self.seeds, self.vocabulary, "outputs")
        if y.ndim != 4 or y.shape[:2] != x.shape or y.shape[-1] != self.length - 1:
            raise ValueError(f"outputs must have shape (S, n, k, {self.length - 1}), got {y.shape}")
        prev = np.concatenate([np.broadcast_to(x[:, :, None, None], (*y.shape[:3], 1)), y], -1)
        S = self.seeds
        P = self.transition.probs
        with np.errstate(divide="ignore"):
            lp = np.log(P[np.arange(S)[:, None, None, None], prev[..., :-1], y])
        return lp.mean(axis=-1)


@dataclass
class BigramCounts:
    """Sufficient statistic of sequences: transition ``(S, V, V)`` and first-symbol counts."""

    transitions: np.ndarray
    starts: np.ndarray


@dataclass
class BigramMLE(Learner):
    """Maximum likelihood for :class:`BigramLM` with add-``smoothing`` transition counts.

    ``start``: the prompt distribution of the fitted model (the *true* one, so that each
    generation starts from fresh real prompts, as inputs ``x ~ X`` in the paper); ``None`` fits it
    from the first symbols (unsmoothed).
    """

    vocabulary: int
    length: int
    smoothing: float = 0.0
    start: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vocabulary = check_positive_int(self.vocabulary, "vocabulary")
        self.length = check_positive_int(self.length, "length")
        self.smoothing = check_nonnegative(self.smoothing, "smoothing")

    def summarize(self, data: np.ndarray) -> BigramCounts:
        seqs = np.asarray(data)
        V = self.vocabulary
        if seqs.ndim != 3 or seqs.shape[-1] != self.length:
            raise ValueError(f"data must have shape (S, n, {self.length}), got {seqs.shape}")
        pairs = np.stack([seqs[..., :-1], seqs[..., 1:]], axis=-1).reshape(seqs.shape[0], -1, 2)
        starts = empirical_distribution(seqs[..., 0], V) * seqs.shape[1]
        return BigramCounts(pair_counts(pairs, V, V), starts)

    def merge(self, a: BigramCounts, b: BigramCounts) -> BigramCounts:
        return BigramCounts(a.transitions + b.transitions, a.starts + b.starts)

    def fit_summary(self, summary: BigramCounts) -> BigramLM:
        probs = smoothed_probs(summary.transitions, self.smoothing)
        start = (
            summary.starts / summary.starts.sum(axis=-1, keepdims=True)
            if self.start is None
            else self.start
        )
        return BigramLM(ConditionalCategorical(probs), start, self.length)


def random_markov(
    vocabulary: int, concentration: float, length: int, seed: int, seeds: int | Sequence[int]
) -> BigramLM:
    """A random truth: rows ``P*(. | c) ~ Dirichlet(concentration)``, prompts ``~ pi*`` [book].

    ``pi*`` is the stationary distribution, which also weights the contexts in metrics
    (``transition.inputs``). Replicate ``s`` uses ``rng(seed, Stream.MARKOV_TRUTH, s)``. Rows are
    floored at ``1e-12`` and renormalised so that every transition has positive probability.
    """
    V = check_positive_int(vocabulary, "vocabulary")
    if not (np.isfinite(concentration) and concentration > 0):
        raise ValueError(f"concentration must be a finite number > 0, got {concentration!r}")
    P = np.stack(
        [
            rng(seed, Stream.MARKOV_TRUTH, s).dirichlet(np.full(V, float(concentration)), size=V)
            for s in seed_list(seeds)
        ]
    )
    P = np.maximum(P, 1e-12)
    P /= P.sum(axis=-1, keepdims=True)
    pi = stationary_distribution(P)
    return BigramLM(ConditionalCategorical(P, pi), pi, length)
