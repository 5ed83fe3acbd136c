"""Runtime: seeds, devices, thread counts and the quick/full presets of a chapter.

Every random draw in the book flows from one integer, the notebook's ``seed``.
Replicate ``s`` of an experiment gets its own numpy ``Generator``, built from
``SeedSequence(seed, spawn_key=(s,))``: the stream of replicate ``s`` is the same
whether it runs alone or inside a batch of thousands, which is what lets a
batched learner and a per-seed learner agree number for number.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum, unique
from types import MappingProxyType
from typing import Any

import numpy as np

MODES: tuple[str, ...] = ("quick", "full")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` naming ``name`` if it is not >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_fraction(value: Any, name: str) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name`` if outside [0, 1]."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return x


def check_choice(value: Any, valid: Iterable[str], name: str) -> str:
    """Return ``value`` if it is one of ``valid``, else raise ``ValueError`` listing them."""
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, valid))}")
    return value


def check_nonnegative(value: Any, name: str) -> float:
    """``value`` as a finite float >= 0, or a ``ValueError`` naming ``name``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if not (np.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return x


def check_probabilities(p: Any, name: str, ndims: Iterable[int] | None = None) -> np.ndarray:
    """``p`` as a float array of distributions along its last axis, or a ``ValueError`` naming it.

    Checks the number of axes (``ndims``, if given), finiteness, non-negativity and that every
    distribution sums to 1 (to 1e-8).
    """
    p = np.asarray(p, dtype=float)
    allowed = tuple(ndims) if ndims is not None else None
    if p.ndim == 0 or (allowed is not None and p.ndim not in allowed) or p.shape[-1] < 1:
        want = f"{' or '.join(map(str, allowed))} axes" if allowed else "at least one axis"
        raise ValueError(f"{name} must have {want} (the last over categories), got shape {p.shape}")
    if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite and non-negative")
    if not np.allclose(p.sum(axis=-1), 1.0, atol=1e-8):
        raise ValueError(f"{name} must sum to 1 along the last axis")
    return p


def _describe(value: Any) -> str:
    """``value``'s repr (shortened) and its type, for error messages: ``1.5 (float)``."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_seed(value: Any, name: str = "seed") -> int:
    """Return ``value`` as an int, or raise ``ValueError`` naming ``name``.

    A seed (a root seed, a replicate index or a spawn key) must be a Python or numpy
    integer >= 0. Bools, floats (even ``3.0``) and strings are rejected rather than
    truncated or parsed, so that ``seed=1.5`` cannot silently run as seed 1.

    Parameters
    ----------
    value
        The candidate seed.
    name
        The argument's name, used in the message (``"seed"``, ``"seeds[2]"``, ...).

    Returns
    -------
    int
        ``int(value)``.

    Raises
    ------
    ValueError
        If ``value`` is not a non-negative integer.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {_describe(value)}")
    return int(value)


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """Normalise ``seeds``: an int S means replicates ``0..S-1``; a sequence is taken as is.

    Parameters
    ----------
    seeds
        The number of replicates ``S >= 1`` (a Python or numpy integer), or the replicate
        indices themselves: a sequence (list, tuple, range, integer array, ...) of distinct
        non-negative integers.

    Returns
    -------
    list of int
        The replicate indices, in the given order.

    Raises
    ------
    ValueError
        Naming ``seeds`` (or the offending entry ``seeds[i]``) for a count below 1, an
        empty sequence, an entry that is not a non-negative integer (bools, floats and
        strings included: ``"12"`` is not replicates 1 and 2), or duplicates.
    """
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return list(range(check_positive_int(seeds, "seeds")))
    if isinstance(seeds, (bool, str, bytes)) or not isinstance(seeds, Iterable):
        raise ValueError(
            "seeds must be a positive integer (the number of replicates) or a sequence of"
            f" non-negative integers (the replicate indices), got {_describe(seeds)}"
        )
    out = [check_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
    if not out:
        raise ValueError("seeds must not be empty")
    if len(set(out)) != len(out):
        raise ValueError("seeds must not contain duplicates")
    return out


def seed_generators(seed: int, seeds: int | Sequence[int]) -> list[np.random.Generator]:
    """One independent numpy ``Generator`` per replicate, derived from the root ``seed``.

    Replicate ``s`` uses ``SeedSequence(seed, spawn_key=(s,))``, i.e. exactly the
    ``s``-th child of ``SeedSequence(seed).spawn(...)``: its stream does not depend
    on which other replicates run beside it.

    Raises ``ValueError`` naming ``seed`` unless it is a non-negative integer, and as
    :func:`seed_list` for bad ``seeds``.
    """
    seed = check_seed(seed, "seed")
    return [
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(s,)))
        for s in seed_list(seeds)
    ]


@unique
class Stream(IntEnum):
    """The registry of the book's named random streams: ``rng(seed, Stream.NAME, *index)``.

    Replicate ``s`` of the loop owns the one-element spawn key ``(s,)``
    (:func:`seed_generators`). Every other purpose draws from ``(Stream.NAME, *index)`` with at
    least one index (``0`` for a purpose drawn once), so a named stream never meets a
    replicate's, and no two purposes share a first element (``@unique``; the repository tests
    check that the library and the chapters name their streams from here). The index is the
    purpose's own: the replicate ``s``, the generation ``t``, a sub-purpose.
    """

    # chapter 1
    SPIKE_LIMIT = 101  #: Monte Carlo draws of the round-1 limit law (index 0)
    # chapter 2
    DOWNSTREAM = 2001  #: downstream learners' covariates: ``(*key, s)``
    FIXED_DESIGN = 2002  #: the fixed design of a chain: ``(s,)``
    REGRESSION_DIGITS = 2003  #: the digits pool/test split (index 0)
    # chapter 3
    DIFFUSION_INIT = 31  #: a denoiser's initialization: ``(s,)``
    DIFFUSION_TRAIN = 32  #: a denoiser's minibatches, times and noise: ``(s,)``
    DIFFUSION_DIGITS = 33  #: the real/held-out split of the digits (index 0)
    DIFFUSION_EVAL = 34  #: evaluation samples: ``(s, t)``
    SELECTION_POOL = 35  #: a pool learner's choices: ``(s, pool size)``
    DIFFUSION_FRESH = 36  #: fresh draws of the previous model, the source of D_t: ``(s, t)``
    CALIBRATION_SETS = 40  #: real training sets for calibration: ``(j,)``
    SMOOTHED_SAMPLES = 42  #: samples of the smoothed-score sampler: ``(s,)``
    # chapter 4
    TABULAR_TRUTH = 4001  #: a random conditional table: ``(s,)``
    MARKOV_TRUTH = 4002  #: a random Markov chain: ``(s,)``
    LINEAR_TRUTH = 4003  #: a random linear-Gaussian truth: ``(s,)``
    # chapter 5
    BASE_MODEL = 5  #: the base model's success probabilities: ``(s,)``
    MODULAR_TASK = 6  #: the modular-arithmetic task: ``(s,)``
    MODULAR_INIT = 51  #: the transformer's initialization: ``(s,)``
    MODULAR_SHUFFLE = 52  #: its minibatches: ``(s,)``
    DIVERSITY = 55  #: the diversity exercise (index 0)
    # chapter 6
    CHAIN_TRUTH = 61  #: the true chains (index 0: the clean source, 1: the contaminant)
    TEXT_SAMPLES = 63  #: printed text samples (index 0)
    # chapter 7
    TWO_VIEWS = (
        7  #: the two-view data (0 latent, 1-2 views, 3 tasks, 20 digit halves), DCCA (10-13)
    )
    CCA_EXAMPLES = 71  #: the canonical-correlation examples (0: invariances, 1: CIP gaps)
    NULL_CORRELATIONS = 75  #: the null-correlation exercise (index 0)
    TRAIN_SEEDS = 79  #: seeds of the later training replicates (0: synthetic, 1: digits)
    # chapter 8
    WATERMARK = 8  #: the watermark chapter's draws: ``(*key, i)``
    BITWISE_INIT = 81  #: the bit-plane model's initialization: ``(s,)``
    BITWISE_SHUFFLE = 82  #: its minibatches: ``(s,)``
    BITWISE_MASK = 83  #: MADE's hidden degrees (shared by all replicates): ``(layer,)``
    BITWISE_METRIC = 84  #: evaluation samples: ``(t, s)``
    BITWISE_STATE = 85  #: the scikit-learn classifier's random state (index 0)
    BITWISE_DIGITS = 86  #: the digits split (index 0)
    # sweeps
    SWEEP = 90  #: a sweep's configurations: ``(position,)``


def rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of one spawn key: ``rng(seed, Stream.NAME, *index)`` (see :class:`Stream`).

    Different keys give independent streams. The library and the chapters always pass a
    :class:`Stream` and at least one index, so that no named stream is a replicate stream of
    :func:`seed_generators` (one-element keys). ``seed`` and every key must be non-negative
    integers; anything else raises ``ValueError`` naming it (``seed``, ``key[1]``, ...).
    """
    seed = check_seed(seed, "seed")
    for i, k in enumerate(key):
        check_seed(k, f"key[{i}]")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))


Rngs = np.random.Generator | Sequence[np.random.Generator]


def standard_normal(rngs: Rngs, shape: int | tuple[int, ...]) -> np.ndarray:
    """Standard normals per replicate: ``(S, *shape)`` for ``S`` generators, ``shape`` for one.

    Replicate ``s`` draws only from ``rngs[s]``, so its numbers do not depend on the batch.
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if isinstance(rngs, np.random.Generator):
        return rngs.standard_normal(shape)
    out = np.empty((len(rngs), *shape))
    for g, block in zip(rngs, out, strict=True):
        g.standard_normal(out=block)
    return out


def uniforms(rngs: Rngs, shape: int | tuple[int, ...]) -> np.ndarray:
    """Uniforms on ``[0, 1)`` per replicate: ``(S, *shape)``; one generator counts as ``S = 1``.

    Replicate ``s`` draws only from ``rngs[s]``, so its numbers do not depend on the batch.
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    gens = [rngs] if isinstance(rngs, np.random.Generator) else rngs
    out = np.empty((len(gens), *shape))
    for g, block in zip(gens, out, strict=True):
        g.random(out=block)
    return out


def torch_generator(generator: np.random.Generator, device: str = "cpu"):
    """A ``torch.Generator`` on ``device`` seeded from a numpy generator (per-seed learners).

    ``generator`` must be a numpy ``Generator`` (from :func:`rng` or :func:`seed_generators`),
    not a seed: an int raises ``ValueError`` pointing to ``rng(seed, key)``.
    """
    if not isinstance(generator, np.random.Generator):
        raise ValueError(
            f"generator must be a numpy Generator (e.g. rng(seed, key)), got {_describe(generator)}"
        )
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(generator.integers(0, 2**63 - 1)))
    return g


def linear_init(
    layers: Mapping[str, tuple[tuple[int, ...], int]], generators: Sequence[Any], device: str
) -> dict[str, Any]:
    """PyTorch's ``nn.Linear`` default initialisation, one network per generator.

    ``layers`` maps a parameter's name to ``(shape, fan_in)``; each parameter is
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, stacked over the replicates as ``(S, *shape)``.
    Each ``torch.Generator`` draws its parameters in the order of ``layers``, so a
    replicate's network does not depend on the others.
    """
    import torch

    params = {}
    for name, (shape, fan_in) in layers.items():
        u = torch.stack([torch.rand(shape, generator=g, device=device) for g in generators])
        params[name] = (2 * u - 1) * fan_in**-0.5
    return params


DEVICE_FORMS = (
    "'auto', 'cpu', 'cuda' or 'mps', the last three optionally with an index as in 'cuda:1'"
)


def check_device(device: Any) -> str:
    """Return ``device`` if it is a valid device name, else raise ``ValueError`` naming it.

    Valid: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``, and ``"cpu"``/``"cuda"``/``"mps"``
    with a device index, ``"cuda:1"`` (the index a non-negative integer in digits). Only
    the spelling is checked; torch is not imported (see :func:`resolve_device`).

    Raises
    ------
    ValueError
        ``unknown device ...; valid: ...`` for an unknown name (``"tpu"``, ``"gpu"``), and
        ``device must be ...`` for a bad index (``"cpu:abc"``, ``"cuda:-1"``, ``"auto:0"``).
    """
    base = device.split(":", 1)[0] if isinstance(device, str) else device
    check_choice(base, DEVICES, "device")
    if device != "auto" and not re.fullmatch(r"(cpu|cuda|mps)(:[0-9]+)?", device):
        raise ValueError(f"device must be {DEVICE_FORMS}, got {device!r}")
    return device


def resolve_device(device: str = "auto") -> str:
    """Map ``"auto"`` to ``"cuda"`` when torch sees a GPU, else ``"cpu"``.

    The name is checked by :func:`check_device` (an unknown name or a bad index raises
    ``ValueError`` listing the valid forms); ``"cuda"``/``"mps"`` are checked for
    availability, and ``"cuda:N"`` for a GPU with that index.
    """
    check_device(device)
    base = device.split(":", 1)[0]
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if base == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA GPU; use 'cpu'")
    if base == "cuda" and ":" in device:
        count = torch.cuda.device_count()
        if int(device.split(":", 1)[1]) >= count:
            raise ValueError(
                f"device {device!r} was requested but torch sees {count} CUDA GPU(s),"
                f" 'cuda:0'..'cuda:{count - 1}'"
            )
    if base == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was requested but torch sees no MPS device; use 'cpu'")
    return device


def set_threads(n: int | None = None) -> int:
    """Set the BLAS and torch thread counts deliberately; return the count used.

    ``n=None`` reads ``COLLAPSE_LIB_THREADS`` and falls back to 1: the book's
    learners work on small matrices, where one thread per notebook is fastest
    (measured) and leaves the other core to a second notebook. torch's pool is set
    only if torch is already imported (importing it costs seconds).
    """
    if n is None:
        n = int(os.environ.get("COLLAPSE_LIB_THREADS", "1"))
    n = check_positive_int(n, "n")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


class Presets:
    """The full-mode sizes of a chapter and the few that quick mode (or a GPU) changes.

    >>> sizes = Presets(full={"n": 20, "seeds": 4000}, quick={"seeds": 200})
    >>> sizes.select("quick")["seeds"], sizes.select("quick")["n"]
    (200, 20)

    ``quick`` overrides only the names that differ from ``full``, so quick mode runs the
    same code path as full mode with smaller numbers, and a reader sees at a glance what
    quick mode shrinks. A chapter whose full scale needs a GPU passes ``gpu``: overrides of
    some full-mode names, used when ``select("full", device)`` is given a CUDA device; on a
    CPU full mode keeps the sizes that fit a laptop.

    >>> sizes = Presets(full={"n": 200}, quick={"n": 20}, gpu={"n": 2000})
    >>> sizes.select("full", "cuda")["n"], sizes.select("full", "cpu")["n"]
    (2000, 200)
    """

    def __init__(
        self,
        full: Mapping[str, Any],
        quick: Mapping[str, Any] | None = None,
        gpu: Mapping[str, Any] | None = None,
    ) -> None:
        for name, overrides in (("quick", quick), ("gpu", gpu)):
            unknown = sorted(set(overrides or {}) - set(full))
            if unknown:
                raise ValueError(
                    f"{name} preset may only override full-mode names; unknown {unknown}"
                )
        self._modes = {"quick": {**full, **(quick or {})}, "full": dict(full)}
        self._gpu = {**full, **gpu} if gpu else None

    def select(self, mode: str, device: str = "cpu") -> Mapping[str, Any]:
        """The read-only preset for ``mode`` ("quick" or "full") on ``device``.

        Full mode on a ``"cuda"`` device uses the ``gpu`` overrides, when there are any.
        """
        check_choice(mode, MODES, "mode")
        if mode == "full" and self._gpu is not None and str(device).startswith("cuda"):
            return MappingProxyType(self._gpu)
        return MappingProxyType(self._modes[mode])
