"""BitMark: a green-bigram watermark on the bits of a bitwise generator, its z-test, attacks,
and the watermark detector as a filter of the generation loop.

Kerner, Meintz, Zhao, Boenisch & Dziedzic, "BitMark: Watermarking Bitwise Autoregressive Image
Generative Models" (NeurIPS 2025). What follows is the configuration of the authors' released code
(the authors' MIT-licensed repository, read but not copied) [code]; the toy's choices are
marked [toy].

Embedding [code]. Patterns of ``n = 2`` bits; the green list is ``G = {01, 10}`` (chance fraction
``gamma = 1/2``). While a token's bits are sampled one by one, the logit of bit ``j`` (after the
temperature) gets ``+delta`` if the previous bit of the same token is 0 and ``-delta`` if it is 1:
every biased bit is pushed *away* from its predecessor (:func:`bitmark_bias`). A bit whose
unbiased probability of its green value is ``q`` becomes green with probability
``sigmoid(logit(q) + delta)``. Infinity's code biases bits ``j >= 2`` of every token of every scale;
the toy biases bits ``j >= 1`` of the tokens of the chosen stages [toy].

Detection [code]. Re-encode the published image with the owner's tokenizer; on the watermarked
stages count the green windows ``|s|_G`` among the ``T`` scored bigrams and compute

    z = (|s|_G - gamma T) / sqrt(T gamma (1 - gamma)),    p = 1 - Phi(z),

flagging ``z > 4``. For ``G = {01, 10}`` a window is green iff ``x_i != x_{i-1}``; for i.i.d. fair
bits these indicators are i.i.d. Bernoulli(1/2), so ``|s|_G ~ Binomial(T, 1/2)`` exactly
(:func:`binomial_null`). The toy counts only bigrams inside tokens (``T = |stages| (K - 1)``); the
released detector flattens the bits and also counts the never-biased windows across token
boundaries (``within_tokens=False``). Under the bias, with every biased bit maximally uncertain
(``q = 1/2``), ``E[z] = 2 (sigmoid(delta) - 1/2) sqrt(T)`` (:func:`expected_z`; the chapter proves
it, and that it is an upper bound when the unbiased logits are symmetric about 0).

Evaluation [code]: TPR at the empirical threshold that gives FPR 1 % on clean (``delta = 0``)
samples of the same model (:func:`tpr_at_fpr`), besides TPR at ``z > 4``.

Attacks: image-space noise, clipping, rounding, blur and flips; random bit flips; and the
BitFlipper removal attack of the released code (flip the second bit of green bigrams).

:class:`WatermarkFilter` is the detector as a filter of :func:`collapse_lib.loop.run`: it drops
every synthetic candidate whose re-encoded z exceeds the threshold. Running it in a
multi-generation loop is **the book's construction**: the paper studies one step of
radioactivity, not a collapse loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage, stats

from collapse_lib.loop import FilterContext
from collapse_lib.runtime import check_fraction, check_positive_int

GAMMA = 0.5  #: chance fraction of green bigrams for G = {01, 10}
THRESHOLD = 4.0  #: the released detector's default z threshold


def check_stages(stages: Any, n_stages: int) -> tuple[int, ...]:
    """``stages`` as a sorted tuple of distinct stage indices in ``[0, n_stages)``."""
    try:
        given = [int(s) for s in stages]
    except (TypeError, ValueError):
        raise ValueError(f"stages must be a sequence of stage indices, got {stages!r}") from None
    out = tuple(sorted(set(given)))
    if len(out) != len(given):
        raise ValueError(f"stages must not repeat a stage, got {given}")
    if out and (out[0] < 0 or out[-1] >= n_stages):
        raise ValueError(f"stages must lie in [0, {n_stages - 1}], got {given}")
    return out


# ----------------------------------------------------------------------------------------------
# the bias (embedding)
# ----------------------------------------------------------------------------------------------


def bitmark_bias(logit: Any, previous_is_one: Any, delta: float) -> Any:
    """BitMark's bias for ``G = {01, 10}``: ``logit + delta`` after a 0, ``- delta`` after a 1.

    ``logit`` is the (temperature-scaled) logit of ``P(bit = 1)``; works on numpy arrays and torch
    tensors alike. Adding ``+delta`` unconditionally would only push bits toward 1 and plant no
    bigram signal (and would fake a watermark for ``G = {11}``).
    """
    sign = 1.0 - 2.0 * previous_is_one
    if hasattr(sign, "to"):
        sign = sign.to(logit.dtype)
    return logit + delta * sign


def green_probability(delta: Any, q: Any = 0.5) -> np.ndarray:
    """``sigmoid(logit(q) + delta)``: the probability that a biased bit takes its green value."""
    q = np.asarray(q, dtype=float)
    if np.any((q <= 0) | (q >= 1)):
        raise ValueError("q must lie strictly between 0 and 1")
    return 1.0 / (1.0 + np.exp(-(np.log(q / (1 - q)) + np.asarray(delta, dtype=float))))


def expected_z(delta: Any, T: int, rho: float = 1.0) -> np.ndarray:
    """``E[z] = 2 rho (sigmoid(delta) - 1/2) sqrt(T)``: a fraction ``rho`` of the ``T`` scored
    windows ends in a biased, maximally uncertain bit (the chapter's theorem; ``rho = 1`` for
    within-token counting)."""
    T = check_positive_int(T, "T")
    rho = check_fraction(rho, "rho")
    return 2 * rho * (green_probability(delta) - 0.5) * np.sqrt(T)


def z_sd(delta: Any) -> np.ndarray:
    """Standard deviation of z in the exact model: ``2 sqrt(s (1 - s))``, ``s = sigmoid(delta)``."""
    s = green_probability(delta)
    return 2 * np.sqrt(s * (1 - s))


# ----------------------------------------------------------------------------------------------
# the detector
# ----------------------------------------------------------------------------------------------


def _bits(bits: Any, bits_per_token: int, stages: Sequence[int]) -> tuple[np.ndarray, int]:
    b = np.asarray(bits)
    K = check_positive_int(bits_per_token, "bits_per_token")
    if b.ndim < 1 or b.shape[-1] % K:
        raise ValueError(f"bits must end in a multiple of bits_per_token = {K}, got {b.shape}")
    n_stages = b.shape[-1] // K
    st = check_stages(stages, n_stages)
    if not st:
        raise ValueError("stages must name at least one watermarked stage")
    if K < 2:
        raise ValueError("bits_per_token must be >= 2 to hold a bigram")
    return b.reshape(*b.shape[:-1], n_stages, K)[..., list(st), :], K


def green_counts(
    bits: Any, bits_per_token: int, stages: Sequence[int], within_tokens: bool = True
) -> tuple[np.ndarray, int]:
    """Green-bigram counts ``|s|_G`` ``(...)`` and the number of scored windows ``T``.

    ``within_tokens=True`` (the toy's detector) scores the ``K - 1`` bigrams inside each token
    of the chosen stages: ``T = |stages| (K - 1)``. ``False`` flattens the chosen tokens and slides
    the window over the whole sequence, as the released detector does: ``T = |stages| K - 1``.
    """
    tok, K = _bits(bits, bits_per_token, stages)
    if within_tokens:
        green = tok[..., 1:] != tok[..., :-1]
        return green.sum(axis=(-2, -1)), green.shape[-2] * (K - 1)
    flat = tok.reshape(*tok.shape[:-2], -1)
    return (flat[..., 1:] != flat[..., :-1]).sum(axis=-1), flat.shape[-1] - 1


def zscore(
    bits: Any,
    bits_per_token: int,
    stages: Sequence[int],
    within_tokens: bool = True,
    gamma: float = GAMMA,
) -> np.ndarray:
    """BitMark's z ``(|s|_G - gamma T) / sqrt(T gamma (1 - gamma))`` for bits ``(..., L)``."""
    gamma = check_fraction(gamma, "gamma")
    if not 0 < gamma < 1:
        raise ValueError(f"gamma must lie strictly between 0 and 1, got {gamma}")
    count, T = green_counts(bits, bits_per_token, stages, within_tokens)
    return (count - gamma * T) / np.sqrt(T * gamma * (1 - gamma))


def binomial_null(T: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact null of z for i.i.d. fair bits: support ``z_k = (k - T/2)/sqrt(T/4)``, pmf of
    ``Binomial(T, 1/2)`` at ``k = 0..T``."""
    T = check_positive_int(T, "T")
    k = np.arange(T + 1)
    return (k - T / 2) / np.sqrt(T / 4), stats.binom.pmf(k, T, 0.5)


def p_value(z: Any, T: int | None = None) -> np.ndarray:
    """One-sided p-value ``P(Z >= z)``: ``1 - Phi(z)``, or, when the number of windows ``T`` is
    given, the exact tail ``P(C >= k)`` of ``C ~ Binomial(T, 1/2)`` with ``k`` the smallest count
    whose score is at least ``z``."""
    z = np.asarray(z, dtype=float)
    if T is None:
        return stats.norm.sf(z)
    T = check_positive_int(T, "T")
    k = np.ceil(z * np.sqrt(T / 4) + T / 2 - 1e-9)  # the smallest count whose score is >= z
    return stats.binom.sf(k - 1, T, 0.5)


def tpr_at_threshold(z: Any, threshold: float = THRESHOLD) -> float:
    """Fraction of scores strictly above ``threshold``."""
    z = np.asarray(z, dtype=float)
    if z.size == 0:
        raise ValueError("z must not be empty")
    return float((z > threshold).mean())


def fpr_threshold(z_clean: Any, fpr: float = 0.01) -> float:
    """The smallest threshold ``t`` (a clean score) with ``P_clean(z > t) <= fpr``.

    The paper's operating point: the ROC threshold with at most 1 % false positives on clean
    images of the same model.
    """
    zc = np.sort(np.asarray(z_clean, dtype=float).ravel())
    fpr = check_fraction(fpr, "fpr")
    if zc.size == 0:
        raise ValueError("z_clean must not be empty")
    allowed = int(np.floor(fpr * zc.size))  # at most this many clean scores above t
    return float(zc[zc.size - 1 - allowed])


def tpr_at_fpr(z_marked: Any, z_clean: Any, fpr: float = 0.01) -> float:
    """TPR at the empirical threshold with FPR ``<= fpr`` on the clean scores (TPR@1%FPR)."""
    return tpr_at_threshold(z_marked, fpr_threshold(z_clean, fpr))


# ----------------------------------------------------------------------------------------------
# attacks
# ----------------------------------------------------------------------------------------------

IMAGE_SIDE = 8


def gaussian_noise(images: Any, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add ``N(0, sigma^2)`` to every pixel (pixels in ``[0, 1]``; the digits have 16 levels)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    x = np.asarray(images, dtype=float)
    return x + sigma * rng.standard_normal(x.shape)


def clip(images: Any) -> np.ndarray:
    """Clip to the valid pixel range ``[0, 1]`` (what saving an image does)."""
    return np.clip(np.asarray(images, dtype=float), 0.0, 1.0)


def quantize(images: Any, levels: int = 17, clip_first: bool = True) -> np.ndarray:
    """Round to ``levels`` equally spaced grey levels of ``[0, 1]`` (17: the digits' own 0..16
    scale; 256: an 8-bit image), after clipping to ``[0, 1]`` unless ``clip_first=False``."""
    levels = check_positive_int(levels, "levels")
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    x = clip(images) if clip_first else np.asarray(images, dtype=float)
    return np.round(x * (levels - 1)) / (levels - 1)


def _square(x: np.ndarray) -> np.ndarray:
    if x.shape[-1] != IMAGE_SIDE**2:
        raise ValueError(f"images must end in {IMAGE_SIDE**2} pixels (8x8), got {x.shape}")
    return x.reshape(*x.shape[:-1], IMAGE_SIDE, IMAGE_SIDE)


def box_blur(images: Any, size: int = 3) -> np.ndarray:
    """A ``size x size`` box blur of 8x8 images (edges repeated)."""
    size = check_positive_int(size, "size")
    x = _square(np.asarray(images, dtype=float))
    axes = (x.ndim - 2, x.ndim - 1)
    out = ndimage.uniform_filter(x, size=size, mode="nearest", axes=axes)
    return out.reshape(*x.shape[:-2], -1)


def hflip(images: Any) -> np.ndarray:
    """Mirror 8x8 images left-right."""
    x = _square(np.asarray(images, dtype=float))
    return x[..., ::-1].reshape(*x.shape[:-2], -1)


def random_bit_flips(bits: Any, p: float, rng: np.random.Generator) -> np.ndarray:
    """Flip every bit independently with probability ``p`` (an attack in code space)."""
    p = check_fraction(p, "p")
    b = np.asarray(bits, dtype=np.uint8)
    return b ^ (rng.random(b.shape) < p).astype(np.uint8)


def bitflipper(
    bits: Any, bits_per_token: int, stages: Sequence[int], p: float, rng: np.random.Generator
) -> np.ndarray:
    """The BitFlipper removal attack [code: ``Infinity/flipper.py``], simplified.

    The attacker knows the tokenizer, the stages and ``G``. On each given stage it walks through
    a token's bits left to right and, whenever the bigram ending at bit ``j`` is green
    (``x_j != x_{j-1}``, judged on the bits as modified so far), flips ``x_j`` with probability
    ``p``. (The released code sets ``p = (f - 1/2) c`` from the image's green fraction ``f``, with
    ``c ~ 2.2`` recommended for removal.) Decode the result to publish the attacked image.
    """
    p = check_fraction(p, "p")
    b = np.array(bits, dtype=np.uint8, copy=True)
    K = check_positive_int(bits_per_token, "bits_per_token")
    if b.ndim < 1 or b.shape[-1] % K:
        raise ValueError(f"bits must end in a multiple of bits_per_token = {K}, got {b.shape}")
    n_stages = b.shape[-1] // K
    tok = b.reshape(*b.shape[:-1], n_stages, K)
    for s in check_stages(stages, n_stages):
        t = tok[..., s, :]
        for j in range(1, K):
            flip = (t[..., j] != t[..., j - 1]) & (rng.random(t.shape[:-1]) < p)
            t[..., j] ^= flip.astype(np.uint8)
    return tok.reshape(b.shape)


def psnr(reference: Any, attacked: Any) -> np.ndarray:
    """Peak signal-to-noise ratio per image in dB, pixel range 1: ``10 log10(1 / MSE)``."""
    a, b = np.asarray(reference, dtype=float), np.asarray(attacked, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"reference {a.shape} and attacked {b.shape} must have the same shape")
    mse = ((a - b) ** 2).mean(axis=-1)
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-300))


# ----------------------------------------------------------------------------------------------
# the filter of the generation loop
# ----------------------------------------------------------------------------------------------


class WatermarkFilter:
    """Drop every synthetic candidate that the owner's detector flags (``z > threshold``).

    A filter of :func:`collapse_lib.loop.run` (next to self-verification in
    :mod:`collapse_lib.verification` and curation in :mod:`collapse_lib.curation`): it re-encodes
    the candidate images with the owner's ``tokenizer``, computes z on the watermarked
    ``stages`` and keeps the unflagged ones. Replicates must keep equally many items (the loop's
    data carry a seed axis), so each keeps ``m = min_s kept_s`` of its unflagged candidates,
    chosen uniformly with its own generator; when nothing survives, the generation trains on
    real data alone (a regime without real data then fails with a clear error).

    The paper does not run this loop: filtering over many generations is the book's
    construction. :attr:`log` records, per generation and replicate, the fraction of synthetic
    candidates removed and the fraction of the *real* data of generation 0 that the same test
    would remove (its false-positive rate on real images).
    """

    def __init__(
        self,
        tokenizer: Any,
        stages: Sequence[int],
        threshold: float = THRESHOLD,
        publish: Any = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.stages = check_stages(stages, tokenizer.stages)
        if not self.stages:
            raise ValueError("stages must name at least one watermarked stage")
        self.threshold = float(threshold)
        if not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        self.publish = publish
        self.log: list[dict[str, float]] = []

    def scores(self, images: Any) -> np.ndarray:
        """z of images ``(..., D)`` after re-encoding with the owner's tokenizer."""
        bits = self.tokenizer.encode(np.asarray(images, dtype=float))
        return zscore(bits, self.tokenizer.bits_per_token, self.stages)

    def __call__(self, ctx: FilterContext) -> np.ndarray:
        cand = np.asarray(ctx.candidates, dtype=float)
        if self.publish is not None:  # what reaches the web: e.g. clipped or noisy images
            cand = np.stack([self.publish(c, g) for c, g in zip(cand, ctx.rngs, strict=True)])
        keep = self.scores(cand) <= self.threshold  # (S, n)
        real_flag = self.scores(ctx.real) > self.threshold
        m = int(keep.sum(axis=1).min())
        out = np.empty((cand.shape[0], m, *cand.shape[2:]))
        for s, g in enumerate(ctx.rngs):
            idx = np.flatnonzero(keep[s])
            out[s] = cand[s, np.sort(g.permutation(idx)[:m])]
            self.log.append(
                {
                    "generation": ctx.generation,
                    "replicate": s,
                    "synthetic_removed": float(1 - keep[s].mean()),
                    "real_removed": float(real_flag[s].mean()),
                    "kept": m,
                }
            )
        return out
