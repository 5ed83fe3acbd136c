"""The book's house style and its standard figure: a metric against the generation.

Simulation is drawn as a solid line with an error band over seeds; closed-form
theory as a dashed line in the same colour; a few single-seed trajectories can be
added where the mean hides how individual runs behave. A condition run with a single
replicate has no band, and its legend entry says so.

Colour-blind readers: :func:`color_difference` measures how far apart two colours look
(CIEDE2000) as a reader with deuteranopia sees them (Machado et al. 2009's simulation);
:func:`min_color_difference` is the smallest such difference in a set of colours, the
number the plotting tests bound for the colours one figure uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from collapse_lib.results import Results

#: seaborn's "colorblind" palette, reordered so that any two of the first four stay apart
#: for a reader with deuteranopia (CIEDE2000 >= :data:`MIN_DELTA_E`; in seaborn's order the
#: orange and the vermilion, its 2nd and 4th colours, are 9 apart). Yellow and light pink,
#: faint on white, come last.
PALETTE = (
    "#0173b2",  # blue
    "#de8f05",  # orange
    "#029e73",  # green
    "#cc78bc",  # purple
    "#d55e00",  # vermilion
    "#ca9161",  # brown
    "#56b4e9",  # light blue
    "#949494",  # grey
    "#fbafe4",  # light pink
    "#ece133",  # yellow
)
#: The smallest CIEDE2000 difference, under a deuteranopia simulation, between two colours
#: that tell two conditions apart by colour alone.
MIN_DELTA_E = 20.0
#: Figures with more than this many conditions give each condition a marker as well as a
#: colour (so do figures with two colours closer than :data:`MIN_DELTA_E`).
MAX_CONDITIONS_WITHOUT_MARKERS = 4
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")

# Machado, Oliveira & Fernandes (2009), "A physiologically-based model for simulation of
# color vision deficiency", severity 1.0; applied to linear RGB.
_CVD_MATRICES = {
    "deuteranopia": np.array(
        [
            [0.367322, 0.860646, -0.227968],
            [0.280085, 0.672501, 0.047413],
            [-0.011820, 0.042940, 0.968881],
        ]
    ),
    "protanopia": np.array(
        [
            [0.152286, 1.052583, -0.204868],
            [0.114503, 0.786281, 0.099216],
            [-0.003882, -0.048116, 1.051998],
        ]
    ),
    "tritanopia": np.array(
        [
            [1.255528, -0.076749, -0.178779],
            [-0.078411, 0.930809, 0.147602],
            [0.004733, 0.691367, 0.303900],
        ]
    ),
}
# linear sRGB -> CIE XYZ (D65), and the D65 white point
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def set_style() -> None:
    """Seaborn theme, colour-blind palette and font sizes shared by every chapter."""
    sns.set_theme(
        context="notebook",
        style="whitegrid",
        palette=list(PALETTE),
        rc={
            "figure.figsize": (7.0, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "legend.frameon": False,
            "lines.linewidth": 2.0,
        },
    )


def condition_colors(conditions: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A stable colour per condition (from :data:`PALETTE`), in order of first appearance."""
    palette = sns.color_palette(list(PALETTE))
    return {c: palette[i % len(palette)] for i, c in enumerate(conditions)}


def _srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=float)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def simulate_cvd(colors: Any, kind: str = "deuteranopia") -> np.ndarray:
    """sRGB colours (array ``(..., 3)`` in [0, 1], or matplotlib colour specs) as a reader
    with the dichromacy ``kind`` sees them (Machado et al. 2009, severity 1)."""
    if kind not in _CVD_MATRICES:
        raise ValueError(
            f"unknown colour-vision deficiency {kind!r}; valid: {sorted(_CVD_MATRICES)}"
        )
    rgb = _as_rgb(colors)
    return _linear_to_srgb(_srgb_to_linear(rgb) @ _CVD_MATRICES[kind].T)


def _as_rgb(colors: Any) -> np.ndarray:
    import matplotlib.colors as mcolors

    if isinstance(colors, np.ndarray) and colors.dtype.kind == "f" and colors.shape[-1:] == (3,):
        return colors
    if isinstance(colors, str) or (
        isinstance(colors, tuple)
        and len(colors) in (3, 4)
        and all(isinstance(v, (int, float)) for v in colors)
    ):
        return np.array(mcolors.to_rgb(colors))
    return np.array([mcolors.to_rgb(c) for c in colors])


def srgb_to_lab(colors: Any) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB colours, shape ``(..., 3)``."""
    xyz = _srgb_to_linear(_as_rgb(colors)) @ _RGB_TO_XYZ.T / _WHITE_D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """The CIEDE2000 colour difference of L*a*b* colours (Sharma, Wu & Dalal 2005)."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=float), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=float), -1, 0)
    C_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    G = 0.5 * (1 - np.sqrt(C_bar**7 / (C_bar**7 + 25.0**7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dLp, dCp = L2 - L1, C2p - C1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(C1p * C2p == 0, 0.0, dh)
    dHp = 2 * np.sqrt(C1p * C2p) * np.sin(np.radians(dh / 2))
    Lbp, Cbp = (L1 + L2) / 2, (C1p + C2p) / 2
    hsum = h1p + h2p
    hbp = np.where(
        np.abs(h1p - h2p) > 180, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2), hsum / 2
    )
    hbp = np.where(C1p * C2p == 0, hsum, hbp)
    T = (
        1
        - 0.17 * np.cos(np.radians(hbp - 30))
        + 0.24 * np.cos(np.radians(2 * hbp))
        + 0.32 * np.cos(np.radians(3 * hbp + 6))
        - 0.20 * np.cos(np.radians(4 * hbp - 63))
    )
    d_theta = 30 * np.exp(-(((hbp - 275) / 25) ** 2))
    Rc = 2 * np.sqrt(Cbp**7 / (Cbp**7 + 25.0**7))
    Sl = 1 + 0.015 * (Lbp - 50) ** 2 / np.sqrt(20 + (Lbp - 50) ** 2)
    Sc, Sh = 1 + 0.045 * Cbp, 1 + 0.015 * Cbp * T
    Rt = -np.sin(np.radians(2 * d_theta)) * Rc
    return np.sqrt(
        (dLp / Sl) ** 2 + (dCp / Sc) ** 2 + (dHp / Sh) ** 2 + Rt * (dCp / Sc) * (dHp / Sh)
    )


def color_difference(c1: Any, c2: Any, vision: str | None = "deuteranopia") -> float:
    """CIEDE2000 difference of two colours as seen with ``vision`` (``None``: normal vision)."""
    rgb = _as_rgb([c1, c2])
    if vision is not None:
        rgb = simulate_cvd(rgb, vision)
    lab = srgb_to_lab(rgb)
    return float(ciede2000(lab[0], lab[1]))


def min_color_difference(colors: Any, vision: str | None = "deuteranopia") -> float:
    """The smallest pairwise :func:`color_difference` among ``colors`` (``inf`` below 2)."""
    colors = list(colors.values()) if isinstance(colors, Mapping) else list(colors)
    diffs = [color_difference(a, b, vision) for i, a in enumerate(colors) for b in colors[i + 1 :]]
    return min(diffs, default=float("inf"))


def confusable_lines(ax: plt.Axes, min_delta_e: float = MIN_DELTA_E) -> list[tuple[str, str]]:
    """Pairs of legend entries of ``ax`` that a reader with deuteranopia cannot tell apart:
    colours closer than ``min_delta_e`` and the same marker and line style."""
    handles, labels = ax.get_legend_handles_labels()
    lines = [
        (label, h)
        for h, label in zip(handles, labels, strict=True)
        if hasattr(h, "get_marker") and h.get_xydata().size  # skip empty key entries
    ]
    out = []
    for i, (la, a) in enumerate(lines):
        for lb, b in lines[i + 1 :]:
            same_style = (a.get_marker(), a.get_linestyle()) == (b.get_marker(), b.get_linestyle())
            if same_style and color_difference(a.get_color(), b.get_color()) < min_delta_e:
                out.append((la, lb))
    return out


def plot_metric_vs_generation(
    results: Results,
    metric: str,
    *,
    theory: Mapping[str, np.ndarray] | None = None,
    band: str = "se",
    trajectories: int = 0,
    ax: plt.Axes | None = None,
    ylabel: str | None = None,
    logy: bool = False,
    title: str | None = None,
    colors: Mapping[str, Any] | None = None,
    markers: Mapping[str, str | None] | None = None,
) -> plt.Axes:
    """The standard figure: ``metric`` against generation, one colour per condition.

    Parameters
    ----------
    results
        What :func:`collapse_lib.loop.run` / :func:`~collapse_lib.loop.compare` return.
    theory
        ``{condition: values at t = 0, 1, ...}`` drawn dashed in the condition's colour;
        a key that is not a condition is drawn in black.
    band
        See :meth:`collapse_lib.results.Results.band`.
    trajectories
        Number of single seeds to draw as thin lines per condition.
    colors
        ``{condition: colour}``, to keep a condition's colour across panels that show
        different subsets of conditions; by default :func:`condition_colors` of the
        conditions in ``results``.
    markers
        ``{condition: matplotlib marker}`` (``None``: no marker), drawn on the condition's
        line and in its legend entry. A figure with more than
        :data:`MAX_CONDITIONS_WITHOUT_MARKERS` conditions, or with two colours that a
        colour-blind reader confuses, gets markers on every line by default (a condition
        missing from ``markers`` takes one of :data:`MARKERS`, chosen by its place in
        ``colors``, so it keeps its marker across panels).

    A condition with a single replicate has no band and its legend entry says
    "(1 replicate: no band)"; when no condition has more than one, the legend's key says
    it once ("simulation (1 replicate: no band)") instead of naming a band.
    """
    if trajectories < 0:
        raise ValueError(f"trajectories must be >= 0, got {trajectories}")
    if ax is None:
        _, ax = plt.subplots()
    if not isinstance(results, Results):
        raise ValueError(
            f"results must be a Results (from run or compare), got {type(results).__name__}"
        )
    stats = results.band(metric, band)
    df = results.frame
    conditions = list(dict.fromkeys(stats["condition"]))
    colors = dict(colors) if colors is not None else condition_colors(conditions)
    missing = [c for c in conditions if c not in colors]
    if missing:
        raise ValueError(f"colors has no colour for the conditions {missing}")
    order = list(colors)
    auto = (
        len(conditions) > MAX_CONDITIONS_WITHOUT_MARKERS
        or min_color_difference([colors[c] for c in conditions]) < MIN_DELTA_E
    )
    markers = dict(markers or {})
    single = {
        c: band != "none" and int(stats.loc[stats["condition"] == c, "replicates"].max()) < 2
        for c in conditions
    }
    all_single = all(single.values())
    for c in conditions:
        s = stats[stats["condition"] == c]
        marker = markers.get(c, MARKERS[order.index(c) % len(MARKERS)] if auto else None)
        step = max(1, len(s) // 8)
        ax.plot(
            s["generation"],
            s["center"],
            color=colors[c],
            label=f"{c} (1 replicate: no band)" if single[c] and not all_single else c,
            marker=marker,
            markevery=(order.index(c) % step, step),
            markersize=5,
        )
        if band != "none" and not single[c]:
            ax.fill_between(s["generation"], s["low"], s["high"], color=colors[c], alpha=0.25, lw=0)
        if trajectories:
            sub = df[(df["metric"] == metric) & (df["condition"] == c)]
            for seed in sub["seed"].unique()[:trajectories]:
                one = sub[sub["seed"] == seed]
                ax.plot(one["generation"], one["value"], color=colors[c], lw=0.6, alpha=0.5)
    for key, values in (theory or {}).items():
        values = np.asarray(values)
        color = colors.get(key, "black")
        label = None if key in colors else key
        ax.plot(np.arange(len(values)), values, ls="--", lw=1.6, color=color, label=label)
    # one legend entry per condition, then what line styles and bands mean
    center = {"se": "mean", "iqr": "median", "none": "mean"}[band]
    key = {
        "se": f"simulation {center} ± 2 SE",
        "iqr": "simulation median, IQR",
        "none": "simulation mean",
    }
    if all_single:  # no band anywhere: the key says why instead of naming one
        key[band] = "simulation (1 replicate: no band)"
    ax.plot([], [], color="grey", label=key[band])
    if theory:
        ax.plot([], [], color="grey", ls="--", lw=1.6, label="theory")
    if trajectories:
        ax.plot([], [], color="grey", lw=0.6, label=f"{trajectories} single seeds")
    ax.set_xlabel("generation $t$")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # generations are whole numbers
    ax.set_ylabel(ylabel or metric)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    return ax
