"""Tests of collapse_lib.modular: the learned model in the curated loop (spec checks L1-L4).

The learned model has no closed form: the checks are the spec's margins on the ordering of the
conditions after 8 rounds (3 seeds, quick sizes), each several seed-to-seed standard deviations
wide (observed sd about 0.01-0.04). Torch results may differ across versions and platforms in the
last digits, so only margins are asserted, never exact values.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapse_lib import curation as C
from collapse_lib import modular as M
from collapse_lib.runtime import seed_generators, set_threads

SEED = 0
P_MOD, S, T, B, K = 23, 3, 8, 40, 8


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    set_threads(1)  # a tiny MLP: one thread is many times faster on 2 contended cores
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs():
    task = M.ModularTask.draw(P_MOD, S, seed=SEED)
    learner = M.ModularMLP(P_MOD, seeds=S, seed=SEED)
    V = C.Verifier(1.0, 0.0)
    conditions = {
        "self": None,
        "filter": V,
        "uniform": C.Curation(V, C.WeakLabeler(0.3, B, "uniform")),
        "hard": C.Curation(V, C.WeakLabeler(0.3, B, "hard")),
    }
    metrics = {"pass@1": C.pass_at_1, "pass@8": C.pass_at(8), "dead": C.below(0.02)}
    return C.simulate(
        conditions, task, k=K, rounds=T, seeds=S, seed=SEED, learner=learner, metrics=metrics, n0=10
    )


def final(df, condition, metric="pass@1", t=T):
    return df.final(metric, condition, generation=t)[0]


def test_answer_key_and_task():
    key = M.answer_key(5)
    assert key.shape == (25, 5) and np.all(key.sum(1) == 1)
    assert key[3 * 5 + 4, (3 + 4) % 5]
    task = M.ModularTask.draw(5, 2, seen_fraction=0.5, seed=SEED)
    x = task.sample(400, seed_generators(SEED, 2))
    assert x.shape == (2, 400, 25, 5)
    np.testing.assert_array_equal(x.sum(axis=(1, 3)) > 0, task.seen)  # only seen prompts
    acc = (x * key).sum(axis=(1, 3)) / 400
    se = np.sqrt(task.accuracy * (1 - task.accuracy) / 400)
    assert np.all(np.abs(acc - task.accuracy)[task.seen] <= 4 * se[task.seen] + 1e-9)


def test_all_conditions_start_from_the_same_base_model(runs):
    start = [
        runs.per_seed("pass@1", c).to_numpy()[0] for c in ("self", "filter", "uniform", "hard")
    ]
    for s in start[1:]:
        np.testing.assert_allclose(s, start[0], rtol=1e-6)


def test_seeds_train_independently_in_the_batch():
    task = M.ModularTask.draw(7, [0, 1, 2], seed=SEED)
    data = task.sample(10, seed_generators(SEED, [0, 1, 2]))
    kw = {"seed": SEED, "pretrain_epochs": 5}
    batch = M.ModularMLP(7, seeds=[0, 1, 2], **kw).fit(data)
    alone = M.ModularMLP(7, seeds=[1], **kw).fit(data[1:2])
    np.testing.assert_allclose(batch.probs[1], alone.probs[0], atol=1e-5)


def test_L1_L2_focusing_the_labels_helps(runs):
    hard, uniform, filt = (final(runs, c) for c in ("hard", "uniform", "filter"))
    assert hard - filt >= 0.07  # L1
    assert hard - uniform >= 0.03  # L2


def test_L3_filter_alone_plateaus_and_forgets(runs):
    p1 = runs.curve("pass@1", "filter")
    assert abs(p1[T] - p1[5]) <= 0.02
    dead = runs.curve("dead", "filter")
    assert dead[T] > dead[0]  # unseen prompts drift away: not in the strong-learner model


def test_L4_self_training_collapses(runs):
    p8 = runs.curve("pass@8", "self")
    assert p8[0] - p8[T] >= 0.08
    assert final(runs, "self") <= final(runs, "self", t=0) + 0.01


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: M.answer_key(1), "p"),
        (lambda: M.ModularTask.draw(5, 2, seen_fraction=1.5), "seen_fraction"),
        (lambda: M.ModularTask.draw(5, 2, accuracy=(0.9, 0.1)), "accuracy"),
        (lambda: M.ModularTask(5, np.ones((1, 24), bool), np.ones((1, 24))), "seen"),
        (lambda: M.ModularMLP(5, hidden=0), "hidden"),
        (lambda: M.ModularMLP(5, lr=-1.0), "lr"),
        (lambda: M.ModularMLP(5, batches=26), "batches"),
        (
            lambda: M.ModularMLP(5, seeds=1).train(M.ModularMLP(5, seeds=1).init(), np.ones(3), 1),
            "counts",
        ),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()
