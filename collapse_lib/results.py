"""The result of a run: one tidy table and the few questions every chapter asks of it.

:func:`collapse_lib.loop.run`, :func:`~collapse_lib.loop.compare` and the paper modules'
simulators return a :class:`Results`: a thin, immutable wrapper around a tidy
:class:`pandas.DataFrame` with one row per ``(condition, generation, seed, metric)`` and the
columns ``generation``, ``seed``, ``condition``, ``metric``, ``value`` (a sweep may add columns
of its own, e.g. ``N``). The frame is one attribute away (``results.frame``) for anything the
methods below do not cover.

The methods answer the questions a chapter asks again and again:

* ``final(metric, condition) -> (mean, se)``: the last generation's mean over seeds and its
  standard error ``sd / sqrt(S)`` (``ddof = 1``);
* ``curve(metric, condition)``: the mean over seeds at every generation;
* ``per_seed(metric, condition)``: the ``(generation x seed)`` table, for paired comparisons;
* ``wide(metric)``: that table for every condition, rows ``(condition, generation)``;
* ``band(metric, kind)``: the centre line and band that :mod:`collapse_lib.plotting` draws;
* ``relabel``, ``where``, ``concat`` and ``from_array`` to build and combine results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ("generation", "seed", "condition", "metric", "value")
BANDS = ("se", "iqr", "none")


def mean_se(values: Any) -> tuple[float, float]:
    """``(mean, sd / sqrt(n))`` of a 1-D sample (``ddof = 1``); the SE is NaN for one value."""
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        raise ValueError("values must hold at least one number")
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return float(v.mean()), float(se)


@dataclass(frozen=True)
class Results:
    """A tidy table of one or more runs (see the module docstring for its columns)."""

    frame: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"frame lacks the tidy columns {missing}; it has {list(self.frame)}")

    # ---- building ------------------------------------------------------------------------
    @classmethod
    def from_array(
        cls,
        values: Mapping[str, Any],
        seeds: Sequence[int],
        condition: str,
        *,
        generations: Sequence[int] | None = None,
        order: str = "generation",
    ) -> Results:
        """``{metric: array (T, S)}`` -> tidy results, one row per (generation, seed, metric).

        ``order="generation"`` lists all seeds of generation 0 first (the loop's order);
        ``order="seed"`` lists all generations of seed 0 first. ``generations`` labels the
        rows (default ``0 .. T-1``).
        """
        if order not in ("generation", "seed"):
            raise ValueError(f"order must be 'generation' or 'seed', got {order!r}")
        seeds = np.asarray(seeds)
        frames = []
        for name, v in values.items():
            v = np.asarray(v)
            if v.ndim != 2 or v.shape[1] != len(seeds):
                raise ValueError(
                    f"values[{name!r}] must have shape (generations, {len(seeds)}), got {v.shape}"
                )
            T, S = v.shape
            gens = np.arange(T) if generations is None else np.asarray(generations)
            if len(gens) != T:
                raise ValueError(f"generations has {len(gens)} labels for {T} rows of {name!r}")
            if order == "generation":
                g, s, val = np.repeat(gens, S), np.tile(seeds, T), v.reshape(-1)
            else:
                g, s, val = np.tile(gens, S), np.repeat(seeds, T), v.T.reshape(-1)
            frames.append(
                pd.DataFrame(
                    {
                        "generation": g,
                        "seed": s,
                        "condition": condition,
                        "metric": name,
                        "value": val,
                    }
                )
            )
        if not frames:
            raise ValueError("values must name at least one metric")
        return cls(pd.concat(frames, ignore_index=True))

    @classmethod
    def concat(cls, parts: Iterable[Results]) -> Results:
        """Stack several results (their conditions should differ) into one."""
        parts = list(parts)
        if not parts:
            raise ValueError("concat needs at least one Results")
        return cls(pd.concat([p.frame for p in parts], ignore_index=True))

    def relabel(self, condition: str | Mapping[str, str]) -> Results:
        """Rename conditions: one new name for all rows, or ``{old: new}``."""
        f = self.frame.copy()
        if isinstance(condition, str):
            f["condition"] = condition
        else:
            f["condition"] = f["condition"].map(lambda c: condition.get(c, c))
        return Results(f)

    def assign(self, **columns: Any) -> Results:
        """Add or overwrite columns (``pandas.DataFrame.assign``), e.g. a sweep's ``N``."""
        return Results(self.frame.assign(**columns))

    def where(self, **tests: Any) -> Results:
        """The rows that pass every test: a value to equal, or a predicate of the column.

        ``where(N=16, metric="fd")``; ``where(generation=lambda g: g < 5)``.
        """
        mask = np.ones(len(self.frame), dtype=bool)
        for col, test in tests.items():
            if col not in self.frame.columns:
                raise ValueError(f"unknown column {col!r}; valid: {list(self.frame.columns)}")
            column = self.frame[col]
            mask &= np.asarray(test(column) if callable(test) else column == test, dtype=bool)
        return Results(self.frame[mask])

    # ---- reading -------------------------------------------------------------------------
    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(self.frame["metric"]))

    @property
    def conditions(self) -> list[str]:
        return list(dict.fromkeys(self.frame["condition"]))

    def _metric(self, metric: str) -> pd.DataFrame:
        """The rows of one metric; ``ValueError`` naming the valid ones if there are none."""
        sub = self.frame[self.frame["metric"] == metric]
        if sub.empty:
            raise ValueError(f"unknown metric {metric!r}; valid: {self.metrics}")
        return sub

    def _rows(self, metric: str, condition: str | None) -> pd.DataFrame:
        sub = self._metric(metric)
        if condition is None:
            if sub["condition"].nunique() > 1:
                raise ValueError(f"condition must be given: the results hold {self.conditions}")
            return sub
        out = sub[sub["condition"] == condition]
        if out.empty:
            raise ValueError(f"unknown condition {condition!r}; valid: {self.conditions}")
        return out

    def per_seed(self, metric: str, condition: str | None = None) -> pd.DataFrame:
        """The ``(generation x seed)`` table of one metric in one condition."""
        rows = self._rows(metric, condition)
        return rows.pivot_table(index="generation", columns="seed", values="value")

    def wide(self, metric: str) -> pd.DataFrame:
        """One metric as a ``(generation x seed)`` table per condition.

        Rows are ``(condition, generation)``, columns the seeds.
        """
        return self._metric(metric).pivot_table(
            index=["condition", "generation"], columns="seed", values="value"
        )

    def curve(self, metric: str, condition: str | None = None) -> np.ndarray:
        """The mean over seeds of ``metric`` at generations ``0, 1, ...``."""
        return self.per_seed(metric, condition).mean(axis=1).to_numpy()

    def final(
        self, metric: str, condition: str | None = None, generation: int | None = None
    ) -> tuple[float, float]:
        """``(mean, se)`` over seeds at the last generation (or at ``generation``)."""
        table = self.per_seed(metric, condition)
        row = table.iloc[-1] if generation is None else table.loc[generation]
        return mean_se(row.to_numpy())

    def band(self, metric: str, kind: str = "se") -> pd.DataFrame:
        """Per ``(condition, generation)``: the centre line and band of ``metric`` over seeds.

        ``kind="se"``: mean +- 2 standard errors of the mean (the Monte Carlo uncertainty of
        the mean curve); ``kind="iqr"``: median with the 25-75 % quantiles of the seeds (for
        heavy-tailed quantities); ``kind="none"``: the mean alone. The column ``replicates``
        counts the seeds behind each point (with one, there is no band).
        """
        if kind not in BANDS:
            raise ValueError(f"unknown band {kind!r}; valid: {', '.join(map(repr, BANDS))}")
        g = self._metric(metric).groupby(["condition", "generation"], sort=False)["value"]
        if kind == "iqr":
            out = pd.DataFrame(
                {"center": g.median(), "low": g.quantile(0.25), "high": g.quantile(0.75)}
            )
        else:
            mean, se = g.mean(), g.std(ddof=1) / np.sqrt(g.count())
            width = 2 * se.fillna(0.0) if kind == "se" else 0.0
            out = pd.DataFrame({"center": mean, "low": mean - width, "high": mean + width})
        out["replicates"] = g.count()
        return out.reset_index()

    def __len__(self) -> int:
        return len(self.frame)
