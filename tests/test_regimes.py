import pytest

from collapse_lib.regimes import (
    REGIMES,
    Regime,
    constant,
    polynomial_decay,
    regime,
    sample_sizes,
    zero,
)


def test_regimes_by_name():
    assert regime("replace").alpha(5) == 0 and not regime("replace").pooled
    assert regime("accumulate").pooled and regime("accumulate").alpha(3) == 0
    assert regime("real_only").alpha(7) == 1
    assert regime("mixture", alpha=0.25).alpha(9) == 0.25
    sub = regime("accumulate_subsample")
    assert sub.pooled and sub.subsample and sub.alpha(4) == 0
    assert not any(regime(name).subsample for name in ("replace", "accumulate", "real_only"))
    assert not regime("mixture", alpha=0.5).subsample


def test_subsample_needs_a_pool():
    with pytest.raises(ValueError, match="needs pooled=True"):
        Regime("odd", constant(0.0), pooled=False, subsample=True)
    with pytest.raises(ValueError, match="only used by the 'mixture' regime"):
        regime("accumulate_subsample", alpha=0.5)


def test_unknown_regime_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown regime 'recycle'; valid: 'replace'"):
        regime("recycle")
    assert set(REGIMES) == {"replace", "accumulate", "accumulate_subsample", "mixture", "real_only"}


def test_mixture_needs_alpha_and_others_refuse_it():
    with pytest.raises(ValueError, match="needs alpha"):
        regime("mixture")
    with pytest.raises(ValueError, match="only used by the 'mixture' regime"):
        regime("replace", alpha=0.5)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "a lot"])
def test_alpha_outside_unit_interval(alpha):
    with pytest.raises(ValueError, match="alpha"):
        regime("mixture", alpha=alpha)


def test_schedules():
    assert constant(0.3)(10) == 0.3
    assert zero()(4) == 0
    decay = polynomial_decay(2.0, 1.0)
    assert decay(1) == 1.0  # clipped
    assert decay(4) == 0.5
    assert decay(0) == 1.0  # t = 0 treated as t = 1
    with pytest.raises(ValueError, match="beta"):
        polynomial_decay(1.0, -1.0)
    with pytest.raises(ValueError, match="c must be"):
        polynomial_decay(-1.0, 1.0)


def test_sample_sizes():
    grow = sample_sizes(10, 1.0)
    assert [grow(t) for t in range(4)] == [10, 10, 20, 30]
    assert sample_sizes(7)(100) == 7
    with pytest.raises(ValueError, match="n0 must be >= 1"):
        sample_sizes(0)
    with pytest.raises(ValueError, match="gamma"):
        sample_sizes(5, -0.5)
