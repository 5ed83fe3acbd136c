"""The run result: collapse_lib.results.Results."""

import numpy as np
import pandas as pd
import pytest

from collapse_lib.results import COLUMNS, Results, mean_se


def _two_conditions():
    a = Results.from_array({"m": np.arange(6.0).reshape(3, 2)}, seeds=[0, 1], condition="a")
    b = Results.from_array({"m": 10 + np.arange(6.0).reshape(3, 2)}, seeds=[0, 1], condition="b")
    return Results.concat([a, b])


def test_from_array_orders_and_labels_rows():
    v = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # (T = 3, S = 2)
    by_gen = Results.from_array({"m": v}, seeds=[4, 7], condition="c").frame
    assert list(by_gen.columns) == list(COLUMNS)
    assert by_gen["value"].tolist() == [1, 2, 3, 4, 5, 6]
    assert by_gen["seed"].tolist() == [4, 7, 4, 7, 4, 7]
    by_seed = Results.from_array({"m": v}, seeds=[4, 7], condition="c", order="seed").frame
    assert by_seed["value"].tolist() == [1, 3, 5, 2, 4, 6]
    assert by_seed["generation"].tolist() == [0, 1, 2, 0, 1, 2]
    labelled = Results.from_array({"m": v}, [4, 7], "c", generations=[0, 5, 10]).frame
    assert sorted(set(labelled["generation"])) == [0, 5, 10]


def test_from_array_rejects_bad_shapes_and_orders():
    with pytest.raises(ValueError, match=r"values\['m'\] must have shape \(generations, 2\)"):
        Results.from_array({"m": np.zeros((3, 3))}, seeds=[0, 1], condition="c")
    with pytest.raises(ValueError, match="order must be"):
        Results.from_array({"m": np.zeros((3, 2))}, [0, 1], "c", order="random")
    with pytest.raises(ValueError, match="generations has 2 labels for 3 rows"):
        Results.from_array({"m": np.zeros((3, 2))}, [0, 1], "c", generations=[0, 1])
    with pytest.raises(ValueError, match="at least one metric"):
        Results.from_array({}, [0, 1], "c")
    with pytest.raises(ValueError, match="lacks the tidy columns"):
        Results(pd.DataFrame({"value": [1.0]}))


def test_final_curve_and_per_seed_agree_with_numpy():
    r = _two_conditions()
    mean, se = r.final("m", "b")
    last = np.array([14.0, 15.0])
    assert mean == last.mean() and se == pytest.approx(last.std(ddof=1) / np.sqrt(2))
    assert r.final("m", "a", generation=0) == mean_se([0.0, 1.0])
    np.testing.assert_array_equal(r.curve("m", "a"), [0.5, 2.5, 4.5])
    assert r.per_seed("m", "a").shape == (3, 2)
    assert r.wide("m").shape == (6, 2)
    with pytest.raises(ValueError, match="condition must be given"):
        r.final("m")
    with pytest.raises(ValueError, match="unknown condition 'z'"):
        r.final("m", "z")
    with pytest.raises(ValueError, match="unknown metric 'q'"):
        r.curve("q", "a")


def test_band_is_mean_plus_minus_two_standard_errors():
    band = _two_conditions().band("m")
    row = band[(band.condition == "a") & (band.generation == 1)].iloc[0]
    se = np.std([2.0, 3.0], ddof=1) / np.sqrt(2)
    assert row.center == 2.5 and row.high - row.center == pytest.approx(2 * se)
    assert row.replicates == 2
    iqr = _two_conditions().band("m", "iqr")
    assert iqr.center.iloc[0] == 0.5
    with pytest.raises(ValueError, match="unknown band 'ci'"):
        _two_conditions().band("m", "ci")


def test_relabel_where_assign():
    r = _two_conditions()
    assert r.relabel({"a": "A"}).conditions == ["A", "b"]
    assert r.relabel("one").conditions == ["one"]
    assert len(r.where(condition="a", generation=0)) == 2
    assert len(r.where(generation=lambda g: g < 2, condition=lambda c: c != "b")) == 4
    assert r.assign(N=16).where(N=16).frame.shape[0] == len(r)
    with pytest.raises(ValueError, match="unknown column 'N'"):
        r.where(N=16)
    with pytest.raises(ValueError, match="at least one Results"):
        Results.concat([])


def test_mean_se():
    assert mean_se([1.0, 3.0]) == (2.0, 1.0)
    assert np.isnan(mean_se([1.0])[1])
    with pytest.raises(ValueError, match="at least one number"):
        mean_se([])
