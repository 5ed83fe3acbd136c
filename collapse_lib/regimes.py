"""Regimes: how real and synthetic data are mixed at each generation, and their schedules.

Indexing convention (used throughout the book, see ``book/notation.md``):
generation ``t = 0`` is fitted on ``n_0`` real samples only. At generation
``t >= 1`` the training data are built from the model of generation ``t - 1``:

* ``replace``     -- ``n_t`` fresh synthetic samples only (Shumailov et al. 2024);
* ``accumulate``  -- the real data of generation 0 plus *all* synthetic samples so far,
  ``n_t`` new ones per generation (Gerstgrasser et al. 2024);
* ``accumulate_subsample`` -- the pool of ``accumulate`` (the real data plus every synthetic
  sample so far, ``n_0 + n_1 + ... + n_t`` points, generation ``t``'s new block included;
  the model samples ``n_t`` new points per generation), of which generation ``t`` trains on
  ``n_t`` points drawn uniformly *without* replacement: a fixed training budget over a
  growing pool (Kazdan, Schaeffer et al. 2024, "Collapse or Thrive?", their third regime).
  Generation 0 trains on the ``n_0`` real points, as in every regime;
* ``mixture``     -- ``round(alpha_t * n_t)`` fresh real samples plus the rest synthetic;
* ``real_only``   -- ``n_t`` fresh real samples (the no-feedback baseline, alpha_t = 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collapse_lib.runtime import check_choice, check_fraction, check_positive_int

Schedule = Callable[[int], float]

REGIMES: tuple[str, ...] = ("replace", "accumulate", "accumulate_subsample", "mixture", "real_only")


def constant(alpha: float) -> Schedule:
    """The schedule ``alpha_t = alpha`` for every generation."""
    alpha = check_fraction(alpha, "alpha")
    return lambda t: alpha


def zero() -> Schedule:
    """The schedule ``alpha_t = 0``: no fresh real data after generation 0."""
    return constant(0.0)


def polynomial_decay(c: float, beta: float) -> Schedule:
    """``alpha_t = clip(c * t**(-beta), 0, 1)`` for ``t >= 1`` (``c >= 0``, ``beta >= 0``)."""
    if not c >= 0:
        raise ValueError(f"c must be >= 0, got {c}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    return lambda t: min(1.0, max(0.0, c * max(t, 1) ** (-beta)))


def sample_sizes(n0: int, gamma: float = 0.0) -> Callable[[int], int]:
    """Sample-size schedule ``n_t = round(n0 * max(t, 1)**gamma)``; ``gamma = 0`` keeps ``n0``.

    Generations 0 and 1 both use ``n0``, so that a growing schedule starts from the
    real sample size.
    """
    n0 = check_positive_int(n0, "n0")
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    return lambda t: max(1, round(n0 * max(t, 1) ** gamma))


@dataclass(frozen=True)
class Regime:
    """A way of building generation ``t``'s training data.

    Attributes
    ----------
    name : str
        One of :data:`REGIMES`.
    real_fraction : Schedule
        ``alpha_t``, the fraction of generation ``t``'s *new* data that is fresh real data.
    pooled : bool
        If true, new data are added to everything seen so far (accumulate);
        otherwise generation ``t`` trains on its new data alone.
    subsample : bool
        If true (``accumulate_subsample``; requires ``pooled``), the loop keeps the raw pool
        and generation ``t >= 1`` trains on as many points as the generation added
        (``n_t``), drawn uniformly without replacement from the whole pool, instead of on
        the whole pool.
    """

    name: str
    real_fraction: Schedule
    pooled: bool
    subsample: bool = False

    def __post_init__(self) -> None:
        if self.subsample and not self.pooled:
            raise ValueError("subsample=True draws from the pool: it needs pooled=True")

    def alpha(self, t: int) -> float:
        """``alpha_t``, validated to lie in [0, 1]."""
        return check_fraction(self.real_fraction(t), f"alpha (at generation {t})")


def regime(name: str, alpha: float | Schedule | None = None) -> Regime:
    """Build a regime by name: one of :data:`REGIMES`.

    ``alpha`` (a number in [0, 1] or a schedule ``t -> alpha_t``) is required for
    ``"mixture"`` and refused for the others.
    """
    check_choice(name, REGIMES, "regime")
    if name != "mixture":
        if alpha is not None:
            raise ValueError(f"alpha is only used by the 'mixture' regime, not {name!r}")
        if name == "accumulate_subsample":
            return Regime(name, constant(0.0), pooled=True, subsample=True)
        return Regime(name, constant(1.0 if name == "real_only" else 0.0), name == "accumulate")
    if alpha is None:
        raise ValueError("the 'mixture' regime needs alpha (a number in [0, 1] or a schedule)")
    schedule = alpha if callable(alpha) else constant(alpha)
    return Regime("mixture", schedule, pooled=False)
