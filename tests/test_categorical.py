"""The categorical (unigram) MLE on a seed axis: support invariants and Wright--Fisher variances."""

from __future__ import annotations

import numpy as np
import pytest

from collapse_lib.categorical import (
    Categorical,
    CategoricalMLE,
    TokenCounts,
    surviving_tokens,
    token_variance,
    zipf,
)
from collapse_lib.loop import compare
from collapse_lib.regimes import regime
from collapse_lib.runtime import seed_generators

K, N, T, S = 20, 50, 100, 2000
P = zipf(K)
FREQUENT = np.flatnonzero(P >= 0.04)


@pytest.fixture(scope="module")
def runs():
    def same_support(step):
        real = CategoricalMLE(K).summarize(step.real).counts > 0
        return np.all((step.model.probs > 0) == real, axis=-1)

    metrics = {f"p{k}": (lambda s, k=k: s.model.probs[:, k]) for k in FREQUENT}
    metrics |= {"alive": lambda s: surviving_tokens(s.model.probs), "same": same_support}
    return compare(
        {"accumulate": regime("accumulate"), "replace": regime("replace")},
        learner=CategoricalMLE(K),
        truth=Categorical(P),
        n=N,
        generations=T,
        metrics=metrics,
        seeds=S,
        seed=41,
        progress=False,
    )


def test_zipf():
    assert zipf(3, 1.0) == pytest.approx(np.array([1, 1 / 2, 1 / 3]) / (11 / 6))
    assert zipf(4, 0.0) == pytest.approx(np.full(4, 0.25))
    assert len(FREQUENT) == 6


def test_sampling_matches_probabilities():
    probs = np.array([[0.5, 0.0, 0.5], [0.1, 0.2, 0.7]])
    x = Categorical(probs).sample(20000, seed_generators(0, 2))
    assert x.shape == (2, 20000) and x.dtype == np.int64
    assert not np.any(x[0] == 1)  # a token of probability 0 is never drawn
    freq = np.stack([np.bincount(row, minlength=3) / 20000 for row in x])
    sd = np.sqrt(probs * (1 - probs) / 20000)
    assert np.all(np.abs(freq - probs) <= 4 * sd + 1e-12)
    # replicate s draws from its own stream only: alone or in a batch, the same tokens
    alone = Categorical(probs[1]).sample(50, seed_generators(0, [1]))
    np.testing.assert_array_equal(alone[0], Categorical(probs).sample(50, seed_generators(0, 2))[1])


def test_accumulate_never_loses_a_real_token(runs):
    assert np.all(runs.wide("same").loc["accumulate"].to_numpy() == 1)


def test_replace_support_only_shrinks(runs):
    alive = runs.wide("alive").loc["replace"].to_numpy()
    assert np.all(np.diff(alive, axis=0) <= 0)
    assert alive[-1].mean() < alive[0].mean() - 2  # and it does shrink


@pytest.mark.parametrize("condition", ["accumulate", "replace"])
def test_token_variance_matches_theory(runs, condition):
    theory = token_variance(P, T, N, condition)[-1]
    for k in FREQUENT:
        x = runs.wide(f"p{k}").loc[condition].to_numpy()[-1]
        assert abs(x.mean() - P[k]) <= 4 * x.std(ddof=1) / np.sqrt(S)  # E p_hat = p
        # SE of a sample variance: sqrt((m4 - s^4) / S)
        se = np.sqrt((np.mean((x - x.mean()) ** 4) - x.var() ** 2) / S)
        assert abs(x.var() - theory[k]) <= 4 * se, (k, x.var(), theory[k])


def test_bad_inputs():
    with pytest.raises(ValueError, match="categories"):
        zipf(0)
    with pytest.raises(ValueError, match="exponent"):
        zipf(3, -1.0)
    with pytest.raises(ValueError, match="probs"):
        Categorical(np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="seeds"):
        Categorical(np.full((3, 2), 0.5)).sample(4, seed_generators(0, 2))
    with pytest.raises(ValueError, match="n must"):
        Categorical(np.full(2, 0.5)).sample(0, seed_generators(0, 2))
    with pytest.raises(ValueError, match="regime"):
        token_variance(P, 5, 10, "mixture")
    with pytest.raises(ValueError, match="samples"):
        CategoricalMLE(3).summarize(np.array([[0, 3]]))
    with pytest.raises(ValueError, match="shapes"):
        CategoricalMLE(3).merge(TokenCounts(np.zeros((1, 3))), TokenCounts(np.zeros((2, 3))))
