"""Entropy-based data selection for the generation loop (Shi et al., NeurIPS 2025, Sec. 5).

Maximizing the Kozachenko-Leonenko estimate ``H^_1(D)`` over subsets ``D`` of a candidate
pool ``S`` with ``|D| = N`` is the same as maximizing ``sum_{x in D} log min_{y in D-x} |x - y|``
(n, k and d are fixed). Exact maximization is combinatorial; the paper gives two heuristics,
implemented here on a feature map ``F`` (the paper: DINOv2; this book: PCA on real digits):

* :func:`greedy_select` -- the paper's Algorithm 1, farthest-point sampling (k-center greedy):
  start at a random point, repeatedly add the candidate farthest from the chosen set;
* :func:`threshold_decay_select` -- the paper's Algorithm 2, the Threshold Decay Filter: sweep
  the shuffled pool, accept a candidate whose distance to the chosen set exceeds ``tau``; after
  a sweep that accepted nothing, ``tau <- alpha tau``.

They plug into the loop in two ways:

* as a *filter* (replace paradigm): :class:`Selection` asks the current model for
  ``(factor - 1) N`` more candidates (``ctx.draw``), so that it sees ``factor * N`` and keeps
  ``N`` (the paper's "oversample 2N, keep N"); ``Selection("all")`` keeps all of them (the
  paper's "vanilla trained on 2N" control);
* as a *pool learner* (accumulate paradigm): :class:`PoolSelection` wraps a learner so that
  each generation trains on ``N`` points chosen from the whole pool (real + all synthetic so
  far) -- at random with an equal share per source (the paper's "accumulate", a fixed-size
  *accumulate-subsample*), or by a selection method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collapse_lib.loop import FilterContext, Learner, as_numpy
from collapse_lib.runtime import Stream, check_choice, check_fraction, check_positive_int, rng

METHODS: tuple[str, ...] = ("greedy", "threshold", "random", "all")

FeatureMap = Callable[[np.ndarray], np.ndarray]


def _pool(x: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"the pool must be 2-D (points x features), got shape {x.shape}")
    n = check_positive_int(n, "n")
    if n > x.shape[0]:
        raise ValueError(f"n = {n} is larger than the pool ({x.shape[0]} points)")
    return x, n


def _distance_to(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances from the points of ``x (..., m, d)`` to ``y`` (broadcast)."""
    return np.sqrt(np.maximum(((x - y) ** 2).sum(axis=-1), 0.0))


def greedy_select(x: np.ndarray, n: int, generator: np.random.Generator) -> np.ndarray:
    """Farthest-point selection of ``n`` rows of ``x`` (the paper's Algorithm 1): their indices.

    ``D <- {random x}``; while ``|D| < n``: add ``argmax_{x not in D} min_{y in D} |x - y|``.
    The running minimum is updated with one distance row per added point, ``O(|S| n d)``.
    Ties go to the lowest index. One pool of :func:`greedy_select_batch`.
    """
    x, n = _pool(x, n)
    return greedy_select_batch(x[None], n, [generator])[0]


def greedy_select_batch(
    x: np.ndarray, n: int, generators: Sequence[np.random.Generator]
) -> np.ndarray:
    """:func:`greedy_select` on ``S`` pools at once: ``x (S, m, d)`` -> indices ``(S, n)``.

    Pool ``s`` draws its starting point from ``generators[s]`` alone and gets the same indices
    as ``greedy_select(x[s], n, generators[s])``; the seeds share each step's arithmetic.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 3 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (S, m, d) with m >= 1, got {x.shape}")
    S, m = x.shape[:2]
    if len(generators) != S:
        raise ValueError(
            f"generators must hold one generator per pool ({S}), got {len(generators)}"
        )
    n = check_positive_int(n, "n")
    if n > m:
        raise ValueError(f"n = {n} is larger than the pool ({m} points)")
    rows = np.arange(S)
    chosen = np.empty((S, n), dtype=int)
    chosen[:, 0] = [g.integers(m) for g in generators]
    dmin = _distance_to(x, x[rows, chosen[:, 0]][:, None])
    dmin[rows, chosen[:, 0]] = -np.inf
    for i in range(1, n):
        j = np.argmax(dmin, axis=1)
        chosen[:, i] = j
        dmin = np.minimum(dmin, _distance_to(x, x[rows, j][:, None]))
        dmin[rows, j] = -np.inf  # the chosen stay at -inf: min(-inf, d) = -inf
    return chosen


def threshold_decay_select(
    x: np.ndarray,
    n: int,
    generator: np.random.Generator,
    tau0: float | None = None,
    alpha: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """Threshold Decay Filter (Algorithm 2): the chosen indices and the threshold each passed.

    The pool is shuffled; ``D <- {first point}``; sweep the remaining candidates in order and
    accept ``x`` if ``min_{y in D} |x - y| > tau``, stopping at ``|D| = n``; a sweep that accepts
    nothing multiplies ``tau`` by ``alpha`` (the paper's pseudo-code; its code decays after every
    sweep). ``tau0=None`` uses twice the median nearest-neighbour distance within the pool.
    """
    from collapse_lib.metrics import nn_distances

    x, n = _pool(x, n)
    alpha = check_fraction(alpha, "alpha")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if tau0 is None:
        tau0 = 2.0 * float(np.median(nn_distances(x, None, k=1))) if len(x) > 1 else 1.0
    tau = float(tau0)
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau0 must be a positive number, got {tau0!r}")
    order = generator.permutation(x.shape[0])
    chosen, passed = [int(order[0])], [np.inf]
    taken = np.zeros(x.shape[0], dtype=bool)
    taken[order[0]] = True
    dmin = _distance_to(x, x[order[0]])
    while len(chosen) < n:
        added = False
        for j in order:
            if taken[j] or dmin[j] <= tau:
                continue
            chosen.append(int(j))
            passed.append(tau)
            taken[j] = added = True
            dmin = np.minimum(dmin, _distance_to(x, x[j]))
            if len(chosen) == n:
                break
        if not added:
            tau *= alpha
    return np.asarray(chosen), np.asarray(passed)


def select(
    x: np.ndarray,
    n: int,
    method: str,
    generator: np.random.Generator,
    **options: Any,
) -> np.ndarray:
    """Indices of ``n`` rows of ``x`` by ``method`` ("greedy", "threshold", "random", "all").

    ``"all"`` returns every index (``n`` is ignored); ``options`` go to
    :func:`threshold_decay_select` (``tau0``, ``alpha``).
    """
    check_choice(method, METHODS, "method")
    x = np.asarray(x, dtype=float)
    if method == "all":
        return np.arange(x.shape[0])
    x, n = _pool(x, n)
    if method == "greedy":
        return greedy_select(x, n, generator)
    if method == "threshold":
        return threshold_decay_select(x, n, generator, **options)[0]
    return generator.choice(x.shape[0], n, replace=False)


@dataclass
class Selection:
    """Loop filter: oversample ``factor * N`` candidates, keep ``N`` chosen by ``method``.

    The loop hands over ``N`` candidates; the filter draws ``(factor - 1) N`` more from the
    current model (``ctx.draw``) and selects on ``features(x)`` (identity if ``None``: pixel
    space). ``method="all"`` keeps all ``factor * N`` (the "trained on 2N" control);
    ``"random"`` is statistically the same as no filter. Seed ``s`` uses ``ctx.rngs[s]``.
    """

    method: str = "greedy"
    features: FeatureMap | None = None
    factor: int = 2
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice(self.method, METHODS, "method")
        self.factor = check_positive_int(self.factor, "factor")
        if self.features is not None and not callable(self.features):
            raise ValueError("features must be a callable feature map or None")

    def __call__(self, ctx: FilterContext) -> np.ndarray:
        cand = as_numpy(ctx.candidates)
        if cand.ndim != 3:
            raise ValueError(f"candidates must have shape (S, N, d), got {cand.shape}")
        N = cand.shape[1]
        if self.factor > 1:
            cand = np.concatenate([cand, as_numpy(ctx.draw((self.factor - 1) * N))], axis=1)
        if self.method == "all":
            return cand
        f = self.features or (lambda z: z)
        if self.method == "greedy":  # all seeds at once, the same indices as seed by seed
            keep = np.sort(greedy_select_batch(np.stack([f(c) for c in cand]), N, ctx.rngs))
            return np.take_along_axis(cand, keep[..., None], axis=1)
        keep = [
            np.sort(select(f(c), N, self.method, g, **self.options))
            for c, g in zip(cand, ctx.rngs, strict=True)
        ]
        return np.stack([c[k] for c, k in zip(cand, keep, strict=True)])


@dataclass
class PoolSelection(Learner):
    """Accumulate-subsample: train ``learner`` on ``n`` points chosen from the whole pool.

    Under the loop's ``accumulate`` regime the pool at generation ``t`` is the real set followed
    by ``t`` synthetic blocks of ``n`` points each. ``method="random"`` draws an (almost) equal
    share from every block, as the paper's vanilla accumulate; "greedy"/"threshold" select on
    ``features`` from the whole pool (the paper's accumulate + selection). When the pool holds
    exactly ``n`` points (generation 0) all are used, in order. Random choices of seed ``s``
    come from ``rng(seed, Stream.SELECTION_POOL, s, pool size)``. The fitted model's
    ``info["real_fraction"]`` records the share of real points in the chosen set.
    """

    learner: Any
    n: int
    method: str = "random"
    features: FeatureMap | None = None
    seeds: int | Sequence[int] = 1
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from collapse_lib.runtime import seed_list

        self.n = check_positive_int(self.n, "n")
        check_choice(self.method, ("random", "greedy", "threshold"), "method")
        self.seeds = seed_list(self.seeds)

    def choose(self, pool: np.ndarray) -> np.ndarray:
        """Indices ``(S, n)`` of the points each seed trains on (sorted)."""
        S, P = pool.shape[:2]
        if P % self.n:
            raise ValueError(f"the pool size {P} is not a multiple of n = {self.n}")
        if P == self.n:
            return np.tile(np.arange(P), (S, 1))
        blocks = P // self.n
        f = self.features or (lambda z: z)
        out = np.empty((S, self.n), dtype=int)
        for i, s in enumerate(self.seeds):
            g = rng(self.seed, Stream.SELECTION_POOL, s, P)
            if self.method == "random":
                share = np.full(blocks, self.n // blocks)
                share[g.choice(blocks, self.n % blocks, replace=False)] += 1
                idx = [b * self.n + g.choice(self.n, k, replace=False) for b, k in enumerate(share)]
                out[i] = np.sort(np.concatenate(idx))
            else:
                out[i] = np.sort(select(f(pool[i]), self.n, self.method, g, **self.options))
        return out

    def fit(self, data: Any) -> Any:
        pool = as_numpy(data)
        if pool.ndim != 3 or pool.shape[0] != len(self.seeds):
            raise ValueError(
                f"data must have shape (seeds={len(self.seeds)}, n, d), got {pool.shape}"
            )
        idx = self.choose(pool)
        model = self.learner.fit(np.take_along_axis(pool, idx[..., None], axis=1))
        info = getattr(model, "info", None)
        if isinstance(info, dict):
            info = dict(info)
            info["real_fraction"] = (idx < self.n).mean(axis=1)
            model = _with_info(model, info)
        return model


def _with_info(model: Any, info: dict[str, Any]) -> Any:
    """A shallow copy of ``model`` with ``info`` replaced (the learner may cache the original)."""
    import copy

    out = copy.copy(model)
    out.info = info
    return out
