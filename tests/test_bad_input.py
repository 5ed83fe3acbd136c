"""Bad input to the generation loop and the runtime fails early, naming the argument.

Each test here failed before the check it covers existed: the bad value ran with other
numbers (``seed=1.5`` as seed 1), or failed later with a message that did not name it.
Valid input keeps its numbers bit for bit (the ``equal`` tests).
"""

import numpy as np
import pandas as pd
import pytest
from test_loop import small_run

from collapse_lib import regime
from collapse_lib.gaussian import Gaussian, GaussianMLE
from collapse_lib.loop import concat
from collapse_lib.runtime import (
    check_device,
    resolve_device,
    rng,
    seed_generators,
    seed_list,
    torch_generator,
)

# ---- 1. seeds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "shown"),
    [
        (1.5, r"1\.5 \(float\)"),
        (3.0, r"3\.0 \(float\)"),
        ("3", r"'3' \(str\)"),
        ("abc", r"'abc' \(str\)"),
        (None, r"None \(NoneType\)"),
        (-1, r"-1 \(int\)"),
        (True, r"True \(bool\)"),
    ],
)
def test_root_seed_must_be_a_non_negative_integer(seed, shown):
    with pytest.raises(ValueError, match=f"^seed must be a non-negative integer, got {shown}$"):
        small_run(seed=seed)


@pytest.mark.parametrize(
    ("seeds", "match"),
    [
        ([1.5, 2.7], r"^seeds\[0\] must be a non-negative integer, got 1\.5 \(float\)$"),
        ([0, -2], r"^seeds\[1\] must be a non-negative integer, got -2 \(int\)$"),
        ([0, True], r"^seeds\[1\] must be a non-negative integer, got True \(bool\)$"),
        (["1", "2"], r"^seeds\[0\] must be a non-negative integer, got '1' \(str\)$"),
        ("12", r"^seeds must be a positive integer \(the number of replicates\) or a sequence"),
        (3.0, r"got 3\.0 \(float\)$"),
        (None, r"^seeds must be a positive integer .* got None \(NoneType\)$"),
        (True, r"^seeds must be a positive integer .* got True \(bool\)$"),
    ],
)
def test_seeds_must_be_a_count_or_non_negative_integers(seeds, match):
    with pytest.raises(ValueError, match=match):
        small_run(seeds=seeds)
    with pytest.raises(ValueError, match=match):
        seed_list(seeds)


def test_valid_seeds_keep_their_numbers():
    plain = small_run(seeds=3, seed=5)
    for seeds in ([0, 1, 2], (0, 1, 2), range(3), np.arange(3), np.int64(3)):
        pd.testing.assert_frame_equal(small_run(seeds=seeds, seed=5), plain)
    pd.testing.assert_frame_equal(small_run(seeds=3, seed=np.uint32(5)), plain)
    assert seed_list(np.array([4, 2])) == [4, 2] and seed_list(np.int8(2)) == [0, 1]


def test_runtime_entry_points_check_their_seeds():
    with pytest.raises(ValueError, match=r"^seed must be a non-negative integer, got 1\.5"):
        seed_generators(1.5, 2)
    with pytest.raises(ValueError, match=r"^seeds\[0\] must be a non-negative integer"):
        seed_generators(0, ["0"])
    with pytest.raises(ValueError, match=r"^seed must be a non-negative integer, got '7' \(str\)"):
        rng("7", 1)
    with pytest.raises(ValueError, match=r"^key\[1\] must be a non-negative integer, got 2\.0"):
        rng(0, 1, 2.0)
    with pytest.raises(ValueError, match=r"^key\[0\] must be a non-negative integer, got '3'"):
        rng(0, "3")  # numpy itself accepts a string spawn key
    with pytest.raises(ValueError, match=r"^generator must be a numpy Generator .* got 3 \(int\)"):
        torch_generator(3)
    # valid seeds and keys keep their streams
    ref = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(3, 1)))
    np.testing.assert_array_equal(rng(np.int64(7), np.uint8(3), 1).random(4), ref.random(4))
    ref = np.random.default_rng(np.random.SeedSequence(2, spawn_key=(5,)))
    np.testing.assert_array_equal(seed_generators(2, [5])[0].random(4), ref.random(4))


# ---- 2. a filter's sample count ----------------------------------------------------------


def drop_all(ctx):
    return ctx.candidates[:, :0]


def test_a_filter_keeping_nothing_is_reported_with_its_generation():
    msg = (
        r"^filter 'drop_all' at generation 1 kept no samples \(an empty batch, m = 0\) and the"
        r" generation has no real data: nothing to train on \(return shape \(seeds=4, m\) with"
        r" m >= 1\)$"
    )
    with pytest.raises(ValueError, match=msg):
        small_run(filter=drop_all)
    with pytest.raises(ValueError, match="filter 'drop_all' at generation 1 kept no samples"):
        small_run(filter=drop_all, regime=regime("accumulate"))


def test_a_filter_may_keep_nothing_when_the_generation_has_real_data():
    size = {"size": lambda step: np.full(len(step.seeds), step.data.shape[1])}
    df = small_run(filter=drop_all, regime=regime("mixture", alpha=0.4), n=10, metrics=size)
    assert df.groupby("generation")["value"].first().tolist() == [10, 4, 4]  # real part only


def test_a_filter_keeping_fewer_samples_trains_on_fewer():
    size = {"size": lambda step: np.full(len(step.seeds), step.data.shape[1])}
    df = small_run(filter=lambda ctx: ctx.candidates[:, :3], n=10, metrics=size)
    assert df.groupby("generation")["value"].first().tolist() == [10, 3, 3]


def twice_the_candidates(ctx):
    return concat([ctx.candidates, ctx.candidates])


def test_a_filter_returning_more_than_it_was_given_is_named():
    with pytest.raises(
        ValueError,
        match=r"^filter 'twice_the_candidates' at generation 1 returned 20 samples per seed,"
        r" more than it was given: 10 \(the 10 candidates, the rows it drew with ctx.draw",
    ):
        small_run(filter=twice_the_candidates, n=10)


def test_a_filter_may_return_what_it_drew_and_its_declared_extra_rows():
    size = {"size": lambda step: np.full(len(step.seeds), step.data.shape[1])}

    def keep_drawn(ctx):
        return concat([ctx.candidates, ctx.draw(5)])

    assert small_run(filter=keep_drawn, n=10, metrics=size)["value"].tolist()[-1] == 15

    class AppendRows:
        extra_rows = 1

        def __init__(self, rows):
            self.rows = rows

        def __call__(self, ctx):
            return concat([ctx.candidates, ctx.candidates[:, : self.rows]])

    assert small_run(filter=AppendRows(1), n=10, metrics=size)["value"].tolist()[-1] == 11
    with pytest.raises(
        ValueError, match="returned 12 samples per seed, more than it was given: 11"
    ):
        small_run(filter=AppendRows(2), n=10)


# ---- 3. the shape of a filter's output ---------------------------------------------------


class WrongSeeds:
    def __call__(self, ctx):
        return ctx.candidates[:-1]


@pytest.mark.parametrize(
    ("flt", "match"),
    [
        (
            lambda ctx: None,
            r"^filter '<lambda>' at generation 1 must return a numpy array or torch tensor of"
            r" shape \(seeds=4, m\) \(the kept samples\), got None \(NoneType\)$",
        ),
        (
            lambda ctx: ctx.candidates.tolist(),
            r"^filter '<lambda>' at generation 1 must return a numpy array .* \(list\)$",
        ),
        (
            WrongSeeds(),
            r"^filter 'WrongSeeds' at generation 1 must return the kept samples with shape"
            r" \(seeds=4, m\) \(candidates: \(4, 5\)\), got \(3, 5\)$",
        ),
        (
            lambda ctx: ctx.candidates[..., None],
            r"^filter '<lambda>' at generation 1 must return .* got \(4, 5, 1\)$",
        ),
        (
            lambda ctx: ctx.candidates[:, 0],
            r"^filter '<lambda>' at generation 1 must return .* got \(4,\)$",
        ),
    ],
)
def test_a_filter_returning_the_wrong_thing_is_named(flt, match):
    with pytest.raises(ValueError, match=match):
        small_run(filter=flt)


def test_trailing_dimensions_are_checked_against_the_candidates():
    class Pairs(Gaussian):  # samples (S, n, 2)
        def sample(self, n, rngs):
            return np.stack([super().sample(n, rngs)] * 2, axis=-1)

    class PairMLE(GaussianMLE):
        def summarize(self, data):
            return super().summarize(np.asarray(data)[..., 0])

        def fit_summary(self, s):
            fitted = super().fit_summary(s)
            return Pairs(fitted.mean, fitted.var)

    with pytest.raises(ValueError, match=r"shape \(seeds=4, m, 2\) .* got \(4, 5, 3\)$"):
        small_run(
            learner=PairMLE(),
            truth=Pairs(0.0, 1.0),
            filter=lambda ctx: np.concatenate([ctx.candidates, ctx.candidates[..., :1]], -1),
        )


# ---- 4. metrics that do not return numbers -----------------------------------------------


def test_a_metric_returning_strings_is_named_with_its_generation():
    msg = (
        r"^metric 'label' must return numbers, one per seed, at generation 0; got"
        r" array\(\['a', 'a', 'a', 'a'\], dtype='<U1'\) \(ndarray\), which is not numeric"
        r" \(could not convert string to float: .*\)$"
    )
    with pytest.raises(ValueError, match=msg):
        small_run(metrics={"label": lambda step: np.array(["a"] * 4)})
    with pytest.raises(ValueError, match=r"^metric 'nothing' must return numbers.* None"):
        small_run(metrics={"nothing": lambda step: None})


def test_a_metric_of_the_wrong_length_names_its_generation():
    bad = {"bad": lambda step: np.zeros(4 if step.generation < 2 else 3)}
    msg = r"^metric 'bad' must return one value per seed \(4\) at generation 2, got \(3,\)$"
    with pytest.raises(ValueError, match=msg):
        small_run(metrics=bad)


# ---- 5. torch and numpy data in one generation -------------------------------------------


def test_torch_truth_with_a_numpy_model_mixes_like_numpy_truth():
    torch = pytest.importorskip("torch")

    class TorchGaussian(Gaussian):
        def sample(self, n, rngs):
            return torch.as_tensor(super().sample(n, rngs))

    for name in ("mixture", "accumulate"):
        r = regime(name, alpha=0.5) if name == "mixture" else regime(name)
        numpy_truth = small_run(regime=r, generations=4)
        torch_truth = small_run(regime=r, generations=4, truth=TorchGaussian(0.0, 1.0))
        pd.testing.assert_frame_equal(torch_truth, numpy_truth)


def test_concat_mixes_torch_and_numpy_in_either_order():
    torch = pytest.importorskip("torch")
    a, b = np.arange(6.0).reshape(2, 3), np.arange(4.0).reshape(2, 2)
    want = np.concatenate([a, b], axis=1)
    np.testing.assert_array_equal(concat([torch.as_tensor(a), b]), want)
    np.testing.assert_array_equal(concat([a, torch.as_tensor(b)]), want)
    both = concat([torch.as_tensor(a), torch.as_tensor(b)])
    assert isinstance(both, torch.Tensor) and np.array_equal(both.numpy(), want)
    with pytest.raises(ValueError, match="concat needs at least one array"):
        concat([None, None])


# ---- 6. device names ---------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu:abc", "cuda:-1", "cuda:", "cuda:1.0", "auto:0", "cpu:0:1"])
def test_malformed_device_names_are_rejected(device):
    msg = (
        r"^device must be 'auto', 'cpu', 'cuda' or 'mps', the last three optionally with an"
        rf" index as in 'cuda:1', got '{device}'$"
    )
    with pytest.raises(ValueError, match=msg):
        resolve_device(device)
    with pytest.raises(ValueError, match=msg):
        check_device(device)


def test_valid_device_names_are_kept(monkeypatch):
    torch = pytest.importorskip("torch")
    assert resolve_device("cpu") == "cpu" and resolve_device("cpu:0") == "cpu:0"
    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps", "mps:0"):
        assert check_device(device) == device
    with pytest.raises(ValueError, match="unknown device 'gpu'; valid: 'auto', 'cpu'"):
        check_device("gpu:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cuda") == "cuda"
    msg = r"^device 'cuda:2' was requested but torch sees 2 CUDA GPU\(s\), 'cuda:0'..'cuda:1'$"
    with pytest.raises(ValueError, match=msg):
        resolve_device("cuda:2")
