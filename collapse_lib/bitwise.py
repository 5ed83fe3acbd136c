"""A bitwise autoregressive image model: a BSQ-like bit tokenizer and a MADE over its bits.

The toy of the chapter on BitMark (Kerner et al., NeurIPS 2025). The paper watermarks Infinity,
whose multi-scale tokenizer turns a 1024x1024 image into ~3.4e5 bits (tokens of d = 32 bits in 13
scales, coarse to fine) that a transformer predicts bit by bit. At CPU scale this module provides
the same three pieces for scikit-learn's 8x8 digits [the book's construction]:

* :class:`Tokenizer`, a "BSQ-like" residual sign quantizer of whitened PCA codes. With ``mu`` the
  training mean, ``V`` the top ``K`` principal directions and ``sd`` the codes' standard
  deviations, ``c = ((x - mu) V) / sd``; stage ``s = 1..S`` emits the token
  ``b_s = 1[r_s >= 0]`` (``K`` bits) of the residual ``r_1 = c``,
  ``r_{s+1} = r_s - a_s (2 b_s - 1)`` with ``a_s = a_1 2^{-(s-1)}`` and ``a_1`` the mean of
  ``|c|``. Decoding is ``x = mu + (sum_s a_s (2 b_s - 1) * sd) V^T``. Because the steps halve,
  ``encode(decode(b)) = b`` exactly for every bit string, as long as the decoded float image is
  not clipped or rounded. Stages play the role of Infinity's scales (coarse content first).
* :class:`BitwiseAR`, a batched learner for the generation loop: a MADE (Germain et al. 2015)
  with two masked ReLU layers **plus a strictly lower-triangular linear "skip" layer** from the
  centred inputs ``2b - 1`` to the logits. Without the skip, MADE's random degrees often leave
  no path from bit ``j - 1`` to bit ``j`` and the model cannot represent the watermark's bigram
  bias (Chapter 8, the radioactivity ablation). The ``S`` replicates are one batched
  computation whose losses are summed, so their gradients and Adam statistics never mix.
* :class:`BitModel`, the fitted models: ``sample`` draws images (watermarked with BitMark's bias
  of :func:`collapse_lib.watermark.bitmark_bias` when ``delta > 0``), ``nll`` scores real codes
  per stage. Sampling is exact and incremental: hidden units are sorted by degree, and a unit is
  computed once, at the first step where all its inputs are known.

:class:`LoopMetrics` records held-out NLL (coarse and fine stages), a Fréchet distance on the
features of :class:`DigitFeatures` (a small classifier trained at run time: no downloads) and the
watermark z-score that a model's *unwatermarked* samples inherit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from collapse_lib.loop import Learner, Step
from collapse_lib.metrics import frechet_distance
from collapse_lib.runtime import (
    Stream,
    check_nonnegative,
    check_positive_int,
    linear_init,
    rng,
    seed_list,
    torch_generator,
)
from collapse_lib.watermark import bitmark_bias, check_stages, zscore

LN2 = float(np.log(2.0))


# ----------------------------------------------------------------------------------------------
# the tokenizer
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokenizer:
    """Residual sign quantization of whitened PCA codes: ``S`` tokens of ``K`` bits per image.

    Build it with :meth:`fit`. Bits are stage-major: ``bits[..., s * K + k]`` is bit ``k`` of
    the token of stage ``s`` (0-based, coarse to fine).
    """

    mean: np.ndarray  #: (D,) training mean
    components: np.ndarray  #: (D, K) orthonormal principal directions
    scale: np.ndarray  #: (K,) standard deviation of each code on the training set
    steps: np.ndarray  #: (S,) the halving step sizes a_s

    @classmethod
    def fit(cls, images: np.ndarray, bits_per_token: int = 32, stages: int = 6) -> Tokenizer:
        """Fit mean, ``K`` principal directions, code scales and ``a_1 = mean |c|``."""
        x = np.asarray(images, dtype=float)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"images must have shape (n >= 2, D), got {x.shape}")
        K = check_positive_int(bits_per_token, "bits_per_token")
        S = check_positive_int(stages, "stages")
        if K > min(x.shape):
            raise ValueError(f"bits_per_token must be <= min(n, D) = {min(x.shape)}, got {K}")
        mu = x.mean(axis=0)
        _, sv, vt = np.linalg.svd(x - mu, full_matrices=False)
        if sv[K - 1] <= 1e-12 * sv[0]:
            raise ValueError(f"the images span fewer than bits_per_token = {K} directions")
        V = vt[:K].T
        c = (x - mu) @ V
        sd = c.std(axis=0)
        a = np.abs(c / sd).mean() * 0.5 ** np.arange(S)
        return cls(mu, V, sd, a)

    @property
    def bits_per_token(self) -> int:
        return self.components.shape[1]

    @property
    def stages(self) -> int:
        return len(self.steps)

    @property
    def length(self) -> int:
        """``L = S K`` bits per image."""
        return self.stages * self.bits_per_token

    def codes(self, images: np.ndarray) -> np.ndarray:
        """Whitened PCA codes ``c = ((x - mu) V) / sd`` of images ``(..., D)``."""
        x = np.asarray(images, dtype=float)
        if x.shape[-1:] != self.mean.shape:
            raise ValueError(f"images must end in D = {self.mean.size} pixels, got {x.shape}")
        return ((x - self.mean) @ self.components) / self.scale

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Bits ``(..., S K)`` (uint8, stage-major) of images ``(..., D)``."""
        r = self.codes(images)
        out = []
        for a in self.steps:
            b = r >= 0
            out.append(b)
            r = r - a * (2.0 * b - 1.0)
        return np.concatenate(out, axis=-1).astype(np.uint8)

    def decode(self, bits: np.ndarray) -> np.ndarray:
        """Float images ``(..., D)`` of bits ``(..., S K)``: no clipping, no rounding."""
        b = np.asarray(bits)
        if b.shape[-1:] != (self.length,):
            raise ValueError(f"bits must end in L = {self.length} bits, got {b.shape}")
        if b.size and not np.isin(b, (0, 1)).all():
            raise ValueError("bits must be 0 or 1")
        signs = 2.0 * b.reshape(*b.shape[:-1], self.stages, self.bits_per_token) - 1.0
        c = np.einsum("...sk,s->...k", signs, self.steps)
        return self.mean + (c * self.scale) @ self.components.T

    def stage_slice(self, stage: int) -> slice:
        """The bit positions of stage ``stage`` (0-based)."""
        if not 0 <= stage < self.stages:
            raise ValueError(f"stage must lie in [0, {self.stages - 1}], got {stage}")
        K = self.bits_per_token
        return slice(stage * K, (stage + 1) * K)


def overlap(bits_a: np.ndarray, bits_b: np.ndarray, bits_per_token: int) -> dict[str, np.ndarray]:
    """Per stage: the fraction of equal bits and of equal tokens (all ``K`` bits) of two codes.

    The analogue of the paper's motivating measurement (after decode -> re-encode, Infinity keeps
    ~77 % of its bits but ~2.4 % of its tokens). Inputs ``(n, S K)``; outputs ``(S,)``.
    """
    a, b = np.asarray(bits_a), np.asarray(bits_b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"bits_a {a.shape} and bits_b {b.shape} must be equal 2-D shapes")
    K = check_positive_int(bits_per_token, "bits_per_token")
    if a.shape[1] % K:
        raise ValueError(f"bit length {a.shape[1]} is not a multiple of bits_per_token = {K}")
    eq = (a == b).reshape(len(a), -1, K)
    return {"bit": eq.mean(axis=(0, 2)), "token": eq.all(axis=2).mean(axis=0)}


# ----------------------------------------------------------------------------------------------
# MADE with a skip layer, batched over replicates
# ----------------------------------------------------------------------------------------------


def made_degrees(length: int, hidden: int, layers: int, seed: int) -> list[np.ndarray]:
    """Sorted random hidden degrees in ``1..L-1`` per layer ``l``.

    From ``rng(seed, Stream.BITWISE_MASK, l)``.
    """
    return [
        np.sort(rng(seed, Stream.BITWISE_MASK, layer).integers(1, length, size=hidden))
        for layer in range(layers)
    ]


def made_path_probability(length: int, hidden: int) -> float:
    """Chance that a two-layer MADE with i.i.d. uniform degrees in ``1..L-1`` can carry bit
    ``j - 1`` to bit ``j`` through its hidden layers: both layers need a unit of degree exactly
    ``j - 1``, so ``(1 - (1 - 1/(L - 1))^H)^2``."""
    length = check_positive_int(length, "length")
    hidden = check_positive_int(hidden, "hidden")
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    return float((1 - (1 - 1 / (length - 1)) ** hidden) ** 2)


def made_masks(length: int, degrees: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Connectivity masks: input ``k`` (degree ``k + 1``) -> unit of degree ``m`` iff
    ``k + 1 <= m``; hidden ``m -> m'`` iff ``m <= m'``; hidden ``m`` -> output ``i`` iff
    ``m <= i`` (so logit ``i`` depends on bits ``0..i-1`` only). The last mask is the strictly
    lower-triangular skip layer ``k -> i`` iff ``k < i``."""
    inputs = np.arange(1, length + 1)
    outputs = np.arange(length)
    masks = [(inputs[:, None] <= degrees[0][None, :])]
    for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True):
        masks.append(d_in[:, None] <= d_out[None, :])
    masks.append(degrees[-1][:, None] <= outputs[None, :])
    masks.append(np.arange(length)[:, None] < outputs[None, :])
    return [m.astype(np.float32) for m in masks]


@dataclass
class BitModel:
    """The fitted networks of all replicates, as one batched model of the generation loop.

    ``sample(n, rngs)`` returns images ``(S, n, D)`` drawn with the deployment settings
    (``delta``, ``stages``, ``temperature``); :meth:`sample_bits` exposes every setting.
    """

    params: dict[str, Any]
    masks: list[Any]
    degrees: list[np.ndarray]
    tokenizer: Tokenizer
    skip: bool = True
    delta: float = 0.0
    stages: tuple[int, ...] = ()
    temperature: float = 1.0
    device: str = "cpu"

    @property
    def replicates(self) -> int:
        return int(self.params["b3"].shape[0])

    def deployed(
        self,
        delta: float | None = None,
        stages: Sequence[int] | None = None,
        temperature: float | None = None,
    ) -> BitModel:
        """The same networks with other deployment settings (``None`` keeps the current one)."""
        out = replace(self)
        if delta is not None:
            out.delta = check_nonnegative(delta, "delta")
        if stages is not None:
            out.stages = check_stages(stages, self.tokenizer.stages)
        if temperature is not None:
            out.temperature = _positive(temperature, "temperature")
        return out

    def select(self, index: Sequence[int] | int) -> BitModel:
        """The models of some replicates (by position), as a smaller batched model."""
        idx = [index] if isinstance(index, (int, np.integer)) else list(index)
        out = replace(self)
        out.params = {k: v[idx] for k, v in self.params.items()}
        return out

    def weights(self) -> list[Any]:
        """Masked weight matrices ``(S, in, out)``: layers 1..3 and the skip layer."""
        p = self.params
        w = [p["W1"] * self.masks[0], p["W2"] * self.masks[1], p["W3"] * self.masks[2]]
        skip = p["Ws"] * self.masks[3] if self.skip else None
        return [*w, skip]

    def logits(self, xc: Any) -> Any:
        """Logits ``(S, n, L)`` of centred bits ``xc = 2 b - 1`` of shape ``(S, n, L)``."""
        import torch

        p = self.params
        W1, W2, W3, Ws = self.weights()
        h1 = torch.relu(torch.baddbmm(p["b1"], xc, W1))
        h2 = torch.relu(torch.baddbmm(p["b2"], h1, W2))
        out = torch.baddbmm(p["b3"], h2, W3)
        return out if Ws is None else out + torch.bmm(xc, Ws)

    def nll(self, bits: np.ndarray) -> np.ndarray:
        """Negative log-likelihood in **bits** per stage: ``(S, n, stages)``.

        ``bits`` is ``(n, L)`` (the same codes for every replicate) or ``(S, n, L)``.
        """
        import torch

        b = np.asarray(bits)
        S, L = self.replicates, self.tokenizer.length
        if b.ndim == 2:
            b = np.broadcast_to(b, (S, *b.shape))
        if b.ndim != 3 or b.shape[0] != S or b.shape[2] != L:
            raise ValueError(f"bits must have shape (n, {L}) or ({S}, n, {L}), got {b.shape}")
        x = torch.tensor(np.asarray(b, dtype=np.float32), device=self.device)
        with torch.no_grad():
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                self.logits(2 * x - 1), x, reduction="none"
            )
        bce = bce.double().cpu().numpy() / LN2
        return bce.reshape(S, b.shape[1], self.tokenizer.stages, -1).sum(axis=-1)

    def sample_bits(
        self,
        n: int,
        rngs: Sequence[np.random.Generator],
        delta: float | None = None,
        stages: Sequence[int] | None = None,
        temperature: float | None = None,
    ) -> np.ndarray:
        """``n`` bit strings per replicate, ``(S, n, L)`` uint8, bit by bit.

        Bit ``i`` has logit ``l_i / temperature``; on the watermarked ``stages`` every bit after
        the first of its token then gets BitMark's bias ``+delta`` if the previous bit is 0 and
        ``-delta`` if it is 1 (:func:`~collapse_lib.watermark.bitmark_bias`); then
        ``b_i = 1[u_i < sigmoid(logit)]`` with uniforms drawn from
        ``torch_generator(rngs[s])`` for replicate ``s`` only. ``None`` uses the deployment
        setting. Cost: one pass of each layer in total (units are computed once their inputs
        are known), plus ``O(H + L)`` per bit.
        """
        import torch

        n = check_positive_int(n, "n")
        S, L, K = self.replicates, self.tokenizer.length, self.tokenizer.bits_per_token
        if len(rngs) != S:
            raise ValueError(f"the model has {S} replicates but {len(rngs)} generators were given")
        m = self.deployed(delta, stages, temperature)
        biased = np.zeros(L, dtype=bool)
        for s in m.stages:
            biased[s * K + 1 : (s + 1) * K] = True
        u = torch.stack([torch.rand((n, L), generator=torch_generator(g, "cpu")) for g in rngs])
        u = u.to(self.device)
        p = self.params
        W1, W2, W3, Ws = self.weights()
        n1 = np.searchsorted(self.degrees[0], np.arange(L), side="right")
        n2 = np.searchsorted(self.degrees[1], np.arange(L), side="right")
        H1, H2 = W1.shape[2], W2.shape[2]
        xc = torch.zeros((S, n, L), device=self.device)
        h1 = torch.zeros((S, n, H1), device=self.device)
        h2 = torch.zeros((S, n, H2), device=self.device)
        with torch.no_grad():
            for i in range(L):
                lo1, hi1 = (n1[i - 1] if i else 0), n1[i]
                if hi1 > lo1:  # layer-1 units of degree i: inputs 0..i-1 are all known now
                    h1[:, :, lo1:hi1] = torch.relu(
                        torch.baddbmm(p["b1"][:, :, lo1:hi1], xc[:, :, :i], W1[:, :i, lo1:hi1])
                    )
                lo2, hi2 = (n2[i - 1] if i else 0), n2[i]
                if hi2 > lo2:
                    h2[:, :, lo2:hi2] = torch.relu(
                        torch.baddbmm(p["b2"][:, :, lo2:hi2], h1[:, :, :hi1], W2[:, :hi1, lo2:hi2])
                    )
                logit = torch.baddbmm(
                    p["b3"][:, :, i : i + 1], h2[:, :, :hi2], W3[:, :hi2, i : i + 1]
                )
                if Ws is not None and i:
                    logit = logit + torch.bmm(xc[:, :, :i], Ws[:, :i, i : i + 1])
                logit = logit[..., 0] / m.temperature
                if biased[i] and m.delta > 0:
                    logit = bitmark_bias(logit, xc[:, :, i - 1] > 0, m.delta)
                xc[:, :, i] = 2.0 * (u[:, :, i] < torch.sigmoid(logit)).float() - 1.0
        return ((xc > 0).cpu().numpy()).astype(np.uint8)

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Published images ``(S, n, D)``: deployment-setting bits, decoded (float, unclipped)."""
        return self.tokenizer.decode(self.sample_bits(n, rngs))


def _positive(value: Any, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return x


@dataclass
class BitwiseAR(Learner):
    """Batched learner: a MADE with a skip layer on the tokenizer's bits, one per replicate.

    ``fit(images (S, n, D))`` encodes the images and trains every replicate's network from a
    fresh initialisation; the returned :class:`BitModel` samples images with the deployment
    settings given here (``delta``, ``stages``, ``temperature``).

    Parameters
    ----------
    tokenizer
        The (fixed, private) tokenizer of the model owner.
    seeds
        The replicates (as passed to the loop): one network each. Replicate ``s`` initialises
        from ``torch_generator(rng(seed, Stream.BITWISE_INIT, s))`` and shuffles with
        ``rng(seed, Stream.BITWISE_SHUFFLE, s)``; both restart with every fit, so a replicate's
        numbers do not depend on which other replicates run beside it.
    seed
        The root seed (also fixes MADE's degrees, :func:`made_degrees`).
    hidden, epochs, batch
        Hidden width (two masked layers), training epochs, minibatch size.
    lr, skip_lr
        Adam's learning rates for the MADE weights and for the skip layer (zero-initialised).
    skip
        ``False`` drops the skip layer (plain MADE: the cautionary ablation).
    delta, stages, temperature
        Deployment settings of the fitted models (BitMark strength, watermarked stages,
        sampling temperature).
    device
        Torch device of the networks; data stay in numpy.
    """

    tokenizer: Tokenizer
    seeds: int | Sequence[int] = 1
    seed: int = 0
    hidden: int = 128
    epochs: int = 20
    batch: int = 128
    lr: float = 1e-3
    skip_lr: float = 3e-2
    skip: bool = True
    delta: float = 0.0
    stages: Sequence[int] = ()
    temperature: float = 1.0
    device: str = "cpu"
    _degrees: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tokenizer, Tokenizer):
            raise ValueError(f"tokenizer must be a Tokenizer, got {type(self.tokenizer).__name__}")
        self.seeds = seed_list(self.seeds)
        for name in ("hidden", "epochs", "batch"):
            setattr(self, name, check_positive_int(getattr(self, name), name))
        self.lr = _positive(self.lr, "lr")
        self.skip_lr = _positive(self.skip_lr, "skip_lr")
        self.delta = check_nonnegative(self.delta, "delta")
        self.stages = check_stages(self.stages, self.tokenizer.stages)
        self.temperature = _positive(self.temperature, "temperature")
        self._degrees = made_degrees(self.tokenizer.length, self.hidden, 2, self.seed)

    def init(self) -> dict[str, Any]:
        """Fresh parameters per replicate: PyTorch's ``nn.Linear`` default, skip layer at 0."""
        import torch

        S, L, H = len(self.seeds), self.tokenizer.length, self.hidden
        layers = {
            "W1": ((L, H), L),
            "b1": ((1, H), L),
            "W2": ((H, H), H),
            "b2": ((1, H), H),
            "W3": ((H, L), H),
            "b3": ((1, L), H),
        }
        gens = [
            torch_generator(rng(self.seed, Stream.BITWISE_INIT, s), self.device) for s in self.seeds
        ]
        params = linear_init(layers, gens, self.device)
        params["Ws"] = torch.zeros((S, L, L), device=self.device)
        return params

    def _model(self, params: dict[str, Any]) -> BitModel:
        import torch

        masks = [
            torch.as_tensor(m, device=self.device)
            for m in made_masks(self.tokenizer.length, self._degrees)
        ]
        return BitModel(
            params=params,
            masks=masks,
            degrees=self._degrees,
            tokenizer=self.tokenizer,
            skip=self.skip,
            delta=self.delta,
            stages=tuple(self.stages),
            temperature=self.temperature,
            device=self.device,
        )

    def fit_bits(self, bits: np.ndarray) -> BitModel:
        """Train every replicate on its bit strings ``(S, n, L)`` (sum of per-replicate mean
        binary cross-entropies, Adam, ``epochs`` passes in shuffled minibatches)."""
        import torch

        b = np.asarray(bits)
        S, L = len(self.seeds), self.tokenizer.length
        if b.ndim != 3 or b.shape[0] != S or b.shape[2] != L:
            raise ValueError(f"bits must have shape ({S}, n, {L}), got {b.shape}")
        n = b.shape[1]
        if n == 0:
            raise ValueError(
                "the training set is empty (did a filter remove every item in a regime without "
                "real data? use a mixture or accumulate regime)"
            )
        model = self._model(self.init())
        x = torch.tensor(np.asarray(b, dtype=np.float32), device=self.device)
        xc = 2 * x - 1
        params = {k: v.requires_grad_(True) for k, v in model.params.items()}
        groups = [{"params": [v for k, v in params.items() if k != "Ws"], "lr": self.lr}]
        if self.skip:
            groups.append({"params": [params["Ws"]], "lr": self.skip_lr})
        opt = torch.optim.Adam(groups)
        shuffle = [
            torch_generator(rng(self.seed, Stream.BITWISE_SHUFFLE, s), "cpu") for s in self.seeds
        ]
        rows = torch.arange(S, device=self.device)[:, None]
        for _ in range(self.epochs):
            perm = torch.stack([torch.randperm(n, generator=g) for g in shuffle]).to(self.device)
            for lo in range(0, n, self.batch):
                idx = perm[:, lo : lo + self.batch]
                xb, cb = x[rows, idx], xc[rows, idx]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    model.logits(cb), xb, reduction="none"
                )
                opt.zero_grad(set_to_none=True)
                loss.sum(dim=2).mean(dim=1).sum().backward()
                opt.step()
        model.params = {k: v.detach() for k, v in params.items()}
        return model

    def fit(self, data: np.ndarray) -> BitModel:
        """Encode images ``(S, n, D)`` with the tokenizer and train (see :meth:`fit_bits`)."""
        x = np.asarray(data)
        if x.ndim != 3:
            raise ValueError(f"data must have shape (S, n, D), got {x.shape}")
        return self.fit_bits(self.tokenizer.encode(x))


# ----------------------------------------------------------------------------------------------
# the data source and the quality metrics
# ----------------------------------------------------------------------------------------------


def digits_split(seed: int = 0, n_train: int = 1500) -> dict[str, np.ndarray]:
    """scikit-learn's digits (pixels in ``[0, 1]``), shuffled with
    ``rng(seed, Stream.BITWISE_DIGITS, 0)``: the first ``n_train`` train the tokenizer, the
    models and the feature network; the rest are held out."""
    from collapse_lib.data import digits, digits_order

    x, y = digits()
    n_train = check_positive_int(n_train, "n_train")
    if not 2 <= n_train <= len(x) - 2:
        raise ValueError(f"n_train must lie in [2, {len(x) - 2}], got {n_train}")
    order = digits_order(seed, Stream.BITWISE_DIGITS, 0)
    tr, te = order[:n_train], order[n_train:]
    return {"train": x[tr], "train_labels": y[tr], "test": x[te], "test_labels": y[te]}


def bitplanes(images: np.ndarray, planes: int = 4) -> np.ndarray:
    """The naive bit representation, whose clean z is far from N(0, 1) (a pitfall).

    Pixel intensities on the digits' 0..16 scale, clipped to ``2^planes - 1``, written as
    ``planes`` bit planes (most significant first), each plane one token of ``D`` bits in raster
    order: ``(..., planes * D)`` uint8.
    """
    planes = check_positive_int(planes, "planes")
    x = np.asarray(images, dtype=float)
    levels = np.clip(np.round(x * 16), 0, 2**planes - 1).astype(np.int64)
    shifts = np.arange(planes - 1, -1, -1)
    out = (levels[..., None, :] >> shifts[:, None]) & 1  # (..., planes, D)
    return out.reshape(*x.shape[:-1], -1).astype(np.uint8)


@dataclass
class DigitFeatures:
    """The 64-d hidden features of a small MLP digit classifier (the chapter's "FID" network).

    ``DigitFeatures.fit(images, labels, seed)`` trains ``MLPClassifier(hidden_layer_sizes=(64,))``
    on real images in ``[0, 1]``; ``features(x) = relu(x W_1 + b_1)``.
    :meth:`frechet` is the Fréchet distance of :func:`collapse_lib.metrics.frechet_distance`
    between the features of two image sets.
    """

    weight: np.ndarray
    bias: np.ndarray
    classifier: Any = None

    @classmethod
    def fit(cls, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> DigitFeatures:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        x, y = np.asarray(images, dtype=float), np.asarray(labels)
        if x.ndim != 2 or y.shape != (len(x),):
            raise ValueError(f"images (n, D) and labels (n,) disagree: {x.shape}, {y.shape}")
        state = int(rng(seed, Stream.BITWISE_STATE, 0).integers(2**31 - 1))
        clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=state)
        with warnings.catch_warnings():  # 300 Adam epochs suffice for features (accuracy ~0.98)
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x, y)
        return cls(clf.coefs_[0], clf.intercepts_[0], clf)

    def features(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=float)
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"images must end in {self.weight.shape[0]} pixels, got {x.shape}")
        return np.maximum(x @ self.weight + self.bias, 0.0)

    def frechet(self, a: np.ndarray, b: np.ndarray) -> float:
        """Fréchet distance between the features of image sets ``a`` and ``b`` (rows)."""
        return frechet_distance(self.features(a), self.features(b))


class LoopMetrics:
    """Per-generation metrics of the bitwise model in the loop (one value per replicate).

    ============== ===========================================================================
    nll            held-out NLL of the real test codes, bits per image (all stages)
    nll_coarse     ... of the coarse stages only (content; untouched by a fine watermark)
    nll_fine       ... of the other stages
    fd             Fréchet distance (features of :class:`DigitFeatures`) between ``n_eval``
                   model samples and the real test images
    z              mean watermark z-score (``wm_stages``) of the model's *unwatermarked*
                   samples: the watermark it has inherited from its training data
    ============== ===========================================================================

    The evaluation samples use the model's temperature and ``delta = 0``; replicate ``s`` at
    generation ``t`` draws them from ``rng(seed, Stream.BITWISE_METRIC, t, s)`` (never the
    loop's streams).
    """

    NAMES = ("nll", "nll_coarse", "nll_fine", "fd", "z")

    def __init__(
        self,
        tokenizer: Tokenizer,
        test_images: np.ndarray,
        features: DigitFeatures,
        *,
        coarse: Sequence[int] = (0, 1),
        wm_stages: Sequence[int] = (2, 3, 4, 5),
        n_eval: int = 400,
        seed: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.test = np.asarray(test_images, dtype=float)
        self.test_bits = tokenizer.encode(self.test)
        self.features = features
        self.coarse = list(check_stages(coarse, tokenizer.stages))
        self.fine = [s for s in range(tokenizer.stages) if s not in self.coarse]
        self.wm_stages = check_stages(wm_stages, tokenizer.stages)
        self.n_eval = check_positive_int(n_eval, "n_eval")
        self.seed = seed
        self._key: tuple[int, int] | None = None
        self._values: dict[str, np.ndarray] = {}

    def __call__(self, *names: str) -> dict[str, Callable[[Step], np.ndarray]]:
        from collapse_lib.runtime import check_choice

        for name in names:
            check_choice(name, self.NAMES, "metric")
        return {n: (lambda step, n=n: self.value(step, n)) for n in names or self.NAMES}

    def value(self, step: Step, name: str) -> np.ndarray:
        key = (id(step.model), step.generation)
        if key != self._key:
            self._update(step)
            self._key = key
        return self._values[name]

    def _update(self, step: Step) -> None:
        model: BitModel = step.model
        nll = model.nll(self.test_bits).mean(axis=1)  # (S, stages)
        gens = [rng(self.seed, Stream.BITWISE_METRIC, step.generation, s) for s in step.seeds]
        bits = model.sample_bits(self.n_eval, gens, delta=0.0)
        images = self.tokenizer.decode(bits)
        self._values = {
            "nll": nll.sum(axis=1),
            "nll_coarse": nll[:, self.coarse].sum(axis=1),
            "nll_fine": nll[:, self.fine].sum(axis=1),
            "fd": np.array([self.features.frechet(img, self.test) for img in images]),
            "z": zscore(bits, self.tokenizer.bits_per_token, self.wm_stages).mean(axis=1),
        }
