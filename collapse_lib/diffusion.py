"""A small denoising diffusion model (DDPM) as a learner in the generation loop.

The chapter on memorization (in the spirit of Shi et al., NeurIPS 2025) retrains a
diffusion model *from scratch* on its own samples. The paper uses ``diffusers`` UNets on
CIFAR-10/FFHQ (1000 steps); this module is the book's CPU-sized stand-in on the 8x8
digits (d = 64 pixels in [-1, 1]):

* **Forward process** (Ho et al. 2020): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` with
  a linear schedule ``beta_t`` from ``1e-4 * 1000/T`` to ``0.02 * 1000/T`` (the 1000-step
  schedule stretched to ``T`` steps) and ``abar_t = prod_{s<=t} (1 - beta_s)``.
* **Denoiser**: an MLP predicting ``eps`` from ``[x_t, emb(t)]`` (sinusoidal time embedding),
  ``layers`` hidden layers of width ``hidden`` with SiLU; loss ``E |eps - eps_theta(x_t, t)|^2``,
  Adam with a cosine learning-rate decay to 0.
* **Sampling**: ancestral DDPM with the posterior variance
  ``beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)``; the ``x_0`` prediction is clipped
  inside the sampler only with ``clip_x0=True``, and the *final* samples are clipped to the
  data range (the analogue of the paper's uint8 quantization; without it one diverged sample
  can be picked by farthest-point selection and wreck the next generation).

All seeds of the loop are one batched computation: every weight carries a leading seed axis
and the layers are ``torch.baddbmm`` calls, so ``S`` networks train as one (their losses are
summed; parameters and Adam statistics never mix). On a CPU this saves nothing (the step is
compute-bound, measured) but on a GPU it is what fills the device.

Every draw is explicit: replicate ``s`` initializes from ``rng(seed, Stream.DIFFUSION_INIT, s)``
and draws its minibatches, times and noise from ``rng(seed, Stream.DIFFUSION_TRAIN, s)``; both
restart with each fit, so a fit is a deterministic function of its data (which lets the learner
reuse a fit of identical data, e.g. generation 0 shared by every arm). Sampling draws from the
loop's numpy generators through ``torch_generator``.

The module also holds the chapter's data (:class:`DigitsTruth`, the PCA feature map) and the
per-generation evaluation (:class:`MemorizationMetrics`).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collapse_lib.data import ImagePool, digits, digits_order
from collapse_lib.loop import Learner, Step
from collapse_lib.runtime import (
    Stream,
    check_positive_int,
    linear_init,
    rng,
    seed_list,
    torch_generator,
)

ROBUST_K = 4  #: neighbour rank of the sibling-robust spacing (above the typical sibling count)
NEAR_COPY_QUANTILE = 0.01  #: share of held-out real digits the near-copy threshold lets through


def linear_schedule(T: int) -> dict[str, np.ndarray]:
    """The DDPM linear schedule stretched to ``T`` steps, in float64.

    ``beta_t = linspace(1e-4 * 1000/T, 0.02 * 1000/T, T)``, ``alpha_t = 1 - beta_t``,
    ``abar_t = prod_{s <= t} alpha_s`` and the posterior variance
    ``beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)`` (``abar_{-1} = 1``, so ``beta~_0 = 0``).
    """
    T = check_positive_int(T, "T")
    if T < 2:
        raise ValueError(f"T must be >= 2, got {T}")
    scale = 1000.0 / T
    beta = np.linspace(1e-4 * scale, 0.02 * scale, T)
    if beta[-1] >= 1:
        raise ValueError(f"T = {T} is too small for the stretched linear schedule (beta_T >= 1)")
    alpha = 1.0 - beta
    abar = np.cumprod(alpha)
    prev = np.r_[1.0, abar[:-1]]
    return {
        "beta": beta,
        "alpha": alpha,
        "abar": abar,
        "posterior_var": beta * (1.0 - prev) / (1.0 - abar),
    }


def time_embedding(T: int, dim: int) -> np.ndarray:
    """Sinusoidal time embedding ``[sin(t w_j), cos(t w_j)]``, ``w_j = 10000^(-2j/dim)``.

    Returns an array of shape ``(T, dim)``, row ``t`` for diffusion step ``t``.
    """
    T, dim = check_positive_int(T, "T"), check_positive_int(dim, "dim")
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    w = np.exp(-math.log(10000.0) * np.arange(dim // 2) / (dim // 2))
    arg = np.arange(T)[:, None] * w[None, :]
    return np.concatenate([np.sin(arg), np.cos(arg)], axis=1)


def _data_key(data: np.ndarray) -> str:
    a = np.ascontiguousarray(data)
    return hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()


@dataclass
class DiffusionModel:
    """Fitted denoisers of all seeds (``params``, each ``(S, ...)``) and their training data.

    ``data`` ``(S, n, d)`` is the set the networks were trained on (the loop's ``D_t``);
    ``sample(n, rngs)`` returns ``(S, n, d)`` numpy samples, clipped to ``clip``.
    """

    params: dict[str, Any]
    data: np.ndarray
    learner: DDPM
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.data.shape[0]

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Ancestral DDPM sampling of ``n`` points per seed (seed ``s`` draws from ``rngs[s]``).

        ``x_T ~ N(0, I)``; for ``t = T-1 .. 0``:
        ``x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(alpha_t)
        + sqrt(beta~_t) z``; the final ``x_0`` is clipped to the data range.
        """
        import torch

        n = check_positive_int(n, "n")
        L, S = self.learner, len(self)
        if len(rngs) != S:
            raise ValueError(f"the model has {S} seeds but {len(rngs)} generators were given")
        gens = [torch_generator(g, L.device) for g in rngs]
        d = self.data.shape[-1]

        def noise() -> Any:
            return torch.stack(
                [torch.randn(n, d, generator=g, device=L.device, dtype=torch.float32) for g in gens]
            )

        sch = L._schedule()
        with torch.inference_mode():
            x = noise()
            for t in range(L.T - 1, -1, -1):
                tt = torch.full((S, n), t, device=L.device, dtype=torch.long)
                eps = L.eps(self.params, x, tt)
                if L.clip_x0 and L.clip is not None:  # clip the x_0 prediction, re-derive eps
                    a, b = math.sqrt(float(sch["abar"][t])), math.sqrt(1 - float(sch["abar"][t]))
                    x0 = ((x - b * eps) / a).clamp(L.clip[0], L.clip[1])
                    eps = (x - a * x0) / b
                x = (x - float(sch["beta"][t] / math.sqrt(1 - sch["abar"][t])) * eps) / math.sqrt(
                    float(sch["alpha"][t])
                )
                if t > 0:
                    x = x + math.sqrt(float(sch["posterior_var"][t])) * noise()
            if L.clip is not None:
                x = x.clamp(L.clip[0], L.clip[1])
        return x.double().cpu().numpy()


@dataclass
class DDPM(Learner):
    """Batched DDPM learner: ``fit(data (S, n, d))`` trains ``S`` fresh MLP denoisers.

    Parameters
    ----------
    seeds : int or sequence of int
        The loop's replicates (one network each).
    seed : int
        Root seed of the initializations and training streams (see the module docstring).
    hidden, layers : int
        Width and number of hidden layers of the eps-prediction MLP.
    steps, batch : int
        Adam steps per fit and minibatch size (drawn with replacement from the seed's data).
    lr : float
        Peak learning rate; cosine decay to 0 over ``steps``.
    T : int
        Diffusion steps (linear schedule, see :func:`linear_schedule`).
    embed : int
        Width of the sinusoidal time embedding (even).
    clip : (low, high) or None
        Range the final samples are clipped to (``None``: no clipping).
    clip_x0 : bool
        Also clip the sampler's ``x_0`` prediction ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``
        to ``clip`` at every step and re-derive ``eps`` from it (the ``clip_denoised`` of Ho et
        al.'s reference code). Keeps an under-trained denoiser's samples from saturating.
    device : str
        Torch device of the networks; data and samples stay in numpy.
    cache : int
        How many fits to remember by their data (0 disables): a fit is a deterministic
        function of its data, so refitting identical data returns the stored model.
    """

    seeds: int | Sequence[int] = 1
    seed: int = 0
    hidden: int = 384
    layers: int = 3
    steps: int = 2000
    batch: int = 128
    lr: float = 1e-3
    T: int = 200
    embed: int = 64
    clip: tuple[float, float] | None = (-1.0, 1.0)
    clip_x0: bool = False
    device: str = "cpu"
    cache: int = 16

    def __post_init__(self) -> None:
        self.seeds = seed_list(self.seeds)
        for name in ("hidden", "layers", "steps", "batch", "T", "embed"):
            setattr(self, name, check_positive_int(getattr(self, name), name))
        if self.embed % 2:
            raise ValueError(f"embed must be even, got {self.embed}")
        if not (isinstance(self.lr, (int, float)) and np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.clip is not None:
            lo, hi = (float(v) for v in self.clip)
            if not lo < hi:
                raise ValueError(f"clip must be (low, high) with low < high, got {self.clip}")
            self.clip = (lo, hi)
        if isinstance(self.cache, bool) or not isinstance(self.cache, int) or self.cache < 0:
            raise ValueError(f"cache must be an integer >= 0, got {self.cache!r}")
        linear_schedule(self.T)  # validates T
        self._fits: OrderedDict[str, DiffusionModel] = OrderedDict()
        self._tensors: dict[str, Any] = {}

    # -- the network -------------------------------------------------------------------------

    def _schedule(self) -> dict[str, np.ndarray]:
        return linear_schedule(self.T)

    def _table(self, name: str) -> Any:
        """Schedule/embedding tensors on the device, built once."""
        import torch

        if name not in self._tensors:
            if name == "emb":
                v = time_embedding(self.T, self.embed)
            else:
                v = self._schedule()[name]
            self._tensors[name] = torch.as_tensor(v, dtype=torch.float32, device=self.device)
        return self._tensors[name]

    def shapes(self, d: int) -> list[tuple[int, int]]:
        """``(fan_in, fan_out)`` of each linear layer for data of dimension ``d``."""
        widths = [d + self.embed] + [self.hidden] * self.layers + [d]
        return list(zip(widths[:-1], widths[1:], strict=True))

    def init(self, d: int) -> dict[str, Any]:
        """Fresh weights per seed: PyTorch's ``nn.Linear`` default, ``U(-1/sqrt(fan_in), ...)``."""

        layers = {}
        for j, (a, b) in enumerate(self.shapes(d)):
            layers[f"W{j}"], layers[f"b{j}"] = ((a, b), a), ((1, b), a)
        gens = [
            torch_generator(rng(self.seed, Stream.DIFFUSION_INIT, s), self.device)
            for s in self.seeds
        ]
        return linear_init(layers, gens, self.device)

    def eps(self, params: dict[str, Any], x: Any, t: Any) -> Any:
        """``eps_theta(x_t, t)`` for ``x`` of shape ``(S, b, d)`` and integer times ``t (S, b)``."""
        import torch

        h = torch.cat([x, self._table("emb")[t]], dim=-1)
        n_layers = self.layers + 1
        for j in range(n_layers):
            h = torch.baddbmm(params[f"b{j}"], h, params[f"W{j}"])
            if j < n_layers - 1:
                h = torch.nn.functional.silu(h)
        return h

    # -- training ----------------------------------------------------------------------------

    def train(self, data: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """Train fresh networks on ``data (S, n, d)``; return the parameters and the loss curve.

        Each step, seed ``s`` draws ``batch`` indices of its data, times ``t ~ U{0..T-1}`` and
        noise ``eps ~ N(0, I)`` from its own stream; the loss is the seeds' summed
        ``mean |eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t)|^2``.
        """
        import torch

        S, n, d = data.shape
        x0 = torch.as_tensor(data, dtype=torch.float32, device=self.device)
        params = {k: v.requires_grad_(True) for k, v in self.init(d).items()}
        opt = torch.optim.Adam(params.values(), lr=self.lr)
        gens = [
            torch_generator(rng(self.seed, Stream.DIFFUSION_TRAIN, s), self.device)
            for s in self.seeds
        ]
        sab = self._table("abar").sqrt()
        s1ab = (1 - self._table("abar")).sqrt()
        B, chunk = self.batch, 100
        losses = torch.empty(self.steps, device=self.device)  # no per-step sync on a GPU
        for start in range(0, self.steps, chunk):
            k = min(chunk, self.steps - start)
            kw = {"device": self.device}
            idx = torch.stack([torch.randint(n, (k, B), generator=g, **kw) for g in gens], 1)
            tt = torch.stack([torch.randint(self.T, (k, B), generator=g, **kw) for g in gens], 1)
            ee = torch.stack([torch.randn(k, B, d, generator=g, **kw) for g in gens], 1)
            for i in range(k):
                lr = 0.5 * self.lr * (1 + math.cos(math.pi * (start + i) / self.steps))
                for group in opt.param_groups:
                    group["lr"] = lr
                xb = torch.take_along_dim(x0, idx[i][..., None], dim=1)
                t, e = tt[i], ee[i]
                xt = sab[t][..., None] * xb + s1ab[t][..., None] * e
                loss = ((self.eps(params, xt, t) - e) ** 2).mean(dim=(1, 2)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses[start + i] = loss.detach() / S
        return {k: v.detach() for k, v in params.items()}, losses.cpu().numpy()

    # -- the loop's learner protocol ---------------------------------------------------------

    def fit(self, data: Any) -> DiffusionModel:
        """Train ``S`` fresh denoisers on ``data (S, n, d)`` (numpy or torch)."""
        if hasattr(data, "detach"):
            data = data.detach().cpu().numpy()
        data = np.asarray(data, dtype=np.float64)
        S = len(self.seeds)
        if data.ndim != 3 or data.shape[0] != S or data.shape[1] < 1:
            raise ValueError(f"data must have shape (seeds={S}, n, d), got {data.shape}")
        if not np.all(np.isfinite(data)):
            raise ValueError("data must be finite")
        key = _data_key(data)
        if key in self._fits:
            self._fits.move_to_end(key)
            return self._fits[key]
        params, losses = self.train(data)
        model = DiffusionModel(params, data.copy(), self, {"loss": losses})
        if self.cache:
            self._fits[key] = model
            while len(self._fits) > self.cache:
                self._fits.popitem(last=False)
        return model


# ---- the chapter's data: digits, a fixed split, the PCA feature map ---------------------------


@dataclass
class DigitsTruth:
    """The loop's truth: real 8x8 digits scaled to [-1, 1], split once into a pool and held-out.

    ``rng(seed, Stream.DIFFUSION_DIGITS, 0)`` permutes the 1797 digits; the first ``held_out``
    are the held-out set ``H`` (fits the feature map, calibrates the metrics), the rest is the
    pool from which ``sample(n, rngs)`` draws each replicate's real training set without
    replacement.
    """

    seed: int = 0
    held_out: int = 1000

    def __post_init__(self) -> None:
        x, _ = digits()
        self.held_out = check_positive_int(self.held_out, "held_out")
        if self.held_out > len(x) - 2:
            raise ValueError(f"held_out must be <= {len(x) - 2}, got {self.held_out}")
        order = digits_order(self.seed, Stream.DIFFUSION_DIGITS, 0)
        self.all = 2.0 * x - 1.0
        self.heldout = self.all[order[: self.held_out]]
        self.pool = self.all[order[self.held_out :]]
        self._pool = ImagePool(self.pool)

    @property
    def dim(self) -> int:
        return self.all.shape[1]

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """``n`` distinct pool digits per replicate, ``(S, n, 64)`` (:class:`ImagePool`)."""
        return self._pool.sample(n, rngs)


@dataclass
class PCAFeatures:
    """A fixed feature map ``F(x) = (x - mean) V_k`` (PCA fitted once, on held-out real data).

    The book's stand-in for the paper's DINOv2 features: fitted on real data only and never
    refitted on synthetic data (that would move the yardstick).
    """

    mean: np.ndarray
    components: np.ndarray  #: (k, d)

    @classmethod
    def fit(cls, x: np.ndarray, k: int = 16) -> PCAFeatures:
        """Principal components of ``x (n, d)`` (``sklearn.decomposition.PCA``)."""
        from sklearn.decomposition import PCA

        x = np.asarray(x, dtype=float)
        k = check_positive_int(k, "k")
        if x.ndim != 2 or k > min(x.shape):
            raise ValueError(f"x must be 2-D with at least k = {k} rows and columns")
        pca = PCA(n_components=k).fit(x)
        return cls(pca.mean_.copy(), pca.components_.copy())

    @property
    def dim(self) -> int:
        return self.components.shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.shape[-1] != self.components.shape[1]:
            raise ValueError(f"x must have {self.components.shape[1]} columns, got {x.shape[-1]}")
        return (x - self.mean) @ self.components.T


# ---- per-generation evaluation ------------------------------------------------------------------


METRICS: tuple[str, ...] = (
    "entropy_feat",
    "entropy_pix",
    "gs_feat",
    "gs_pix",
    "gs_real",
    "copy",
    "copy_pix",
    "ratio",
    "rel_nn",
    "rel_nn_pix",
    "fixed",
    "robust",
    "near_copy",
    "near_copy_fresh",
    "fresh_ratio",
    "spacing",
    "fd_pix",
    "fd_feat",
    "trace",
    "mnnd",
    "var_ratio",
    "real_fraction",
)


class MemorizationMetrics:
    """The chapter's per-generation numbers, one evaluation per (run, generation).

    At generation ``t`` the current model ``M_t`` (trained on ``D_t = step.model.data``) draws
    ``m`` fresh evaluation samples ``E_t`` per seed from
    ``rng(seed, Stream.DIFFUSION_EVAL, s, t)``, and:

    * ``entropy_feat`` / ``entropy_pix``: Kozachenko-Leonenko ``H^_1(F(D_t))`` (d = 16) and
      ``H^_1(D_t)`` (d = 64);
    * ``gs_feat``: generalization score ``mean_x min_y |F(x) - F(y)|^2``, x in E_t, y in D_t;
      ``gs_pix`` the same as a per-pixel mean squared error; ``gs_real`` as ``gs_feat`` but
      against the *real* ``D_0`` (is the model copying the original data?);
    * ``copy`` / ``copy_pix``: fraction of E_t within ``s/3`` of ``D_t`` (feature / pixel
      space), ``s`` the median within-set nearest-neighbour distance of the real ``D_0``, fixed
      for the run; ``ratio`` the NN1/NN2 < 1/3 test of the same samples; ``rel_nn`` the
      scale-free copy index :func:`collapse_lib.metrics.relative_nn_distance` (about 1 for new
      samples, 0 for copies; unlike GS, blind to a contraction of the distribution);
      ``rel_nn_pix`` the same index in pixel space;
    * the copy indices that stay valid under recursion, all in pixel space:
      ``fixed``, :func:`collapse_lib.metrics.fixed_nn_index` with the yardstick ``s0`` = median
      NN spacing of the replicate's *real* ``D_0``; ``robust``,
      :func:`collapse_lib.metrics.sibling_robust_index` with ``k = ROBUST_K``; ``near_copy``,
      the share of ``E_t`` closer to ``D_t`` than the 1% quantile of held-out real digits'
      distances to ``D_0`` (:func:`collapse_lib.metrics.near_copy_threshold`); ``spacing``, the
      median NN spacing of ``D_t`` over ``s0``;
    * the fresh-source control, which separates memorizing ``D_t`` from a collapse of the
      distribution ``D_t`` was drawn from: ``m`` fresh draws ``H_t`` of that source, which no
      model was trained on (``t >= 1``: samples of ``M_{t-1}`` from
      ``rng(seed, Stream.DIFFUSION_FRESH, s, t)``; ``t = 0``: the odd-numbered held-out digits,
      those that check the threshold). ``near_copy_fresh`` is the share of ``H_t`` under the
      near-copy threshold and ``fresh_ratio`` is ``median_x r(x, D_t) / median_h r(h, D_t)``
      for ``x`` in ``E_t``, ``h`` in ``H_t``: about 1 when ``M_t``'s samples are as far from
      ``D_t`` as new draws of its source, 0 when they are copies [book]. ``M_{t-1}`` is the source
      under the replace regime; with a filter ``D_t`` is a *selected* subset of its draws and
      ``H_t`` stays unselected. Both are NaN when the previous generation was not evaluated;
    * ``fd_pix`` / ``fd_feat``: Fréchet distance of E_t to all 1797 digits;
    * ``trace``: ``tr Cov(D_t)`` (pixels); ``mnnd``: mean within-set NN distance of ``F(D_t)``;
      ``var_ratio``: ``tr Cov(E_t) / tr Cov(all digits)``;
    * ``real_fraction``: the share of ``D_t`` that is real (a pool learner sets it; 1 at t = 0).

    ``metric(name)`` returns a loop metric; all names share one evaluation per step.
    ``keep_samples`` stores ``E_t`` (first ``keep_samples`` per seed) for the figures.
    """

    def __init__(
        self,
        truth: DigitsTruth,
        features: PCAFeatures,
        m: int = 1000,
        seed: int = 0,
        keep_samples: int = 0,
    ) -> None:
        self.truth, self.features = truth, features
        self.m = check_positive_int(m, "m")
        self.seed = int(seed)
        if isinstance(keep_samples, bool) or not isinstance(keep_samples, int) or keep_samples < 0:
            raise ValueError(f"keep_samples must be an integer >= 0, got {keep_samples!r}")
        self.keep = keep_samples
        self._key: tuple[int, int] | None = None
        self._values: dict[str, np.ndarray] = {}
        self.samples: list[dict[str, Any]] = []
        self._yardsticks: dict[str, tuple[float, float]] = {}
        self._previous: tuple[int, Any] | None = None  # (generation, model): the source of D_t

    def scale(self, real: np.ndarray) -> tuple[float, float]:
        """``s`` (feature, pixel): median within-set NN distance of one replicate's real set."""
        from collapse_lib.metrics import nn_distances

        f = nn_distances(self.features(real), None, k=1)[:, 0]
        p = nn_distances(real, None, k=1)[:, 0]
        return float(np.median(f)), float(np.median(p))

    def yardstick(self, real: np.ndarray) -> tuple[float, float]:
        """``(s0, threshold)`` in pixels for one replicate's real set (computed once per set).

        ``s0``: median NN spacing of ``real``; ``threshold``: the 1% quantile of the distances
        of the even-numbered held-out digits to ``real``
        (:func:`collapse_lib.metrics.near_copy_threshold`; the odd-numbered ones check it).
        """
        from collapse_lib.metrics import near_copy_threshold, nn_spacing

        key = _data_key(np.asarray(real, dtype=float))
        if key not in self._yardsticks:
            self._yardsticks[key] = (
                nn_spacing(real),
                near_copy_threshold(self.truth.heldout[::2], real, NEAR_COPY_QUANTILE),
            )
        return self._yardsticks[key]

    def evaluate(self, step: Step) -> dict[str, np.ndarray]:
        """All metrics of ``step`` (cached for the step's generation and model)."""
        from collapse_lib import metrics as mt

        key = (id(step.model), step.generation)
        if key == self._key:
            return self._values
        model = step.model
        gens = [rng(self.seed, Stream.DIFFUSION_EVAL, s, step.generation) for s in step.seeds]
        E = model.sample(self.m, gens)
        D = np.asarray(model.data)
        real = np.asarray(step.real)
        H = self.fresh_source(step)
        everything = self.truth.all
        fe_all = self.features(everything)
        tr_all = np.trace(np.cov(everything, rowvar=False))
        out = {k: np.empty(len(step.seeds)) for k in METRICS}
        for i in range(len(step.seeds)):
            e, d, r = E[i], D[i], real[i]
            fe, fd, fr = self.features(e), self.features(d), self.features(r)
            s_feat, s_pix = self.scale(r)
            out["entropy_feat"][i] = mt.kl_entropy(fd, k=1)
            out["entropy_pix"][i] = mt.kl_entropy(d, k=1)
            out["gs_feat"][i] = mt.generalization_score(fe, fd)
            out["gs_pix"][i] = mt.generalization_score(e, d) / e.shape[1]
            out["gs_real"][i] = mt.generalization_score(fe, fr)
            out["copy"][i] = mt.copy_fraction(fe, fd, s_feat / 3)
            out["copy_pix"][i] = mt.copy_fraction(e, d, s_pix / 3)
            out["ratio"][i] = mt.ratio_test_fraction(fe, fd, 1 / 3)
            out["rel_nn"][i] = mt.relative_nn_distance(fe, fd)
            out["rel_nn_pix"][i] = mt.relative_nn_distance(e, d)
            s0, thr = self.yardstick(r)
            out["fixed"][i] = mt.fixed_nn_index(e, d, s0)
            out["robust"][i] = mt.sibling_robust_index(e, d, ROBUST_K)
            out["near_copy"][i] = mt.copy_fraction(e, d, thr)
            if H is None:
                out["near_copy_fresh"][i] = out["fresh_ratio"][i] = np.nan
            else:  # both medians in units of s0: the ratio of two fixed-yardstick indices
                out["near_copy_fresh"][i] = mt.copy_fraction(H[i], d, thr)
                out["fresh_ratio"][i] = out["fixed"][i] / mt.fixed_nn_index(H[i], d, s0)
            out["spacing"][i] = mt.nn_spacing(d) / s0
            out["fd_pix"][i] = mt.frechet_distance(e, everything)
            out["fd_feat"][i] = mt.frechet_distance(fe, fe_all)
            out["trace"][i] = np.trace(np.cov(d, rowvar=False))
            out["mnnd"][i] = mt.nn_distances(fd, None, k=1).mean()
            out["var_ratio"][i] = np.trace(np.cov(e, rowvar=False)) / tr_all
        default = 1.0 if step.generation == 0 else 0.0  # replace: D_t is all synthetic
        frac = model.info.get("real_fraction", np.full(len(step.seeds), default))
        out["real_fraction"] = np.asarray(frac, dtype=float)
        if self.keep:
            self.samples.append(
                {"generation": step.generation, "samples": E[:, : self.keep].copy(), "data": D}
            )
        self._key, self._values = key, out
        self._previous = (step.generation, model)
        return out

    def fresh_source(self, step: Step) -> np.ndarray | None:
        """``H_t (S, m, d)``: fresh draws of the distribution ``D_t`` came from (see the class).

        Generation 0: the odd-numbered held-out digits (at most ``m``), the same for every
        replicate. Later: ``m`` samples per seed of the model evaluated at the previous
        generation; ``None`` if that generation was not evaluated by this object.
        """
        if step.generation == 0:
            held = self.truth.heldout[1::2][: self.m]
            return np.broadcast_to(held, (len(step.seeds), *held.shape))
        if self._previous is None or self._previous[0] != step.generation - 1:
            return None
        gens = [rng(self.seed, Stream.DIFFUSION_FRESH, s, step.generation) for s in step.seeds]
        return np.asarray(self._previous[1].sample(self.m, gens))

    def metric(self, name: str) -> Any:
        """A loop metric ``step -> (S,)`` reading ``name`` from the shared evaluation."""
        from collapse_lib.runtime import check_choice

        check_choice(name, METRICS, "metric")
        return lambda step: self.evaluate(step)[name]

    def metrics(self, names: Sequence[str] = METRICS) -> dict[str, Any]:
        """``{name: metric}`` for :func:`collapse_lib.loop.run`."""
        return {name: self.metric(name) for name in names}


def calibration(
    truth: DigitsTruth, features: PCAFeatures, real: np.ndarray
) -> dict[str, np.ndarray]:
    """What "novel" looks like: held-out real digits scored against each replicate's real set.

    Returns per replicate ``gs_feat``, ``gs_pix``, ``copy``, ``copy_pix``, ``ratio``, ``rel_nn``,
    ``rel_nn_pix``, ``fixed``, ``robust``, ``near_copy``, ``fd_pix``, ``fd_feat`` of the held-out
    set ``H`` against ``real (S, n, d)``, with the same thresholds :class:`MemorizationMetrics`
    uses (``near_copy`` on the odd-numbered held-out digits, which did not set the threshold).
    """
    from collapse_lib import metrics as mt

    helper = MemorizationMetrics(truth, features)
    H, fH = truth.heldout, features(truth.heldout)
    fe_all = features(truth.all)
    out: dict[str, list[float]] = {
        k: []
        for k in (
            "gs_feat",
            "gs_pix",
            "copy",
            "copy_pix",
            "ratio",
            "rel_nn",
            "rel_nn_pix",
            "fixed",
            "robust",
            "near_copy",
            "fd_pix",
            "fd_feat",
        )
    }
    fd_pix = mt.frechet_distance(H, truth.all)  # the same for every replicate's real set
    fd_feat = mt.frechet_distance(fH, fe_all)
    for r in np.asarray(real):
        fr = features(r)
        s_feat, s_pix = helper.scale(r)
        out["gs_feat"].append(mt.generalization_score(fH, fr))
        out["gs_pix"].append(mt.generalization_score(H, r) / H.shape[1])
        out["copy"].append(mt.copy_fraction(fH, fr, s_feat / 3))
        out["copy_pix"].append(mt.copy_fraction(H, r, s_pix / 3))
        out["ratio"].append(mt.ratio_test_fraction(fH, fr, 1 / 3))
        out["rel_nn"].append(mt.relative_nn_distance(fH, fr))
        out["rel_nn_pix"].append(mt.relative_nn_distance(H, r))
        s0, thr = helper.yardstick(r)
        out["fixed"].append(mt.fixed_nn_index(H, r, s0))
        out["robust"].append(mt.sibling_robust_index(H, r, ROBUST_K))
        out["near_copy"].append(mt.copy_fraction(H[1::2], r, thr))  # not the calibration half
        out["fd_pix"].append(fd_pix)
        out["fd_feat"].append(fd_feat)
    return {k: np.asarray(v) for k, v in out.items()}


def nn_grid(ax: Any, ev: MemorizationMetrics, t: int, tau: float, k: int = 6) -> None:
    """Draw ``k`` samples of generation ``t`` (top) above their nearest digit of ``D_t``.

    ``ev`` must have kept its samples (``keep_samples``); the pixel distance of each pair is
    printed underneath, in red when it lies below the near-copy threshold ``tau``. Uses the
    first replicate.
    """
    from collapse_lib import metrics as mt

    rec = ev.samples[t]
    x, d = rec["samples"][0, :k], rec["data"][0]
    nn = mt.nn_distances(x, d, k=1)[:, 0]
    nearest = np.array([d[np.argmin(((d - xi) ** 2).sum(1))] for xi in x])
    pad = ((0, 0), (1, 1), (1, 1))
    rows = [
        np.hstack(list(np.pad(z.reshape(-1, 8, 8), pad, constant_values=-1))) for z in (x, nearest)
    ]
    ax.imshow(np.vstack(rows), cmap="gray_r", vmin=-1, vmax=1)
    for j, dj in enumerate(nn):
        color = "red" if dj < tau else "black"
        ax.text(j * 10 + 5, 21.5, f"{dj:.2f}", ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        f"generation {t}: sample (top) / nearest digit of $D_{{{t}}}$ (bottom)", fontsize=9
    )


__all__ = [
    "DDPM",
    "DiffusionModel",
    "DigitsTruth",
    "MemorizationMetrics",
    "PCAFeatures",
    "calibration",
    "linear_schedule",
    "nn_grid",
    "time_embedding",
]
