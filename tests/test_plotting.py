import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from collapse_lib.plotting import plot_metric_vs_generation, set_style, summarize


@pytest.fixture
def table():
    rows = [
        (t, s, c, "variance", (1.0 if c == "a" else 0.5) + 0.01 * s)
        for t in range(3)
        for s in range(4)
        for c in ("a", "b")
    ]
    return pd.DataFrame(rows, columns=["generation", "seed", "condition", "metric", "value"])


def test_summarize_bands(table):
    se = summarize(table, "variance", "se")
    a0 = se[(se.condition == "a") & (se.generation == 0)].iloc[0]
    vals = 1.0 + 0.01 * np.arange(4)
    assert a0.center == pytest.approx(vals.mean())
    assert a0.high - a0.center == pytest.approx(2 * vals.std(ddof=1) / 2)
    iqr = summarize(table, "variance", "iqr")
    assert iqr.center.iloc[0] == pytest.approx(np.median(vals))
    with pytest.raises(ValueError, match="unknown band"):
        summarize(table, "variance", "ci")
    with pytest.raises(ValueError, match="unknown metric 'bias'"):
        summarize(table, "bias")


def test_standard_figure_has_labels_legend_and_theory(table):
    set_style()
    ax = plot_metric_vs_generation(table, "variance", theory={"a": np.ones(3)}, trajectories=2)
    assert ax.get_xlabel() == "generation $t$" and ax.get_ylabel() == "variance"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"a", "b", "theory", "2 single seeds"} <= set(labels)
    assert any(line.get_linestyle() == "--" for line in ax.get_lines())
    plt.close("all")


def test_colors_stay_with_their_condition_and_ticks_are_whole_generations(table):
    import matplotlib.colors as mcolors

    palette = {"a": "red", "b": "blue"}
    ax = plot_metric_vs_generation(table[table.condition == "b"], "variance", colors=palette)
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "b"]
    assert mcolors.same_color(line.get_color(), "blue")
    assert all(float(t).is_integer() for t in ax.get_xticks())
    with pytest.raises(ValueError, match=r"no colour for the conditions \['b'\]"):
        plot_metric_vs_generation(table, "variance", colors={"a": "red"})
    plt.close("all")
