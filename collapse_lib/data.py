"""Data sets the chapters share: generated on the fly or shipped inside scikit-learn.

Nothing here downloads: scikit-learn's 8x8 handwritten digits (1797 images, 10 classes,
Alpaydin & Kaynak 1998) are installed with the package, and the two-view synthetic data
is generated from the seed.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from collapse_lib.runtime import Stream, check_choice, check_nonnegative, check_positive_int, rng


@lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float64) / 16.0
    y = bunch.target.astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: pixels ``(1797, 64)`` in ``[0, 1]``, labels ``(1797,)``.

    Pixels are row-major; the raw intensities are integers 0..16, divided by 16. The
    arrays are read-only views of a cached load; ``.copy()`` them to modify.
    """
    x, y = _load_digits()
    return x, y


def digits_order(seed: int, *key: int) -> np.ndarray:
    """A random order of the 1797 digits from ``rng(seed, *key)``: every chapter's split.

    ``key`` is a :class:`~collapse_lib.runtime.Stream` and its index.

    A chapter splits the digits by taking the first rows of this order for one part and the
    rest for the other; its stream ``key`` keeps its split independent of its other draws.
    """
    return rng(seed, *key).permutation(len(_load_digits()[1]))


@dataclass
class ImagePool:
    """The loop's truth for the chapters on real images: a fixed set of images to draw from.

    ``sample(n, rngs)`` gives replicate ``s`` the ``n`` distinct images
    ``images[rngs[s].choice(N, n, replace=False)]``, shape ``(S, n, D)``: every real image
    is used at most once per draw, so ``n`` may not exceed ``N``.
    """

    images: np.ndarray

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=float)
        if self.images.ndim != 2 or len(self.images) < 1:
            raise ValueError(f"images must have shape (N, D) with N >= 1, got {self.images.shape}")

    @property
    def dim(self) -> int:
        """The number of features (pixels) of an image."""
        return self.images.shape[1]

    def indices(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Replicate ``s``'s ``n`` distinct row indices, ``rngs[s].choice(N, n, replace=False)``."""
        n = check_positive_int(n, "n")
        if n > len(self.images):
            raise ValueError(f"n must be <= the {len(self.images)} images of the pool, got {n}")
        size = len(self.images)
        return np.stack([g.choice(size, n, replace=False) for g in rngs])

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """``(S, n, D)``: the images at :meth:`indices`."""
        return self.images[self.indices(n, rngs)]


def digits_halves(seed: int = 0, n_train: int = 900, min_sd: float = 0.1) -> dict[str, Any]:
    """Two views of each digit: its left 4 pixel columns and its right 4 (32 pixels each).

    Rows are shuffled with ``seed``; the first ``n_train`` train the encoders, the rest
    are the evaluation split. Each view is scaled as ``(x - train mean) / 4`` with the
    pixel intensities on the original 0..16 scale: not by the per-pixel standard
    deviation, because edge pixels are constant and would blow up. ``tasks`` are the
    pixels of the whole image (in ``[0, 1]``) whose standard deviation over all digits is
    at least ``min_sd``: pixel-reconstruction targets, which need view-private information
    (near-constant edge pixels would make R^2 undefined or noise); ``pixels`` their
    indices. ``labels`` is the digit identity, shared by both halves; ``order`` the
    shuffle (row ``i`` is digit ``order[i]`` of :func:`digits`).
    """
    x, y = digits()
    n_train = check_positive_int(n_train, "n_train")
    if not 2 <= n_train <= len(x) - 2:
        raise ValueError(f"n_train must lie in [2, {len(x) - 2}], got {n_train}")
    min_sd = check_nonnegative(min_sd, "min_sd")
    pixels = np.flatnonzero(x.std(0) >= min_sd)
    if pixels.size == 0:
        raise ValueError(f"no pixel has a standard deviation of at least min_sd={min_sd}")
    order = rng(seed, Stream.TWO_VIEWS, 20).permutation(len(x))
    x, y = x[order], y[order]
    img = x.reshape(-1, 8, 8) * 16.0
    train = slice(0, n_train)
    views = []
    for cols in (slice(0, 4), slice(4, 8)):
        v = img[:, :, cols].reshape(len(x), 32)
        views.append(((v - v[train].mean(0)) / 4.0).astype(np.float32))
    return {
        "x1": views[0],
        "x2": views[1],
        "tasks": x[:, pixels],
        "pixels": pixels,
        "order": order,
        "labels": y.copy(),
        "train": train,
        "eval": slice(n_train, len(x)),
    }


def multiview_synthetic(
    n: int = 2000,
    common_rate: float = 0.5,
    d_god: int = 20,
    dim: int = 50,
    n_tasks: int = 20,
    noise: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """Two views of a latent "God embedding" with a common rate [in the spirit of the paper].

    ``G ~ N(0, I_{d_god})``; each view sees ``s = d_god/2`` coordinates, of which
    ``m = round(c s)`` are shared: ``S1 = {0..s-1}``, ``S2 = {0..m-1} u {s..2s-m-1}``.
    ``X_k = tanh(G_{S_k} M_k1) M_k2 + noise * std * eps`` (random fixed maps, ``2 dim`` hidden),
    standardised with the training split's statistics. Tasks need all of G:
    ``T = G W + 0.5 tanh(2 G V + b)``. The first ``n/2`` rows train the encoders, the rest
    are the evaluation split. The functional forms are this book's; the paper's are unknown.
    """
    n = check_positive_int(n, "n")
    if n < 4:
        raise ValueError("n must be at least 4")
    d_god = check_positive_int(d_god, "d_god")
    if d_god % 2:
        raise ValueError("d_god must be even")
    dim = check_positive_int(dim, "dim")
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    c = float(common_rate)
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"common_rate must lie in [0, 1], got {common_rate!r}")
    noise = check_nonnegative(noise, "noise")
    g_rng = rng(seed, Stream.TWO_VIEWS, 0)
    s = d_god // 2
    m = int(round(c * s))
    sets = [np.arange(s), np.r_[np.arange(m), np.arange(s, 2 * s - m)]]
    g = g_rng.standard_normal((n, d_god))
    half = n // 2
    views = []
    for k, idx in enumerate(sets):
        r = rng(seed, Stream.TWO_VIEWS, 1 + k)
        m1 = r.standard_normal((s, 2 * dim)) / np.sqrt(s)
        m2 = r.standard_normal((2 * dim, dim)) / np.sqrt(2 * dim)
        phi = np.tanh(g[:, idx] @ m1) @ m2
        x = phi + noise * phi.std(0) * r.standard_normal(phi.shape)
        mu, sd = x[:half].mean(0), x[:half].std(0)
        views.append(((x - mu) / sd).astype(np.float32))
    r = rng(seed, Stream.TWO_VIEWS, 3)
    w = r.standard_normal((d_god, n_tasks)) / np.sqrt(d_god)
    v = r.standard_normal((d_god, n_tasks)) / np.sqrt(d_god)
    b = r.uniform(-1, 1, n_tasks)
    t = g @ w + 0.5 * np.tanh(2 * g @ v + b)
    return {
        "x1": views[0],
        "x2": views[1],
        "tasks": t,
        "g": g,
        "sets": sets,
        "shared": m,
        "train": slice(0, half),
        "eval": slice(half, n),
    }


def text_corpus(source: str = "pydoc") -> str:
    """English text from the Python standard library, lower-cased, letters and single spaces only.

    ``"pydoc"``: the documentation topics of ``pydoc_data.topics`` (about 465,000 characters, the
    Python Software Foundation License); ``"zen"``: the Zen of Python (``this``, 800 characters).
    """
    check_choice(source, ("pydoc", "zen"), "source")
    if source == "pydoc":
        from pydoc_data.topics import topics

        raw = " ".join(topics[k] for k in sorted(topics))
    else:
        import codecs
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # `import this` prints the poem
            import this
        raw = codecs.decode(this.s, "rot13")
    table = {ord(ch): ch for ch in string.ascii_lowercase}
    cleaned = "".join(table.get(ord(ch), " ") for ch in raw.lower())
    return " ".join(cleaned.split())
