"""The shared data sets: shapes, scaling, determinism, and the errors on bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from collapse_lib import data
from collapse_lib.runtime import seed_generators


def test_digits_are_the_installed_set():
    x, y = data.digits()
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.allclose(x * 16, np.round(x * 16))  # integer intensities 0..16
    assert set(np.unique(y)) == set(range(10))
    with pytest.raises(ValueError):
        x[0, 0] = 0.5  # the cached arrays are read-only


def test_digits_halves_views_and_scaling():
    d = data.digits_halves(seed=3)
    x1, x2, tr = d["x1"], d["x2"], d["train"]
    assert x1.shape == x2.shape == (1797, 32)
    x, _ = data.digits()
    varying = np.flatnonzero(x.std(0) >= 0.1)
    assert 30 < varying.size < 64 and np.array_equal(d["pixels"], varying)
    assert d["tasks"].shape == (1797, varying.size) and d["labels"].shape == (1797,)
    assert d["tasks"].std(0).min() > 0  # every reconstruction target has an R^2
    assert np.allclose(x1[tr].mean(0), 0, atol=1e-5)
    # view 1 is the left four columns of the image, scaled by 1/4 on the 0..16 scale
    img = (x[d["order"]] * 16).reshape(-1, 8, 8)[:, :, :4].reshape(-1, 32)
    assert np.allclose(x1 * 4, img - img[tr].mean(0), atol=1e-4)
    assert not np.array_equal(data.digits_halves(seed=4)["labels"], d["labels"])
    assert np.array_equal(data.digits_halves(seed=3)["x2"], x2)
    with pytest.raises(ValueError, match="n_train"):
        data.digits_halves(n_train=1)
    with pytest.raises(ValueError, match="min_sd"):
        data.digits_halves(min_sd=2.0)


def test_multiview_synthetic_is_seeded_and_checks_arguments():
    a = data.multiview_synthetic(200, 0.5, seed=1)
    b = data.multiview_synthetic(200, 0.5, seed=1)
    assert np.array_equal(a["x1"], b["x1"]) and a["shared"] == 5
    with pytest.raises(ValueError, match="common_rate"):
        data.multiview_synthetic(100, 1.5)
    with pytest.raises(ValueError, match="n"):
        data.multiview_synthetic(0)
    with pytest.raises(ValueError, match="d_god"):
        data.multiview_synthetic(100, d_god=5)


def test_image_pool_draws_distinct_images_per_replicate():
    x, _ = data.digits()
    pool = data.ImagePool(x[:100])
    draw = pool.sample(100, seed_generators(0, 2))
    assert draw.shape == (2, 100, 64)
    for s in range(2):  # n = N: each replicate gets every image exactly once
        assert sorted(r.tobytes() for r in draw[s]) == sorted(r.tobytes() for r in x[:100])
    assert not np.array_equal(draw[0], draw[1])
    again = pool.sample(100, seed_generators(0, 2))
    assert np.array_equal(draw, again)
    with pytest.raises(ValueError, match="must be <= the 100 images"):
        pool.sample(101, seed_generators(0, 1))
    with pytest.raises(ValueError, match="shape"):
        data.ImagePool(x[0])


def test_image_pool_indices_are_what_sample_draws():
    x, _ = data.digits()
    pool = data.ImagePool(x[:50])
    idx = pool.indices(10, seed_generators(3, 2))
    assert idx.shape == (2, 10) and pool.dim == 64
    assert all(len(set(row)) == 10 for row in idx)  # without replacement
    np.testing.assert_array_equal(pool.sample(10, seed_generators(3, 2)), x[:50][idx])


def test_digits_order_is_a_seeded_permutation():
    order = data.digits_order(0, 33)
    assert sorted(order) == list(range(1797))
    np.testing.assert_array_equal(order, data.digits_order(0, 33))
    assert not np.array_equal(order, data.digits_order(0, 34))


def test_text_corpus_is_letters_and_single_spaces():
    zen = data.text_corpus("zen")
    assert zen.startswith("the zen of python") and "  " not in zen
    assert set(zen) <= set(" abcdefghijklmnopqrstuvwxyz")
    with pytest.raises(ValueError, match="unknown source 'gutenberg'"):
        data.text_corpus("gutenberg")
