"""Copying from first principles: the exact denoiser of a Gaussian-smoothed training set.

A diffusion model that learned its training loss *perfectly* would predict, at every noise
level, the exact posterior mean of the clean image under the training set's empirical
distribution; run through the ancestral sampler it returns training images, nothing else
(it memorizes). Generalization needs the learned denoiser to be smoother than that. The
simplest smooth stand-in is the exact denoiser of the training set convolved with a Gaussian
of bandwidth ``h``,

    p_h(x_0) = (1/n) sum_i N(x_0; x_i, h^2 I).

Under the forward process ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` the noisy point
given source ``i`` is ``N(sqrt(abar_t) x_i, v_t I)`` with ``v_t = abar_t h^2 + 1 - abar_t``,
so the posterior is a mixture with weights

    w_i(x_t) = softmax_i( -|x_t - sqrt(abar_t) x_i|^2 / (2 v_t) )

and the exact denoiser is

    E[x_0 | x_t] = sum_i w_i(x_t) [ x_i + (sqrt(abar_t) h^2 / v_t) (x_t - sqrt(abar_t) x_i) ].

:class:`SmoothedScore` plugs this denoiser (as ``eps = (x_t - sqrt(abar_t) E[x_0|x_t]) /
sqrt(1 - abar_t)``) into the same ancestral sampler and schedule as
:class:`collapse_lib.diffusion.DDPM`, so it is a learner of the book's loop with no training at
all: ``fit`` stores the data, ``sample`` runs the chain in float64. At ``h = 0`` the last step
returns a training point exactly (the weights are one-hot to machine precision at the final
noise level); large ``h`` blurs every image towards a Gaussian around its source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collapse_lib.diffusion import linear_schedule
from collapse_lib.loop import Learner
from collapse_lib.runtime import check_nonnegative, check_positive_int


def smoothed_denoiser(x: np.ndarray, data: np.ndarray, abar: float, h: float) -> np.ndarray:
    """Exact ``E[x_0 | x_t = x]`` under the smoothed empirical distribution ``p_h`` of ``data``.

    ``x`` is ``(m, d)`` (or ``(S, m, d)`` with ``data`` ``(S, n, d)``), ``abar`` the forward
    process's ``abar_t`` (in ``(0, 1]``), ``h >= 0`` the smoothing bandwidth. See the module
    docstring for the formula; the weights are a float64 log-sum-exp softmax.
    """
    x, data = np.asarray(x, dtype=float), np.asarray(data, dtype=float)
    h = check_nonnegative(h, "h")
    if not 0 < abar <= 1:
        raise ValueError(f"abar must lie in (0, 1], got {abar}")
    squeeze = x.ndim == 2
    if squeeze:
        x, data = x[None], data[None]
    if x.ndim != 3 or data.ndim != 3 or x.shape[-1] != data.shape[-1]:
        raise ValueError(f"x and data must be (m, d)/(n, d) or (S, m, d)/(S, n, d): {x.shape}")
    a = math.sqrt(abar)
    v = abar * h * h + (1.0 - abar)
    if v <= 0:  # abar = 1 and h = 0: the nearest training point
        v = np.finfo(float).tiny
    centres = a * data  # (S, n, d)
    sq = (
        (x**2).sum(-1)[..., :, None]
        - 2 * np.einsum("smd,snd->smn", x, centres)
        + (centres**2).sum(-1)[..., None, :]
    )
    logw = -np.maximum(sq, 0.0) / (2 * v)
    logw -= logw.max(axis=-1, keepdims=True)
    w = np.exp(logw)
    w /= w.sum(axis=-1, keepdims=True)
    mean_source = np.einsum("smn,snd->smd", w, data)
    out = mean_source + (a * h * h / v) * (x - a * mean_source)
    return out[0] if squeeze else out


@dataclass
class SmoothedScoreModel:
    """The smoothed-score "model" of one fit: its training data ``(S, n, d)`` and bandwidth."""

    data: np.ndarray
    learner: SmoothedScore
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.data.shape[0]

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Ancestral DDPM sampling with the exact smoothed denoiser: ``(S, n, d)``, float64.

        ``x_T ~ N(0, I)``; for ``t = T-1 .. 0``: ``eps = (x_t - sqrt(abar_t) xhat_0) /
        sqrt(1 - abar_t)``, ``x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) +
        sqrt(beta~_t) z``, the update of :meth:`collapse_lib.diffusion.DiffusionModel.sample`;
        the final samples are clipped to ``clip``. Seed ``s`` draws from ``rngs[s]``.
        """
        n = check_positive_int(n, "n")
        L, S = self.learner, len(self)
        if len(rngs) != S:
            raise ValueError(f"the model has {S} seeds but {len(rngs)} generators were given")
        d = self.data.shape[-1]
        sch = linear_schedule(L.T)
        x = np.stack([g.standard_normal((n, d)) for g in rngs])
        for t in range(L.T - 1, -1, -1):
            ab = float(sch["abar"][t])
            x0 = smoothed_denoiser(x, self.data, ab, L.h)
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
            x = (x - float(sch["beta"][t]) / math.sqrt(1 - ab) * eps) / math.sqrt(
                float(sch["alpha"][t])
            )
            if t > 0:
                z = np.stack([g.standard_normal((n, d)) for g in rngs])
                x = x + math.sqrt(float(sch["posterior_var"][t])) * z
        if L.clip is not None:
            x = np.clip(x, L.clip[0], L.clip[1])
        return x


@dataclass
class SmoothedScore(Learner):
    """Loop learner whose "fit" is the exact denoiser of the training set smoothed by ``h``.

    Parameters
    ----------
    h : float
        Smoothing bandwidth (data units; the digits live in [-1, 1]^64). ``h = 0`` copies.
    T : int
        Diffusion steps of the linear schedule (as :class:`collapse_lib.diffusion.DDPM`).
    clip : (low, high) or None
        Range the final samples are clipped to.
    """

    h: float = 0.5
    T: int = 100
    clip: tuple[float, float] | None = (-1.0, 1.0)

    def __post_init__(self) -> None:
        self.h = check_nonnegative(self.h, "h")
        self.T = check_positive_int(self.T, "T")
        linear_schedule(self.T)  # validates T

    def fit(self, data: Any) -> SmoothedScoreModel:
        """Store ``data (S, n, d)``: the exact denoiser needs nothing else."""
        data = np.asarray(data, dtype=float)
        if data.ndim != 3 or data.shape[1] < 1:
            raise ValueError(f"data must have shape (S, n, d), got {data.shape}")
        if not np.all(np.isfinite(data)):
            raise ValueError("data must be finite")
        return SmoothedScoreModel(data.copy(), self)


__all__ = ["SmoothedScore", "SmoothedScoreModel", "smoothed_denoiser"]
