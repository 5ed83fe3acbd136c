"""The generation loop: agreement with closed forms, determinism, batching, errors."""

import numpy as np
import pandas as pd
import pytest

from collapse_lib import PerSeed, compare, regime, run
from collapse_lib.gaussian import (
    Gaussian,
    GaussianMLE,
    accumulate_variance_limit,
    accumulate_variance_mean,
    mixture_moments,
    replace_log_variance,
    replace_variance_mean,
)
from collapse_lib.loop import Learner, pack, unpack
from collapse_lib.regimes import polynomial_decay
from collapse_lib.results import COLUMNS, Results

VAR = {"variance": lambda step: step.model.var}


def small_run(**kwargs):
    """The tidy frame of a small Gaussian replace run (4 seeds, n = 5, 3 generations)."""
    args = dict(
        learner=GaussianMLE(),
        truth=Gaussian(0.0, 1.0),
        regime=regime("replace"),
        n=5,
        generations=3,
        metrics=VAR,
        seeds=4,
    )
    return run(**(args | kwargs)).frame


MOMENTS = {"variance": lambda step: step.model.var, "err2": lambda step: step.model.mean**2}


def simulate(name, *, n=20, generations=20, seeds=2000, seed=0, learner=None, alpha=None):
    """The loop's tidy frame (``Results.frame``) of a Gaussian chain."""
    return run(
        learner or GaussianMLE(),
        Gaussian(0.0, 1.0),
        regime(name, alpha=alpha),
        n=n,
        generations=generations,
        metrics=MOMENTS,
        seeds=seeds,
        seed=seed,
    ).frame


def per_generation(df, metric):
    return Results(df).wide(metric).to_numpy()  # rows: generation (one condition), columns: seeds


def test_replace_matches_closed_form_within_monte_carlo_error():
    n, T, S = 20, 20, 4000
    v = per_generation(simulate("replace", n=n, generations=T, seeds=S), "variance")
    theory = replace_variance_mean(T, n)
    # sd of sigma_t^2 from the chi^2 product: E[(chi2_{n-1}/n)^2] = (n-1)(n+1)/n^2
    second = ((n - 1) * (n + 1) / n**2) ** (np.arange(T) + 1)
    se = np.sqrt(second - theory**2) / np.sqrt(S)
    z = (v.mean(axis=1) - theory) / se
    assert np.all(np.abs(z) < 4), z  # 4 SE: a false alarm has probability ~1e-4 per generation
    # and the simulation is not trivially equal to theory: generation means fluctuate
    assert np.std(z) > 0.3


def test_replace_log_variance_is_a_drifting_random_walk():
    n, T, S = 20, 30, 4000
    logv = np.log(per_generation(simulate("replace", n=n, generations=T, seeds=S), "variance"))
    mean, sd = replace_log_variance(T, n)
    assert np.all(np.abs(logv.mean(axis=1) - mean) < 4 * sd / np.sqrt(S))
    assert np.allclose(logv.std(axis=1, ddof=1), sd, rtol=0.1)  # rel. SE of an sd: 1/sqrt(2S)
    assert np.median(logv[-1]) < np.log(0.5)  # the typical run has lost half its variance


def test_accumulate_stays_bounded_and_matches_product_formula():
    n, T, S = 20, 40, 2000
    df = simulate("accumulate", n=n, generations=T, seeds=S)
    v, e2 = per_generation(df, "variance"), per_generation(df, "err2")
    se_v = v.std(axis=1, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(v.mean(axis=1) - accumulate_variance_mean(T, n)) < 4 * se_v)
    se_e = e2.std(axis=1, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(e2.mean(axis=1) - (1 - accumulate_variance_mean(T, n))) < 4 * se_e)
    # bounded: never below the limit (minus MC error), and the mean error <= pi^2/6 x gen 0's
    assert np.all(v.mean(axis=1) > accumulate_variance_limit(n) - 4 * se_v)
    assert e2.mean(axis=1)[-1] < np.pi**2 / 6 * (1 / n) + 4 * se_e[-1]
    # conservation law E[sigma^2 + (mu - mu*)^2] = sigma*^2
    total = v + e2
    assert np.all(np.abs(total.mean(axis=1) - 1) < 4 * total.std(axis=1, ddof=1) / np.sqrt(S))


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_mixture_matches_recursion(alpha):
    n, T, S = 20, 30, 2000
    df = simulate("mixture", n=n, generations=T, seeds=S, alpha=alpha)
    v_th, e_th = mixture_moments(T, n, alpha)
    for metric, theory in [("variance", v_th), ("err2", e_th)]:
        x = per_generation(df, metric)
        se = x.std(axis=1, ddof=1) / np.sqrt(S)
        assert np.all(np.abs(x.mean(axis=1) - theory) < 4 * se), metric


def test_real_only_is_mixture_with_alpha_one():
    a = simulate("real_only", seeds=50, generations=5)
    b = simulate("mixture", alpha=1.0, seeds=50, generations=5)
    assert np.array_equal(a["value"], b["value"])


def test_same_seed_same_table_and_other_seed_other_table():
    a = simulate("replace", seeds=100, generations=10, seed=3)
    b = simulate("replace", seeds=100, generations=10, seed=3)
    c = simulate("replace", seeds=100, generations=10, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["value"], c["value"])
    assert list(a.columns) == list(COLUMNS)


def test_batched_and_per_seed_learner_agree():
    batched = simulate("accumulate", seeds=30, generations=15)
    per_seed = simulate("accumulate", seeds=30, generations=15, learner=PerSeed(GaussianMLE()))
    np.testing.assert_allclose(per_seed["value"], batched["value"], rtol=1e-12, atol=1e-14)


def test_a_seed_alone_equals_the_same_seed_in_a_batch():
    batch = simulate("replace", seeds=[0, 1, 2, 3], generations=8)
    alone = simulate("replace", seeds=[2], generations=8)
    inside = batch[batch["seed"] == 2].reset_index(drop=True)
    np.testing.assert_array_equal(alone["value"].to_numpy(), inside["value"].to_numpy())


def test_raw_data_accumulation_equals_sufficient_statistics():
    class RawGaussian(Learner):  # keeps every sample: the Learner defaults
        def fit(self, data):
            return Gaussian(data.mean(axis=-1), data.var(axis=-1))

    a = simulate("accumulate", seeds=20, generations=10, learner=RawGaussian())
    b = simulate("accumulate", seeds=20, generations=10)
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-9, atol=1e-12)


def test_compare_shares_generation_zero_across_conditions():
    df = compare(
        {"replace": regime("replace"), "accumulate": regime("accumulate")},
        learner=GaussianMLE(),
        truth=Gaussian(0.0, 1.0),
        n=10,
        generations=3,
        metrics=VAR,
        seeds=5,
    ).frame
    g0 = df[df["generation"] == 0].pivot(index="seed", columns="condition", values="value")
    np.testing.assert_array_equal(g0["replace"], g0["accumulate"])
    assert set(df["condition"]) == {"replace", "accumulate"}


def test_sample_size_schedule_and_alpha_schedule():
    sizes = []

    def n_t(t):
        sizes.append(t)
        return 10 * (t + 1)

    df = run(
        GaussianMLE(),
        Gaussian(0.0, 1.0),
        regime("mixture", alpha=polynomial_decay(1.0, 1.0)),
        n=n_t,
        generations=4,
        metrics={"size": lambda s: np.full(len(s.seeds), s.data.shape[1])},
        seeds=3,
    ).frame
    assert df.groupby("generation")["value"].first().tolist() == [10, 20, 30, 40]


def test_filter_sees_the_loop_state_and_can_oversample():
    seen = {}

    def keep_central_half(ctx):
        seen["t"] = ctx.generation
        seen["model0"] = ctx.model0
        more = ctx.draw(ctx.candidates.shape[1])
        pool = np.concatenate([ctx.candidates, more], axis=1)
        order = np.argsort(np.abs(pool - ctx.model.mean[:, None]), axis=1)
        return np.take_along_axis(pool, order[:, : ctx.candidates.shape[1]], axis=1)

    filtered = run(
        GaussianMLE(),
        Gaussian(0.0, 1.0),
        regime("replace"),
        n=20,
        generations=5,
        metrics=VAR,
        seeds=200,
        filter=keep_central_half,
    ).frame
    plain = simulate("replace", n=20, generations=5, seeds=200)
    assert seen["t"] == 4 and isinstance(seen["model0"], Gaussian)
    # keeping the central half of the samples shrinks the variance much faster
    last = filtered[filtered["generation"] == 4]["value"].mean()
    assert (
        last
        < 0.2 * plain[(plain["generation"] == 4) & (plain["metric"] == "variance")]["value"].mean()
    )


# ---- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"n": 2.5}, "n must be a positive integer"),
        ({"generations": 0}, "generations must be >= 1"),
        ({"seeds": []}, "seeds must not be empty"),
        ({"seeds": 0}, "seeds must be >= 1"),
        ({"seeds": [1, 1]}, "duplicates"),
        ({"metrics": {}}, "metrics must name"),
        ({"regime": "replace"}, "regime must be a Regime"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_run(**kwargs)


def test_schedule_leaving_unit_interval_is_reported_with_its_generation():
    with pytest.raises(
        ValueError, match=r"alpha \(at generation 3\) must lie in \[0, 1\], got 1.5"
    ):
        run(
            GaussianMLE(),
            Gaussian(0.0, 1.0),
            regime("mixture", alpha=lambda t: 0.5 * t),
            n=10,
            generations=4,
            metrics=VAR,
            seeds=2,
        )


def test_schedule_giving_size_zero_is_reported():
    with pytest.raises(ValueError, match="n_2 must be >= 1"):
        run(
            GaussianMLE(),
            Gaussian(0.0, 1.0),
            regime("replace"),
            n=lambda t: 10 - 5 * t,
            generations=4,
            metrics=VAR,
            seeds=2,
        )


def test_nan_from_a_learner_names_generation_and_seed():
    class Breaks(GaussianMLE):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def fit_summary(self, s):
            model = super().fit_summary(s)
            self.calls += 1
            if self.calls == 3:  # generation 2
                model.mean = model.mean.copy()
                model.mean[4] = np.nan
            return model

    msg = "drawn from the model of generation 2 .* is NaN or infinite for seed 4"
    with pytest.raises(FloatingPointError, match=msg):
        run(
            Breaks(),
            Gaussian(0.0, 1.0),
            regime("replace"),
            n=5,
            generations=5,
            metrics=VAR,
            seeds=6,
        )


def test_metric_with_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="metric 'bad' must return one value per seed"):
        run(
            GaussianMLE(),
            Gaussian(0.0, 1.0),
            regime("replace"),
            n=5,
            generations=2,
            metrics={"bad": lambda s: np.zeros(3)},
            seeds=4,
        )


def test_model_sampling_the_wrong_shape_is_rejected():
    class Short(Gaussian):
        def sample(self, n, rngs):
            return super().sample(n, rngs)[:, :-1]

    with pytest.raises(
        ValueError, match=r"real data at generation 0 must have shape \(seeds=4, n=5"
    ):
        run(
            GaussianMLE(),
            Short(0.0, 1.0),
            regime("replace"),
            n=5,
            generations=2,
            metrics=VAR,
            seeds=4,
        )


def test_warm_start_refit_is_used_batched_and_per_seed():
    class Warm(GaussianMLE):
        def refit(self, model, summary):  # average the new fit with the current model's mean
            fresh = self.fit_summary(summary)
            return Gaussian((model.mean + fresh.mean) / 2, fresh.var)

    batched = simulate("replace", seeds=20, generations=6, learner=Warm())
    per_seed = simulate("replace", seeds=20, generations=6, learner=PerSeed(Warm()))
    plain = simulate("replace", seeds=20, generations=6)
    np.testing.assert_allclose(per_seed["value"], batched["value"], rtol=1e-12, atol=1e-14)
    g0 = batched["generation"] == 0
    np.testing.assert_array_equal(batched[g0]["value"], plain[g0]["value"])  # gen 0: from scratch
    assert not np.allclose(batched[~g0]["value"], plain[~g0]["value"])


def test_learner_fit_defaults_to_fit_summary_of_summarize():
    class Mean(Learner):
        def summarize(self, data):
            return data.sum(axis=1), data.shape[1]

        def fit_summary(self, summary):
            total, n = summary
            return total / n

    np.testing.assert_array_equal(Mean().fit(np.arange(6.0).reshape(2, 3)), [1.0, 4.0])
    with pytest.raises(NotImplementedError, match="Bare must define fit or fit_summary"):

        class Bare(Learner):
            pass

        Bare().fit(np.zeros((1, 2)))


def test_run_names_a_learner_or_truth_without_the_protocol():
    kwargs = {"n": 5, "generations": 2, "metrics": VAR, "seeds": 2}
    with pytest.raises(ValueError, match="learner must have fit"):
        run(object(), Gaussian(0.0, 1.0), regime("replace"), **kwargs)
    with pytest.raises(ValueError, match="truth must have sample"):
        run(GaussianMLE(), object(), regime("replace"), **kwargs)


def test_pack_and_unpack_round_trip():
    X, Y = np.arange(24.0).reshape(2, 4, 3), np.arange(8.0).reshape(2, 4)
    data = pack(X, Y)
    assert data.shape == (2, 4, 4)
    X2, Y2 = unpack(data, 3)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(Y2[..., 0], Y)
    with pytest.raises(ValueError, match="must agree on the leading"):
        pack(X, np.ones((2, 5)))
    with pytest.raises(ValueError, match="more than p=4 columns"):
        unpack(data, 4)


# ---- accumulate_subsample ---------------------------------------------------------------


class Counter:
    """Truth and model at once: each draw is the next ids, the same for every seed.

    The ``k``-th point ever drawn has value ``k``: its position in the subsampling pool.
    """

    def __init__(self):
        self.next = 0

    def sample(self, n, rngs):
        ids = np.arange(self.next, self.next + n, dtype=float)
        self.next += n
        return np.tile(ids, (len(rngs), 1))


class Recorder(Learner):
    """A learner whose fit stores the data it was given (one array per generation)."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def fit(self, data):
        self.seen.append(np.asarray(data).copy())
        return self.model


SIZE = {"size": lambda step: np.full(len(step.seeds), step.data.shape[1])}


def positions(n, generations, seeds, filter=None):
    """The pool positions each generation of an accumulate_subsample run trained on."""
    counter = Counter()
    learner = Recorder(counter)
    df = run(
        learner,
        counter,
        regime("accumulate_subsample"),
        n=n,
        generations=generations,
        metrics=SIZE,
        seeds=seeds,
        filter=filter,
    ).frame
    return [x.astype(int) for x in learner.seen], df


def test_accumulate_subsample_trains_on_n_t_distinct_points_of_the_growing_pool():
    sizes = [4, 6, 8, 10]
    seen, df = positions(lambda t: sizes[t], 4, 500)
    assert len(seen) == 4
    np.testing.assert_array_equal(seen[0], np.tile(np.arange(4), (500, 1)))  # real data only
    assert df.groupby("generation")["value"].first().tolist() == sizes  # Step.data: new data
    for t in range(1, 4):
        pool = sum(sizes[: t + 1])  # n_0 + ... + n_t, the newest block included
        assert seen[t].shape == (500, sizes[t])
        assert np.all(np.diff(seen[t], axis=1) > 0)  # sorted, no point twice
        # every position of the pool, and nothing else, is drawn by some seed
        np.testing.assert_array_equal(np.unique(seen[t]), np.arange(pool))


def uniformity(idx, pool, blocks):
    """Chi-square p-value of the position counts and z-scores of the block counts.

    ``idx (S, k)``: each row ``k`` distinct positions of ``range(pool)``. Under uniform
    sampling without replacement a row's indicator vector has covariance
    ``p (1 - p) P/(P - 1) (I - 11^T/P)``, ``p = k/P``, so the scaled Pearson statistic is
    chi-square with ``P - 1`` degrees of freedom (asymptotically in ``S``); a block of
    ``b`` positions receives a hypergeometric count per row.
    """
    from scipy.special import chdtrc  # the chi-square survival function

    S, k = idx.shape
    p = k / pool
    counts = np.bincount(idx.ravel(), minlength=pool)
    var = S * p * (1 - p) * pool / (pool - 1)
    stat = np.sum((counts - S * p) ** 2) / var
    z = []
    for lo, hi in blocks:
        q = (hi - lo) / pool
        got = counts[lo:hi].sum()
        se = np.sqrt(S * k * q * (1 - q) * (pool - k) / (pool - 1))
        z.append((got - S * k * q) / se)
    return chdtrc(pool - 1, stat), np.array(z)


def test_accumulate_subsample_draws_uniformly_over_the_pool():
    n, S = 10, 4000
    seen, _ = positions(n, 4, S)
    for t in range(1, 4):
        pool = (t + 1) * n
        blocks = [(b * n, (b + 1) * n) for b in range(t + 1)]  # real data, then each generation
        p_value, z = uniformity(seen[t], pool, blocks)
        assert p_value > 1e-3, (t, p_value)
        assert np.all(np.abs(z) < 4), (t, z)
    # the checks have power: a choice that favours the newest block by 20% is rejected
    rng = np.random.default_rng(0)
    w = np.r_[np.ones(3 * n), np.full(n, 1.2)]
    biased = np.sort([rng.choice(4 * n, n, replace=False, p=w / w.sum()) for _ in range(S)])
    p_value, z = uniformity(biased, 4 * n, [(b * n, (b + 1) * n) for b in range(4)])
    assert p_value < 1e-6 and z[-1] > 4


def test_accumulate_subsample_with_a_filter_trains_on_what_the_generation_added():
    seen, df = positions(8, 3, 200, filter=lambda ctx: ctx.candidates[:, :3])
    assert [x.shape[1] for x in seen] == [8, 3, 3]
    # the pool: 8 real points, then the 3 kept of each generation's 8 candidates (ids 8-15, 16-23)
    np.testing.assert_array_equal(np.unique(seen[2]), np.r_[0:8, 8:11, 16:19])
    assert df.groupby("generation")["value"].first().tolist() == [8, 3, 3]


def test_accumulate_subsample_seed_alone_equals_seed_in_batch():
    batch = simulate("accumulate_subsample", seeds=[0, 1, 2], generations=8)
    alone = simulate("accumulate_subsample", seeds=[1], generations=8)
    inside = batch[batch["seed"] == 1].reset_index(drop=True)
    np.testing.assert_array_equal(alone["value"].to_numpy(), inside["value"].to_numpy())
    per_seed = simulate(
        "accumulate_subsample", seeds=[0, 1, 2], generations=8, learner=PerSeed(GaussianMLE())
    )
    np.testing.assert_allclose(per_seed["value"], batch["value"], rtol=1e-12, atol=1e-14)
    # generation 0 is shared with accumulate; later generations differ
    acc = simulate("accumulate", seeds=[0, 1, 2], generations=8)
    g0 = batch["generation"] == 0
    np.testing.assert_array_equal(batch[g0]["value"], acc[g0]["value"])
    assert not np.allclose(batch[~g0]["value"], acc[~g0]["value"])


def test_accumulate_subsample_is_bounded_unlike_replace():
    n, T, S = 20, 30, 1000
    v = per_generation(simulate("accumulate_subsample", n=n, generations=T, seeds=S), "variance")
    se = v[-1].std(ddof=1) / np.sqrt(S)
    # the real data stay in the pool: far above the replace law at generation T - 1
    assert v[-1].mean() > replace_variance_mean(T, n)[-1] + 10 * se
    assert v[-1].mean() > 0.5 + 4 * se


def test_accumulate_subsample_with_torch_data():
    torch = pytest.importorskip("torch")

    class TorchGaussian(Gaussian):
        def sample(self, n, rngs):
            return torch.from_numpy(super().sample(n, rngs))

    class TorchMLE(GaussianMLE):
        def __init__(self):
            super().__init__()
            self.kinds = []

        def summarize(self, data):
            self.kinds.append(type(data))
            return super().summarize(np.asarray(data))

        def fit_summary(self, s):
            model = super().fit_summary(s)
            return TorchGaussian(model.mean, model.var)

    learner = TorchMLE()
    kwargs = dict(n=6, generations=5, metrics=MOMENTS, seeds=[0, 1, 2])
    with_torch = run(learner, TorchGaussian(0.0, 1.0), regime("accumulate_subsample"), **kwargs)
    assert learner.kinds and all(k is torch.Tensor for k in learner.kinds)
    plain = run(GaussianMLE(), Gaussian(0.0, 1.0), regime("accumulate_subsample"), **kwargs)
    np.testing.assert_allclose(with_torch.frame["value"], plain.frame["value"], rtol=1e-12)
