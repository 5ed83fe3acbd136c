"""Tests of collapse_lib.curation: the spec's checks T1-T11, exact identities, bad inputs.

Monte Carlo checks use the chapter's quick sizes (4 seeds x 2000 prompts) and a fixed seed.
Where a formula is exact in expectation, the simulation must lie within ``Z = 4`` standard
errors of it, the standard error computed from the run itself (per-prompt deviations are
independent across prompts and seeds). Orderings and plateaus use the spec's margins, each
several seed-to-seed standard deviations wide.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from collapse_lib import curation as C
from collapse_lib import regime, run
from collapse_lib.loop import FilterContext, Learner
from collapse_lib.modular import PromptModel
from collapse_lib.runtime import seed_generators

SEED = 0
Z = 4.0
S, N, T, K, LAM = 4, 2000, 20, 8, 2.0
RHO, BETA = 0.3, 0.3
CONDITIONS = ("C0", "C1", "C2", "C3", "C4")


@pytest.fixture(scope="module")
def task():
    return C.binary_task(C.base_success(S, N, rho=RHO, seed=SEED))


@pytest.fixture(scope="module")
def five(task):
    """The five conditions of the chapter's first figure, quick sizes."""
    V = C.Verifier(1.0, 0.5)
    conditions = {
        "C0": None,
        "C1": C.WeakLabeler(BETA, N // 20, "uniform"),
        "C2": V,
        "C3": C.Curation(V, C.WeakLabeler(BETA, N // 20, "uniform")),
        "C4": C.Curation(V, C.WeakLabeler(BETA, N // 20, "hard")),
    }
    metrics = {**C.default_metrics(K), "q": C.QRecorder([0, T // 2, T])}
    rec = metrics["q"]
    df = C.simulate(conditions, task, k=K, rounds=T, lam=LAM, seeds=S, seed=SEED, metrics=metrics)
    return df, rec


def mean_pass(df, condition, t):
    return df.final("pass@1", condition, generation=t)[0]


def ctx_for(candidates, model, truth, seeds=S):
    return FilterContext(1, candidates, model, model, None, truth, seed_generators(99, seeds))


# ---- building blocks ---------------------------------------------------------------------------


def test_generation_zero_is_the_base_model(task, five):
    df, _ = five
    for c in ("C0", "C4"):
        np.testing.assert_allclose(
            df.per_seed("pass@1", c).to_numpy()[0], task.q0.mean(1), atol=1e-6
        )


def test_sampling_frequencies_and_zero_probability_answers():
    probs = np.array([[[0.2, 0.5, 0.3, 0.0], [0.0, 0.0, 1.0, 0.0]]])  # S = 1, P = 2, A = 4
    x = PromptModel(probs).sample(20000, seed_generators(SEED, 1))
    assert x.shape == (1, 20000, 2, 4) and set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(x.sum(-1), 1.0)
    freq = x[0].mean(0)
    se = np.sqrt(probs[0] * (1 - probs[0]) / 20000)
    assert np.all(np.abs(freq - probs[0]) <= Z * se + 1e-12)
    assert freq[0, 3] == 0 and freq[1, 2] == 1  # impossible answers never, certain ones always


def test_a_replicate_alone_draws_what_it_draws_in_a_batch(task):
    one = C.binary_task(C.base_success([2], N, rho=RHO, seed=SEED))
    np.testing.assert_array_equal(one.q0[0], task.q0[2])
    cur = C.Curation(C.Verifier(0.9, 0.4), C.WeakLabeler(BETA, 50, "hard"))
    kw = {"k": K, "rounds": 3, "lam": LAM, "seed": SEED}
    batch = C.simulate({"x": cur}, task, seeds=S, **kw)
    alone = C.simulate({"x": cur}, one, seeds=[2], **kw)
    np.testing.assert_allclose(
        batch.per_seed("pass@1", "x").to_numpy()[:, 2],
        alone.per_seed("pass@1", "x").to_numpy()[:, 0],
        rtol=1e-12,
    )


def test_verifier_acceptance_rates(task):
    model = PromptModel(task.probs)
    cand = model.sample(K, seed_generators(SEED, S))
    kept = C.Verifier(0.8, 0.3)(ctx_for(cand, model, task))
    good = cand[..., 1] == 1
    for mask, rate in ((good, 0.8), (~good, 0.3)):
        n = mask.sum()
        acc = kept.sum(-1)[mask].mean()
        assert abs(acc - rate) <= Z * np.sqrt(rate * (1 - rate) / n)
    assert C.Verifier(1.0, 0.5).gamma == 0.5 and C.Verifier(0.6, 0.1).ratio == pytest.approx(6)


def test_labeler_budget_accuracy_and_policies(task):
    model = PromptModel(task.probs)
    cand = C.Verifier(1.0, 0.0)(ctx_for(model.sample(K, seed_generators(1, S)), model, task))
    accepted = cand.sum(axis=(1, 3))
    B = 300
    for policy in C.POLICIES:
        lab = C.WeakLabeler(0.25, B, policy)
        out = lab(ctx_for(cand, model, task))
        assert out.shape == (S, K + 1, N, 2)
        np.testing.assert_array_equal(out[:, :K], cand)
        slot = out[:, K]
        chosen = slot.sum(-1) > 0
        np.testing.assert_array_equal(chosen.sum(1), lab.queries)
        if policy == "adaptive":
            assert np.all(accepted[chosen] == 0)
            np.testing.assert_array_equal(lab.queries, np.minimum(B, (accepted == 0).sum(1)))
        else:
            np.testing.assert_array_equal(lab.queries, B)
        if policy == "hard":  # the B prompts with the fewest accepted responses
            for s in range(S):
                assert accepted[s][chosen[s]].max() <= accepted[s][~chosen[s]].min()
        if policy == "oracle":
            for s in range(S):
                assert task.q0[s][chosen[s]].max() <= task.q0[s][~chosen[s]].min()
    # label accuracy beta, and ties broken at random (not the lowest indices)
    lab = C.WeakLabeler(0.25, 1000, "uniform")
    slot = lab(ctx_for(cand, model, task))[:, K]
    n = (slot.sum(-1) > 0).sum()
    assert abs(slot[..., 1].sum() / n - 0.25) <= Z * np.sqrt(0.25 * 0.75 / n)
    flat = np.zeros_like(cand)
    chosen = C.WeakLabeler(0.5, 100, "hard")(ctx_for(flat, model, task))[:, K].sum(-1) > 0
    idx = np.nonzero(chosen[0])[0]
    assert abs(idx.mean() - (N - 1) / 2) <= Z * N / np.sqrt(12 * 100)


def test_labels_through_the_verifier(task):
    model = PromptModel(task.probs)
    cand = model.sample(K, seed_generators(SEED, S))
    lab = C.WeakLabeler(0.5, N, "uniform", weight=3.0, verifier=C.Verifier(1.0, 0.0))
    slot = lab(ctx_for(cand, model, task))[:, K]
    assert np.all(slot[..., 0] == 0)  # every wrong label rejected
    assert set(np.unique(slot[..., 1])) == {0.0, 3.0}


def test_learner_update_rule_and_empty_prompts():
    probs = np.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]])
    counts = np.array([[[1.0, 3.0], [0.0, 0.0], [2.0, 0.0]]])
    new = C.SmoothedLearner(2.0).refit(PromptModel(probs), counts).probs
    np.testing.assert_allclose(new[0, 0], [(1 + 1) / 6, (3 + 1) / 6])
    np.testing.assert_allclose(new[0, 1], (2 * probs[0, 1]) / 2)
    np.testing.assert_allclose(new[0, 2], [(2 + 0.4) / 4, 1.6 / 4])
    exact = C.SmoothedLearner(0.0).refit(PromptModel(probs), counts).probs
    np.testing.assert_allclose(exact[0, 1], probs[0, 1])  # no data: keep the model
    np.testing.assert_allclose(exact[0, 0], [0.25, 0.75])


def test_the_loop_warm_starts_learners_that_define_refit():
    class Frozen(Learner):
        """refit returns the current model: every generation must equal generation 0."""

        def fit(self, data):
            return C.SmoothedLearner(0.0).fit(data)

        def refit(self, model, summary):
            return model

    truth = C.binary_task(np.array([[0.2, 0.7, 0.0]]))
    df = run(
        Frozen(),
        truth,
        regime("replace"),
        n=4,
        generations=4,
        seeds=1,
        metrics={"pass@1": C.pass_at_1},
    )
    np.testing.assert_allclose(df.frame["value"], 0.3)


# ---- exact identities of the closed forms ------------------------------------------------------


@pytest.mark.parametrize("k,lam", [(8, 2.0), (3, 0.0), (16, 5.0)])
def test_heterozygosity_factor_is_exact_for_one_round(k, lam):
    q = np.linspace(0.0, 1.0, 11)
    c = np.arange(k + 1)[:, None]
    pmf = binom.pmf(c, k, q)
    new = (c + lam * q) / (k + lam)
    np.testing.assert_allclose((pmf * new).sum(0), q, atol=1e-12)  # martingale: E[q' | q] = q
    np.testing.assert_allclose(
        (pmf * new * (1 - new)).sum(0), q * (1 - q) * C.heterozygosity_factor(k, lam), atol=1e-12
    )


def test_weak_only_mean_is_exact_for_one_round():
    k, lam, w, beta, f = 8, 2.0, 1.0, 0.1, 0.05
    q = np.linspace(0.0, 1.0, 21)
    c = np.arange(k + 1)[:, None]
    pmf = binom.pmf(c, k, q)
    labelled = (pmf * (c + beta * w + lam * q) / (k + lam + w)).sum(0)
    expected = f * labelled + (1 - f) * q
    pred = C.weak_only_mean(q, beta, budget_fraction=f, k=k, lam=lam, weight=w, rounds=1)[1]
    np.testing.assert_allclose(expected, pred, atol=1e-12)


def test_odds_law_and_small_formulas():
    q0 = np.array([0.0, 0.1, 0.5, 1.0])
    q = C.odds_law(q0, 0.9, 0.3, np.arange(4))
    odds = q[:, 1:3] / (1 - q[:, 1:3])
    np.testing.assert_allclose(odds[1:] / odds[:-1], 3.0)
    np.testing.assert_array_equal(q[:, 0], 0.0)
    np.testing.assert_array_equal(q[:, 3], 1.0)
    assert C.odds_law(0.2, 0.5, 0.5, 7) == pytest.approx(0.2)  # r = 1: nothing happens
    np.testing.assert_allclose(C.unsolved_fraction(0.3, 0.2, 2), [0.3, 0.24, 0.192])
    assert C.rounds_to_clear(0.3, 0.01, 0.2) == pytest.approx(np.log(30) / -np.log(0.8))
    assert C.labels_to_clear(0.3, 0.01, 0.2, 1000, "uniform") == pytest.approx(
        1000 * np.log(30) / 0.2
    )
    assert C.labels_to_clear(0.3, 0.01, 0.2, 1000, "hard") == pytest.approx(1000 * 0.29 / 0.2)
    np.testing.assert_allclose(C.coverage(np.array([[0.0, 0.2, 0.0, 1.0]])), [0.5])


# ---- the spec's checks T1-T11 -----------------------------------------------------------------


def test_T1_T2_T3_no_curation_martingale_heterozygosity_and_diversity(task, five):
    df, rec = five
    q0 = rec_q(df, rec, "C0", 0)
    qT = rec_q(df, rec, "C0", T)
    d = (qT - q0).ravel()  # T1: a martingale, per-prompt increments independent
    assert abs(d.mean()) <= Z * d.std(ddof=1) / np.sqrt(d.size)
    h = df.per_seed("heterozygosity", "C0").to_numpy()  # T2
    factor = C.heterozygosity_factor(K, LAM)
    for t in (T // 2, T):
        q = rec_q(df, rec, "C0", t)
        dev = (q * (1 - q) - q0 * (1 - q0) * factor**t).ravel()
        assert abs(dev.mean()) <= Z * dev.std(ddof=1) / np.sqrt(dev.size)
        assert abs(h[t].mean() / (h[0].mean() * factor**t) - 1) <= 0.10
    p8 = df.curve(f"pass@{K}", "C0")  # T3
    assert p8[0] - p8[T] >= 0.2


def rec_q(df, rec, condition, t):
    """The recorded q of ``condition`` at generation ``t`` (the recorder keeps the last run's)."""
    return rec.runs[list(CONDITIONS).index(condition)][t]


def test_T4_T5_filter_alone_absorbs_zeros_and_plateaus(task, five):
    df, rec = five
    q0, qT = rec_q(df, rec, "C2", 0), rec_q(df, rec, "C2", T)
    np.testing.assert_array_equal(qT == 0, q0 == 0)  # T4, exactly
    p1 = df.per_seed("pass@1", "C2").to_numpy()
    assert np.all(p1[T] <= C.coverage(q0) + 1e-12)
    assert p1[T].mean() - p1[T // 2].mean() <= 0.03  # T5


def test_T6_odds_law_in_the_population_limit():
    Ns, k, tpr, fpr, rounds = 250, 2048, 0.9, 0.3, 6
    task = C.binary_task(C.base_success(S, Ns, rho=RHO, seed=SEED))
    rec = C.QRecorder(range(rounds + 1))
    C.simulate(
        {"f": C.Verifier(tpr, fpr)},
        task,
        k=k,
        rounds=rounds,
        lam=0.0,
        seeds=S,
        seed=SEED,
        metrics={"q": rec},
    )
    theory = C.odds_law(task.q0, tpr, fpr, np.arange(rounds + 1))
    err = [abs(rec.q[t].mean() - theory[t].mean()) for t in range(rounds + 1)]
    assert max(err) <= 0.005


@pytest.mark.parametrize("policy", ["oracle", "uniform"])
def test_T7_hard_set_thins_binomially(task, policy):
    B = N // 2 if policy == "oracle" else N // 5
    f = 1.0 if policy == "oracle" else B / N
    cur = C.Curation(C.Verifier(1.0, 0.0), C.WeakLabeler(BETA, B, policy))
    df = C.simulate({"x": cur}, task, k=K, rounds=10, lam=LAM, seeds=S, seed=SEED)
    H = df.per_seed("unsolved", "x").to_numpy() * N  # (t, S)
    if policy == "oracle":
        assert np.all(H[0] < B)  # every unsolved prompt is labelled, every round
    H0 = H[0].mean()
    for t in (1, 3, 5, 10):
        p = (1 - BETA * f) ** t
        sd = np.sqrt(H0 * p * (1 - p) / S)
        assert abs(H[t].mean() - H0 * p) <= Z * sd


def test_T8_ordering_of_the_five_conditions(five):
    df, _ = five
    c2, c3, c4 = (mean_pass(df, c, T) for c in ("C2", "C3", "C4"))
    assert c4 - c3 >= 0.05 and c3 - c2 >= 0.02


def test_T9_weak_labels_alone_pull_towards_beta(task):
    beta, B = 0.1, N // 20
    rec = C.QRecorder([0, T])
    C.simulate(
        {"w": C.WeakLabeler(beta, B, "uniform")},
        task,
        k=K,
        rounds=T,
        lam=LAM,
        seeds=S,
        seed=SEED,
        metrics={"q": rec},
    )
    pred = C.weak_only_mean(rec.q[0].mean(1), beta, budget_fraction=B / N, k=K, lam=LAM, rounds=T)[
        T
    ]
    dev = (rec.q[T] - rec.q[0]).mean(1) - (pred - rec.q[0].mean(1))
    se = rec.q[T].std(ddof=1) / np.sqrt(S * N)  # per-prompt spread: conservative
    assert abs(dev.mean()) <= Z * se


def first_passage(curve: np.ndarray, eps: float) -> np.ndarray:
    below = curve <= eps
    assert below.any(axis=0).all(), "some seed never reached eps"
    return below.argmax(axis=0)


@pytest.mark.parametrize("beta", [0.2, 0.4])
def test_T10_rounds_to_clear_the_hard_set(task, beta):
    eps = 0.01
    pred = C.rounds_to_clear(RHO, eps, beta)
    cur = C.Curation(C.Verifier(1.0, 0.0), C.WeakLabeler(beta, N // 2, "hard"))
    df = C.simulate({"x": cur}, task, k=K, rounds=int(2 * pred) + 5, lam=LAM, seeds=S, seed=SEED)
    got = np.median(first_passage(df.per_seed("unsolved", "x").to_numpy(), eps))
    rho_hat = C.coverage(task.q0).mean()
    assert abs(got - pred) <= max(2.0, 0.15 * pred), (got, pred, rho_hat)


def test_T11_spilled_labels_cap_accuracy_unless_filtered(task):
    V = C.Verifier(1.0, 0.0)
    conditions = {
        f"{B}{'f' if filt else ''}": C.Curation(
            V, C.WeakLabeler(BETA, B, "hard", verifier=V if filt else None)
        )
        for B in (200, 700)
        for filt in (False, True)
    }
    df = C.simulate(conditions, task, k=K, rounds=T, lam=LAM, seeds=S, seed=SEED)
    assert mean_pass(df, "700", T) < mean_pass(df, "200", T)
    assert mean_pass(df, "200f", T) >= 0.99 and mean_pass(df, "700f", T) >= 0.99


# ---- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: C.Verifier(1.2, 0.5), "tpr"),
        (lambda: C.Verifier(1.0, -0.1), "fpr"),
        (lambda: C.WeakLabeler(1.5, 10), "beta"),
        (lambda: C.WeakLabeler(0.3, -1), "budget"),
        (lambda: C.WeakLabeler(0.3, 10, "greedy"), "policy"),
        (lambda: C.WeakLabeler(0.3, 10, weight=0), "weight"),
        (lambda: C.WeakLabeler(0.3, 10, verifier="yes"), "verifier"),
        (lambda: C.SmoothedLearner(-1.0), "lam"),
        (lambda: C.base_success(0, 10, rho=0.3), "seeds"),
        (lambda: C.base_success(2, 0, rho=0.3), "prompts"),
        (lambda: C.base_success(2, 10, rho=1.3), "rho"),
        (lambda: C.base_success(2, 10, rho=0.3, a=0.0), "a and b"),
        (lambda: C.binary_task(np.array([0.2, 0.3])), "q0"),
        (lambda: C.binary_task(np.array([[0.2, 1.3]])), "q0"),
        (lambda: PromptModel(np.ones((1, 2, 2))), "sum to 1"),
        (lambda: PromptModel(np.ones((2, 2))), "shape"),
        (lambda: C.Pretraining(np.full((1, 2, 2), 0.5), np.ones((2, 2), bool)), "correct"),
        (lambda: C.Pretraining(np.full((1, 3, 2), 0.5), np.eye(2, dtype=bool)), "disagree"),
        (lambda: PromptModel(np.full((1, 2, 2), 0.5)).sample(0, []), "n"),
        (lambda: C.Curation(), "Curation"),
        (lambda: C.pass_at(0), "k"),
        (lambda: C.below(2.0), "threshold"),
        (lambda: C.QRecorder([-1]), "generations"),
        (lambda: C.heterozygosity_factor(0, 1.0), "k"),
        (lambda: C.odds_law(0.5, 0.9, 0.0, 1), "fpr > 0"),
        (lambda: C.odds_law(1.5, 0.9, 0.3, 1), "q0"),
        (lambda: C.odds_law(0.5, 0.9, 0.3, -1), "t"),
        (lambda: C.weak_only_mean(0.3, 0.1, budget_fraction=2.0, k=8, lam=2, rounds=3), "budget"),
        (lambda: C.unsolved_fraction(0.3, 0.1, 3, budget_fraction=-0.5), "budget_fraction"),
        (lambda: C.rounds_to_clear(0.3, 0.5, 0.2), "eps"),
        (lambda: C.labels_to_clear(0.3, 0.01, 0.2, 100, "softmax"), "policy"),
        (lambda: C.simulate({}, None, k=8, rounds=3), "conditions"),
        (lambda: C.simulate({"x": 3}, None, k=8, rounds=3), "filter"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mismatched_shapes_raise(task):
    model = PromptModel(task.probs)
    with pytest.raises(ValueError, match="seeds"):
        model.sample(3, seed_generators(SEED, S + 1))
    with pytest.raises(ValueError, match="counts"):
        C.SmoothedLearner(1.0).refit(model, np.ones((S, N + 1, 2)))
    with pytest.raises(ValueError, match="shape"):
        C.WeakLabeler(0.3, 5)(ctx_for(np.ones((S, N, 2)), model, task))
