"""Tests of collapse_lib.regression: the chapter's checks C1-C8, theory identities, bad inputs.

Monte Carlo checks use the chapter's quick sizes and a fixed seed. Where a formula is exact in
expectation (C1, C4) the simulation must also lie within 4 standard errors of it (the seed-to-seed
spread, computed from the run itself); where the theory is a high-dimensional deterministic
equivalent (C2, C5) it carries an O(1/d) bias, so ratio tolerances (at least 2.5x the
worst case seen over 8-12 independent master seeds) are used.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge as SkKernelRidge
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from collapse_lib import regression as R
from collapse_lib.data import ImagePool
from collapse_lib.loop import pack, unpack
from collapse_lib.metrics import local_slopes, loglog_slope, per_seed_slope
from collapse_lib.runtime import seed_generators

SEED = 0
Z = 4.0  # standard errors allowed for formulas that are exact in expectation


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """Batched small solves: one BLAS thread is several times faster on 2 contended cores."""
    with threadpool_limits(limits=1):
        yield


def mean_se(x: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis), x.std(axis, ddof=1) / np.sqrt(x.shape[axis])


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------


def test_least_squares_matches_lstsq_over_and_under_parameterized():
    rngs = seed_generators(SEED, 3)
    for n, d in ((40, 10), (10, 40)):
        design = R.GaussianDesign(np.linspace(0.5, 2.0, d))
        data = R.LinearModel(np.ones(d), 0.7, design).sample(n, rngs)
        w = R.LeastSquares(design, 0.7).fit(data).w
        X, Y = unpack(data, d)
        ref = np.stack(
            [np.linalg.lstsq(x, y[:, 0], rcond=None)[0] for x, y in zip(X, Y, strict=True)]
        )
        np.testing.assert_allclose(w, ref, rtol=1e-9, atol=1e-10)


def test_ridge_path_matches_sklearn_and_both_forms_agree():
    rngs = seed_generators(SEED, 2)
    for T, d in ((60, 20), (20, 60)):
        X = R.GaussianDesign(np.ones(d)).sample(T, rngs)
        Y = np.stack([g.standard_normal((T, 3)) for g in rngs])
        path = R.RidgePath(X, Y)
        assert path.form == ("primal" if T >= d else "kernel")
        other = R.RidgePath(X, Y, form="kernel" if T >= d else "primal")
        for lam in (1e-2, 0.5):
            ref = Ridge(alpha=T * lam, fit_intercept=False).fit(X[1], Y[1]).coef_.T
            np.testing.assert_allclose(path.coef(lam)[1], ref, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(other.coef(lam), path.coef(lam), rtol=1e-7, atol=1e-10)
        ridgeless = np.linalg.lstsq(X[0], Y[0], rcond=None)[0]
        np.testing.assert_allclose(path.coef(0.0)[0], ridgeless, rtol=1e-7, atol=1e-9)


def test_kernel_ridge_path_matches_sklearn():
    task = R.load_digits_task(SEED)
    X, Y = task.pool_X[:120], task.pool_Y[:120]
    path = R.KernelRidgePath(R.rbf(X, X, task.gamma)[None], Y[None])
    for lam in (1e-4, 1e-1):
        ref = SkKernelRidge(alpha=120 * lam, kernel="rbf", gamma=task.gamma).fit(X, Y).dual_coef_
        np.testing.assert_allclose(path.alpha(lam)[0], ref, rtol=1e-6, atol=1e-8)


def test_chain_batched_equals_per_seed_and_chunked():
    e, w0 = np.ones(20), np.full(20, 0.2)
    kw = {"T0": 40, "sigma0": 1.0, "n_max": 4, "seeds": 6, "seed": 3}
    batched = R.linear_chain(e, w0, **kw)
    per_seed = R.linear_chain(e, w0, per_seed=True, **kw)
    chunked = R.linear_chain(e, w0, chunk=4, **kw)
    np.testing.assert_allclose(per_seed.weights, batched.weights, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(chunked.weights, batched.weights)
    np.testing.assert_array_equal(batched.weights[:, 0], np.broadcast_to(w0, (6, 20)))
    assert sorted(batched.results.frame["generation"].unique()) == list(range(5))
    gen = batched.results.per_seed("generator_error").T.to_numpy()
    np.testing.assert_allclose(gen, R.excess_risk(batched.weights, w0, e), rtol=1e-12)


def test_results_keep_the_row_order_of_the_tables_they_replace():
    values = np.arange(6.0).reshape(2, 3)  # (S, N): chain_table lists seed by seed
    f = R.chain_table(values, [4, 7], "m", "c").frame
    assert list(f["seed"]) == [4, 4, 4, 7, 7, 7] and list(f["generation"]) == [0, 1, 2] * 2
    np.testing.assert_array_equal(f["value"], values.reshape(-1))
    e, w0 = np.ones(3), np.ones(3)
    chain = R.linear_chain(e, w0, T0=8, sigma0=1.0, n_max=2, seeds=[5, 2], seed=0)
    f = chain.results.frame  # the loop's order: generation by generation, n = 0 (truth) first
    assert list(f["generation"]) == [0, 0, 1, 1, 2, 2] and list(f["seed"]) == [5, 2] * 3
    expected = R.excess_risk(chain.weights, w0, e).T.reshape(-1)
    np.testing.assert_allclose(f["value"], expected, rtol=1e-12)


def test_student_t_design_has_the_covariance_and_heavier_tails():
    eigs = np.array([0.5, 1.0, 3.0])
    X = R.StudentTDesign(eigs, 5).sample(100_000, seed_generators(SEED, 2)).reshape(-1, 3)
    ratio = (X**2).mean(0) / eigs  # SE ~ sqrt(8 / 2e5) ~ 0.006 (t_5: E x^4 = 9 sigma^4)
    assert np.max(np.abs(ratio - 1)) <= 0.05
    kurtosis = (X**4).mean(0) / (X**2).mean(0) ** 2
    assert np.all(kurtosis > 5)  # Gaussian: 3; Student-t with 5 degrees of freedom: 9


def test_downstream_uses_common_random_numbers():
    e, w0 = np.ones(10), np.full(10, 0.3)
    W = np.stack([np.broadcast_to(w0, (4, 10))] * 2, axis=1)  # two identical "generators"
    err = R.downstream_errors(
        W, e, w0, T=30, sigma=1.0, lams=[0.0, 1.0], rngs=R.downstream_rngs(0, 4)
    )
    np.testing.assert_array_equal(err[:, 0], err[:, 1])
    again = R.downstream_errors(W, e, w0, T=30, sigma=1.0, lams=[1.0], rngs=R.downstream_rngs(0, 4))
    np.testing.assert_array_equal(again[:, :, 0], err[:, :, 1])


# ---------------------------------------------------------------------------------------------
# C1: linear growth of the OLS error (exact formula)
# ---------------------------------------------------------------------------------------------


def test_c1_ols_error_grows_linearly_as_predicted():
    d, T, T0, S, N = 50, 200, 100, 300, 10
    e, w0 = np.ones(d), np.ones(d) / np.sqrt(d)
    chain = R.linear_chain(e, w0, T0=T0, sigma0=1.0, n_max=N, seeds=S, seed=SEED)
    err = R.downstream_errors(
        chain.weights, e, w0, T=T, sigma=1.0, lams=[0.0], rngs=R.downstream_rngs(SEED, S)
    )[:, :, 0]
    n = np.arange(N + 1)
    theory = R.ols_error(n, d=d, T=T, T0=T0, sigma=1.0, sigma0=1.0)
    mean, se = mean_se(err)
    assert np.max(np.abs(mean / theory - 1)) <= 0.10
    assert np.max(np.abs(mean - theory) / se) <= Z
    slopes = per_seed_slope(n, err)
    s_mean, s_se = mean_se(slopes)
    exact_slope = d / (T0 - d - 1)
    assert 0.9 <= s_mean / exact_slope <= 1.1
    assert abs(s_mean - exact_slope) <= Z * s_se
    # the generators' own error: n sigma0^2 d / (T0 - d - 1), exact
    gen = chain.results.per_seed("generator_error").T.to_numpy()
    g_mean, g_se = mean_se(gen[:, 1:])
    assert np.max(np.abs(g_mean - n[1:] * exact_slope) / g_se) <= Z


# ---------------------------------------------------------------------------------------------
# C2, C3: isotropic ridge sweep against the deterministic equivalent; adaptive lambda
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def isotropic_sweep():
    d, T0, S = 100, 200, 100
    e, w0 = np.ones(d), np.ones(d) / np.sqrt(d)
    lams = np.logspace(-3, 2, 21)
    ns = np.array([0, 1, 2, 5, 10])
    chain = R.linear_chain(e, w0, T0=T0, sigma0=1.0, n_max=10, seeds=S, seed=SEED)
    out = {}
    for T in (50, 200):
        rngs = R.downstream_rngs(SEED, S, T)
        err = R.downstream_errors(chain.weights[:, ns], e, w0, T=T, sigma=1.0, lams=lams, rngs=rngs)
        theory = R.ridge_theory(e, w0, lams, T=T, T0=T0, sigma=1.0, sigma0=1.0)
        out[T] = (err, theory)
    return e, w0, T0, lams, ns, out


def test_c2_ridge_error_matches_theory(isotropic_sweep):
    _, _, _, lams, ns, out = isotropic_sweep
    for T, (err, theory) in out.items():
        ratio = err.mean(0) / theory.error(ns)
        assert np.max(np.abs(ratio - 1)) <= 0.10, T
        slopes = per_seed_slope(ns, np.moveaxis(err, 1, 2).reshape(-1, ns.size))
        slope_ratio = slopes.reshape(err.shape[0], lams.size).mean(0) / theory.increment()
        small = lams <= 1
        assert np.all((slope_ratio[small] >= 0.9) & (slope_ratio[small] <= 1.1)), T


def test_c3_adaptive_lambda_beats_clean_lambda(isotropic_sweep):
    e, w0, T0, lams, ns, out = isotropic_sweep
    for T, (err, _) in out.items():
        kw = {"T": T, "T0": T0, "sigma": 1.0, "sigma0": 1.0, "lams": lams}
        lam0 = R.optimal_lambda(e, w0, n=0, **kw)[0]
        lam10 = R.optimal_lambda(e, w0, n=10, **kw)[0]
        assert lam10 > lam0
        best = R.argmin_lambda(err)
        at_n10 = err[:, -1]
        assert at_n10[:, best[0]].mean() / at_n10[:, best[-1]].mean() >= 1.5, T


# ---------------------------------------------------------------------------------------------
# C4: exponential forgetting with over-parameterized generators
# ---------------------------------------------------------------------------------------------


def test_c4_exponential_forgetting():
    d, S, N = 200, 50, 12
    e, w0 = np.ones(d), np.ones(d) / np.sqrt(d)
    n = np.arange(N + 1)
    for psi in (0.25, 0.5, 0.75):
        T0 = int(psi * d)
        chain = R.linear_chain(e, w0, T0=T0, sigma0=0.0, n_max=N, seeds=S, seed=SEED)
        gen = chain.results.per_seed("generator_error").T.to_numpy()
        mean, se = mean_se(gen)
        theory = R.forgetting_error(n, d=d, T0=T0)
        np.testing.assert_allclose(theory, 1 - psi**n, rtol=1e-12)
        assert np.max(np.abs(mean - theory)) <= 0.05, psi
        assert np.max(np.abs(mean - theory)[1:] / se[1:]) <= Z, psi


def test_c4_noisy_forgetting():
    d, T0, S, N, sigma0 = 200, 100, 50, 8, 0.3
    e, w0 = np.ones(d), np.ones(d) / np.sqrt(d)
    chain = R.linear_chain(e, w0, T0=T0, sigma0=sigma0, n_max=N, seeds=S, seed=SEED)
    gen = chain.results.per_seed("generator_error").T.to_numpy()
    mean, se = mean_se(gen[:, 1:])
    theory = R.forgetting_error(np.arange(1, N + 1), d=d, T0=T0, sigma0=sigma0)
    assert np.max(np.abs(mean - theory) / se) <= Z


def test_c4b_reused_design_does_not_forget_further():
    d, T0, S = 200, 100, 50
    e, w0 = np.ones(d), np.ones(d) / np.sqrt(d)
    chain = R.linear_chain(e, w0, T0=T0, sigma0=0.0, n_max=8, seeds=S, seed=SEED, reuse_design=True)
    gen = chain.results.per_seed("generator_error").T.to_numpy()
    assert np.max(np.ptp(gen[:, 1:], axis=1)) <= 1e-8  # P P = P: nothing more is lost after n = 1
    assert np.max(np.abs(gen[:, 1:].mean(0) - (1 - T0 / d))) <= 0.02


# ---------------------------------------------------------------------------------------------
# C5: power-law scaling, ridgeless vs adaptive ridge
# ---------------------------------------------------------------------------------------------


def test_c5_power_law_scaling():
    beta, r, d, T0, S = 2.0, 0.5, 300, 600, 40
    e, w0 = R.power_law_spectrum(d, beta), R.power_law_target(d, beta, r)
    ell = R.ell_crit(beta, r)
    Ts = np.array([8, 16, 32, 64, 128])
    chain = R.linear_chain(e, w0, T0=T0, sigma0=1.0, n_max=1, seeds=S, seed=SEED)
    err = np.stack(
        [
            R.downstream_errors(
                chain.weights,
                e,
                w0,
                T=int(T),
                sigma=0.0,
                lams=[0.0, T**-ell],
                rngs=R.downstream_rngs(SEED, S, int(T)),
            ).mean(0)
            for T in Ts
        ],
        axis=-1,
    )  # (n, [ridgeless, adaptive], T)
    assert -2.4 <= loglog_slope(Ts, err[0, 0]) <= -1.7  # C5a
    assert abs(loglog_slope(Ts, err[1, 0])) <= 0.25  # C5b
    assert err[1, 0, -1] / err[1, 0, 0] >= 0.5
    theory = [
        R.ridge_theory(e, w0, T**-ell, T=int(T), T0=T0, sigma=0.0, sigma0=1.0).error(1) for T in Ts
    ]
    sim_slope = loglog_slope(Ts, err[1, 1])
    assert abs(sim_slope - loglog_slope(Ts, np.array(theory))) <= 0.15  # C5c
    assert sim_slope < -0.35
    assert err[1, 1, -1] / err[1, 0, -1] <= 0.2  # C5d


# ---------------------------------------------------------------------------------------------
# C6: theory identities
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.0, 1e-6, 1e-2, 1.0, 30.0])
@pytest.mark.parametrize("T", [20, 150])
def test_c6_kappa_solves_its_equation(lam, T):
    e = R.power_law_spectrum(100, 1.5)
    k = R.solve_kappa(e, lam, T)
    df1 = R.degrees_of_freedom(e, k, 1)
    if lam == 0 and T >= e.size:
        assert k == 0.0
    elif lam == 0:
        assert abs(df1 - T) <= 1e-8 * T
    else:
        assert abs(k - lam - k * df1 / T) <= 1e-8 * k


@pytest.mark.parametrize("lam", [0.0, 1e-3, 0.3, 10.0])
@pytest.mark.parametrize("T", [40, 250])
def test_c6_isotropic_closed_form_equals_general_solver(lam, T):
    d, T0 = 100, 230
    w0 = np.linspace(-1, 1, d)
    kw = {"T": T, "T0": T0, "sigma": 0.7, "sigma0": 1.3}
    assert abs(R.kappa_isotropic(lam, d, T) - R.solve_kappa(np.ones(d), lam, T)) <= 1e-10
    gen = R.ridge_theory(np.ones(d), w0, lam, **kw)
    iso = R.ridge_theory_isotropic(lam, d=d, w0_norm2=float(w0 @ w0), **kw)
    for a, b in ((gen.bias, iso.bias), (gen.variance, iso.variance), (gen.rho, iso.rho)):
        assert abs(a - b) <= 1e-8 * max(abs(b), 1e-12)


def test_c6_ridgeless_limits():
    e, w0 = R.power_law_spectrum(50, 1.5), R.power_law_target(50, 1.5, 0.5)
    d, T, T0 = 50, 120, 90
    th = R.ridge_theory(e, w0, 0.0, T=T, T0=T0, sigma=0.8, sigma0=1.1)
    exact = R.ols_error(np.arange(4), d=d, T=T, T0=T0, sigma=0.8, sigma0=1.1)
    assert th.bias == 0.0
    assert abs(th.increment() - (exact[1] - exact[0])) <= 1e-8 * exact[1]
    # the deterministic equivalent has the proportional-limit variance d/(T-d), not d/(T-d-1)
    assert abs(th.variance - 0.8**2 * d / (T - d)) <= 1e-8
    near = R.ridge_theory(e, w0, 1e-11, T=T, T0=T0, sigma=0.8, sigma0=1.1)
    assert abs(near.error(3) - th.error(3)) <= 1e-6 * th.error(3)
    # isotropic, ridgeless, T < d: rho (T0 - d - 1) = T exactly
    iso = R.ridge_theory(np.ones(100), np.ones(100), 0.0, T=40, T0=200, sigma=1.0, sigma0=1.0)
    assert abs(iso.rho * (200 - 100 - 1) - 40) <= 1e-8 * 40


def test_c6_isotropic_optimal_lambda_is_noise_to_signal():
    # clean isotropic ridge: lam* = sigma^2 phi / ||w0||^2 (a classical identity of the formula)
    d, T = 100, 50
    lam, _ = R.optimal_lambda(
        np.ones(d),
        np.full(d, 0.1),
        n=0,
        T=T,
        T0=230,
        sigma=1.0,
        sigma0=1.0,
        lams=np.logspace(-3, 2, 41),
    )
    assert abs(lam - 1.0 * (d / T) / 1.0) <= 1e-4 * lam


def test_power_law_helpers():
    e = R.power_law_spectrum(10, 2.0)
    w0 = R.power_law_target(10, 2.0, 0.5)
    i = np.arange(1, 11)
    np.testing.assert_allclose(e * w0**2, i ** -(1 + 2 * 2.0 * 0.5), rtol=1e-12)
    assert R.ell_crit(2.0, 0.5) == pytest.approx(2 / 3)
    assert R.ell_crit(2.0, 3.0) == pytest.approx(2 / 5)  # r saturates at 1
    assert R.power_law_rates(2.0, 0.5) == pytest.approx((-2.0, -2 / 3))
    assert R.effective_noise(0.0, 1.0, 2, d=100, T0=300) == pytest.approx(2 * 0.5)


# ---------------------------------------------------------------------------------------------
# C7: the crossover (theory)
# ---------------------------------------------------------------------------------------------


def test_c7_crossover_and_optimal_lambda_grow_with_n():
    beta, r, d, T0 = 2.0, 0.5, 400, 800
    e, w0 = R.power_law_spectrum(d, beta), R.power_law_target(d, beta, r)
    Ts = np.array([100, 150, 200])
    lams = np.logspace(-8, 0, 81)
    best = {
        n: [
            R.optimal_lambda(e, w0, n=n, T=int(T), T0=T0, sigma=0.0, sigma0=0.02, lams=lams)
            for T in Ts
        ]
        for n in (0, 1, 10)
    }
    slope = {n: local_slopes(Ts, np.array([b for _, b in v]))[-1] for n, v in best.items()}
    assert slope[10] - slope[0] >= 0.8
    assert best[10][-1][0] > best[1][-1][0]


# ---------------------------------------------------------------------------------------------
# C8: kernel ridge on the digits
# ---------------------------------------------------------------------------------------------


def test_c8_digits_collapse_and_adaptive_gain():
    S, N = 8, 8
    task = R.load_digits_task(SEED)
    models = R.digits_chain(task, T0=400, sigma0=0.5, ridge0=1e-4, n_max=N, seeds=S, seed=SEED)
    lams = np.logspace(-6, 0, 13)
    mse = R.digits_downstream_mse(
        task, models, T=400, sigma=0.0, lams=lams, rngs=R.downstream_rngs(SEED, S, 7)
    )
    best = R.argmin_lambda(mse)
    at_clean = mse[:, :, best[0]].mean(0)
    assert np.all(np.diff(at_clean[:6]) > 0)
    assert lams[best[N]] > lams[best[0]]
    assert at_clean[N] / mse[:, N, best[N]].mean() >= 2


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_errors_naming_the_argument():
    e, w0 = np.ones(5), np.ones(5)
    cases = [
        (lambda: R.linear_chain(e, w0, T0=0, sigma0=1.0, n_max=2), "T0"),
        (lambda: R.linear_chain(e, w0, T0=10, sigma0=1.0, n_max=0), "n_max"),
        (lambda: R.linear_chain(e, w0, T0=10, sigma0=-1.0, n_max=1), "sigma0"),
        (lambda: R.linear_chain(e, np.ones(4), T0=10, sigma0=1.0, n_max=1), "w0"),
        (lambda: R.linear_chain(-e, w0, T0=10, sigma0=1.0, n_max=1), "eigs"),
        (lambda: R.GaussianDesign(e).sample(0, seed_generators(0, 2)), "n"),
        (lambda: R.ols_error(1, d=10, T=11, T0=50, sigma=1, sigma0=1), "T must"),
        (
            lambda: R.ridge_theory_isotropic(0.1, d=10, T=10, T0=5, w0_norm2=1, sigma=1, sigma0=1),
            "T0",
        ),
        (lambda: R.ols_error(1, d=10, T=50, T0=11, sigma=1, sigma0=1), "T0"),
        (lambda: R.ridge_theory(e, w0, 0.1, T=10, T0=5, sigma=1, sigma0=1), "T0"),
        (lambda: R.ridge_theory(e, w0, -0.1, T=10, T0=50, sigma=1, sigma0=1), "lams"),
        (lambda: R.solve_kappa(e, 0.1, 0), "T"),
        (lambda: R.forgetting_error(2, d=10, T0=10), "T0"),
        (lambda: R.power_law_spectrum(10, 1.0), "beta"),
        (lambda: R.power_law_target(10, 2.0, 0.0), "r"),
        (lambda: R.RidgePath(np.ones((2, 5, 3)), np.ones((2, 5, 1)), form="dual"), "form"),
        (lambda: R.RidgePath(np.ones((2, 5, 3)), np.ones((2, 4, 1))), "X must"),
        (lambda: pack(np.ones((2, 5, 3)), np.ones((2, 4))), "X"),
        (lambda: unpack(np.ones((2, 5, 3)), 3), "p="),
        (lambda: ImagePool(np.ones((5, 2))).sample(6, seed_generators(0, 1)), "got 6"),
        (
            lambda: R.downstream_errors(
                np.ones((2, 1, 5)), e, w0, T=10, sigma=1.0, lams=[0.1], rngs=R.downstream_rngs(0, 3)
            ),
            "rngs",
        ),
        (
            lambda: R.downstream_errors(
                np.ones((2, 1, 4)), e, w0, T=10, sigma=1.0, lams=[0.1], rngs=R.downstream_rngs(0, 2)
            ),
            "weights",
        ),
        (lambda: R.load_digits_task(0, n_test=0), "n_test"),
        (lambda: local_slopes(np.ones(3), np.ones(4)), "x and y"),
        (lambda: R.StudentTDesign(e, 2.0), "nu"),
        (
            lambda: R.linear_chain(
                e, w0, T0=10, sigma0=1.0, n_max=1, design=R.GaussianDesign(2 * e)
            ),
            "design",
        ),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()
