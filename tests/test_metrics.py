import numpy as np
import pytest
from scipy import stats

from collapse_lib.metrics import (
    empirical_distribution,
    entropy,
    gaussian_kl_true_model,
    gaussian_parameter_errors,
    kl_model_true,
    kl_true_model,
    total_variation,
)


def test_entropy_known_values():
    assert entropy(np.ones(4) / 4) == pytest.approx(np.log(4))
    assert entropy(np.array([1.0, 0.0])) == 0.0
    batch = np.array([[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(entropy(batch), [np.log(2), 0.0])


def test_kl_directions_and_tv():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    assert kl_true_model(p, q) == pytest.approx(np.log(2))
    assert kl_model_true(q, p) == np.inf  # the model puts mass where the truth has none
    assert kl_true_model(q, p) == np.inf
    assert total_variation(p, q) == pytest.approx(0.5)
    assert kl_true_model(p, p) == 0.0


def test_gaussian_kl_matches_numerical_integral():
    x = np.linspace(-15, 15, 200001)
    p, q = stats.norm(0.3, 1.2), stats.norm(-0.5, 0.7)
    numeric = np.trapezoid(p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), x)
    assert gaussian_kl_true_model(0.3, 1.44, -0.5, 0.49) == pytest.approx(numeric, rel=1e-6)


def test_parameter_errors():
    e = gaussian_parameter_errors(0.0, 2.0, np.array([1.0, -2.0]), np.array([1.0, 4.0]))
    np.testing.assert_allclose(e["mean_sq_error"], [1.0, 4.0])
    np.testing.assert_allclose(e["var_ratio"], [0.5, 2.0])


def test_empirical_distribution():
    x = np.array([[0, 0, 2, 1], [2, 2, 2, 2]])
    np.testing.assert_allclose(empirical_distribution(x, 3), [[0.5, 0.25, 0.25], [0, 0, 1]])
    with pytest.raises(ValueError, match="integers in"):
        empirical_distribution(x, 2)
    with pytest.raises(ValueError, match="categories must be >= 1"):
        empirical_distribution(x, 0)


@pytest.mark.parametrize(
    ("p", "q", "match"),
    [
        (np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5]), "same number of categories"),
        (np.array([0.5, 0.6]), np.array([0.5, 0.5]), "must sum to 1"),
        (np.array([1.5, -0.5]), np.array([0.5, 0.5]), "non-negative"),
    ],
)
def test_bad_distributions(p, q, match):
    with pytest.raises(ValueError, match=match):
        total_variation(p, q)


def test_gaussian_kl_rejects_nonpositive_variance():
    with pytest.raises(ValueError, match="var_true and var must be > 0"):
        gaussian_kl_true_model(0.0, 1.0, 0.0, 0.0)
