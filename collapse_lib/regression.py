"""Regression trained on its own outputs: the generator chain, the downstream ridge, the theory.

The setting of Dohmatob, Feng & Kempe (NeurIPS 2024, "Model collapse demystified: the case of
regression"), in the book's vocabulary:

* the **truth** draws pairs ``x ~ N(0, Sigma)``, ``y = x^T w0 + sigma0 * eps`` [paper];
* the **learner** is least squares (the minimum-norm interpolator when there are fewer samples
  than dimensions) [paper]; its fitted model ``w_hat`` labels *fresh* covariates with its own noise
  ``sigma0``, so the **replace** regime of :func:`collapse_lib.loop.run` builds the paper's chain of
  generators ``w_hat_1, ..., w_hat_n``;
* a **downstream** ridge regressor is trained on ``T`` pairs labelled by ``w_hat_n`` with noise
  ``sigma`` and scored against the truth: ``E_test(w) = (w - w0)^T Sigma (w - w0)`` [paper].

**Indexing.** The paper's ``n`` counts synthetic generators: ``n = 0`` is the truth ``w0``, and
``w_hat_1`` is fitted to real (noisy) data. In the loop, generation ``t`` is fitted on the data of
generation ``t - 1``'s model, with generation 0 fitted on real data, so the loop's generation ``t``
*is* the generator ``w_hat_{t+1}``; tables built here carry ``n = t + 1`` in their ``generation``
column, with ``n = 0`` prepended for the truth.

**Data batches.** A batch of labelled pairs is one array of shape ``(S, n, p + k)``: the ``p``
covariates followed by the ``k`` targets of each sample (:func:`collapse_lib.loop.pack`,
:func:`collapse_lib.loop.unpack`). The loop sees an ordinary ``(S, n, ...)`` array.

**Provenance.** The paper's theorem text could not be read. Formulas tagged [paper] are stated in
the paper's abstract, poster or figure captions; formulas tagged [derived] were derived for this
book from the setting the paper states and checked by Monte Carlo (``tests/test_regression.py``).

Σ is taken diagonal, ``Sigma = diag(eigs)``, without loss of generality (the Gaussian design is
rotation invariant). Ridge is normalized per sample: ``argmin ||Xw - y||^2 / T + lam ||w||^2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.spatial.distance import pdist
from sklearn.metrics.pairwise import rbf_kernel

from collapse_lib.data import ImagePool, digits, digits_order
from collapse_lib.loop import Learner, ModelRecorder, PerSeed, Step, pack, run, unpack
from collapse_lib.regimes import regime
from collapse_lib.results import Results
from collapse_lib.runtime import (
    Stream,
    check_choice,
    check_nonnegative,
    check_positive_int,
    rng,
    seed_list,
    standard_normal,
)

#: Spawn-key prefixes of the chapter's auxiliary random streams (two or more elements, so they never
#: coincide with the loop's one-element replicate streams).

#: Covariates (numbers) per group of seeds in :func:`linear_chain`: 16 MB of float64, so that a
#: group stays near the CPU caches (measured ~20 % faster than one big batch) and memory is bounded.
CHUNK_ELEMENTS = 2**21


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _spectrum(eigs: Any, name: str = "eigs") -> np.ndarray:
    e = np.asarray(eigs, dtype=float)
    if e.ndim != 1 or e.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"{name} must be positive and finite")
    return e


def _vector(w: Any, d: int, name: str) -> np.ndarray:
    v = np.asarray(w, dtype=float)
    if v.shape != (d,):
        raise ValueError(f"{name} must have shape ({d},) to match the spectrum, got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite")
    return v


def _past_threshold(size: Any, d: int, name: str) -> int:
    """A sample size ``>= d + 2``: least squares with a finite inverse-Wishart mean."""
    size = check_positive_int(size, name)
    if size < d + 2:
        raise ValueError(f"{name} must be >= d + 2 = {d + 2} (under-parameterized), got {size}")
    return size


def _lams(lams: Any) -> np.ndarray:
    grid = np.atleast_1d(np.asarray(lams, dtype=float))
    if grid.ndim != 1 or grid.size < 1:
        raise ValueError(f"lams must be a non-empty 1-D grid, got shape {grid.shape}")
    if not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError("lams must be finite and >= 0")
    return grid


def downstream_rngs(seed: int, seeds: int | Sequence[int], *key: int) -> list[np.random.Generator]:
    """One generator per replicate for a downstream draw: ``rng(seed, Stream.DOWNSTREAM, *key, s)``.

    Independent of the loop's replicate streams, and replicate ``s`` gets the same stream whatever
    other replicates run beside it.
    """
    return [rng(seed, Stream.DOWNSTREAM, *key, s) for s in seed_list(seeds)]


# --------------------------------------------------------------------------------------------
# covariate designs
# --------------------------------------------------------------------------------------------


class Design(Protocol):
    """Fresh covariates: ``sample(n, rngs) -> (S, n, p)``, one generator per seed."""

    @property
    def dim(self) -> int: ...

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray: ...


@dataclass(eq=False)
class GaussianDesign:
    """Covariates ``x ~ N(0, diag(eigs))`` [paper: Gaussian design; diagonal Σ w.l.o.g.]."""

    eigs: np.ndarray

    def __post_init__(self) -> None:
        self.eigs = _spectrum(self.eigs)

    @property
    def dim(self) -> int:
        return self.eigs.size

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        n = check_positive_int(n, "n")
        X = standard_normal(rngs, (n, self.dim))
        X *= np.sqrt(self.eigs)
        return X


@dataclass(eq=False)
class StudentTDesign(GaussianDesign):
    """Heavy-tailed covariates with covariance ``diag(eigs)``: a multivariate Student-t, ``nu > 2``.

    ``x = sqrt(eigs) * z * sqrt((nu - 2) / g)`` with ``z ~ N(0, I)`` and ``g ~ chi^2_nu`` per row:
    a Gaussian scale mixture, so rows have the same covariance as :class:`GaussianDesign` but
    heavy tails. The book's stress test of the Gaussian-design theory (not in the paper).
    """

    nu: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if not float(self.nu) > 2:
            raise ValueError(f"nu must be > 2 for a finite covariance, got {self.nu}")
        self.nu = float(self.nu)

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        X = super().sample(n, rngs)  # the Gaussian rows first, then one chi^2_nu per row
        g = np.stack([r.chisquare(self.nu, n) for r in rngs])
        X *= np.sqrt((self.nu - 2) / g)[..., None]
        return X


@dataclass(eq=False)
class FixedDesign:
    """The *same* design ``X (S, n, d)`` at every call: the reused-design ablation [derived].

    ``eigs`` is the population spectrum the design was drawn from (it defines the test error).
    Batched only: ``sample`` must be asked for the stored ``n`` with one generator per seed.
    """

    X: np.ndarray
    eigs: np.ndarray

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=float)
        self.eigs = _spectrum(self.eigs)
        if self.X.ndim != 3 or self.X.shape[2] != self.eigs.size:
            raise ValueError(f"X must have shape (S, n, {self.eigs.size}), got {self.X.shape}")

    @classmethod
    def draw(cls, eigs: np.ndarray, n: int, rngs: Sequence[np.random.Generator]) -> FixedDesign:
        """Draw one Gaussian design per seed, to be reused at every generation."""
        design = GaussianDesign(eigs)
        return cls(design.sample(n, list(rngs)), design.eigs)

    @property
    def dim(self) -> int:
        return self.eigs.size

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        if len(rngs) != self.X.shape[0]:
            raise ValueError(f"a FixedDesign serves exactly {self.X.shape[0]} seeds at once")
        if n != self.X.shape[1]:
            raise ValueError(f"n must be {self.X.shape[1]} (the stored design), got {n}")
        return self.X


# --------------------------------------------------------------------------------------------
# linear models and the least-squares learner
# --------------------------------------------------------------------------------------------


def excess_risk(w: np.ndarray, w0: np.ndarray, eigs: np.ndarray) -> np.ndarray:
    """Test error against the truth, ``E_test(w) = (w - w0)^T Σ (w - w0)`` (last axis) [paper].

    With ``Σ = diag(eigs)`` this is ``sum_i eigs_i (w_i - w0_i)^2``: the excess risk over the noise
    floor ``sigma^2`` of a fresh test pair, computed exactly rather than on a test set.
    """
    e = _spectrum(eigs)
    diff = np.asarray(w, dtype=float) - np.asarray(w0, dtype=float)
    if diff.shape[-1] != e.size:
        raise ValueError(f"w and w0 must have {e.size} coordinates, got {diff.shape[-1]}")
    return np.sum(e * diff**2, axis=-1)


@dataclass(eq=False)
class LinearModel:
    """``y = x^T w + noise * eps`` with ``x`` from ``design``; ``w`` is ``(d,)`` or ``(S, d)``.

    ``sample`` draws fresh covariates and labels them with the model's own noise: for the truth this
    is real data, for a fitted ``w_hat_m`` it is the synthetic data of the next generator [paper].
    """

    w: np.ndarray
    noise: float
    design: Any

    def __post_init__(self) -> None:
        self.w = np.asarray(self.w, dtype=float)
        self.noise = check_nonnegative(self.noise, "noise")
        if self.w.shape[-1] != self.design.dim:
            raise ValueError(f"w must have {self.design.dim} coordinates, got shape {self.w.shape}")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X w`` per seed: ``X (S, n, d)`` (or ``(n, d)``) -> ``(S, n)`` (or ``(n,)``)."""
        return (np.asarray(X) @ self.w[..., None])[..., 0]

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        X = self.design.sample(n, rngs)
        y = self.predict(X) + self.noise * standard_normal(rngs, (n,))
        return pack(X, y)


@dataclass(eq=False)
class LeastSquares(Learner):
    """Least squares on a packed batch; the generators of the chain [paper].

    ``ridge = 0``: ordinary least squares ``(X^T X)^{-1} X^T y`` when ``n >= d``, the minimum-norm
    interpolator ``X^T (X X^T)^{-1} y`` when ``n < d``. ``ridge > 0``:
    ``(X^T X / n + ridge I)^{-1} X^T y / n``. The fitted model labels fresh covariates from
    ``design`` with noise ``noise``. Works batched ``(S, n, d + 1)`` and for one seed ``(n, d + 1)``
    (wrap in :class:`collapse_lib.loop.PerSeed` for the per-seed path).
    """

    design: Any
    noise: float
    ridge: float = 0.0

    def __post_init__(self) -> None:
        self.noise = check_nonnegative(self.noise, "noise")
        self.ridge = check_nonnegative(self.ridge, "ridge")

    def fit(self, data: np.ndarray) -> LinearModel:
        d = self.design.dim
        X, Y = unpack(data, d)
        y = Y[..., :1]
        n = X.shape[-2]
        Xt = np.swapaxes(X, -1, -2)
        if n >= d:
            A = Xt @ X
            if self.ridge:
                A = A + n * self.ridge * np.eye(d)
            w = np.linalg.solve(A, Xt @ y)[..., 0]
        else:
            G = X @ Xt
            if self.ridge:
                G = G + n * self.ridge * np.eye(n)
            w = (Xt @ np.linalg.solve(G, y))[..., 0]
        return LinearModel(w, self.noise, self.design)


# --------------------------------------------------------------------------------------------
# the chain: the shared loop's replace regime
# --------------------------------------------------------------------------------------------


def generator_error(step: Step) -> np.ndarray:
    """Loop metric: the generator's test error ``(w_hat - w0)^T Σ (w_hat - w0)`` per seed."""
    return excess_risk(step.model.w, step.truth.w, step.truth.design.eigs)


def _paper_index(results: Results, seeds: list[int]) -> Results:
    """Loop generation ``t`` -> the paper's ``n = t + 1``, with ``n = 0`` (the truth: 0) first."""
    (metric,) = results.metrics
    values = results.frame["value"].to_numpy().reshape(-1, len(seeds))  # the loop's (t, seed) rows
    return Results.from_array(
        {metric: np.vstack([np.zeros(len(seeds)), values])}, seeds, results.conditions[0]
    )


@dataclass
class LinearChain:
    """The generators of :func:`linear_chain`.

    Attributes
    ----------
    weights : ndarray, shape (S, n_max + 1, d)
        ``weights[:, n]`` is ``w_hat_n``; ``weights[:, 0]`` is the truth ``w0``.
    results : Results
        The generator error per seed, ``generation`` holding the paper's index ``n``.
    seeds : list of int
    """

    weights: np.ndarray
    results: Results
    seeds: list[int]


def linear_chain(
    eigs: np.ndarray,
    w0: np.ndarray,
    *,
    T0: int,
    sigma0: float,
    n_max: int,
    seeds: int | Sequence[int] = 100,
    seed: int = 0,
    reuse_design: bool = False,
    design: Any = None,
    per_seed: bool = False,
    chunk: int | None = None,
    condition: str | None = None,
) -> LinearChain:
    """Fit the generators ``w_hat_1..w_hat_{n_max}`` with :func:`collapse_lib.loop.run` (replace).

    Generation ``m`` draws ``T0`` fresh covariates, labels them with ``w_hat_{m-1}`` plus
    ``N(0, sigma0^2)`` noise and refits least squares [paper]; ``w_hat_0 = w0``.

    Parameters
    ----------
    eigs, w0
        Spectrum of Σ (shape ``(d,)``) and the true regression vector.
    T0, sigma0
        Samples per generator and the generators' label noise.
    n_max
        Number of generators.
    seeds, seed
        Replicates and root seed, as in :func:`collapse_lib.loop.run`.
    reuse_design
        Draw one design per seed and reuse it at every generation (the ablation of the
        over-parameterized collapse) instead of fresh covariates.
    design
        Where covariates come from (default :class:`GaussianDesign` of ``eigs``), e.g. a
        :class:`StudentTDesign` with the same spectrum; it must have an ``eigs`` attribute.
    per_seed
        Run through :class:`collapse_lib.loop.PerSeed` (one seed at a time); same numbers, slower.
        Used to measure the batched speed-up.
    chunk
        Run the seeds in groups of at most ``chunk`` (bounds memory; results are identical because
        every replicate has its own stream). Default: about ``CHUNK_ELEMENTS`` covariates per group.
    """
    e = _spectrum(eigs)
    w0 = _vector(w0, e.size, "w0")
    T0 = check_positive_int(T0, "T0")
    n_max = check_positive_int(n_max, "n_max")
    sigma0 = check_nonnegative(sigma0, "sigma0")
    all_seeds = seed_list(seeds)
    if chunk is None:
        size = max(1, CHUNK_ELEMENTS // (T0 * e.size))
    else:
        size = check_positive_int(chunk, "chunk")
    if reuse_design and per_seed:
        raise ValueError("reuse_design needs the batched path (per_seed=False)")
    if reuse_design and design is not None:
        raise ValueError(
            "design and reuse_design are exclusive (reuse_design draws a Gaussian design)"
        )
    if design is not None and not np.array_equal(getattr(design, "eigs", None), e):
        raise ValueError("design must have the spectrum eigs (its 'eigs' attribute)")
    parts, chunks = [], []
    for start in range(0, len(all_seeds), size):
        part = all_seeds[start : start + size]
        if reuse_design:
            source = FixedDesign.draw(e, T0, [rng(seed, Stream.FIXED_DESIGN, s) for s in part])
        else:
            source = GaussianDesign(e) if design is None else design
        learner = LeastSquares(source, sigma0)
        truth = LinearModel(w0, sigma0, source)
        recorder = ModelRecorder(generator_error)
        results = run(
            PerSeed(learner) if per_seed else learner,
            truth,
            regime("replace"),
            n=T0,
            generations=n_max,
            metrics={"generator_error": recorder},
            seeds=part,
            seed=seed,
            condition=condition,
        )
        w = np.stack([m.w for m in recorder.models], axis=1)  # (S, n_max, d)
        parts.append(np.concatenate([np.broadcast_to(w0, (len(part), 1, e.size)), w], axis=1))
        chunks.append(_paper_index(results, part))
    return LinearChain(np.concatenate(parts, axis=0), Results.concat(chunks), all_seeds)


def chain_table(values: np.ndarray, seeds: Sequence[int], metric: str, condition: str) -> Results:
    """Results (``generation`` = n) from per-seed values ``(S, N)`` at ``n = 0..N-1``."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[0] != len(seeds):
        raise ValueError(f"values must have shape (S={len(seeds)}, N), got {v.shape}")
    return Results.from_array({metric: v.T}, seeds, condition, order="seed")


# --------------------------------------------------------------------------------------------
# the downstream ridge sweep: one eigendecomposition per seed, every lambda a rescaling
# --------------------------------------------------------------------------------------------


class KernelRidgePath:
    """Kernel ridge ``alpha(lam) = (K + T lam I)^{-1} Y`` for any ``lam``, one ``eigh`` per seed.

    ``K (..., T, T)`` is the Gram matrix of the training points, ``Y (..., T, m)`` the targets.
    With ``K / T = V diag(mu) V^T``: ``alpha(lam) = V diag(1 / (T (mu + lam))) V^T Y``.
    ``lam = 0`` is the interpolating solution (needs ``K`` non-singular).
    """

    def __init__(self, K: np.ndarray, Y: np.ndarray) -> None:
        K, Y = np.asarray(K, dtype=float), np.asarray(Y, dtype=float)
        T = K.shape[-1]
        if K.shape[-2] != T or Y.shape[:-1] != K.shape[:-1]:
            raise ValueError(
                f"K must be (..., T, T) and Y (..., T, m); got {K.shape} and {Y.shape}"
            )
        self.T = T
        self.mu, self.V = np.linalg.eigh(K / T)
        self.c = np.swapaxes(self.V, -1, -2) @ Y

    def scaled(self, lam: float) -> np.ndarray:
        """``diag(1 / (T (mu + lam))) V^T Y``: the dual coefficients in the eigenbasis."""
        return self.c / (self.T * (self.mu[..., None] + check_nonnegative(lam, "lam")))

    def alpha(self, lam: float) -> np.ndarray:
        return self.V @ self.scaled(lam)


class RidgePath:
    """Ridge ``w(lam) = (X^T X / T + lam I)^{-1} X^T Y / T`` for any ``lam``, one ``eigh`` per seed.

    ``X (..., T, d)``, ``Y (..., T, m)``. When ``T >= d`` (primal form)
    ``X^T X / T = U diag(ev) U^T`` and ``w(lam) = U diag(1 / (ev + lam)) U^T X^T Y / T``. When
    ``T < d`` (kernel form) the same estimator is ``X^T (X X^T + T lam I)^{-1} Y``, from the
    ``T x T`` Gram matrix; ``lam = 0`` is then the minimum-norm interpolator. ``form="auto"`` picks
    the smaller eigenproblem; forcing the other form is valid for ``lam > 0``.
    """

    FORMS = ("auto", "primal", "kernel")

    def __init__(self, X: np.ndarray, Y: np.ndarray, form: str = "auto") -> None:
        check_choice(form, self.FORMS, "form")
        X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
        if X.ndim < 2 or Y.shape[:-1] != X.shape[:-1]:
            raise ValueError(
                f"X must be (..., T, d) and Y (..., T, m); got {X.shape} and {Y.shape}"
            )
        T, d = X.shape[-2:]
        Xt = np.swapaxes(X, -1, -2)
        if form == "auto":
            form = "primal" if T >= d else "kernel"
        self.form = form
        if self.form == "primal":
            self.ev, self.U = np.linalg.eigh(Xt @ X / T)
            self.b = np.swapaxes(self.U, -1, -2) @ (Xt @ Y) / T
        else:
            self.kernel = KernelRidgePath(X @ Xt, Y)
            self.XtV = Xt @ self.kernel.V

    def coef(self, lam: float) -> np.ndarray:
        """The ridge solution at ``lam``: shape ``(..., d, m)``."""
        lam = check_nonnegative(lam, "lam")
        if self.form == "primal":
            return self.U @ (self.b / (self.ev[..., None] + lam))
        return self.XtV @ self.kernel.scaled(lam)


def downstream_errors(
    weights: np.ndarray,
    eigs: np.ndarray,
    w0: np.ndarray,
    *,
    T: int,
    sigma: float,
    lams: Sequence[float] | np.ndarray,
    rngs: Sequence[np.random.Generator],
) -> np.ndarray:
    """Test error of the downstream ridge trained on labels of every generator, for every ``lam``.

    For each seed one design ``X (T, d)`` and one noise vector ``E`` are drawn and shared by all
    generators ``n`` and all ``lam`` (common random numbers); ``Y_n = X w_hat_n + E`` [paper].

    Parameters
    ----------
    weights
        ``(S, N, d)``: the generators, e.g. :attr:`LinearChain.weights`.
    eigs, w0
        Spectrum of Σ and the truth the error is measured against.
    T, sigma
        Downstream sample size and label noise.
    lams
        Ridge grid (``>= 0``).
    rngs
        One generator per seed (:func:`downstream_rngs`).

    Returns
    -------
    ndarray, shape (S, N, L)
        ``E_test`` of the ridge fit on ``w_hat_n``'s labels with ``lams[l]``.
    """
    e = _spectrum(eigs)
    w0 = _vector(w0, e.size, "w0")
    W = np.asarray(weights, dtype=float)
    if W.ndim != 3 or W.shape[2] != e.size:
        raise ValueError(f"weights must have shape (S, N, {e.size}), got {W.shape}")
    rngs = list(rngs)
    if len(rngs) != W.shape[0]:
        raise ValueError(f"rngs must hold one generator per seed ({W.shape[0]}), got {len(rngs)}")
    T = check_positive_int(T, "T")
    sigma = check_nonnegative(sigma, "sigma")
    grid = _lams(lams)
    X = GaussianDesign(e).sample(T, rngs)
    E = sigma * standard_normal(rngs, (T,))
    Y = X @ np.swapaxes(W, 1, 2) + E[..., None]  # (S, T, N)
    path = RidgePath(X, Y)
    out = np.empty((W.shape[0], W.shape[1], grid.size))
    for j, lam in enumerate(grid):
        diff = path.coef(lam) - w0[:, None]  # (S, d, N)
        out[:, :, j] = np.einsum("i,sin->sn", e, diff**2)
    return out


def argmin_lambda(errors: np.ndarray) -> np.ndarray:
    """Index of the ``lam`` minimizing the seed-mean error, per generator: ``(S, N, L) -> (N,)``."""
    err = np.asarray(errors, dtype=float)
    if err.ndim != 3:
        raise ValueError(f"errors must have shape (S, N, L), got {err.shape}")
    return np.argmin(err.mean(axis=0), axis=-1)


# --------------------------------------------------------------------------------------------
# theory
# --------------------------------------------------------------------------------------------


def degrees_of_freedom(eigs: np.ndarray, kappa: float, m: int = 1) -> float:
    """``df_m(kappa) = tr[Σ^m (Σ + kappa I)^{-m}] = sum_i (e_i / (e_i + kappa))^m`` [derived]."""
    e = _spectrum(eigs)
    return float(
        np.sum((e / (e + check_nonnegative(kappa, "kappa"))) ** check_positive_int(m, "m"))
    )


def solve_kappa(eigs: np.ndarray, lam: float, T: int) -> float:
    """The effective regularization ``kappa(lam, T)``: the root ``kappa >= lam`` of [derived]

    ``kappa - lam = kappa * df_1(kappa) / T``.

    Solved with :func:`scipy.optimize.brentq` on ``[lam, lam + tr Σ / T]``. For ``lam = 0``:
    ``kappa = 0`` when ``d <= T``, else the root of ``df_1(kappa) = T``.
    """
    e = _spectrum(eigs)
    lam = check_nonnegative(lam, "lam")
    T = check_positive_int(T, "T")
    hi = lam + e.sum() / T
    xtol = 1e-15 * hi
    if lam == 0:
        if e.size <= T:
            return 0.0
        return brentq(lambda k: np.sum(e / (e + k)) - T, 1e-300, hi, xtol=1e-300, rtol=1e-15)
    return brentq(lambda k: k - lam - k * np.sum(e / (e + k)) / T, lam, hi, xtol=xtol, rtol=1e-15)


def kappa_isotropic(lam: float, d: int, T: int) -> float:
    """Closed form of :func:`solve_kappa` for ``Σ = I_d``, ``phi = d / T`` [derived]:

    ``kappa = [lam + phi - 1 + sqrt((1 - phi - lam)^2 + 4 lam)] / 2``.
    """
    lam = check_nonnegative(lam, "lam")
    phi = check_positive_int(d, "d") / check_positive_int(T, "T")
    return 0.5 * (lam + phi - 1 + np.sqrt((1 - phi - lam) ** 2 + 4 * lam))


def ols_error(
    n: int | np.ndarray, *, d: int, T: int, T0: int, sigma: float, sigma0: float
) -> np.ndarray:
    """Exact test error of ridgeless downstream OLS after ``n`` generators, for any Σ [derived]:

    ``E_test = sigma^2 d / (T - d - 1) + n sigma0^2 d / (T0 - d - 1)``  (``T, T0 >= d + 2``).

    ``w_hat_n - w0`` is a sum of ``n`` independent terms ``X_m^+ E_m`` and the inverse-Wishart mean
    is ``E[(X^T X)^{-1}] = Σ^{-1} / (T0 - d - 1)``. The paper states the linear growth in ``n``
    [paper]; this exact finite-size form is the book's derivation.
    """
    d = check_positive_int(d, "d")
    T, T0 = _past_threshold(T, d, "T"), _past_threshold(T0, d, "T0")
    n = np.asarray(n)
    if np.any(n < 0):
        raise ValueError("n must be >= 0")
    sigma, sigma0 = check_nonnegative(sigma, "sigma"), check_nonnegative(sigma0, "sigma0")
    return sigma**2 * d / (T - d - 1) + n * sigma0**2 * d / (T0 - d - 1)


@dataclass(frozen=True)
class RidgeTheory:
    """The terms of ``E_test(n) = bias + variance + n sigma0^2 rho`` (:func:`ridge_theory`)."""

    bias: np.ndarray
    variance: np.ndarray
    rho: np.ndarray
    sigma0: float

    def increment(self) -> np.ndarray:
        """Extra test error per generator, ``sigma0^2 * rho``."""
        return self.sigma0**2 * self.rho

    def error(self, n: int | np.ndarray) -> np.ndarray:
        """``bias + variance + n sigma0^2 rho``; ``n`` broadcasts against the ``lam`` axis."""
        return self.bias + self.variance + np.multiply.outer(np.asarray(n), self.increment())


def ridge_theory(
    eigs: np.ndarray,
    w0: np.ndarray,
    lam: float | np.ndarray,
    *,
    T: int,
    T0: int,
    sigma: float,
    sigma0: float,
) -> RidgeTheory:
    """Deterministic equivalent of the downstream ridge error for any spectrum [derived]:

    ``E_test(n) ~ Bias + Var + n sigma0^2 rho`` with ``kappa = kappa(lam, T)``
    (:func:`solve_kappa`) and ``df_m = df_m(kappa)``::

        Bias = kappa^2 w0^T Σ (Σ + kappa)^{-2} w0 / (1 - df_2 / T)
        Var  = sigma^2 df_2 / (T - df_2)
        rho  = [df_2 + (d - 2 df_1 + df_2) df_2 / (T - df_2)] / (T0 - d - 1)

    Valid for under-parameterized generators (``T0 >= d + 2``) and any ``lam >= 0`` (``lam = 0``
    with ``T = d`` excluded). The growth being linear in ``n`` for every ``lam`` is exact; ``rho``
    is the high-dimensional equivalent of ``E tr[Σ^{-1}(I - lam R) Σ (I - lam R)] / (T0 - d - 1)``.
    The paper's Fig. 1a theory lines come from its "Theorem 4.1" [paper]; this is the book's form.
    """
    e = _spectrum(eigs)
    w0 = _vector(w0, e.size, "w0")
    d = e.size
    T, T0 = check_positive_int(T, "T"), _past_threshold(T0, d, "T0")
    sigma, sigma0 = check_nonnegative(sigma, "sigma"), check_nonnegative(sigma0, "sigma0")
    grid = np.asarray(lam, dtype=float)
    flat = _lams(grid.reshape(-1))
    if T == d and np.any(flat == 0):
        raise ValueError("lam = 0 with T = d is the interpolation threshold: the error is infinite")
    bias, var, rho = (np.empty(flat.size) for _ in range(3))
    for i, lam_i in enumerate(flat):
        k = solve_kappa(e, lam_i, T)
        d1 = np.sum(e / (e + k))
        d2 = np.sum((e / (e + k)) ** 2)
        bias[i] = k**2 * np.sum(e * w0**2 / (e + k) ** 2) / (1 - d2 / T)
        var[i] = sigma**2 * d2 / (T - d2)
        rho[i] = (d2 + (d - 2 * d1 + d2) * d2 / (T - d2)) / (T0 - d - 1)
    shape = grid.shape
    return RidgeTheory(bias.reshape(shape), var.reshape(shape), rho.reshape(shape), sigma0)


def ridge_theory_isotropic(
    lam: float, *, d: int, T: int, T0: int, w0_norm2: float, sigma: float, sigma0: float
) -> RidgeTheory:
    """:func:`ridge_theory` for ``Σ = I_d`` in closed form [derived]; ``phi = d/T``, ``kappa`` from
    :func:`kappa_isotropic`::

        Bias = kappa^2 ||w0||^2 / ((1 + kappa)^2 - phi)
        Var  = sigma^2 phi / ((1 + kappa)^2 - phi)
        rho  = d / (T0 - d - 1) (1 + kappa)^{-2} [1 + kappa^2 phi / ((1 + kappa)^2 - phi)]
    """
    d, T = check_positive_int(d, "d"), check_positive_int(T, "T")
    T0 = _past_threshold(T0, d, "T0")
    k = kappa_isotropic(lam, d, T)
    phi = d / T
    den = (1 + k) ** 2 - phi
    bias = k**2 * check_nonnegative(w0_norm2, "w0_norm2") / den
    var = check_nonnegative(sigma, "sigma") ** 2 * phi / den
    rho = d / (T0 - d - 1) / (1 + k) ** 2 * (1 + k**2 * phi / den)
    return RidgeTheory(
        np.asarray(bias), np.asarray(var), np.asarray(rho), check_nonnegative(sigma0, "sigma0")
    )


def optimal_lambda(
    eigs: np.ndarray,
    w0: np.ndarray,
    *,
    n: int,
    T: int,
    T0: int,
    sigma: float,
    sigma0: float,
    lams: Sequence[float] | np.ndarray,
) -> tuple[float, float]:
    """``(lam_opt, E_opt)``: the theory-optimal ridge for ``n`` generators [derived].

    The grid minimum of :func:`ridge_theory`, refined by :func:`scipy.optimize.minimize_scalar` on
    ``log lam`` between the grid neighbours (a minimum at the edge of the grid is returned as is).
    """
    grid = np.sort(_lams(lams))
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    kw = {"T": T, "T0": T0, "sigma": sigma, "sigma0": sigma0}
    curve = ridge_theory(eigs, w0, grid, **kw).error(n)
    i = int(np.argmin(curve))
    if i in (0, grid.size - 1) or grid[i - 1] <= 0:
        return float(grid[i]), float(curve[i])

    def f(log_lam: float) -> float:
        return float(ridge_theory(eigs, w0, np.exp(log_lam), **kw).error(n))

    res = minimize_scalar(
        f,
        bounds=(np.log(grid[i - 1]), np.log(grid[i + 1])),
        method="bounded",
        options={"xatol": 1e-6},
    )
    if res.fun < curve[i]:
        return float(np.exp(res.x)), float(res.fun)
    return float(grid[i]), float(curve[i])


def forgetting_error(
    n: int | np.ndarray, *, d: int, T0: int, w0_norm2: float = 1.0, sigma0: float = 0.0
) -> np.ndarray:
    """Over-parameterized generators (``T0 < d``), ``Σ = I``: ``E ||w_hat_n - w0||^2`` [derived]

    ``= ||w0||^2 (1 - psi^n) + c (1 - psi^n) / (1 - psi)``, with ``psi = T0 / d`` and
    ``c = sigma0^2 T0 / (d - T0 - 1)``.

    Each minimum-norm refit applies a random projection of rank ``T0`` (mean ``psi I``): the signal
    decays geometrically to the null predictor even without noise. The paper states the exponential
    collapse in the noise-free over-parameterized case [paper]; this exact isotropic form is the
    book's. Noisy case needs ``T0 <= d - 2``.
    """
    d, T0 = check_positive_int(d, "d"), check_positive_int(T0, "T0")
    if T0 >= d:
        raise ValueError(f"T0 must be < d = {d} (over-parameterized generators), got {T0}")
    sigma0 = check_nonnegative(sigma0, "sigma0")
    if sigma0 > 0 and T0 > d - 2:
        raise ValueError(f"with sigma0 > 0, T0 must be <= d - 2 = {d - 2}, got {T0}")
    n = np.asarray(n, dtype=float)
    if np.any(n < 0):
        raise ValueError("n must be >= 0")
    psi = T0 / d
    c = sigma0**2 * T0 / (d - T0 - 1) if sigma0 > 0 else 0.0
    return (check_nonnegative(w0_norm2, "w0_norm2") + c / (1 - psi)) * (1 - psi**n)


def power_law_spectrum(d: int, beta: float) -> np.ndarray:
    """Capacity condition ``eigs_i = i^{-beta}``, ``i = 1..d``, ``beta > 1`` [paper]."""
    d = check_positive_int(d, "d")
    if not float(beta) > 1:
        raise ValueError(f"beta must be > 1, got {beta}")
    return np.arange(1, d + 1, dtype=float) ** (-float(beta))


def power_law_target(d: int, beta: float, r: float) -> np.ndarray:
    """Source condition ``eigs_i w0_i^2 = i^{-delta}``, ``delta = 1 + 2 beta r`` [paper; convention
    for ``r`` book's own]: ``w0_i = i^{-(delta - beta)/2}``."""
    power_law_spectrum(d, beta)
    if not float(r) > 0:
        raise ValueError(f"r must be > 0, got {r}")
    delta = 1 + 2 * beta * r
    return np.arange(1, d + 1, dtype=float) ** (-(delta - beta) / 2)


def ell_crit(beta: float, r: float) -> float:
    """Adaptive-ridge exponent ``ell_crit = beta / (1 + 2 beta min(r, 1))``: ``lam = T^{-ell_crit}``
    balances bias and the synthetic variance [derived; the paper's Fig. 1b uses
    ``lam = T^{-ell_crit}`` [paper]]."""
    if not float(beta) > 1:
        raise ValueError(f"beta must be > 1, got {beta}")
    if not float(r) > 0:
        raise ValueError(f"r must be > 0, got {r}")
    return beta / (1 + 2 * beta * min(r, 1.0))


def power_law_rates(beta: float, r: float) -> tuple[float, float]:
    """Log-log slopes of the error in ``T`` [derived]: fast (clean, noiseless, ridgeless)
    ``-2 beta min(r,1)`` and slow (with synthetic data, ``lam = T^{-ell_crit}``)
    ``-2 beta min(r,1) / (2 beta min(r,1) + 1)``."""
    ell_crit(beta, r)
    a = 2 * beta * min(r, 1.0)
    return -a, -a / (a + 1)


def effective_noise(sigma: float, sigma0: float, n: int, *, d: int, T0: int) -> float:
    """``sigma_eff^2 = sigma^2 + n sigma0^2 phi0 / (1 - phi0)``, ``phi0 = d / T0`` [derived]: for
    ``d >> T`` the synthetic term acts like extra label noise of this variance."""
    d, T0 = check_positive_int(d, "d"), check_positive_int(T0, "T0")
    if T0 <= d:
        raise ValueError(f"T0 must be > d = {d}, got {T0}")
    phi0 = d / T0
    return check_nonnegative(sigma, "sigma") ** 2 + int(n) * check_nonnegative(
        sigma0, "sigma0"
    ) ** 2 * phi0 / (1 - phi0)


# --------------------------------------------------------------------------------------------
# kernel ridge on the 8x8 digits: a CPU stand-in for the paper's MNIST experiment
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class DigitsTask:
    """scikit-learn's bundled 8x8 digits, pixels in [0, 1], targets ``e_y - 0.1`` (centred one-hot).

    ``pool`` is where every generator and the downstream learner draw their images; ``test`` is held
    out. ``gamma = 1 / median squared distance`` of the pool (the RBF bandwidth).
    """

    pool_X: np.ndarray
    pool_Y: np.ndarray
    test_X: np.ndarray
    test_Y: np.ndarray
    gamma: float


def load_digits_task(seed: int, n_test: int = 500) -> DigitsTask:
    """Split the digits into a pool and a test set (stream ``Stream.REGRESSION_DIGITS, 0``)."""
    n_test = check_positive_int(n_test, "n_test")
    X, y = digits()
    if n_test >= len(y):
        raise ValueError(f"n_test must be < {len(y)}, got {n_test}")
    Y = np.eye(10)[y] - 0.1
    perm = digits_order(seed, Stream.REGRESSION_DIGITS, 0)
    test, pool = perm[:n_test], perm[n_test:]
    gamma = 1.0 / np.median(pdist(X[pool], "sqeuclidean"))
    return DigitsTask(X[pool], Y[pool], X[test], Y[test], float(gamma))


def rbf(A: np.ndarray, B: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(-gamma ||a - b||^2)`` per seed (scikit-learn's ``rbf_kernel``): ``(S, m, p), (S, k, p)
    -> (S, m, k)``; a 2-D ``B`` is shared by every seed; 2-D ``A`` and ``B`` give one matrix."""
    A, B = np.asarray(A), np.asarray(B)
    if A.ndim == 2 and B.ndim == 2:
        return rbf_kernel(A, B, gamma=gamma)
    if B.ndim == 2:
        return np.stack([rbf_kernel(a, B, gamma=gamma) for a in A])
    if A.ndim == 2:
        return np.stack([rbf_kernel(A, b, gamma=gamma) for b in B])
    return np.stack([rbf_kernel(a, b, gamma=gamma) for a, b in zip(A, B, strict=True)])


@dataclass(eq=False)
class PoolTruth:
    """Real labelled pairs: pool images with their targets plus ``N(0, noise^2)`` label noise."""

    X: np.ndarray
    Y: np.ndarray
    noise: float

    def __post_init__(self) -> None:
        self.design = ImagePool(self.X)
        self.Y = np.asarray(self.Y, dtype=float)
        self.noise = check_nonnegative(self.noise, "noise")
        if self.Y.ndim != 2 or self.Y.shape[0] != len(self.design.images):
            raise ValueError(f"Y must be (pool size, k), got {self.Y.shape}")

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        idx = self.design.indices(n, rngs)
        Y = self.Y[idx]
        return pack(self.design.images[idx], Y + self.noise * standard_normal(rngs, Y.shape[-2:]))


@dataclass(eq=False)
class KernelRidgeModel:
    """``f(x) = sum_j alpha_j k(x, x_j)``; ``sample`` labels fresh pool images with ``f`` + noise"""

    X_train: np.ndarray
    alpha: np.ndarray
    gamma: float
    noise: float
    design: Any

    def predict(self, X: np.ndarray) -> np.ndarray:
        return rbf(X, self.X_train, self.gamma) @ self.alpha

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        X = self.design.sample(n, rngs)
        F = self.predict(X)
        return pack(X, F + self.noise * standard_normal(rngs, F.shape[-2:]))


@dataclass(eq=False)
class KernelRidge(Learner):
    """RBF kernel ridge ``alpha = (K + n ridge I)^{-1} Y`` on a packed batch (digits generators).

    The fitted model labels fresh images from ``design`` with noise ``noise``.
    """

    design: Any
    noise: float
    ridge: float
    gamma: float

    def __post_init__(self) -> None:
        self.noise = check_nonnegative(self.noise, "noise")
        self.ridge = check_nonnegative(self.ridge, "ridge")
        if not float(self.gamma) > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")

    def fit(self, data: np.ndarray) -> KernelRidgeModel:
        X, Y = unpack(data, self.design.dim)
        n = X.shape[-2]
        K = rbf(X, X, self.gamma) + n * self.ridge * np.eye(n)
        return KernelRidgeModel(X, np.linalg.solve(K, Y), self.gamma, self.noise, self.design)


def digits_chain(
    task: DigitsTask,
    *,
    T0: int,
    sigma0: float,
    ridge0: float,
    n_max: int,
    seeds: int | Sequence[int],
    seed: int,
) -> list[KernelRidgeModel]:
    """The kernel-ridge generators ``f_1..f_{n_max}`` on the digits, via the loop's replace regime.

    ``f_1`` is fitted on ``T0`` pool images with their true targets plus ``N(0, sigma0^2)`` noise;
    ``f_m`` on ``T0`` fresh pool images labelled by ``f_{m-1}`` plus the same noise.
    """
    truth = PoolTruth(task.pool_X, task.pool_Y, sigma0)
    learner = KernelRidge(truth.design, sigma0, ridge0, task.gamma)
    recorder = ModelRecorder(lambda step: np.zeros(len(step.seeds)))
    run(
        learner,
        truth,
        regime("replace"),
        n=check_positive_int(T0, "T0"),
        generations=check_positive_int(n_max, "n_max"),
        metrics={"recorded": recorder},
        seeds=seeds,
        seed=seed,
    )
    return recorder.models


def digits_downstream_mse(
    task: DigitsTask,
    models: Sequence[KernelRidgeModel],
    *,
    T: int,
    sigma: float,
    lams: Sequence[float] | np.ndarray,
    rngs: Sequence[np.random.Generator],
) -> np.ndarray:
    """Test MSE of downstream kernel ridge trained on each generator's labels, for every ``lam``.

    Per seed one draw of ``T`` pool images and one noise matrix are shared by every ``n`` and
    ``lam``; ``n = 0`` uses the true targets. The MSE is the mean over test images of the squared
    error summed over the 10 outputs, against the true centred one-hot targets. One ``eigh`` of the
    ``T x T`` kernel per seed serves the whole grid (:class:`KernelRidgePath`).

    Returns
    -------
    ndarray, shape (S, len(models) + 1, L)
    """
    rngs = list(rngs)
    grid = _lams(lams)
    idx = ImagePool(task.pool_X).indices(check_positive_int(T, "T"), rngs)
    X = task.pool_X[idx]
    noise = check_nonnegative(sigma, "sigma") * standard_normal(rngs, (T, task.pool_Y.shape[1]))
    labels = [task.pool_Y[idx]] + [m.predict(X) for m in models]
    Y = np.stack(labels, axis=-2) + noise[..., None, :]  # (S, T, N, k)
    S, _, N, k = Y.shape
    path = KernelRidgePath(rbf(X, X, task.gamma), Y.reshape(S, T, N * k))
    KtV = rbf(task.test_X, X, task.gamma) @ path.V  # (S, M, T)
    out = np.empty((S, N, grid.size))
    for j, lam in enumerate(grid):
        pred = (KtV @ path.scaled(lam)).reshape(S, -1, N, k)
        out[:, :, j] = ((pred - task.test_Y[None, :, None, :]) ** 2).sum(-1).mean(1)
    return out


# --------------------------------------------------------------------------------------------
# the chapter's multi-panel figures
# --------------------------------------------------------------------------------------------


def plot_lambda_sweep(
    ax: Any,
    lams: np.ndarray,
    errors: np.ndarray,
    theory: np.ndarray,
    optima: np.ndarray,
    labels: Sequence[str],
    colors: dict[str, str],
    markers: dict[str, str],
) -> None:
    """One panel of the ridge sweep: test error against ``lam`` for several generators ``n``.

    ``errors (S, N, L)`` from :func:`downstream_errors` (mean +- 2 SE over seeds as dots),
    ``theory (N, L)`` as dashed lines, ``optima (N, 2)``: the ``(lam_opt, E_opt)`` stars.
    """
    mean = errors.mean(0)
    se = errors.std(0, ddof=1) / np.sqrt(errors.shape[0])
    for i, label in enumerate(labels):
        c = colors[label]
        ax.plot(lams, theory[i], ls="--", lw=1.4, color=c)
        ax.errorbar(lams, mean[i], yerr=2 * se[i], fmt=markers[label], ms=4, color=c, label=label)
        ax.plot(*optima[i], marker="*", ms=15, color=c, mec="black", ls="none")


def style_crossover_axes(axes: Sequence[Any]) -> None:
    """Scales, labels and titles of the three crossover panels (error, local slope, lam_opt)."""
    from matplotlib import ticker

    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="$T$",
        ylabel=r"$\min_\lambda$ test error",
        title="Error at the optimal λ",
    )
    axes[1].set(
        xscale="log",
        xlabel="$T$",
        ylabel="local log-log slope",
        title="Local slope (dotted: predicted $T^*$)",
    )
    axes[2].set(
        xscale="log",
        yscale="log",
        xlabel="$T$",
        ylabel=r"$\lambda_{\rm opt}$",
        title="Optimal ridge (theory), where > 0",
    )
    axes[2].set_xlim(axes[1].get_xlim())
    axes[2].xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    axes[2].xaxis.set_minor_formatter(ticker.NullFormatter())
    for ax in axes:
        ax.legend(fontsize=7)


def plot_digits_sweep(
    ax: Any,
    lams: np.ndarray,
    mean: np.ndarray,
    se: np.ndarray,
    best: np.ndarray,
    shown: Sequence[int],
    colors: dict[str, str],
    markers: dict[str, str],
) -> None:
    """The digits' test MSE against ``lam`` (mean +- 2 SE, ``(N, L)``) for the generators
    ``shown``, a star at each one's best ``lam`` (``best``: grid index per generator)."""
    for k in shown:
        c, mk = colors[f"n = {k}"], markers[f"n = {k}"]
        ax.errorbar(
            lams, mean[k], yerr=2 * se[k], fmt=f"{mk}-", ms=4, lw=1, color=c, label=f"n = {k}"
        )
        ax.plot(lams[best[k]], mean[k, best[k]], "*", ms=14, color=c, mec="black")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=r"downstream ridge $\lambda$",
        ylabel="test MSE",
        title="Digits: MSE vs λ",
    )
