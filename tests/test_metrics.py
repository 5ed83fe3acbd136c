import numpy as np
import pytest
from scipy import stats

from collapse_lib import metrics
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


def test_frechet_distance_between_gaussians():
    r = np.random.default_rng(0)
    a = r.standard_normal((20000, 3))
    b = 2 * r.standard_normal((20000, 3)) + 1
    # |mu|^2 = 3, trace term 3 * (1 + 4 - 2 * 2) = 3; sampling error ~ 0.03
    assert abs(metrics.frechet_distance(a, b) - 6.0) < 0.15
    assert metrics.frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    with pytest.raises(ValueError, match="columns"):
        metrics.frechet_distance(a, b[:, :2])
    with pytest.raises(ValueError, match="2 rows"):
        metrics.frechet_distance(a[:1], b)


def test_svc_f1_separable_and_random_labels():
    r = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 60)
    z = r.standard_normal((180, 2)) + 6 * np.eye(3, 2)[y]
    assert metrics.svc_f1_cv(z, y) > 0.95
    assert metrics.svc_f1_cv(r.standard_normal((180, 2)), y) < 0.55
    with pytest.raises(ValueError, match="same number of rows"):
        metrics.svc_f1_cv(z, y[:-1])


def test_representation_metrics():
    r = np.random.default_rng(4)
    z = r.standard_normal((300, 5))
    assert metrics.ridge_r2_cv(z, z @ r.standard_normal((5, 3))) > 0.99
    assert metrics.ridge_r2_cv(z, r.standard_normal((300, 2))) < 0.05
    assert abs(metrics.nesum(np.diag([2.0, 2.0, 2.0])) - 3) < 1e-12
    assert abs(metrics.nesum(np.outer([1.0, 2], [3.0, 4])) - 1) < 1e-12
    assert abs(metrics.effective_rank(z) - 5) < 0.1
    assert metrics.effective_rank(np.outer(z[:, 0], np.ones(4))) < 1.01
    with pytest.raises(ValueError, match="constant"):
        metrics.ridge_r2_cv(z, np.ones((300, 1)))


def test_ridge_r2_cv_equals_the_sklearn_pipeline():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    r = np.random.default_rng(0)
    z = r.standard_normal((400, 8)) * r.uniform(0.1, 5, 8) + 3
    z[:, 3] = 1.0  # a constant column: StandardScaler only centres it
    t = np.tanh(z @ r.standard_normal((8, 4))) + r.standard_normal((400, 4))
    model = make_pipeline(StandardScaler(), Ridge(alpha=2.0))
    pred = cross_val_predict(model, z, t, cv=KFold(5, shuffle=True, random_state=0))
    ref = np.mean(1 - ((t - pred) ** 2).sum(0) / ((t - t.mean(0)) ** 2).sum(0))
    assert metrics.ridge_r2_cv(z, t, alpha=2.0) == pytest.approx(ref, abs=1e-12)


def test_slopes_recover_exact_lines_and_power_laws():
    from collapse_lib.metrics import local_slopes, loglog_slope, per_seed_slope

    x = np.array([1.0, 2.0, 4.0, 8.0])
    v = np.stack([3 * x + 1, -2 * x])
    np.testing.assert_allclose(per_seed_slope(x, v), [3.0, -2.0])
    np.testing.assert_allclose(loglog_slope(x, 5 * x**-1.5), -1.5)
    np.testing.assert_allclose(loglog_slope(x, np.stack([x**2, x**0.5])), [2.0, 0.5])
    np.testing.assert_allclose(local_slopes(x, x**3), 3.0)
    with pytest.raises(ValueError, match="values must have shape"):
        per_seed_slope(x, np.ones((2, 3)))
    with pytest.raises(ValueError, match="positive"):
        loglog_slope(x, -x)
    with pytest.raises(ValueError, match="x and y must be 1-D"):
        local_slopes(x, np.ones(3))
