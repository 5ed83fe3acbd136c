"""The book's house style and its standard figure: a metric against the generation.

Simulation is drawn as a solid line with an error band over seeds; closed-form
theory as a dashed line in the same colour; a few single-seed trajectories can be
added where the mean hides how individual runs behave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

BANDS = ("se", "iqr", "none")


def set_style() -> None:
    """Seaborn theme, colour-blind palette and font sizes shared by every chapter."""
    sns.set_theme(
        context="notebook",
        style="whitegrid",
        palette="colorblind",
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
    """A stable colour per condition, in order of first appearance."""
    palette = sns.color_palette("colorblind", max(len(conditions), 1))
    return {c: palette[i % len(palette)] for i, c in enumerate(conditions)}


def summarize(df: pd.DataFrame, metric: str, band: str = "se") -> pd.DataFrame:
    """Per (condition, generation): the centre line and band of ``metric`` over seeds.

    ``band="se"``: mean +- 2 standard errors of the mean (the Monte Carlo uncertainty
    of the mean curve); ``band="iqr"``: median with the 25-75 % quantiles of the seeds
    (for heavy-tailed quantities); ``band="none"``: the mean alone.
    """
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r}; valid: {', '.join(map(repr, BANDS))}")
    sub = df[df["metric"] == metric]
    if sub.empty:
        raise ValueError(f"unknown metric {metric!r}; valid: {sorted(df['metric'].unique())}")
    g = sub.groupby(["condition", "generation"], sort=False)["value"]
    if band == "iqr":
        out = pd.DataFrame(
            {"center": g.median(), "low": g.quantile(0.25), "high": g.quantile(0.75)}
        )
    else:
        mean, se = g.mean(), g.std(ddof=1) / np.sqrt(g.count())
        width = 2 * se.fillna(0.0) if band == "se" else 0.0
        out = pd.DataFrame({"center": mean, "low": mean - width, "high": mean + width})
    return out.reset_index()


def plot_metric_vs_generation(
    df: pd.DataFrame,
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
) -> plt.Axes:
    """The standard figure: ``metric`` against generation, one colour per condition.

    Parameters
    ----------
    df
        The tidy table of :func:`collapse_lib.loop.run` / :func:`~collapse_lib.loop.compare`.
    theory
        ``{condition: values at t = 0, 1, ...}`` drawn dashed in the condition's colour;
        a key that is not a condition is drawn in black.
    band
        See :func:`summarize`.
    trajectories
        Number of single seeds to draw as thin lines per condition.
    colors
        ``{condition: colour}``, to keep a condition's colour across panels that show
        different subsets of conditions; by default :func:`condition_colors` of the
        conditions in ``df``.
    """
    if trajectories < 0:
        raise ValueError(f"trajectories must be >= 0, got {trajectories}")
    if ax is None:
        _, ax = plt.subplots()
    stats = summarize(df, metric, band)
    conditions = list(dict.fromkeys(stats["condition"]))
    colors = dict(colors) if colors is not None else condition_colors(conditions)
    missing = [c for c in conditions if c not in colors]
    if missing:
        raise ValueError(f"colors has no colour for the conditions {missing}")
    for c in conditions:
        s = stats[stats["condition"] == c]
        ax.plot(s["generation"], s["center"], color=colors[c], label=c)
        if band != "none":
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
