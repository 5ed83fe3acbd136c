import numpy as np
import pytest

from collapse_lib.gaussian import (
    Gaussian,
    GaussianMLE,
    accumulate_variance_limit,
    accumulate_variance_mean,
    mixture_moments,
    replace_log_variance,
    replace_variance_mean,
)


def test_mle_and_chan_merge_equal_direct_fit():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 7)), rng.normal(2.0, 3.0, size=(3, 11))
    mle = GaussianMLE()
    pooled = mle.fit_summary(mle.merge(mle.summarize(a), mle.summarize(b)))
    both = np.concatenate([a, b], axis=1)
    np.testing.assert_allclose(pooled.mean, both.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(pooled.var, both.var(axis=1), rtol=1e-12)
    np.testing.assert_allclose(GaussianMLE(ddof=1).fit(both).var, both.var(axis=1, ddof=1))


def test_closed_forms_known_values():
    np.testing.assert_allclose(replace_variance_mean(3, 10), [0.9, 0.81, 0.729])
    # spec table (iterative MLE, sigma = 1, T = 100 rounds = our generation 99)
    assert accumulate_variance_mean(100, 20)[-1] == pytest.approx(0.92022, abs=1e-5)
    assert accumulate_variance_mean(100, 50)[-1] == pytest.approx(0.96762, abs=1e-5)
    assert accumulate_variance_mean(100000, 50)[-1] == pytest.approx(
        accumulate_variance_limit(50), abs=1e-6
    )
    mean, sd = replace_log_variance(100, 50)
    assert mean[-1] == pytest.approx(-4.0750, abs=1e-4)
    assert sd[-1] == pytest.approx(2.0411, abs=1e-4)


def test_mixture_recursion_limits():
    v, e2 = mixture_moments(50, 20, 0.0)
    np.testing.assert_allclose(v, replace_variance_mean(50, 20), rtol=1e-12)
    np.testing.assert_allclose(e2, 1 - replace_variance_mean(50, 20), rtol=1e-12)
    v1, e1 = mixture_moments(5, 20, 1.0)
    np.testing.assert_allclose(v1, 0.95)  # fresh real data each generation
    np.testing.assert_allclose(e1, 0.05)
    with pytest.raises(ValueError, match="alpha"):
        mixture_moments(5, 20, 1.2)


def test_gaussian_density_and_validation():
    g = Gaussian(np.array([0.0, 1.0]), np.array([1.0, 4.0]))
    x = np.linspace(-30, 30, 60001)
    np.testing.assert_allclose(np.trapezoid(g.pdf(x), x, axis=-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="var must be >= 0"):
        Gaussian(0.0, -1.0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        replace_variance_mean(5, 0)
    with pytest.raises(ValueError, match="generations must be >= 1"):
        accumulate_variance_mean(0, 5)
    with pytest.raises(ValueError, match="ddof"):
        GaussianMLE(ddof=1).fit(np.zeros((2, 1)))
