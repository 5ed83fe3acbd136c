import numpy as np
import pytest

from collapse_lib import PerSeed, regime, run
from collapse_lib.gaussian import (
    Gaussian,
    GaussianMLE,
    MultivariateGaussian,
    MultivariateGaussianMLE,
    accumulate_variance_limit,
    accumulate_variance_mean,
    log_det_ratio,
    mixture_moments,
    replace_det_mean,
    replace_log_variance,
    replace_logdet,
    replace_variance_mean,
    variance_kept,
)
from collapse_lib.runtime import seed_generators


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


# ---- the d-dimensional Gaussian ---------------------------------------------------------


def random_cov(d, rng):
    """A well-conditioned covariance with correlations (eigenvalues in [0.5, ~4])."""
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


def mvn_run(name, n, d, generations, seeds, seed=0):
    """Per-generation, per-seed metrics of a d-dimensional Gaussian chain: {name: (T, S)}."""
    cov = random_cov(d, np.random.default_rng(d))
    metrics = {"logdet": log_det_ratio, "kept": variance_kept}
    res = run(
        MultivariateGaussianMLE(),
        MultivariateGaussian(np.arange(d, dtype=float), cov),
        regime(name),
        n=n,
        generations=generations,
        metrics=metrics,
        seeds=seeds,
        seed=seed,
    )
    return {m: res.wide(m).to_numpy() for m in metrics}


def test_mvn_mle_and_chan_merge_equal_direct_fit():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 7, 4)), rng.normal(2.0, 3.0, size=(3, 11, 4))
    mle = MultivariateGaussianMLE()
    pooled = mle.fit_summary(mle.merge(mle.summarize(a), mle.summarize(b)))
    both = np.concatenate([a, b], axis=1)
    assert isinstance(pooled, MultivariateGaussian) and pooled.dim == 4
    np.testing.assert_allclose(pooled.mean, both.mean(axis=1), rtol=1e-12)
    direct = np.stack([np.cov(x, rowvar=False, bias=True) for x in both])
    np.testing.assert_allclose(pooled.cov, direct, rtol=1e-10, atol=1e-12)
    unbiased = MultivariateGaussianMLE(ddof=1).fit(both).cov
    np.testing.assert_allclose(unbiased, np.stack([np.cov(x, rowvar=False) for x in both]))
    one = mle.fit(both[1])  # a single seed, data (n, d)
    np.testing.assert_allclose(one.cov, direct[1], rtol=1e-10, atol=1e-12)


def test_mvn_sample_shapes_and_moments():
    rng = np.random.default_rng(1)
    cov = random_cov(3, rng)
    truth = MultivariateGaussian([1.0, -2.0, 0.5], cov)
    x = truth.sample(5, seed_generators(0, 4))
    assert x.shape == (4, 5, 3)
    n = 100_000
    x = truth.sample(n, seed_generators(0, 2))  # one (d,) truth broadcast over 2 generators
    for s in range(2):
        dev = x[s] - truth.mean
        emp = dev.T @ dev / n  # known mean: the entries are means of products
        se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
        assert np.all(np.abs(emp - cov) < 4 * se)
        assert np.all(np.abs(x[s].mean(axis=0) - truth.mean) < 4 * np.sqrt(np.diag(cov) / n))
    assert not np.array_equal(x[0], x[1])
    batched = MultivariateGaussian(np.zeros((2, 3)), np.stack([cov, 2 * cov]))
    assert batched.sample(6, seed_generators(0, 2)).shape == (2, 6, 3)
    assert truth.sample(6, np.random.default_rng(0)).shape == (6, 3)  # one generator


def test_mvn_singular_cov_samples_on_its_subspace():
    v = np.array([1.0, 2.0, -1.0])
    cov = np.outer(v, v)  # rank 1: no Cholesky factor
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(cov)
    x = MultivariateGaussian(np.zeros(3), cov).sample(20_000, seed_generators(0, 1))[0]
    along = x @ v / (v @ v)
    np.testing.assert_allclose(x, np.outer(along, v), atol=1e-10)  # on the line through v
    assert abs(along.var() - 1) < 4 * np.sqrt(2 / 20_000)  # var(along) = v^T cov v / |v|^4 = 1
    # a singular seed in a batch does not change the other seed's draws
    full = random_cov(3, np.random.default_rng(2))
    both = MultivariateGaussian(np.zeros((2, 3)), np.stack([cov, full]))
    alone = MultivariateGaussian(np.zeros((1, 3)), full[None])
    gens = seed_generators(0, [0, 1])
    np.testing.assert_array_equal(
        both.sample(7, gens)[1], alone.sample(7, seed_generators(0, [1]))[0]
    )


@pytest.mark.parametrize(
    ("mean", "cov", "match"),
    [
        (np.zeros((2, 2, 2)), np.eye(2), "mean must have shape"),
        (np.zeros(2), np.eye(3), "cov must have shape"),
        (np.zeros(2), np.ones((2, 3)), "cov must have shape"),
        (np.zeros((3, 2)), np.stack([np.eye(2)] * 2), "same number of seeds"),
        (np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), "cov must be symmetric"),
        (np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), "cov must be positive semi-definite"),
        (np.zeros(2), np.array([[1.0, 0.0], [0.0, np.nan]]), "must be finite"),
    ],
)
def test_mvn_validation(mean, cov, match):
    with pytest.raises(ValueError, match=match):
        MultivariateGaussian(mean, cov)


def test_mvn_learner_and_theory_validation():
    truth = MultivariateGaussian(np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    with pytest.raises(ValueError, match="one generator per seed"):
        truth.sample(3, seed_generators(0, 3))
    with pytest.raises(ValueError, match="one generator per seed"):
        truth.sample(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n must be >= 1"):
        truth.sample(0, seed_generators(0, 2))
    with pytest.raises(ValueError, match="data must have shape"):
        MultivariateGaussianMLE().fit(np.zeros(5))
    with pytest.raises(ValueError, match="ddof"):
        MultivariateGaussianMLE(ddof=1).fit(np.zeros((2, 1, 3)))
    with pytest.raises(ValueError, match="n must be > d = 3"):
        replace_logdet(4, 3, 3)
    with pytest.raises(ValueError, match="n must be > d = 5"):
        replace_det_mean(4, 2, 5)
    with pytest.raises(ValueError, match="d must be >= 1"):
        replace_det_mean(4, 10, 0)
    with pytest.raises(ValueError, match="generations must be >= 1"):
        replace_logdet(0, 10, 2)


def test_mvn_closed_forms_reduce_to_the_1d_ones():
    mean, sd = replace_logdet(30, 20, 1)
    mean1, sd1 = replace_log_variance(30, 20)
    np.testing.assert_allclose(mean, mean1, rtol=1e-12)
    np.testing.assert_allclose(sd, sd1, rtol=1e-12)
    np.testing.assert_allclose(replace_det_mean(30, 20, 1), replace_variance_mean(30, 20))
    # and the d-dim determinant falls faster than any one variance
    assert np.all(replace_det_mean(5, 20, 4) < replace_variance_mean(5, 20) ** 4)


@pytest.mark.parametrize(("n", "d", "T"), [(30, 3, 5), (50, 10, 3)])
def test_mvn_replace_matches_the_wishart_laws(n, d, T):
    S = 2000
    x = mvn_run("replace", n, d, T, S)
    logdet, kept = x["logdet"], x["kept"]
    mean, sd = replace_logdet(T, n, d)
    for t in (T // 2, T - 1):
        assert abs(logdet[t].mean() - mean[t]) < 4 * logdet[t].std(ddof=1) / np.sqrt(S), t
        assert abs(logdet[t].std(ddof=1) / sd[t] - 1) < 0.1  # rel. SE of an sd ~ 1/sqrt(2S)
        det = np.exp(logdet[t])
        # exact SE of det: E det^2 = (prod_i (n-i)(n-i+2)/n^2)^(t+1)
        i = np.arange(1, d + 1)
        second = np.prod((n - i) * (n - i + 2) / n**2) ** (t + 1)
        theory = replace_det_mean(T, n, d)[t]
        assert abs(det.mean() - theory) < 4 * np.sqrt((second - theory**2) / S), t
        # each coordinate follows the 1-D chain: E tr(Sigma_t)/tr(Sigma) = replace_variance_mean
        se = kept[t].std(ddof=1) / np.sqrt(S)
        assert abs(kept[t].mean() - replace_variance_mean(T, n)[t]) < 4 * se, t
    assert np.mean(logdet[-1]) < mean[-1] / 2  # and it does drift: no trivially passing law


def test_mvn_accumulate_is_bounded():
    n, d, T, S = 30, 3, 20, 2000
    x = mvn_run("accumulate", n, d, T, S)
    kept, logdet = x["kept"], x["logdet"]
    for t in (T // 2, T - 1):
        se = kept[t].std(ddof=1) / np.sqrt(S)
        assert abs(kept[t].mean() - accumulate_variance_mean(T, n)[t]) < 4 * se, t
    mean, sd = replace_logdet(T, n, d)
    # far above the replace law (about -6.3 here): log det stays within a fit or two of 0
    assert logdet[-1].mean() > mean[-1] + 20 * sd[-1] / np.sqrt(S)
    assert logdet[-1].mean() > 2 * mean[0]


def test_mvn_seed_alone_equals_seed_in_batch():
    for name in ("replace", "accumulate", "accumulate_subsample"):
        batch = mvn_run(name, 12, 4, 5, [0, 1, 2])
        alone = mvn_run(name, 12, 4, 5, [1])
        for metric in batch:
            np.testing.assert_array_equal(alone[metric][:, 0], batch[metric][:, 1])
    cov = random_cov(4, np.random.default_rng(4))
    kwargs = dict(n=12, generations=5, metrics={"logdet": log_det_ratio}, seeds=3)
    truth = MultivariateGaussian(np.zeros(4), cov)
    batched = run(MultivariateGaussianMLE(), truth, regime("accumulate"), **kwargs)
    per_seed = run(PerSeed(MultivariateGaussianMLE()), truth, regime("accumulate"), **kwargs)
    np.testing.assert_allclose(per_seed.frame["value"], batched.frame["value"], rtol=1e-10)
