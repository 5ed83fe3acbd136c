"""The closed-form smoothed-score sampler of chapter 3."""

import numpy as np
import pytest

from collapse_lib.diffusion import linear_schedule
from collapse_lib.metrics import nn_distances
from collapse_lib.smoothed_score import SmoothedScore, smoothed_denoiser

RNG = np.random.default_rng(0)
DATA = RNG.uniform(-1, 1, (12, 64))


def test_denoiser_returns_the_training_point_exactly_at_zero_smoothing():
    # The final step of the chain (abar_0 = 1 - beta_0): weights one-hot in float64.
    abar0 = float(linear_schedule(100)["abar"][0])
    x = np.sqrt(abar0) * DATA[3] + np.sqrt(1 - abar0) * RNG.standard_normal(64)
    np.testing.assert_array_equal(smoothed_denoiser(x[None], DATA, abar0, 0.0)[0], DATA[3])


def test_sampler_at_zero_smoothing_outputs_training_points():
    model = SmoothedScore(h=0.0, T=50).fit(DATA[None])
    x = model.sample(40, [np.random.default_rng(1)])[0]
    assert nn_distances(x, DATA, k=1).max() < 1e-9


def test_denoiser_is_the_mixture_posterior_mean():
    # One training point: p_h = N(x_1, h^2 I), the Gaussian posterior mean in closed form.
    x1, h, abar = DATA[:1], 0.4, 0.3
    x = RNG.standard_normal((5, 64))
    v = abar * h**2 + 1 - abar
    expect = x1 + np.sqrt(abar) * h**2 / v * (x - np.sqrt(abar) * x1)
    np.testing.assert_allclose(smoothed_denoiser(x, x1, abar, h), expect, atol=1e-12)
    # Far from the data in time (abar -> small), with large h: the denoiser is a weighted mean.
    out = smoothed_denoiser(x, DATA, 1e-4, 0.0)
    np.testing.assert_allclose(out, np.broadcast_to(DATA.mean(0), out.shape), atol=0.05)


def test_smoothing_moves_samples_off_the_training_set():
    # The sampler's distance to the training set grows with h (at h = 0.5 about h sqrt(d)
    # before clipping; here only the order is asserted).
    rngs = [np.random.default_rng(2)]
    dist = [
        np.median(nn_distances(SmoothedScore(h=h, T=50).fit(DATA[None]).sample(60, rngs)[0], DATA))
        for h in (0.0, 0.2, 0.5)
    ]
    assert dist[0] < 1e-9 < dist[1] < dist[2]


def test_bad_inputs():
    with pytest.raises(ValueError, match="h"):
        SmoothedScore(h=-0.1)
    with pytest.raises(ValueError, match="abar"):
        smoothed_denoiser(DATA, DATA, 0.0, 0.1)
    with pytest.raises(ValueError, match="generators"):
        SmoothedScore().fit(DATA[None]).sample(3, [])
