import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from collapse_lib.plotting import plot_metric_vs_generation, set_style
from collapse_lib.results import Results


@pytest.fixture
def table():
    rows = [
        (t, s, c, "variance", (1.0 if c == "a" else 0.5) + 0.01 * s)
        for t in range(3)
        for s in range(4)
        for c in ("a", "b")
    ]
    return Results(
        pd.DataFrame(rows, columns=["generation", "seed", "condition", "metric", "value"])
    )


def test_bands(table):
    se = table.band("variance", "se")
    a0 = se[(se.condition == "a") & (se.generation == 0)].iloc[0]
    vals = 1.0 + 0.01 * np.arange(4)
    assert a0.center == pytest.approx(vals.mean())
    assert a0.high - a0.center == pytest.approx(2 * vals.std(ddof=1) / 2)
    iqr = table.band("variance", "iqr")
    assert iqr.center.iloc[0] == pytest.approx(np.median(vals))
    with pytest.raises(ValueError, match="unknown band"):
        table.band("variance", "ci")
    with pytest.raises(ValueError, match="unknown metric 'bias'"):
        table.band("bias")


def test_the_figure_takes_results_only(table):
    with pytest.raises(ValueError, match="results must be a Results"):
        plot_metric_vs_generation(table.frame, "variance")


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
    ax = plot_metric_vs_generation(table.where(condition="b"), "variance", colors=palette)
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "b"]
    assert mcolors.same_color(line.get_color(), "blue")
    assert all(float(t).is_integer() for t in ax.get_xticks())
    with pytest.raises(ValueError, match=r"no colour for the conditions \['b'\]"):
        plot_metric_vs_generation(table, "variance", colors={"a": "red"})
    plt.close("all")


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _tidy(replicates, conditions=("a", "b"), gens=4):
    rows = [
        (t, s, c, "m", 1.0 + i + 0.1 * s + 0.01 * t)
        for t in range(gens)
        for i, c in enumerate(conditions)
        for s in range(replicates.get(c, 3) if isinstance(replicates, dict) else replicates)
    ]
    return Results(
        pd.DataFrame(rows, columns=["generation", "seed", "condition", "metric", "value"])
    )


def test_one_replicate_gets_no_band_and_the_legend_says_so():
    set_style()
    ax = plot_metric_vs_generation(_tidy(1), "m")
    labels = _legend(ax)
    assert not any("2 SE" in x for x in labels), labels
    assert "simulation (1 replicate: no band)" in labels and {"a", "b"} <= set(labels)
    assert not ax.collections  # no band drawn
    # mixed: the key names the band, the single-replicate condition says it has none
    ax = plot_metric_vs_generation(_tidy({"a": 1, "b": 3}), "m", band="se")
    labels = _legend(ax)
    assert "simulation mean ± 2 SE" in labels
    assert "a (1 replicate: no band)" in labels and "b" in labels
    assert len(ax.collections) == 1  # b's band only
    ax = plot_metric_vs_generation(_tidy(1), "m", band="iqr")
    assert "simulation median, IQR" not in _legend(ax)
    assert _tidy(1).band("m")["replicates"].eq(1).all()
    plt.close("all")


def test_markers_when_more_than_four_conditions_or_given():
    from collapse_lib.plotting import MARKERS

    few = plot_metric_vs_generation(_tidy(3, conditions="abcd"), "m")
    assert all(ln.get_marker() in ("None", None, "") for ln in few.get_lines())
    many = plot_metric_vs_generation(_tidy(3, conditions="abcdef"), "m")
    drawn = {
        ln.get_label(): ln.get_marker() for ln in many.get_lines() if ln.get_label() in "abcdef"
    }
    assert len(drawn) == 6 and len(set(drawn.values())) == 6 and set(drawn.values()) <= set(MARKERS)
    given = plot_metric_vs_generation(_tidy(3), "m", markers={"a": "s"})
    (a,) = [ln for ln in given.get_lines() if ln.get_label() == "a"]
    (b,) = [ln for ln in given.get_lines() if ln.get_label() == "b"]
    assert a.get_marker() == "s" and b.get_marker() in ("None", None, "")
    # two colours a colour-blind reader confuses: markers even with two conditions
    close = plot_metric_vs_generation(_tidy(3), "m", colors={"a": "#de8f05", "b": "#d55e00"})
    assert {ln.get_marker() for ln in close.get_lines() if ln.get_label() in "ab"} - {"None"}
    plt.close("all")


def test_ciede2000_matches_sharma_wu_dalal_test_data():
    from collapse_lib.plotting import ciede2000, srgb_to_lab

    pairs = [  # Sharma, Wu & Dalal (2005), Table 1
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
        ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ]
    lab1, lab2, want = (np.array(x) for x in zip(*pairs, strict=True))
    np.testing.assert_allclose(ciede2000(lab1, lab2), want, atol=1e-4)
    np.testing.assert_allclose(srgb_to_lab("white"), [100, 0, 0], atol=1e-3)
    np.testing.assert_allclose(srgb_to_lab("#ff0000"), [53.24, 80.09, 67.20], atol=0.02)


def test_deuteranopia_simulation_keeps_greys_and_merges_red_and_green():
    from collapse_lib.plotting import color_difference, simulate_cvd

    np.testing.assert_allclose(simulate_cvd(np.array([0.5, 0.5, 0.5])), 0.5, atol=1e-3)
    assert color_difference("#d62728", "#2ca02c", vision=None) > 60  # matplotlib red vs green
    assert color_difference("#d62728", "#2ca02c") < 25  # much closer without green cones
    with pytest.raises(ValueError, match="unknown colour-vision deficiency"):
        simulate_cvd(np.array([0.5, 0.5, 0.5]), "achromat")


def test_palette_colours_in_one_figure_stay_apart_for_colour_blind_readers():
    from collapse_lib.plotting import (
        MAX_CONDITIONS_WITHOUT_MARKERS,
        MIN_DELTA_E,
        condition_colors,
        confusable_lines,
        min_color_difference,
    )

    # figures that tell conditions apart by colour alone use the palette's first four
    for n in range(2, MAX_CONDITIONS_WITHOUT_MARKERS + 1):
        colors = condition_colors([f"c{i}" for i in range(n)])
        assert min_color_difference(colors) >= MIN_DELTA_E, n
        assert min_color_difference(colors, vision=None) >= MIN_DELTA_E, n
    # and every standard figure, however many conditions, has no pair a reader confuses
    for n in range(2, 11):
        ax = plot_metric_vs_generation(_tidy(3, conditions=[f"c{i}" for i in range(n)]), "m")
        assert confusable_lines(ax) == [], n
        plt.close("all")
    # the check itself fails on a figure with the defect
    _, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], color="#de8f05", label="accumulate")
    ax.plot([0, 1], [1, 0], color="#d55e00", label="mixture")
    assert confusable_lines(ax) == [("accumulate", "mixture")]
    plt.close("all")
