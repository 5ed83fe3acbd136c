"""A map of collapse: every remedy of the book on one protocol, three learners, one budget.

Each earlier chapter studies one paper's knob in its own setting. This module puts the knobs
side by side (chapter 9) on a single protocol [book]:

* **learners** (:data:`LEARNERS`), each with one error measure ``err_t`` per seed:

  - ``"gaussian"``: the ``d``-dimensional Gaussian MLE on ``N(0, I_d)``
    (:class:`collapse_lib.gaussian.MultivariateGaussianMLE`); ``err = KL(fit || truth)
    = (tr Sigma + |mu|^2 - d - log det Sigma) / 2``, the expected log-likelihood ratio of the
    model's own samples (it grows without bound as the covariance collapses);
  - ``"categorical"``: the count-based next-token learner (:class:`~collapse_lib.conditional.
    TabularMLE` with one context) on a Zipf truth over ``K`` tokens; ``err = |p_hat - p*|^2``;
  - ``"regression"``: least squares with its residual variance
    (:class:`~collapse_lib.conditional.LinearGaussianMLE`), isotropic Gaussian covariates,
    ``y = w*^T x + noise``; ``err = |w_hat - w*|^2``.

* **regimes** (:data:`REGIMES`): ``replace``, ``mixture`` with fresh fraction ``alpha``
  (``alpha = 1`` is ``real_only``: no feedback at all), ``accumulate`` and
  ``accumulate_subsample`` (:mod:`collapse_lib.regimes`);
* **filters** (:data:`FILTERS`), where they are defined (:func:`defined`): ``none``;
  ``select``, chapter 3's entropy-maximizing greedy selection of ``n`` out of ``strength * n``
  candidates (on the points themselves, or on one-hot tokens); ``verify``, chapter 4's best-of-N
  self-verification with ``strength`` candidates per input, scored by the frozen
  generation-0 model (a conditional learner is needed: it verifies an output *for an input*).

The map's number is the **relative error** ``R = mean_s err_T / mean_s err_0`` at the last
generation ``T``: 1 means "as good as one fit on real data". Every cell of a sweep runs on the
same seeds (common random numbers), so generation 0 is the same real sample in every cell
and differences between cells are the remedies', not the dice's. Closed forms
(:func:`theory_ratio`) exist for some cells; the rest is simulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from collapse_lib.categorical import zipf
from collapse_lib.conditional import (
    ConditionalCategorical,
    LinearGaussian,
    LinearGaussianMLE,
    TabularMLE,
    linear_gaussian_error,
)
from collapse_lib.gaussian import MultivariateGaussian, MultivariateGaussianMLE, replace_logdet
from collapse_lib.loop import Step, run
from collapse_lib.markov import accumulate_error, error_recursion
from collapse_lib.regimes import regime as make_regime
from collapse_lib.regression import GaussianDesign
from collapse_lib.results import Results, mean_se
from collapse_lib.runtime import check_choice, check_fraction, check_positive_int
from collapse_lib.selection import Selection
from collapse_lib.verification import SelfVerification

LEARNERS: tuple[str, ...] = ("gaussian", "categorical", "regression")
REGIMES: tuple[str, ...] = ("replace", "mixture", "real_only", "accumulate", "accumulate_subsample")
FILTERS: tuple[str, ...] = ("none", "select", "verify")
#: The learners' names in figures and tables.
LABELS: dict[str, str] = {
    "gaussian": "Gaussian",
    "categorical": "next-token",
    "regression": "regression",
}
#: Where a filter is defined: selection needs points (or tokens) to spread out, verification a
#: conditional model (an output to verify *for an input*).
DEFINED: dict[str, tuple[str, ...]] = {
    "gaussian": ("none", "select"),
    "categorical": ("none", "select", "verify"),
    "regression": ("none", "verify"),
}


@dataclass(frozen=True)
class Protocol:
    """The shared protocol: ``n`` samples per generation, ``generations`` recorded, ``seeds``.

    ``dim`` is the Gaussian's dimension, ``tokens`` and ``exponent`` the Zipf truth's size and
    exponent, ``features`` and ``noise`` the regression's covariate dimension and noise level.
    """

    n: int = 100
    generations: int = 20
    seeds: int = 200
    dim: int = 5
    tokens: int = 20
    exponent: float = 1.1
    features: int = 5
    noise: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n", "generations", "seeds", "dim", "tokens", "features"):
            check_positive_int(getattr(self, name), name)
        if self.n <= max(self.dim, self.features) + 2:
            raise ValueError(f"n must exceed dim + 2 and features + 2, got n={self.n}")


def defined(learner: str, filter: str) -> bool:
    """Whether ``filter`` is defined for ``learner`` (:data:`DEFINED`)."""
    check_choice(learner, LEARNERS, "learner")
    check_choice(filter, FILTERS, "filter")
    return filter in DEFINED[learner]


# ---- the three learners and their error measures ------------------------------------------------


def gaussian_error(step: Step) -> np.ndarray:
    """``KL(N(mu_hat, Sigma_hat) || N(0, I)) = (tr Sigma_hat + |mu_hat|^2 - d - log det) / 2``."""
    mean, cov = step.model.mean, step.model.cov
    logdet = np.linalg.slogdet(cov)[1]
    d = mean.shape[-1]
    return 0.5 * (np.trace(cov, axis1=-2, axis2=-1) + (mean**2).sum(-1) - d - logdet)


def categorical_error(step: Step) -> np.ndarray:
    """``|p_hat - p*|^2`` (one context: the first row of each table)."""
    return ((step.model.probs[:, 0] - step.truth.probs[:, 0]) ** 2).sum(-1)


def regression_error(step: Step) -> np.ndarray:
    """``|w_hat - w*|^2``, the excess risk under isotropic covariates."""
    return ((step.model.w - step.truth.w) ** 2).sum(-1)


ERRORS = {
    "gaussian": gaussian_error,
    "categorical": categorical_error,
    "regression": regression_error,
}


@dataclass(frozen=True)
class OneHot:
    """Feature map of labelled tokens ``(m, 2)`` (input, label): the label's one-hot vector."""

    tokens: int

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.eye(self.tokens)[np.asarray(z)[:, 1].astype(int)]


def setting(learner: str, protocol: Protocol) -> tuple[Any, Any]:
    """``(learner, truth)`` of one of :data:`LEARNERS` for ``protocol.seeds`` replicates."""
    check_choice(learner, LEARNERS, "learner")
    p, S = protocol, protocol.seeds
    if learner == "gaussian":
        return MultivariateGaussianMLE(), MultivariateGaussian(np.zeros(p.dim), np.eye(p.dim))
    if learner == "categorical":
        table = np.broadcast_to(zipf(p.tokens, p.exponent), (S, 1, p.tokens)).copy()
        return TabularMLE(1, p.tokens), ConditionalCategorical(table)
    design = GaussianDesign(np.ones(p.features))
    w_star = np.full((S, p.features), 1 / np.sqrt(p.features))
    return LinearGaussianMLE(design), LinearGaussian(w_star, p.noise**2, design)


def make_filter(learner: str, filter: str, strength: int, protocol: Protocol) -> Any:
    """The loop filter of ``(filter, strength)``: ``None``, :class:`Selection` or
    :class:`SelfVerification` (``strength``: candidates per kept sample)."""
    if not defined(learner, filter):
        raise ValueError(f"filter {filter!r} is not defined for the {learner!r} learner")
    if filter == "none":
        return None
    strength = check_positive_int(strength, "strength")
    if filter == "verify":
        return SelfVerification(candidates=strength)
    features = OneHot(protocol.tokens) if learner == "categorical" else None
    return Selection("greedy", features=features, factor=strength)


def regime_of(regime: str, alpha: float) -> Any:
    """The loop regime; ``alpha`` is used by ``"mixture"`` only (``real_only`` is ``alpha = 1``)."""
    check_choice(regime, REGIMES, "regime")
    alpha = check_fraction(alpha, "alpha")
    return make_regime(regime, alpha) if regime == "mixture" else make_regime(regime)


def cell(
    learner: str,
    regime: str,
    alpha: float,
    filter: str,
    strength: int,
    *,
    seed: int,
    protocol: Protocol,
) -> Results:
    """One cell of the map: the loop on ``protocol`` with metric ``"error"`` (see
    :data:`ERRORS`); a function of one configuration, as :func:`collapse_lib.sweep.sweep` wants."""
    model, truth = setting(learner, protocol)
    return run(
        model,
        truth,
        regime_of(regime, alpha),
        n=protocol.n,
        generations=protocol.generations,
        metrics={"error": ERRORS[learner]},
        seeds=protocol.seeds,
        seed=seed,
        filter=make_filter(learner, filter, strength, protocol),
        progress=False,
    )


# ---- closed forms ----------------------------------------------------------------------------


def theory_ratio(learner: str, regime: str, alpha: float, filter: str, protocol: Protocol) -> float:
    """The closed-form ``E err_T / E err_0`` of a cell, or NaN where none is known.

    * every learner under ``real_only``: 1 (each generation is a fresh fit on real data);
    * ``"gaussian"`` under ``replace``: ``t + 1`` at generation ``t`` (``generations`` at the
      last). Without a filter the second moment ``Sigma_hat + mu_hat mu_hat^T`` keeps its
      expectation ``I``, so ``E KL_t = -E log det(Sigma_hat_t) / 2`` in every regime, and under
      replace the log det falls by the same Bartlett step each generation
      (:func:`collapse_lib.gaussian.replace_logdet`);
    * ``"categorical"`` under ``replace``/``mixture``: the exact recursion of chapter 6
      (:func:`collapse_lib.markov.error_recursion`, fixed split); under ``accumulate``:
      :func:`collapse_lib.markov.accumulate_error`;
    * ``"regression"`` under ``replace``: :func:`collapse_lib.conditional.linear_gaussian_error`.
    """
    check_choice(learner, LEARNERS, "learner")
    check_choice(regime, REGIMES, "regime")
    check_choice(filter, FILTERS, "filter")
    alpha = check_fraction(alpha, "alpha")
    p, T = protocol, protocol.generations
    if filter != "none":
        return float("nan")
    if regime == "real_only" or (regime == "mixture" and alpha == 1):
        return 1.0
    if learner == "gaussian" and (regime == "replace" or (regime == "mixture" and alpha == 0)):
        mean, _ = replace_logdet(T, p.n, p.dim)
        return float(mean[-1] / mean[0])
    if learner == "categorical" and regime in ("replace", "mixture", "accumulate"):
        sigma2 = 1 - (zipf(p.tokens, p.exponent) ** 2).sum()
        if regime == "accumulate":
            R = accumulate_error(sigma2, T, p.n)
        else:
            a = alpha if regime == "mixture" else 0.0
            R = error_recursion(sigma2, np.full(T, a), np.full(T, p.n), split="fixed")
        return float(R[-1] / R[0])
    if learner == "regression" and regime == "replace":
        R = linear_gaussian_error(T, p.features, p.n, p.noise)
        return float(R[-1] / R[0])
    return float("nan")


# ---- prices and the summary table ------------------------------------------------------------


def price(regime: str, alpha: float, filter: str, strength: int, protocol: Protocol) -> dict:
    """What a remedy costs per generation: fresh real samples, extra synthetic samples drawn
    (and thrown away) by a filter, verifier calls; and at the last generation the points it trains
    on (compute) and the points kept (memory).
    """
    n, T = protocol.n, protocol.generations
    fresh = {"real_only": n, "mixture": round(check_fraction(alpha, "alpha") * n)}.get(regime, 0)
    synthetic = n - fresh
    extra = (strength - 1) * synthetic if filter in ("select", "verify") else 0
    return {
        "fresh real / gen": fresh,
        "extra synthetic / gen": extra,
        "verifier calls / gen": strength * synthetic if filter == "verify" else 0,
        "trains on (last gen)": n * T if regime == "accumulate" else n,
        "stores (last gen)": n * T if regime.startswith("accumulate") else n,
    }


def relative_error(results: Results, generation: int) -> tuple[float, float]:
    """``R = mean_s err_t / mean_s err_0`` and its standard error.

    The SE is the delta method's for a ratio of paired means,
    ``sd_s(err_t - R err_0) / (sqrt(S) mean_s err_0)``: it includes the noise of generation 0.
    """
    table = results.per_seed("error")
    a, b = table.loc[generation].to_numpy(), table.loc[0].to_numpy()
    R = a.mean() / b.mean()
    se = np.std(a - R * b, ddof=1) / np.sqrt(a.size) / b.mean() if a.size > 1 else np.nan
    return float(R), float(se)


CONFIG = ["learner", "regime", "alpha", "filter", "strength"]


def summarize(results: Results, protocol: Protocol) -> pd.DataFrame:
    """One row per configuration of a sweep of :func:`cell`: ``R`` (last generation) with its SE,
    ``R`` at mid-run, the closed form where known, the verdict and the price.

    Verdict: ``"growing"`` if the error still grows over the second half of the run (mean
    per-seed increase above 4 SE and above 10 % of the mid-run value); otherwise ``"stable"``
    when ``R <= 2`` (at most twice the error of one fit on real data), else ``"plateau"``.
    """
    T = protocol.generations - 1
    rows = []
    for config, frame in results.frame.groupby(CONFIG, sort=False):
        part = Results(frame)
        R, se = relative_error(part, T)
        R_mid, _ = relative_error(part, T // 2)
        err0 = part.where(generation=0).frame["value"].mean()
        last = part.per_seed("error").loc[T].to_numpy()
        mid = part.per_seed("error").loc[T // 2].to_numpy()
        growth, growth_se = mean_se((last - mid) / err0)
        growing = growth > 4 * growth_se and R > 1.1 * R_mid
        learner, regime, alpha, filter, strength = config
        rows.append(
            dict(zip(CONFIG, config, strict=True))
            | {
                "R": R,
                "R_se": se,
                "R_mid": R_mid,
                "theory": theory_ratio(learner, regime, alpha, filter, protocol),
                "verdict": "growing" if growing else ("stable" if R <= 2 else "plateau"),
            }
            | price(regime, alpha, filter, strength, protocol)
        )
    return pd.DataFrame(rows)


# ---- the grid and the map --------------------------------------------------------------------


def columns(alphas: Any) -> list[tuple[str, float]]:
    """The map's columns ``(regime, alpha)``: replace, mixture at each ``alpha`` in (0, 1),
    real_only (``alpha = 1``), accumulate, accumulate-subsample."""
    inner = sorted(check_fraction(a, "alphas") for a in alphas)
    if any(a in (0.0, 1.0) for a in inner):
        raise ValueError(
            "alphas must lie strictly between 0 and 1 (replace and real_only are 0, 1)"
        )
    return (
        [("replace", 0.0)]
        + [("mixture", a) for a in inner]
        + [("real_only", 1.0), ("accumulate", 0.0), ("accumulate_subsample", 0.0)]
    )


def rows(select: Any, verify: Any) -> list[tuple[str, int]]:
    """The map's rows ``(filter, strength)``: none, then each selection and verification
    strength (candidates per kept sample)."""
    out = [("none", 1)]
    out += [("select", check_positive_int(k, "select")) for k in select]
    out += [("verify", check_positive_int(k, "verify")) for k in verify]
    return out


def grid(learners: Any, alphas: Any, select: Any, verify: Any) -> list[dict[str, Any]]:
    """Every defined cell: one configuration per (learner, column, row) with the row's filter
    defined for the learner, in that order (the sweep's input)."""
    return [
        {"learner": L, "regime": r, "alpha": a, "filter": f, "strength": k}
        for L in learners
        for f, k in rows(select, verify)
        if defined(L, f)
        for r, a in columns(alphas)
    ]


def column_label(regime: str, alpha: float) -> str:
    return {
        "replace": "replace",
        "mixture": f"α = {alpha:g}",
        "real_only": "α = 1",
        "accumulate": "accumulate",
        "accumulate_subsample": "accumulate-\nsubsample",
    }[regime]


def row_label(filter: str, strength: int) -> str:
    return {
        "none": "no filter",
        "select": f"select {strength}n → n",
        "verify": f"verify, N = {strength}",
    }[filter]


def _cell_text(R: float, theory: float) -> str:
    text = f"{R:.0f}" if R >= 99.5 else f"{R:.2g}"
    return text + (f"\n(θ {theory:.2g})" if np.isfinite(theory) else "")


def plot_map(
    summary: pd.DataFrame, learner: str, alphas: Any, select: Any, verify: Any, ax: plt.Axes
) -> Any:
    """Heat map of ``R`` for one learner: rows ``(filter, strength)``, columns ``(regime, alpha)``.

    Each cell shows the simulated ``R``; below it, as ``(θ ...)``, the closed form where one is
    known. A cell whose error still grows at the end of the run is framed in black. Colour:
    ``R`` on a log scale (1 = one fit on real data); the same scale for every learner.
    """
    cols, rws = columns(alphas), [r for r in rows(select, verify) if defined(learner, r[0])]
    part = summary[summary["learner"] == learner].set_index(
        ["filter", "strength", "regime", "alpha"]
    )
    norm = LogNorm(vmin=0.5, vmax=max(100.0, float(summary["R"].max())))
    R = np.full((len(rws), len(cols)), np.nan)
    for i, (f, k) in enumerate(rws):
        for j, (r, a) in enumerate(cols):
            row = part.loc[(f, k, r, a)]
            R[i, j] = row["R"]
            dark = norm(row["R"]) > 0.6  # white text on the dark reds
            ax.text(
                j,
                i,
                _cell_text(row["R"], row["theory"]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
            if row["verdict"] == "growing":
                ax.add_patch(
                    plt.Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, lw=2, ec="black")
                )
    image = ax.imshow(R, cmap="YlOrRd", norm=norm, aspect="auto")
    ax.set_xticks(range(len(cols)), [column_label(r, a) for r, a in cols], fontsize=8)
    ax.set_yticks(range(len(rws)), [row_label(f, k) for f, k in rws], fontsize=8)
    ax.set_title(f"{LABELS[learner]}: relative error R at the last generation", fontsize=10)
    ax.tick_params(length=0)
    ax.grid(False)
    return image
