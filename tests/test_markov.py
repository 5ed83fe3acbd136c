"""Next-token models on contaminated sources: sampling, counting, and the error recursion.

Monte Carlo tolerances: the squared error of one replicate is a sum over C*K = 256 weakly
dependent squared terms, so its relative standard deviation is about 0.1-0.15 and the standard
error of a mean over 64 replicates about 0.02; 10 % is five of those (a maximum over tens of
correlated generations stays well inside). The tolerances were checked on 20 root seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapse_lib import markov as M
from collapse_lib.categorical import stationary_distribution
from collapse_lib.data import text_corpus
from collapse_lib.loop import Learner, run
from collapse_lib.regimes import polynomial_decay, regime, sample_sizes
from collapse_lib.runtime import seed_generators

K, S = 16, 64
P = M.dirichlet_transitions(K, rng=np.random.default_rng(123))
TRUTH = M.NextTokenModel(P)
SIGMA2 = float(M.gini(P).sum())


def simulate(reg, n, T, metrics=None, seed=7, learner=None, **kw):
    metrics = metrics or {"error": lambda s: M.squared_error(s.model.probs, s.truth.probs)}
    return run(
        learner or M.NextTokenMLE(K),
        TRUTH,
        reg,
        n=n,
        generations=T,
        metrics=metrics,
        seeds=S,
        seed=seed,
        progress=False,
        **kw,
    )


def theory(reg, n, T, split="fixed"):
    alpha, sizes = M.realized_schedule(reg, n, T)
    return M.error_recursion(SIGMA2, alpha, sizes, split)


class Last:
    """A metric that keeps the model of the last generation (for checks on whole matrices)."""

    def __init__(self, T):
        self.T, self.model = T, None

    def __call__(self, step):
        if step.generation == self.T - 1:
            self.model = step.model
        return np.zeros(len(step.seeds))


# ---- sampling and fitting -----------------------------------------------------------------


def test_transition_matrices_are_stochastic_and_reproducible():
    for Q in (
        M.dirichlet_transitions(5, 3, 0.5, rng=np.random.default_rng(1)),
        M.zipf_transitions(5, 3, rng=np.random.default_rng(1)),
    ):
        assert Q.shape == (3, 5) and np.all(Q > 0)
        np.testing.assert_allclose(Q.sum(axis=1), 1.0)
    np.testing.assert_array_equal(
        M.dirichlet_transitions(4, rng=np.random.default_rng(3)),
        M.dirichlet_transitions(4, rng=np.random.default_rng(3)),
    )
    Z = M.zipf_transitions(6, 4, exponent=1.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(np.sort(Z, axis=1)[:, ::-1], np.tile(M.zipf(6, 1.0), (4, 1)))
    assert not np.all(Z[0] == Z[1])  # ranks are permuted per context


def test_next_token_sampling_frequencies_and_seed_streams():
    Q = np.array([[0.5, 0.0, 0.5], [0.1, 0.2, 0.7]])
    x = M.NextTokenModel(Q).sample(20000, seed_generators(0, 2))
    assert x.shape == (2, 20000, 2) and x.dtype == np.int64
    assert not np.any(x[:, :, 0] == 1)  # a token of probability 0 is never drawn
    for c in range(2):
        freq = np.bincount(x[0, :, c], minlength=3) / 20000
        assert np.all(np.abs(freq - Q[c]) <= 4 * np.sqrt(Q[c] * (1 - Q[c]) / 20000) + 1e-12)
    # replicate s draws only from its own stream: alone or in a batch, the same tokens
    alone = M.NextTokenModel(Q).sample(50, seed_generators(0, [1]))
    batch = M.NextTokenModel(Q).sample(50, seed_generators(0, 3))
    np.testing.assert_array_equal(alone[0], batch[1])


def test_mle_counts_per_context_and_rows_sum_to_one():
    data = np.array([[[0, 2], [0, 2], [1, 2], [0, 0]]])  # (S=1, n=4, C=2)
    model = M.NextTokenMLE(3).fit(data)
    np.testing.assert_allclose(model.probs[0], [[0.75, 0.25, 0], [0.25, 0, 0.75]])
    df = simulate(
        regime("mixture", alpha=0.3),
        20,
        5,
        metrics={"rows": lambda s: np.abs(s.model.probs.sum(-1) - 1).max(-1)},
    )
    assert df.frame["value"].max() < 1e-12


def test_realized_schedule_is_what_the_loop_draws():
    """A truth that emits only token 1 and models that emit only token 0 count the real samples."""

    class Zeros(Learner):
        def fit(self, data):
            return M.NextTokenModel(np.tile([[[1.0, 0.0]]], (data.shape[0], 1, 1)))

        fit_summary = fit

    reg = regime("mixture", alpha=polynomial_decay(0.9, 0.7))
    n = sample_sizes(7, 1.3)
    df = run(
        Zeros(),
        M.NextTokenModel([[0.0, 1.0]]),
        reg,
        n=n,
        generations=12,
        metrics={
            "real": lambda s: (s.data == 1).sum(axis=(1, 2)),
            "n": lambda s: np.full(2, s.data.shape[1]),
        },
        seeds=2,
        progress=False,
    )
    alpha, sizes = M.realized_schedule(reg, n, 12)
    assert alpha[0] == 1 and sizes.dtype == np.int64 and np.all(sizes >= 1)
    np.testing.assert_array_equal(df.wide("n").to_numpy()[:, 0], sizes)
    np.testing.assert_array_equal(df.wide("real").to_numpy()[:, 0], np.round(alpha * sizes))


# ---- the recursion against simulation (spec checks 1-5) ------------------------------------


@pytest.fixture(scope="module")
def constant_alpha():
    T = 200
    reg = regime("mixture", alpha=0.2)
    df = simulate(reg, 200, T, metrics=M.next_token_metrics())
    return df, theory(reg, 200, T)


def test_recursion_matches_simulation(constant_alpha):
    df, R = constant_alpha
    err = df.wide("error").to_numpy().mean(axis=1)
    assert np.max(np.abs(err[:51] / R[:51] - 1)) <= 0.10


def test_constant_alpha_is_bounded_at_the_fixed_point(constant_alpha):
    df, R = constant_alpha
    err = df.wide("error").to_numpy().mean(axis=1)
    limit = float(M.fixed_point(SIGMA2, 0.2, 200))
    assert abs(err[-20:].mean() / limit - 1) <= 0.10
    assert 2.3 <= err[-1] / err[0] <= 3.3  # theory 2.74: worse than generation 0, not collapsed
    support = df.wide("support").to_numpy().mean(axis=1)
    assert support[-1] >= 0.8 * support[0]
    # the exact fixed point agrees with the paper's iid form to O(alpha/n)
    iid = float(M.fixed_point(SIGMA2, 0.2, 200, split="iid"))
    assert abs(limit / iid - 1) < 0.01 and abs(R[-1] / limit - 1) < 1e-9


def test_collision_probability_is_truth_plus_error(constant_alpha):
    """``E||P_hat||^2 = ||p*||^2 + R_t`` exactly, because the fit is unbiased."""
    df, R = constant_alpha
    col = df.wide("collision").to_numpy()
    expected = ((P**2).sum(axis=1).sum() + R) / K  # mean over contexts
    se = col.std(axis=1, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(col.mean(axis=1) - expected) <= 5 * se)


def test_tv_approximation_outside_collapse(constant_alpha):
    df, _ = constant_alpha
    alpha, sizes = M.realized_schedule(regime("mixture", alpha=0.2), 200, 200)
    tv = df.wide("tv").to_numpy().mean(axis=1)
    assert np.max(np.abs(tv / M.tv_approximation(P, alpha, sizes) - 1)) <= 0.10


@pytest.fixture(scope="module")
def collapse():
    T = 500
    last = Last(T)
    metrics = {"error": lambda s: M.squared_error(s.model.probs, s.truth.probs), "last": last}
    df = simulate(regime("replace"), 50, T, metrics=metrics)
    return df, last.model.probs, theory(regime("replace"), 50, T)


def test_no_fresh_data_collapses_to_dirac_rows(collapse):
    _, probs, _ = collapse
    assert np.mean(probs.max(axis=-1) == 1.0) >= 0.99


def test_unbiasedness_survives_collapse(collapse):
    _, probs, _ = collapse
    bound = 5 * np.sqrt((P * (1 - P)).max() / S)
    assert np.max(np.abs(probs.mean(axis=0) - P)) <= bound


def test_collapsed_error_is_the_collapse_level(collapse):
    df, _, R = collapse
    err = df.wide("error").to_numpy().mean(axis=1)
    assert abs(R[-1] / SIGMA2 - 1) < 1e-3
    assert abs(err[-1] / R[-1] - 1) <= 0.05
    assert np.all(np.diff(R) >= 0)  # no fresh data: the error never decreases


def test_decaying_alpha_with_growing_n_recovers():
    reg = regime("mixture", alpha=polynomial_decay(1.0, 0.5))
    n = sample_sizes(50, 1.0)
    err = simulate(reg, n, 40).wide("error").to_numpy().mean(axis=1)
    R = theory(reg, n, 40)
    assert abs(err[-1] / R[-1] - 1) <= 0.10
    assert err[-1] < err[0] / 5  # improvement on the real-data model of generation 0


def test_summable_alpha_does_not_recover():
    reg = regime("mixture", alpha=polynomial_decay(1.0, 2.0))
    n = sample_sizes(20, 2.0)
    err = simulate(reg, n, 15).wide("error").to_numpy().mean(axis=1)
    assert abs(err[-1] / theory(reg, n, 15)[-1] - 1) <= 0.10
    long = theory(reg, n, 10_000)
    assert long[-1] > 0.95 * long[999] > 0  # a plateau: early noise is never forgotten


def test_accumulation_and_filtration_theory_match_simulation():
    acc = simulate(regime("accumulate"), 50, 40).wide("error").to_numpy().mean(axis=1)
    R = M.accumulate_error(SIGMA2, 40, 50)
    assert np.max(np.abs(acc / R - 1)) <= 0.10
    assert R[-1] < np.pi**2 / 6 * SIGMA2 / 50
    filt = simulate(regime("mixture", alpha=0.2), 200, 6, filter=M.discard_synthetic)
    err = filt.wide("error").to_numpy()[1:].mean()
    assert abs(err / M.filtered_error(SIGMA2, 0.2, 200) - 1) <= 0.10
    # the agnostic fixed point beats filtering by a factor of about 2 - alpha
    ratio = M.filtered_error(SIGMA2, 0.2, 200) / M.fixed_point(SIGMA2, 0.2, 200)
    assert 1.75 < ratio < 1.85


# ---- theory identities ----------------------------------------------------------------------


def test_recursion_closed_forms():
    T, n = 30, 25
    t = np.arange(T)
    zero = M.error_recursion(2.0, np.zeros(T), np.full(T, n))
    np.testing.assert_allclose(zero, 2.0 * (1 - (1 - 1 / n) ** (t + 1)))
    np.testing.assert_allclose(M.error_recursion(2.0, np.ones(T), np.full(T, n)), 2.0 / n)
    for split in ("fixed", "iid"):  # geometric convergence to the fixed point
        R = M.error_recursion(1.0, np.full(400, 0.3), np.full(400, 40), split)
        assert R[-1] == pytest.approx(float(M.fixed_point(1.0, 0.3, 40, split)), rel=1e-10)
    # coordinate-wise form: the token errors add up to the row error
    e = M.token_errors(P, np.full(T, 0.1), np.full(T, 60)).sum(axis=(0, 1))
    np.testing.assert_allclose(e, M.error_recursion(SIGMA2, np.full(T, 0.1), np.full(T, 60)))
    # grids of schedules in one pass agree with one schedule at a time
    grid = M.error_recursion(1.0, np.array([[0.1] * 5, [0.4] * 5]), np.full(5, 9))
    np.testing.assert_allclose(grid[1], M.error_recursion(1.0, [0.4] * 5, [9] * 5))


@pytest.mark.parametrize(
    ("beta", "gamma", "slope"),
    [(0.0, 1.0, -1.0), (0.25, 1.0, -0.75), (0.5, 1.0, -0.5), (1.0, 1.5, -0.5)],
)
def test_asymptotic_slopes_of_the_recursion(beta, gamma, slope):
    """Quasi-static rate t^(beta - gamma) for beta < 1; t^(1 - gamma) at beta = 1, c = 1."""
    out = M.regime_map([beta], [gamma], 10_000, 200, split="iid")
    assert out["slope"][0, 0] == pytest.approx(slope, abs=0.05)


def test_asymptotic_slope_table():
    assert M.asymptotic_slope(0.5, 1.5) == -1.0 and M.asymptotic_slope(0.5, 0.5) == 0.0
    assert M.asymptotic_slope(1.0, 1.5) == -0.5 and M.asymptotic_slope(1.0, 3.0, c=0.25) == -0.5
    assert M.asymptotic_slope(1.0, 1.0) == 0.0 and M.asymptotic_slope(2.0, 5.0) == 0.0
    with pytest.raises(ValueError, match="beta"):
        M.asymptotic_slope(-1.0, 1.0)


def test_regime_map_collapse_and_improvement():
    out = M.regime_map([0.5, 2.0], [0.0, 1.5, 2.0], 3000, 20)
    ratio = out["ratio"]
    assert ratio[0, 0] > 10 and ratio[0, 1] < 0.1  # beta < gamma recovers, gamma < beta drifts
    assert 0.05 < ratio[1, 2] < 1  # sum alpha < inf: improvement on R_0 but no recovery
    assert abs(out["slope"][1, 2]) < 0.05


def test_collapse_time_diffusion_approximation():
    assert M.collapse_time(np.array([1.0, 0.0]), 10) == pytest.approx(0.0)
    p = np.full(2, 0.5)  # Kimura: 2n ln 2 * 2 * 0.5 for two equal alleles
    assert M.collapse_time(p, 100) == pytest.approx(200 * np.log(2))


# ---- the sequence-level chain and the text --------------------------------------------------


def test_markov_chain_sampling_matches_transitions():
    Q = M.dirichlet_transitions(5, rng=np.random.default_rng(4))
    pi = stationary_distribution(Q)
    np.testing.assert_allclose(pi @ Q, pi, atol=1e-12)
    x = M.MarkovChain(Q, pi, 200).sample(200, seed_generators(1, 2))
    assert x.shape == (2, 200, 200)
    fit = M.MarkovChainMLE(5).fit(x)
    counts = fit.counts.sum(axis=-1, keepdims=True)
    sd = np.sqrt(Q * (1 - Q) / counts)
    assert np.all(np.abs(fit.transitions - Q) <= 5 * sd + 1e-12)
    assert np.all(M.total_variation(fit.start, pi) < 0.02)  # 40,000 tokens per seed


def test_chain_mle_counts_backoff_smoothing_and_order():
    x = np.array([[[0, 1, 0, 1, 2]]])  # token 2 is never followed
    fit = M.MarkovChainMLE(3).fit(x)
    np.testing.assert_allclose(fit.transitions[0, 0], [0, 1, 0])
    np.testing.assert_allclose(fit.transitions[0, 1], [0.5, 0, 0.5])
    np.testing.assert_allclose(fit.transitions[0, 2], [0.25, 0.5, 0.25])  # back-off: unigram
    np.testing.assert_allclose(fit.start[0], [0.4, 0.4, 0.2])
    assert M.transition_support(fit)[0] == 3
    smooth = M.MarkovChainMLE(3, smoothing=1.0).fit(x)
    np.testing.assert_allclose(smooth.transitions[0, 2], [1 / 3, 1 / 3, 1 / 3])
    tri = M.MarkovChainMLE(3, order=2).fit(x)
    assert tri.transitions.shape == (1, 9, 3)
    np.testing.assert_allclose(tri.transitions[0, 0 * 3 + 1], [1 / 2, 0, 1 / 2])  # after "0 1"
    y = tri.sample(30, seed_generators(0, 1))
    assert y.shape == (1, 30, 5) and set(np.unique(y)) <= {0, 1, 2}


def test_chain_in_the_loop_loses_transitions_without_fresh_data():
    Q = M.dirichlet_transitions(10, rng=np.random.default_rng(5))
    pi = stationary_distribution(Q)
    truth = M.MarkovChain(Q, pi, 30)
    out = {}
    for name, reg in (("replace", regime("replace")), ("mix", regime("mixture", alpha=0.3))):
        df = run(
            M.MarkovChainMLE(10),
            truth,
            reg,
            n=50,
            generations=60,
            metrics=M.chain_metrics(Q, pi),
            seeds=8,
            progress=False,
        )
        out[name] = {
            m: df.wide(m).to_numpy().mean(axis=1) for m in ("tv", "transitions", "next_tokens")
        }
    assert out["replace"]["transitions"][-1] < 0.6 * out["mix"]["transitions"][-1]
    # the per-context count is the total over the 10 contexts, divided by 10
    np.testing.assert_allclose(out["mix"]["next_tokens"], out["mix"]["transitions"] / 10)
    assert np.all(out["mix"]["next_tokens"] <= 10)
    assert out["replace"]["tv"][-1] > 2 * out["mix"]["tv"][-1]


def test_text_windows_and_empirical_chain():
    text = text_corpus("zen")
    ids = M.encode(text)
    assert M.decode(ids) == text and ids.max() < 27
    windows = M.TextWindows(ids, 12).sample(5, seed_generators(0, 2))
    assert windows.shape == (2, 5, 12)
    for w in windows.reshape(-1, 12):
        assert M.decode(w) in text
    chain = M.empirical_chain(ids, 27, 1, 12)
    assert chain.transitions.shape == (27, 27) and chain.counts.sum() == ids.size - 1


# ---- bad inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.dirichlet_transitions(0, rng=np.random.default_rng(0)), "tokens"),
        (
            lambda: M.dirichlet_transitions(3, concentration=0, rng=np.random.default_rng(0)),
            "concentration",
        ),
        (lambda: M.NextTokenModel(np.array([[0.5, 0.6]])), "sum to 1"),
        (lambda: M.NextTokenModel(np.ones(3) / 3), "shape"),
        (lambda: M.NextTokenMLE(3).fit(np.zeros((2, 3), dtype=int)), "shape"),
        (lambda: M.error_recursion(1.0, [0.5, 1.5], [10, 10]), "alpha"),
        (lambda: M.error_recursion(1.0, [0.5, 0.5], [10, 0]), "n must"),
        (lambda: M.error_recursion(1.0, [0.5] * 3, [10] * 2), "broadcast"),
        (lambda: M.error_recursion(1.0, [0.5], [10], split="random"), "unknown split"),
        (lambda: M.fixed_point(1.0, 1.2, 10), "alpha"),
        (lambda: M.filtered_error(1.0, 0.01, 10), "alpha"),
        (lambda: M.realized_schedule("mixture", 10, 5), "Regime"),
        (lambda: M.realized_schedule(regime("replace"), 0, 5), "n_0"),
        (lambda: M.regime_map([-1], [1], 10, 5), "betas"),
        (lambda: M.late_slope(np.ones(10), start=1.5), "start"),
        (lambda: M.MarkovChain(np.eye(3), np.ones(3) / 3, 1), "length"),
        (lambda: M.MarkovChain(np.eye(3), np.ones(2) / 2, 5), "start"),
        (lambda: M.MarkovChainMLE(3).fit(np.array([[[0, 3]]])), "tokens"),
        (lambda: M.MarkovChainMLE(3, smoothing=-1), "smoothing"),
        (lambda: M.encode("Hello"), "only"),
        (lambda: M.TextWindows(np.arange(3), 5), "ids"),
        (lambda: M.weighted_tv(np.eye(2), np.eye(2), np.ones(3) / 3), "weights"),
    ],
)
def test_bad_inputs_raise_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_same_seed_same_run():
    reg = regime("mixture", alpha=polynomial_decay(1.0, 0.5))
    a = simulate(reg, 30, 5, seed=3)
    b = simulate(reg, 30, 5, seed=3)
    c = simulate(reg, 30, 5, seed=4)
    assert a.frame.equals(b.frame) and not np.allclose(a.frame["value"], c.frame["value"])
