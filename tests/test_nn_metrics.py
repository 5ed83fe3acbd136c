"""Nearest-neighbour statistics of chapter 3: k-NN entropy, generalization score, copy tests."""

import numpy as np
import pytest

from collapse_lib.metrics import (
    copy_fraction,
    fixed_nn_index,
    generalization_score,
    kl_entropy,
    near_copy_threshold,
    nn_distances,
    nn_spacing,
    ratio_test_fraction,
    relative_nn_distance,
    sibling_robust_index,
)


def gaussian_entropy(d: int) -> float:
    return 0.5 * d * np.log(2 * np.pi * np.e)


def test_nn_distances_excludes_self_and_sorts():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    np.testing.assert_allclose(nn_distances(x, None, k=2), [[1, 3], [1, 2], [2, 3]])
    np.testing.assert_allclose(nn_distances(np.array([[0.5, 0.0]]), x, k=1), [[0.5]])
    dup = np.vstack([x, x[:1]])  # an exact duplicate is a neighbour at distance 0
    assert nn_distances(dup, None, k=1)[0, 0] == 0.0


def test_kl_entropy_2d_gaussian_matches_closed_form():
    # k = 1: d log r_i + const behaves like -log(Exp(1)), whose variance is pi^2/6, so the
    # standard error of the mean over n points is about sqrt(pi^2/6/n) = 0.029 at n = 2000.
    # Tolerance 5 SE = 0.14 (the spec's pilot: 2.847 vs the truth 2.838).
    n = 2000
    x = np.random.default_rng(0).standard_normal((n, 2))
    se = np.sqrt(np.pi**2 / 6 / n)
    assert abs(kl_entropy(x, k=1) - gaussian_entropy(2)) < 5 * se


def test_kl_entropy_is_biased_upward_in_64d():
    # Documented, not hidden: at n = 2000 in d = 64 the estimate is about +8.5 nats above the
    # truth (90.8); the statistical error is about 0.03 * (a few), so > 4 cannot happen by chance.
    x = np.random.default_rng(1).standard_normal((2000, 64))
    assert kl_entropy(x, k=1) - gaussian_entropy(64) > 4.0


def test_kl_entropy_scaling_and_shift_identities():
    # Exact: distances scale by a, so H^(a x + b) = H^(x) + d log a.
    x = np.random.default_rng(2).standard_normal((300, 5))
    h = kl_entropy(x, k=3)
    assert kl_entropy(2.5 * x + 7.0, k=3) == pytest.approx(h + 5 * np.log(2.5), abs=1e-9)


def test_kl_entropy_falls_with_duplicates():
    x = np.random.default_rng(3).standard_normal((100, 4))
    spiky = np.vstack([x[:50], x[:50] + 1e-6])  # every point has a near-twin
    assert kl_entropy(spiky) < kl_entropy(x) - 20


def test_generalization_score_identities():
    rng = np.random.default_rng(4)
    d = rng.uniform(-1, 1, (200, 8)) * 10  # spacing ~ several units
    assert generalization_score(d, d) == 0.0
    # small noise: the nearest neighbour is the point itself, GS = mean |noise|^2 = eps^2 * dim
    # with standard error eps^2 * sqrt(2 dim / n); tolerance 4 SE.
    eps, n, dim = 0.01, 200, 8
    g = d + eps * rng.standard_normal(d.shape)
    se = eps**2 * np.sqrt(2 * dim / n)
    assert abs(generalization_score(g, d) - eps**2 * dim) < 4 * se
    assert generalization_score(g, d, squared=False) == pytest.approx(
        nn_distances(g, d)[:, 0].mean()
    )


def test_copy_fraction_counts_points_within_threshold():
    d = np.array([[0.0], [10.0]])
    g = np.array([[0.1], [5.0], [9.5], [20.0]])
    assert copy_fraction(g, d, 0.2) == 0.25
    assert copy_fraction(g, d, 0.6) == 0.5
    assert copy_fraction(g, d, 0.0) == 0.0


def test_ratio_test_flags_copy_of_unique_point_but_misses_duplicate_cluster():
    # Pitfall of the chapter: a copy of a training point that has a near-duplicate in the
    # training set has NN1 ~ NN2, so the NN1/NN2 < 1/3 test does not flag it; a fixed
    # distance threshold does.
    rng = np.random.default_rng(5)
    d = rng.uniform(0, 10, (50, 3))
    g = d[:1].copy()
    assert ratio_test_fraction(g, d) == 1.0
    assert copy_fraction(g, d, 0.1) == 1.0
    d_dup = np.vstack([d, d[:1] + 1e-3])
    assert ratio_test_fraction(g + 1e-3 / 2, d_dup) == 0.0
    assert copy_fraction(g + 1e-3 / 2, d_dup, 0.1) == 1.0


def test_relative_nn_distance_separates_copying_from_shrinkage():
    r = np.random.default_rng(6)
    d, g = r.standard_normal((64, 8)), r.standard_normal((1000, 8))
    # independent draws of one distribution: 1.00 +- 0.043 over 200 draws of this size (measured);
    # tolerance 5 sd
    assert abs(relative_nn_distance(g, d) - 1) < 0.22
    assert relative_nn_distance(0.1 * g, 0.1 * d) == pytest.approx(relative_nn_distance(g, d))
    copies = d[r.integers(64, size=1000)] + 1e-4 * r.standard_normal((1000, 8))
    assert relative_nn_distance(copies, d) < 0.01
    with pytest.raises(ValueError, match="spacing is 0"):
        relative_nn_distance(g, np.zeros((5, 8)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: nn_distances(np.zeros(3)), "a must be a non-empty 2-D"),
        (lambda: nn_distances(np.zeros((3, 2)), np.zeros((3, 4))), "same dimension"),
        (lambda: nn_distances(np.zeros((3, 2)), None, k=3), "neighbours need more"),
        (lambda: kl_entropy(np.zeros((3, 2)), k=0), "k must be >= 1"),
        (lambda: kl_entropy(np.array([[np.nan, 0.0], [0, 1]])), "finite"),
        (lambda: copy_fraction(np.zeros((2, 2)), np.zeros((2, 2)), -1), "threshold"),
        (lambda: ratio_test_fraction(np.zeros((2, 2)), np.zeros((2, 2)), -0.1), "ratio"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_chapter3_checkers(capsys):
    from collapse_lib.data import digits
    from collapse_lib.exercises import check

    x = 2 * digits()[0] - 1
    right = kl_entropy(x[:64]) - kl_entropy(x)
    assert check("ch3-ex-relative", right) is True
    assert check("ch3-ex-relative", right + 0.5) is False
    assert check("ch3-ex-relative", None) is None
    assert check("ch3-ex-structural", 2 / 16) is True
    assert check("ch3-ex-structural", 1 / 16) is False  # 1/d: forgot that GS is squared
    assert check("ch3-ex-structural", None) is None
    assert "no answer yet" in capsys.readouterr().out


# ---- copy indices valid under recursion --------------------------------------------------------


def sibling_world(group: int):
    """Parents on a 6x6 lattice of spacing 1 (2-D); each has ``group`` members forming a regular
    simplex of edge 0.5 in ``group`` extra dimensions; samples sit 0.3 * sqrt(2) from member 0.

    Exact distances: a member's nearest ``group - 1`` neighbours are its siblings at 0.5, the
    next ones are members of neighbouring families at 1; a sample is 0.3 sqrt(2) = 0.424 from
    member 0 of its parent and sqrt(0.18 + 0.25) = 0.656 from the other members.
    """
    grid = np.array([(i, j) for i in range(6) for j in range(6)], dtype=float)
    offsets = np.eye(group) * 0.5 / np.sqrt(2)
    members = np.concatenate(
        [np.hstack([grid, np.tile(o, (len(grid), 1))]) for o in offsets], axis=0
    )
    parents = members[: len(grid)]  # member 0 of every family: no siblings
    samples = parents + np.r_[0.3, 0.3, np.zeros(group)]
    return parents, members, samples


def test_identical_samples_are_copies_by_every_index():
    d = np.random.default_rng(7).uniform(-1, 1, (40, 64))
    s0 = nn_spacing(d)
    assert copy_fraction(d, d, near_copy_threshold(d[:20] + 0.5, d)) == 1.0
    assert fixed_nn_index(d, d, s0) == 0.0
    assert sibling_robust_index(d, d, k=4) == 0.0
    assert relative_nn_distance(d, d) == 0.0


def test_siblings_move_the_naive_index_but_not_the_robust_or_fixed_ones():
    # Families of `group` siblings at 0.5 halve the naive spacing (1 -> 0.5) exactly, so the
    # naive index doubles; the k-th-neighbour spacing with k = group skips the siblings and is 1
    # in both sets, and the fixed yardstick (the sibling-free set's spacing) cannot move.
    for group in (2, 3, 4):
        parents, members, samples = sibling_world(group)
        assert nn_spacing(parents) == pytest.approx(1.0)
        assert nn_spacing(members) == pytest.approx(0.5)
        naive0, naive1 = (relative_nn_distance(samples, x) for x in (parents, members))
        assert naive0 == pytest.approx(0.3 * np.sqrt(2))
        assert naive1 == pytest.approx(2 * naive0)
        robust0 = sibling_robust_index(samples, parents, k=group)
        robust1 = sibling_robust_index(samples, members, k=group)
        assert robust1 == pytest.approx(robust0 * nn_spacing(parents, group))
        assert nn_spacing(members, group) == pytest.approx(1.0)
        assert robust1 == pytest.approx(naive0)
        s0 = nn_spacing(parents)
        assert fixed_nn_index(samples, members, s0) == pytest.approx(naive0)


def test_near_copy_threshold_is_the_heldout_quantile():
    rng = np.random.default_rng(8)
    real = rng.standard_normal((3, 50, 8))
    held = rng.standard_normal((400, 8))
    thr = near_copy_threshold(held, real, quantile=0.01)
    pooled = np.mean([copy_fraction(held, r, thr) for r in real])
    assert pooled <= 0.01 + 1e-12  # by construction, at most the quantile
    assert near_copy_threshold(held, real, 0.5) > thr
    with pytest.raises(ValueError, match="yardstick"):
        fixed_nn_index(held, real[0], 0.0)
