"""Self-verification: the filter, the coverage metrics, the theory, and the chapter's checks.

The experiment checks use the chapter's quick configurations (spec section 6). Each threshold
sits at least 4 standard deviations from the mean measured over 20 master seeds (12 for the
language model), or is an exact inequality; the measured values are quoted next to each assert.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapse_lib import conditional as C
from collapse_lib import regression as R
from collapse_lib import verification as V
from collapse_lib.loop import FilterContext
from collapse_lib.regimes import regime
from collapse_lib.runtime import seed_generators

SEED = 5
A = {"S": 16, "m": 100, "K": 10, "n": 2000, "beta": 3.0, "lam": 0.1, "T": 10, "N": 8}


def mean_curve(df, metric):
    """(generation x condition) table of the mean over seeds."""
    return df.wide(metric).mean(axis=1).unstack(0)


@pytest.fixture(scope="module")
def tabular():
    truth = C.random_tabular(A["m"], A["K"], A["beta"], SEED, A["S"])
    return V.run_conditions(
        {
            "naive": (regime("replace"), None),
            "real": (regime("mixture", 0.5), None),
            "sv": (regime("replace"), V.SelfVerification(A["N"])),
        },
        learner=C.TabularMLE(A["m"], A["K"], A["lam"]),
        truth=truth,
        n=A["n"],
        generations=A["T"] + 1,
        metrics=V.ChainMetrics()(),
        seeds=A["S"],
        seed=SEED,
    )


# ---- theory (check 15) ----------------------------------------------------------------------


def test_theory_values():
    assert V.growth_factor(0.5) == pytest.approx(1.346574, abs=1e-6)
    assert V.growth_threshold() == pytest.approx(0.642201, abs=1e-5)
    assert V.growth_factor(V.growth_threshold()) == pytest.approx(1.0, abs=1e-12)
    assert V.real_fraction_threshold(0.5) == pytest.approx(0.5, abs=1e-12)
    assert V.real_fraction_threshold(0.1) == pytest.approx(0.944444, abs=1e-6)
    assert V.real_fraction_threshold(2 / 3) == pytest.approx(0.0, abs=1e-12)
    assert V.candidates_threshold(0.1) == pytest.approx(23.02585, abs=1e-5)
    for K in (2, 10, 50):
        assert V.candidates_threshold(1 / K) == pytest.approx(K * np.log(K), rel=1e-12)
    c = np.linspace(0.02, 1, 200)
    assert np.all(np.diff(V.candidates_threshold(c)) < 0)  # so N > K ln K always suffices


def test_reconstructed_factors_cross_one_at_the_quoted_conditions():
    for c0 in (0.1, 0.26, 0.5):
        a_star = float(V.real_fraction_threshold(c0))
        assert V.contraction(c0, "real", alpha=a_star) == pytest.approx(1.0)
        assert V.contraction(c0, "real", alpha=min(1, a_star + 0.01)) < 1
        n_star = float(V.candidates_threshold(c0))
        assert V.contraction(c0, "verified", candidates=int(np.floor(n_star)) + 1) < 1
        assert V.contraction(c0, "verified", candidates=max(1, int(np.ceil(n_star)) - 1)) > 1
    assert V.contraction(0.3, "naive") == V.growth_factor(0.3)


@pytest.mark.parametrize("kappa", [0.3, 1.0, 2.61])
def test_coverage_recursion_closed_form_equals_iteration(kappa):
    closed = V.coverage_bound(kappa, 0.7, 1.5, 30)
    it = [1.5]
    for _ in range(29):
        it.append(kappa * it[-1] + 0.7)
    np.testing.assert_allclose(closed, it, rtol=1e-12)


def test_verified_map_fixed_points():
    p = V.verified_map(np.array([0.0, 0.05, 0.5, 1.0]), 2, 40)
    np.testing.assert_allclose(p[-1], [0, 1, 1, 1], atol=1e-12)
    np.testing.assert_allclose(V.verified_map(np.array([0.3]), 1, 5)[:, 0], 0.3)  # N = 1: naive
    q = np.linspace(0, 1, 11)
    assert np.all(V.miss_probability(q, 5) <= V.miss_bound(q, 5) + 1e-15)


def test_markov_step_is_an_exact_inequality():
    """P_x[G_0(y+|x) < c/N] <= C_gamma c / N for any table and any c > 0 (spec 3.3(3))."""
    probs = np.random.default_rng(0).dirichlet(np.full(10, 0.3), size=(5, 200))
    mass = V.verified_mass(probs, V.verified_set(probs))
    cov = V.coverage_coefficient(probs, V.verified_set(probs))
    for c in (0.5, 1, 2, 5):
        for N in (1, 4, 16):
            assert np.all((mass < c / N).mean(-1) <= cov * c / N + 1e-12)


# ---- the experiment checks (1-6, 9) ---------------------------------------------------------


def test_naive_error_rises_and_real_data_stabilises(tabular):
    err = mean_curve(tabular, "error")
    assert err.naive[10] - err.naive[0] >= 0.20  # 0.316 +- 0.015 (min 0.292)
    assert err.real[10] - err.real[0] <= 0.06  # 0.019 +- 0.010 (max 0.039)
    assert err.naive[10] - err.real[10] >= 0.15  # 0.298 +- 0.012


def test_self_verification_keeps_the_error_flat(tabular):
    err = mean_curve(tabular, "error")
    assert abs(err.sv[10] - err.sv[0]) <= 0.02  # 0.0016 +- 0.0015 (max 0.0054)
    assert (err.sv - err.sv[0]).abs().max() <= 0.02


def test_coverage_grows_geometrically_but_slower_than_the_bound(tabular):
    """Check 4: ln C_t is linear in t (the *error* is bounded, never fit it)."""
    cov = mean_curve(tabular, "coverage")
    t = np.arange(A["T"] + 1)
    y = np.log(cov.naive.to_numpy())
    slope, icpt = np.polyfit(t, y, 1)
    r2 = 1 - ((y - slope * t - icpt) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert slope >= 0.15 and r2 >= 0.9  # slope 0.267 +- 0.008, R^2 0.989 +- 0.006
    c0 = tabular.wide("min_confidence").loc["naive"].loc[0].mean()
    assert slope < np.log(V.growth_factor(c0))  # ln a(C0_hat) = 0.97 +- 0.03


def test_self_verification_collapses_coverage_to_one_and_sharpens(tabular):
    cov = mean_curve(tabular, "coverage")
    assert cov.sv[10] <= 1.1  # 1.0471 +- 0.0001
    slope = np.polyfit(np.arange(2, A["T"] + 1), np.log(cov.sv.to_numpy()[2:]), 1)[0]
    assert abs(slope) <= 0.01  # < 1e-4
    floor = float(V.verified_coverage_floor(A["n"], A["m"], A["K"], A["lam"]))
    assert floor == pytest.approx(1.04723, abs=1e-5)  # every x labelled inside y+: 1.0471 (sim)
    H = mean_curve(tabular, "entropy")
    assert H.sv[10] / H.sv[0] <= 0.5  # 0.295 +- 0.003: the price, loss of diversity
    kl = mean_curve(tabular, "kl")
    assert kl.sv[10] > kl.naive[0]  # calibration to the truth gets worse, although Err does not


def test_coverage_floor_with_the_verified_set_sizes_is_the_plateau():
    truth = C.random_tabular(A["m"], A["K"], A["beta"], SEED, A["S"])
    cm = V.ChainMetrics()
    df = V.run_conditions(
        {"sv": (regime("replace"), V.SelfVerification(A["N"]))},
        learner=C.TabularMLE(A["m"], A["K"], A["lam"]),
        truth=truth,
        n=A["n"],
        generations=6,
        metrics=cm("coverage"),
        seeds=A["S"],
        seed=SEED,
    )
    sizes = cm.verified.sum(-1)
    floor = V.verified_coverage_floor(A["n"], A["m"], A["K"], A["lam"], sizes)
    diff = df.wide("coverage").to_numpy()[-1] - floor
    assert abs(diff.mean()) <= 4 * diff.std(ddof=1) / np.sqrt(A["S"])


def test_linear_gaussian_naive_error_matches_its_recursion():
    S, d, n = 2000, 10, 50
    design = R.GaussianDesign(np.ones(d))
    df = V.run_conditions(
        {"naive": (regime("replace"), None)},
        learner=C.LinearGaussianMLE(design),
        truth=C.random_linear(d, 0.5, SEED, S, design),
        n=n,
        generations=6,
        metrics={"error": lambda s: R.excess_risk(s.model.w, s.truth.w, design.eigs)},
        seeds=S,
        seed=SEED,
    )
    err = df.wide("error").to_numpy()
    theory = C.linear_gaussian_error(6, d, n, 0.5)
    assert np.all(np.abs(err.mean(1) - theory) <= 4 * err.std(1, ddof=1) / np.sqrt(S))


def test_bound_chain_holds_for_every_seed_and_generation(tabular):
    """Check 9: Err_t <= eps + P[G_t(y+) <= 1 - tau] <= eps + (1 - tau) C_t, exactly."""
    for cond in ("naive", "real", "sv"):
        get = {m: tabular.wide(m).loc[cond].to_numpy() for m in V.ChainMetrics.NAMES}
        low, high = V.bound_chain(get["residual"], get["low_confidence"], get["coverage"], 0.5)
        assert np.all(get["error"] <= low + 1e-12)
        assert np.all(low <= high + 1e-12)
    assert tabular.wide("error").loc["naive"].to_numpy()[-1].max() > 0  # not vacuous


def test_one_candidate_is_the_naive_chain_number_for_number():
    truth = C.random_tabular(20, 4, 2.0, 1, 3)
    common = dict(
        learner=C.TabularMLE(20, 4, 0.1),
        truth=truth,
        n=100,
        generations=4,
        metrics=V.ChainMetrics()("error", "coverage"),
        seeds=3,
        seed=1,
    )
    df = V.run_conditions(
        {"a": (regime("replace"), None), "a ": (regime("replace"), V.SelfVerification(1))},
        **common,
    )
    np.testing.assert_array_equal(
        df.where(condition="a").frame["value"].to_numpy(),
        df.where(condition="a ").frame["value"].to_numpy(),
    )


# ---- Monte-Carlo lemma (check 7) and population map (check 8) ------------------------------


@pytest.fixture(scope="module")
def base_model():
    truth = C.random_tabular(50, 10, 3.0, 2, 4)
    return C.TabularMLE(50, 10, 0.1).fit(truth.sample(1000, seed_generators(2, 4)))


@pytest.mark.parametrize("N", [1, 2, 3, 4, 8])
def test_miss_rate_is_the_monte_carlo_identity(base_model, N):
    """gamma = 0: the pick misses y+_0(x) iff every candidate does: rate E (1 - p)^N."""
    G0, R_draws = base_model, 100_000
    rngs = seed_generators(7, 4)
    cand = G0.sample(R_draws, rngs)
    ctx = FilterContext(1, cand, G0, G0, None, None, rngs)
    x, y = G0.split(V.SelfVerification(N)(ctx))
    ver = V.verified_set(G0.probs)
    miss = ~np.take_along_axis(np.take_along_axis(ver, x[..., None], 1), y[..., None], -1)[..., 0]
    p = np.take_along_axis(V.verified_mass(G0.probs, ver), x, 1)
    q = V.miss_probability(p, N)
    z = (miss.sum() - q.sum()) / np.sqrt((q * (1 - q)).sum())
    assert abs(z) <= 4
    assert miss.mean() <= V.miss_bound(p, N).mean() + 4 * np.sqrt((q * (1 - q)).sum()) / q.size


def test_with_a_margin_the_identity_is_only_a_lower_bound(base_model):
    G0, rngs = base_model, seed_generators(8, 4)
    cand = G0.sample(100_000, rngs)
    x, y = G0.split(V.SelfVerification(4, margin=1.0)(FilterContext(1, cand, G0, G0, 0, 0, rngs)))
    ver = V.verified_set(G0.probs, 1.0)
    hit = np.take_along_axis(np.take_along_axis(ver, x[..., None], 1), y[..., None], -1)[..., 0]
    q = V.miss_probability(np.take_along_axis(V.verified_mass(G0.probs, ver), x, 1), 4)
    assert (~hit).sum() >= q.sum() - 4 * np.sqrt((q * (1 - q)).sum())


def test_population_map_predicts_the_first_verified_generation():
    """Check 8: n_x ~ 500, no smoothing: E G_1(y+|x) = 1 - (1 - p_0(x))^N exactly."""
    S, m, K, N = 16, 100, 10, 2
    truth = C.random_tabular(m, K, 3.0, SEED, S)

    def predicted(step):
        p0 = V.verified_mass(step.model.probs, V.verified_set(step.model.probs))
        return V.verified_map(p0, N, 2)[1].mean(-1)

    cm = V.ChainMetrics()
    df = V.run_conditions(
        {"sv": (regime("replace"), V.SelfVerification(N))},
        learner=C.TabularMLE(m, K),
        truth=truth,
        n=500 * m,
        generations=2,
        metrics={"mass": lambda s: cm.value(s, "verified_mass"), "map": predicted},
        seeds=S,
        seed=SEED,
    )
    diff = df.wide("mass").to_numpy()[1] - df.wide("map").to_numpy()[0]
    assert abs(diff.mean()) <= 4 * diff.std(ddof=1) / np.sqrt(S)
    assert abs(diff.mean()) <= 0.01


# ---- fixation (check 10) --------------------------------------------------------------------


def test_naive_chain_without_smoothing_fixes_the_soft_error():
    """Check 10: Err_T -> E_x[1 - G_0(y*|x)] (a Wright-Fisher fixation, not 1 - 1/K)."""
    S, m, K = 16, 100, 10
    truth = C.random_tabular(m, K, 3.0, SEED, S)
    cm = V.ChainMetrics()
    fixed = {}

    def prediction(step):
        if step.generation == 0:
            fixed["value"] = V.fixation_error(step.model.probs, step.truth.top1())
        return fixed["value"]

    df = V.run_conditions(
        {"naive": (regime("replace"), None)},
        learner=C.TabularMLE(m, K),
        truth=truth,
        n=2000,
        generations=121,
        metrics={"error": lambda s: cm.value(s, "error"), "fixation": prediction},
        seeds=S,
        seed=SEED,
    )
    err = df.wide("error").to_numpy()
    diff = err[-1] - df.wide("fixation").to_numpy()[-1]
    assert abs(diff.mean()) <= 4 * diff.std(ddof=1) / np.sqrt(S)  # z = 0.5 +- 1.2 (10 seeds)
    assert diff.mean() + err[-1].mean() > err[0].mean() + 0.1  # far above Err(G_0)


# ---- Experiment B (checks 11, 12) -----------------------------------------------------------


def test_regression_analogue_orders_naive_over_mixed_over_verified():
    S, d = 256, 10
    design = R.GaussianDesign(np.ones(d))
    df = V.run_conditions(
        {
            "naive": (regime("replace"), None),
            "real": (regime("mixture", 0.5), None),
            "sv": (regime("replace"), V.SelfVerification(16)),
        },
        learner=C.LinearGaussianMLE(design),
        truth=C.random_linear(d, 0.5, SEED, S, design),
        n=50,
        generations=11,
        metrics={"error": lambda s: R.excess_risk(s.model.w, s.truth.w, design.eigs)},
        seeds=S,
        seed=SEED,
    )
    e = mean_curve(df, "error")
    assert e.naive[10] / e.naive[0] >= 3.0  # 4.50 +- 0.19 (min 4.18)
    assert e.naive[3] / e.naive[0] >= 2.3  # 2.94 +- 0.10 (min 2.76)
    assert abs(e.sv[10] / e.sv[0] - 1) <= 0.02  # 0.0000: anchored to G_0
    assert e.real[10] / e.real[0] <= 1.6  # 1.29 +- 0.05 (max 1.36)


# ---- Experiment C (checks 13, 14) -----------------------------------------------------------


def test_bigram_lm_token_verification_keeps_top1_but_costs_calibration():
    S, V_, L = 32, 27, 32
    truth = C.random_markov(V_, 0.1, L, SEED, S)
    df = V.run_conditions(
        {
            "naive": (regime("replace"), None),
            "real": (regime("mixture", 0.5), None),
            "sv": (regime("replace"), V.SelfVerification(8, level="token")),
            "sequence": (regime("replace"), V.SelfVerification(8)),
        },
        learner=C.BigramMLE(V_, L, 0.05, start=truth.start),
        truth=truth,
        n=200,
        generations=9,
        metrics=V.ChainMetrics(part=lambda lm: lm.transition)("error", "kl", "cross_entropy"),
        seeds=S,
        seed=SEED,
    )
    d = mean_curve(df, "error").iloc[-1] - mean_curve(df, "error").iloc[0]
    assert d.naive >= 0.07  # 0.136 +- 0.015 (12 master seeds, S = 32)
    assert d.sv <= 0.03  # 0.011 +- 0.002
    assert d.real <= 0.07  # 0.011 +- 0.009
    assert d.sequence >= d.naive  # verifying whole sequences: worse than nothing, by 0.105 +- 0.018
    x = mean_curve(df, "cross_entropy")
    assert x.sv.iloc[-1] - x.sv.iloc[0] >= 1.0  # 2.50 +- 0.04 nats
    kl = mean_curve(df, "kl")
    assert kl.naive.iloc[-1] - kl.naive.iloc[0] >= 0.1  # 0.224 +- 0.003


# ---- the selection rule ---------------------------------------------------------------------


def test_softmax_selection_frequencies_and_the_margin():
    scores = np.log(np.array([0.5, 0.3, 0.15, 0.05]))[None, None].repeat(20000, axis=1)
    rngs = seed_generators(0, 1)
    pick = V.select(scores, rngs, margin=np.inf)
    freq = np.bincount(pick[0], minlength=4) / pick.size
    p = np.array([0.5, 0.3, 0.15, 0.05])
    assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / pick.size))
    assert set(np.unique(V.select(scores, rngs, margin=0.6))) == {0, 1}  # log(5/3) = 0.51
    assert set(np.unique(V.select(scores, rngs))) == {0}
    uni = V.select(scores, rngs, margin=np.inf, selection="uniform")
    assert np.all(np.abs(np.bincount(uni[0], minlength=4) / uni.size - 0.25) <= 4 * 0.433 / 141)
    hot = V.select(scores, rngs, margin=np.inf, temperature=0.5)  # weights p^2
    assert abs((hot == 0).mean() - 0.25 / 0.3650) <= 4 * 0.47 / 141
    assert set(np.unique(V.select(np.full((1, 50, 3), -np.inf), rngs))) == {0, 1, 2}


def test_current_verifier_scores_with_the_proposing_model(base_model):
    G0 = base_model
    flat = C.ConditionalCategorical(np.full_like(G0.probs, 0.1))  # every label ties
    rngs = seed_generators(3, 4)
    cand = flat.sample(5000, rngs)
    ctx = FilterContext(1, cand, flat, G0, None, None, rngs)
    x, y = flat.split(V.SelfVerification(8, verifier="current")(ctx))
    freq = np.bincount(y.ravel(), minlength=10) / y.size  # uniform: the flat model judged itself
    assert np.all(np.abs(freq - 0.1) <= 4 * 0.3 / np.sqrt(y.size))
    x, y = flat.split(V.SelfVerification(8)(ctx))  # the frozen G_0 judges
    hit = V.verified_set(G0.probs)[np.arange(4)[:, None], x, y]
    assert hit.mean() > 0.5


# ---- bad inputs -----------------------------------------------------------------------------


def test_bad_inputs_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="c0"):
        V.growth_factor(0.0)
    with pytest.raises(ValueError, match="c0"):
        V.candidates_threshold(1.5)
    with pytest.raises(ValueError, match="remedy"):
        V.contraction(0.5, "magic")
    with pytest.raises(ValueError, match="alpha"):
        V.contraction(0.5, "real", alpha=1.5)
    with pytest.raises(ValueError, match="candidates"):
        V.contraction(0.5, "verified")
    with pytest.raises(ValueError, match="candidates"):
        V.SelfVerification(0)
    with pytest.raises(ValueError, match="margin"):
        V.SelfVerification(4, margin=-1)
    with pytest.raises(ValueError, match="temperature"):
        V.SelfVerification(4, temperature=0)
    with pytest.raises(ValueError, match="verifier"):
        V.SelfVerification(4, verifier="oracle")
    with pytest.raises(ValueError, match="selection"):
        V.SelfVerification(4, selection="greedy")
    with pytest.raises(ValueError, match="level"):
        V.SelfVerification(4, level="word")
    with pytest.raises(ValueError, match="scores"):
        V.select(np.zeros((2, 3)), seed_generators(0, 2))
    with pytest.raises(ValueError, match="tau"):
        V.ChainMetrics(tau=2)
    with pytest.raises(ValueError, match="metric"):
        V.ChainMetrics()("accuracy")
    with pytest.raises(ValueError, match="p "):
        V.miss_probability(np.array([1.2]), 2)
    with pytest.raises(ValueError, match="generations"):
        V.coverage_bound(0.5, 0.1, 1.0, 0)
    with pytest.raises(ValueError, match="probs"):
        V.verified_set(np.array([-0.1, 1.1]))
    with pytest.raises(ValueError, match="labels"):
        V.top1_error(np.full((2, 3), 1 / 3), np.zeros(3, int))
    with pytest.raises(ValueError, match="conditions"):
        V.run_conditions({})
    with pytest.raises(ValueError, match="pair"):
        V.run_conditions({"x": regime("replace")})


def test_calibration_table_is_the_papers_table_1():
    t = V.calibration_table()
    assert t.correct.sum() == 1548 and t.incorrect.sum() == 1044
