"""Conditional generators: sampling frequencies, exact count MLE, protocol shapes, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from collapse_lib import conditional as C
from collapse_lib import regression as R
from collapse_lib.runtime import seed_generators


def table(S=2, m=3, K=4, seed=0):
    p = np.random.default_rng(seed).dirichlet(np.ones(K), size=(S, m))
    p[0, 0] = [0.5, 0.0, 0.5, 0.0]  # zero-probability labels must never be drawn
    return C.ConditionalCategorical(p)


def test_propose_matches_probabilities_and_skips_zero_labels():
    model = table()
    x = np.tile(np.arange(3), (2, 1))
    n = 40000
    y = model.propose(x, n, seed_generators(1, 2))
    assert y.shape == (2, 3, n) and y.dtype == np.int64
    assert not np.any(np.isin(y[0, 0], [1, 3]))
    freq = (y[..., None] == np.arange(4)).mean(axis=2)
    sd = np.sqrt(model.probs * (1 - model.probs) / n)
    assert np.all(np.abs(freq - model.probs) <= 4 * sd + 1e-12)


def test_a_seed_alone_draws_the_same_as_inside_a_batch():
    model = table()
    batch = model.sample(50, seed_generators(3, 2))
    alone = C.ConditionalCategorical(model.probs[1:]).sample(50, seed_generators(3, [1]))
    np.testing.assert_array_equal(batch[1], alone[0])


def test_inputs_follow_the_input_distribution():
    probs = np.full((1, 4, 2), 0.5)
    model = C.ConditionalCategorical(probs, inputs=[0.1, 0.2, 0.3, 0.4])
    x = model.sample(40000, seed_generators(0, 1))[0, :, 0]
    freq = np.bincount(x, minlength=4) / 40000
    assert np.all(np.abs(freq - model.inputs[0]) <= 4 * np.sqrt(0.25 / 40000))


def test_tabular_mle_is_the_smoothed_count_table():
    data = np.array([[[0, 1], [0, 1], [0, 2], [2, 0]]])  # (S=1, n=4, 2)
    exact = C.TabularMLE(3, 3).fit(data).probs[0]
    np.testing.assert_allclose(exact[0], [0, 2 / 3, 1 / 3])
    np.testing.assert_allclose(exact[1], [1 / 3] * 3)  # no data: uniform
    np.testing.assert_allclose(exact[2], [1, 0, 0])
    smooth = C.TabularMLE(3, 3, smoothing=1.0).fit(data).probs[0]
    np.testing.assert_allclose(smooth[0], np.array([1, 3, 2]) / 6)
    learner = C.TabularMLE(3, 3)
    both = learner.merge(learner.summarize(data), learner.summarize(data))
    np.testing.assert_allclose(learner.fit_summary(both).probs, learner.fit(data).probs)


def test_log_prob_reads_the_table():
    model = table()
    x = np.array([[0, 2], [1, 1]])
    y = np.array([[[0, 2], [3, 3]], [[1, 0], [2, 2]]])
    lp = model.log_prob(x, y)
    assert lp.shape == (2, 2, 2)
    assert lp[0, 0, 0] == pytest.approx(np.log(0.5)) and lp[1, 0, 1] == np.log(model.probs[1, 1, 0])
    assert model.log_prob(np.zeros((2, 1), int), np.ones((2, 1), int))[0, 0] == -np.inf


def test_linear_gaussian_mle_and_log_prob():
    design = R.GaussianDesign(np.ones(3))
    truth = C.random_linear(3, 0.5, 0, 4, design)
    data = truth.sample(20000, seed_generators(0, 4))
    fit = C.LinearGaussianMLE(design).fit(data)
    assert np.all(np.abs(fit.w - truth.w) <= 4 * 0.5 / np.sqrt(20000))
    assert np.all(np.abs(fit.var - 0.25) <= 4 * 0.25 * np.sqrt(2 / 20000))
    X, y = truth.split(data[:, :5])
    lp = truth.log_prob(X, y)
    ref = norm.logpdf(y, loc=truth.predict(X), scale=0.5)
    np.testing.assert_allclose(lp, ref, rtol=1e-12)
    assert truth.propose(X, 7, seed_generators(1, 4)).shape == (4, 5, 7)
    np.testing.assert_array_equal(truth.join(X, y), data[:, :5])


def test_bigram_generates_from_the_chain_and_fits_it():
    truth = C.random_markov(5, 1.0, 40, 0, 2)
    pi = truth.transition.inputs
    np.testing.assert_allclose(np.einsum("sv,svw->sw", pi, truth.transition.probs), pi, atol=1e-12)
    seqs = truth.sample(2000, seed_generators(0, 2))
    assert seqs.shape == (2, 2000, 40)
    fit = C.BigramMLE(5, 40).fit(seqs)
    counts = C.BigramMLE(5, 40).summarize(seqs).transitions.sum(-1, keepdims=True)
    sd = np.sqrt(truth.transition.probs * (1 - truth.transition.probs) / counts)
    assert np.all(np.abs(fit.transition.probs - truth.transition.probs) <= 4.5 * sd + 1e-9)
    prompts, cont = truth.split(seqs[:, :3])
    proposals = truth.propose(prompts, 4, seed_generators(1, 2))
    assert proposals.shape == (2, 3, 4, 39)
    lp = truth.log_prob(prompts, cont[:, :, None])
    P = truth.transition.probs
    first = np.log(P[0, seqs[0, 0, :-1], seqs[0, 0, 1:]]).mean()
    assert lp[0, 0, 0] == pytest.approx(first)


def test_bad_inputs_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="probs"):
        C.ConditionalCategorical(np.ones((2, 3)))
    with pytest.raises(ValueError, match="probs"):
        C.ConditionalCategorical(np.full((1, 2, 2), 0.7))
    with pytest.raises(ValueError, match="inputs"):
        C.ConditionalCategorical(np.full((1, 2, 2), 0.5), inputs=[1.0])
    with pytest.raises(ValueError, match="n_inputs"):
        C.TabularMLE(0, 3)
    with pytest.raises(ValueError, match="smoothing"):
        C.TabularMLE(2, 3, smoothing=-1)
    with pytest.raises(ValueError, match="k"):
        table().propose(np.zeros((2, 1), int), 0, seed_generators(0, 2))
    with pytest.raises(ValueError, match="inputs"):
        table().propose(np.full((2, 1), 7), 1, seed_generators(0, 2))
    with pytest.raises(ValueError, match="rngs"):
        table().sample(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="batch"):
        table().split(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="beta"):
        C.random_tabular(3, 3, -1.0, 0, 2)
    with pytest.raises(ValueError, match="concentration"):
        C.random_markov(3, 0.0, 5, 0, 2)
    with pytest.raises(ValueError, match="length"):
        C.random_markov(3, 1.0, 1, 0, 2)
    with pytest.raises(ValueError, match="dim"):
        C.random_linear(2, 0.5, 0, 2, R.GaussianDesign(np.ones(3)))
    with pytest.raises(ValueError, match="data"):
        C.LinearGaussianMLE(R.GaussianDesign(np.ones(3))).fit(np.zeros((1, 2, 4)))
