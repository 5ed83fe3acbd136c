"""Sweeps: the grid, the seeding rule, bit-identical backends, failures, ordering, bad inputs."""

import logging
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from collapse_lib.gaussian import Gaussian, GaussianMLE
from collapse_lib.loop import run
from collapse_lib.regimes import regime
from collapse_lib.results import Results
from collapse_lib.runtime import Stream, rng
from collapse_lib.sweep import SweepError, configuration_seeds, grid, sweep

SEEDS = 4
GRID = {"n": [3, 5, 8], "regime_name": ["replace", "accumulate"]}  # 6 configurations


# ---- the functions swept: module level, so that they pickle by reference ----------------------
def model_variance(step):
    return step.model.var


def chain(n, seed, regime_name="replace"):
    """A small Gaussian chain: 4 seeds, 3 generations, the fitted variance."""
    return run(
        GaussianMLE(),
        Gaussian(0.0, 1.0),
        regime(regime_name),
        n=n,
        generations=3,
        metrics={"var": model_variance},
        seeds=SEEDS,
        seed=seed,
        progress=False,
    )


def fragile(n, seed):
    if n == 3:
        raise ValueError(f"n = {n} is too small")
    return chain(n, seed)


def slow(n, pause, seed):
    """``chain`` after ``pause`` seconds, with the wall-clock time it finished as a metric."""
    time.sleep(pause)
    finished = Results.from_array({"finished": np.full((1, SEEDS), time.time())}, range(SEEDS), "")
    return Results.concat([chain(n, seed), finished])


def not_results(n, seed):
    return float(n)


class Unpicklable(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def unpicklable(n, seed):
    raise Unpicklable(f"n = {n}")


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")  # the optional extra "dask"
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def frame(results):
    return results.frame.reset_index(drop=True)


# ---- the grid ---------------------------------------------------------------------------------
def test_grid_is_the_product_in_key_order_last_key_fastest():
    configs = grid({"n": [1, 2], "name": ["a", "b", "c"]})
    assert configs == [
        {"n": n, "name": name} for n in (1, 2) for name in ("a", "b", "c")
    ]  # the last key varies fastest
    assert [list(c) for c in configs] == [["n", "name"]] * 6  # the dict's key order
    assert grid({"name": ["a", "b"], "n": [1, 2]})[:2] == [
        {"name": "a", "n": 1},
        {"name": "a", "n": 2},
    ]
    values = grid({"alpha": np.array([0.5, 1.0])})
    assert values == [{"alpha": 0.5}, {"alpha": 1.0}]
    assert all(type(c["alpha"]) is float for c in values)  # numpy values become Python's


def test_grid_copies_a_list_of_dicts_as_it_is():
    given = [{"n": 5, "pause": 1}, {"n": 3}]
    configs = grid(given)
    assert configs == given
    configs[0]["n"] = 99
    assert given[0]["n"] == 5  # copies, not the caller's dicts


@pytest.mark.parametrize(
    "spec, match",
    [
        ({}, "spec must name at least one parameter"),
        ([], "spec must hold at least one configuration"),
        ({"n": []}, r"spec\['n'\] must hold at least one value"),
        ({"n": "abc"}, r"spec\['n'\] must be a list of values"),
        ({"n": 3}, r"spec\['n'\] must be a list of values"),
        ({"n": {1, 2}}, r"spec\['n'\] must be a list of values"),  # a set has no order
        ([{"n": 1}, 3], r"spec\[1\] must be a dict"),
        ({1: [1]}, "spec: parameter names must be strings"),
        ([{"n": 1, 2: 3}], r"spec\[0\]: parameter names must be strings"),
        ({"seed": [1, 2]}, "parameter 'seed' would overwrite a tidy column"),
        ([{"value": 1}], r"spec\[0\]: parameter 'value' would overwrite a tidy column"),
        ("n", "spec must be a dict of parameter lists or a list of dicts"),
        (None, "spec must be a dict of parameter lists or a list of dicts"),
    ],
)
def test_grid_rejects_bad_specs_naming_them(spec, match):
    with pytest.raises(ValueError, match=match):
        grid(spec)


# ---- the seeding rule -------------------------------------------------------------------------
def test_each_position_runs_with_its_own_documented_seed():
    configs = [{"n": 5}, {"n": 5}, {"n": 8}]
    out = sweep(chain, configs, seed=7)
    seeds = [int(rng(7, Stream.SWEEP, i).integers(2**63)) for i in range(3)]  # the documented rule
    assert configuration_seeds(3, seed=7) == seeds
    calls = zip(configs, seeds, strict=True)
    expected = Results.concat(chain(**c, seed=s).assign(**c) for c, s in calls)
    pd.testing.assert_frame_equal(frame(out), frame(expected), check_exact=True)
    first, second = np.split(out.where(n=5).frame["value"].to_numpy(), 2)  # positions 0 and 1
    assert first.shape == (3 * SEEDS,)
    assert not np.any(first == second)  # same parameters, new dice (at every generation and seed)
    pd.testing.assert_frame_equal(frame(sweep(chain, configs, seed=7)), frame(out))  # reproducible
    other = sweep(chain, configs, seed=8).frame["value"].to_numpy()
    assert not np.array_equal(other, out.frame["value"].to_numpy())


def test_common_streams_give_every_configuration_the_root_seed():
    configs = [{"n": 5}, {"n": 5}, {"n": 8}]
    out = sweep(chain, configs, seed=7, streams="common")
    assert configuration_seeds(3, seed=7, streams="common") == [7, 7, 7]
    values = out.frame.groupby(out.frame.index // (3 * SEEDS))["value"].apply(np.asarray)
    np.testing.assert_array_equal(values[0], values[1])  # the same dice for the same parameters
    np.testing.assert_array_equal(values[0], chain(5, seed=7).frame["value"])
    np.testing.assert_array_equal(values[2], chain(8, seed=7).frame["value"])


# ---- backends ---------------------------------------------------------------------------------
def test_backends_and_worker_counts_agree_to_the_bit(dask_client):
    serial = sweep(chain, GRID, seed=3)
    assert len(serial) == 6 * 3 * SEEDS
    assert list(serial.frame.columns[-2:]) == ["n", "regime_name"]
    blocks = serial.frame.iloc[:: 3 * SEEDS]  # the first row of each configuration's table
    assert blocks[["n", "regime_name"]].to_dict("records") == grid(GRID)  # grid order
    runs = {
        "processes, 2 workers": sweep(chain, GRID, seed=3, backend="processes", workers=2),
        "processes, 1 worker": sweep(chain, GRID, seed=3, backend="processes", workers=1),
        "dask, a client": sweep(chain, GRID, seed=3, backend="dask", client=dask_client),
        "dask, a scheduler": sweep(
            chain, GRID, seed=3, backend="dask", scheduler=dask_client.scheduler.address
        ),
    }
    for name, out in runs.items():
        pd.testing.assert_frame_equal(frame(out), frame(serial), check_exact=True, obj=name)
    assert dask_client.status == "running"  # a client the caller passed is left open


def test_the_output_is_in_grid_order_whatever_the_order_of_completion():
    configs = [{"n": 3, "pause": 1.5}] + [{"n": n, "pause": 0.0} for n in (4, 5, 6)]
    out = sweep(slow, configs, seed=5, backend="processes", workers=2)
    finished = out.where(metric="finished").frame.groupby("n", sort=False)["value"].first()
    assert list(finished.index) == [3, 4, 5, 6]  # grid order ...
    assert finished[3] > finished[6]  # ... though the first configuration finished last
    expected = sweep(chain, [{"n": c["n"]} for c in configs], seed=5)  # same positions, seeds
    got = out.where(metric="var").frame.drop(columns="pause")
    pd.testing.assert_frame_equal(frame(Results(got)), frame(expected), check_exact=True)


# ---- failures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["serial", "processes", "dask"])
def test_a_failing_configuration_does_not_lose_the_others(backend, request):
    options = {"workers": 2} if backend == "processes" else {}
    if backend == "dask":
        options = {"client": request.getfixturevalue("dask_client")}
    configs = grid({"n": [2, 3, 5]})
    with pytest.raises(SweepError) as caught:
        sweep(fragile, configs, seed=1, backend=backend, **options)
    err = caught.value
    assert isinstance(err, RuntimeError)
    assert "1 of 3 configurations failed" in str(err)
    assert "position 1 (n=3): ValueError: n = 3 is too small" in str(err)
    assert "position 0" not in str(err) and "position 2 (" not in str(err)
    [(position, config, exc)] = err.failures
    assert (position, config) == (1, {"n": 3})
    assert isinstance(exc, ValueError) and str(exc) == "n = 3 is too small"  # pickled back whole
    assert "in fragile" in err.tracebacks[0] and "in fragile" in str(err)
    whole = sweep(chain, configs, seed=1)  # the same positions, hence the same seeds
    survivors = whole.where(n=lambda n: n != 3)
    pd.testing.assert_frame_equal(frame(err.results), frame(survivors), check_exact=True)


def test_a_function_that_returns_no_results_fails_every_configuration():
    with pytest.raises(SweepError, match="2 of 2 configurations failed") as caught:
        sweep(not_results, {"n": [2, 3]})
    err = caught.value
    assert err.results is None
    assert "position 0 (n=2): TypeError: fn must return a collapse_lib Results" in str(err)
    assert [type(exc) for _, _, exc in err.failures] == [TypeError, TypeError]


def test_an_exception_that_does_not_pickle_comes_back_as_its_repr():
    with pytest.raises(SweepError, match=r"position 0 \(n=2\): Unpicklable: n = 2") as caught:
        sweep(unpicklable, {"n": [2]})
    [(_, _, exc)] = caught.value.failures
    assert exc == "Unpicklable('n = 2')"


# ---- bad inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backend": "threads"}, "unknown backend 'threads'; valid: 'serial', 'processes', 'dask'"),
        ({"streams": "shared"}, "unknown streams 'shared'; valid: 'position', 'common'"),
        ({"backend": "dask"}, "exactly one of client .* and scheduler .* got neither"),
        ({"backend": "dask", "client": object(), "scheduler": "tcp://x:1"}, "got both"),
        ({"backend": "processes", "workers": 0}, "workers must be >= 1"),
        ({"workers": 2}, "workers applies to backend='processes' only"),
        ({"client": object()}, "client and scheduler apply to backend='dask' only"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"configurations": []}, "configurations must hold at least one configuration"),
        ({"configurations": {"n": []}}, r"configurations\['n'\] must hold at least one value"),
        ({"fn": "chain"}, "fn must be callable"),
    ],
)
def test_sweep_rejects_bad_inputs_naming_them(kwargs, match):
    args = {"fn": chain, "configurations": {"n": [2]}} | kwargs
    with pytest.raises(ValueError, match=match):
        sweep(args.pop("fn"), args.pop("configurations"), **args)


def test_dask_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "collapse_lib\[dask\]"'):
        sweep(chain, {"n": [2]}, backend="dask", scheduler="tcp://127.0.0.1:1")


def test_progress_bar_counts_configurations(capsys):
    sweep(chain, {"n": [2, 3]}, progress=True)
    assert "sweep" in capsys.readouterr().err


def test_local_cluster_workers_keep_glibc_dynamic_mmap_threshold():
    """Dask's default MALLOC_TRIM_THRESHOLD_ slows numpy temporaries ~3x; local_cluster drops it."""
    import os

    from collapse_lib.sweep import local_cluster

    client = local_cluster(1)
    try:
        env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert list(env.values()) == [None]
        assert list(client.nthreads().values()) == [1]
    finally:
        client.close()
        client.cluster.close()
    with pytest.raises(ValueError, match="workers"):
        local_cluster(0)
