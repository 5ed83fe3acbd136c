import numpy as np
import pytest

from collapse_lib.notebook import setup
from collapse_lib.runtime import Presets, Stream, resolve_device, rng, seed_generators, set_threads


def test_replicate_streams_do_not_depend_on_the_batch():
    alone = seed_generators(7, [3])[0].standard_normal(5)
    batch = seed_generators(7, 10)[3].standard_normal(5)
    np.testing.assert_array_equal(alone, batch)
    assert not np.array_equal(seed_generators(8, [3])[0].standard_normal(5), alone)


def test_named_streams_are_independent_of_replicate_streams():
    a = rng(0, 3).standard_normal(4)
    b = seed_generators(0, [3])[0].standard_normal(4)
    c = rng(0, 3, 1).standard_normal(4)
    np.testing.assert_array_equal(a, b)  # a one-element key is replicate 3's: hence Stream's rule
    assert not np.array_equal(a, c)


def test_the_stream_registry_gives_every_purpose_its_own_key():
    values = [int(s) for s in Stream]
    assert len(values) == len(set(values))  # also enforced by @unique at import
    named = rng(0, Stream.DIFFUSION_EVAL, 1, 2).standard_normal(3)
    np.testing.assert_array_equal(named, rng(0, 34, 1, 2).standard_normal(3))  # a Stream is its int
    replicate = seed_generators(0, [int(Stream.SPIKE_LIMIT)])[0].standard_normal(3)
    assert not np.array_equal(rng(0, Stream.SPIKE_LIMIT, 0).standard_normal(3), replicate)


def test_presets_select_and_validate():
    p = Presets(quick={"n": 10}, full={"n": 100})
    assert p.select("quick")["n"] == 10 and p.select("full")["n"] == 100
    with pytest.raises(ValueError, match="unknown mode 'fast'; valid: 'quick', 'full'"):
        p.select("fast")
    with pytest.raises(ValueError, match="quick preset may only override full-mode names"):
        Presets(quick={"n": 1}, full={"m": 1})
    only_full = Presets(full={"n": 100, "m": 2}, quick={"m": 1})  # quick names what differs
    assert dict(only_full.select("quick")) == {"n": 100, "m": 1}
    assert dict(Presets(full={"n": 5}).select("quick")) == {"n": 5}
    with pytest.raises(TypeError):
        p.select("quick")["n"] = 3  # read-only


def test_gpu_preset_overrides_full_mode_on_cuda_only():
    p = Presets(quick={"n": 10, "m": 1}, full={"n": 100, "m": 2}, gpu={"n": 1000})
    assert dict(p.select("full", "cuda")) == {"n": 1000, "m": 2}
    assert dict(p.select("full", "cuda:1")) == {"n": 1000, "m": 2}
    assert p.select("full", "cpu")["n"] == 100
    assert p.select("quick", "cuda")["n"] == 10
    assert Presets(quick={"n": 1}, full={"n": 2}).select("full", "cuda")["n"] == 2
    with pytest.raises(ValueError, match="unknown \\['k'\\]"):
        Presets(quick={"n": 1}, full={"n": 2}, gpu={"k": 3})


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in {"cpu", "cuda"}
    with pytest.raises(ValueError, match="unknown device 'tpu'; valid: 'auto', 'cpu'"):
        resolve_device("tpu")


def test_threads():
    assert set_threads(1) == 1
    with pytest.raises(ValueError, match="n must be >= 1"):
        set_threads(0)


def test_notebook_setup_validates_parameters(capsys):
    assert setup("quick", "auto", 0) == "cpu"
    assert "collapse_lib" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown mode"):
        setup("fast", "auto", 0)
    with pytest.raises(ValueError, match="unknown device"):
        setup("quick", "gpu", 0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        setup("quick", "cpu", -1)


def test_uniforms_are_per_replicate_streams():
    from collapse_lib.runtime import uniforms

    batch = uniforms(seed_generators(3, 4), (2, 5))
    assert batch.shape == (4, 2, 5) and np.all((batch >= 0) & (batch < 1))
    alone = uniforms(seed_generators(3, [2]), (2, 5))
    np.testing.assert_array_equal(alone[0], batch[2])  # independent of the batch
    np.testing.assert_array_equal(uniforms(rng(3, 9), 5)[0], rng(3, 9).random(5))


def test_linear_init_is_per_replicate_and_bounded():
    import torch

    from collapse_lib.runtime import linear_init, torch_generator

    layers = {"W": ((4, 3), 4), "b": ((1, 3), 4)}
    gens = [torch_generator(rng(0, 1, s)) for s in range(3)]
    params = linear_init(layers, gens, "cpu")
    assert params["W"].shape == (3, 4, 3) and params["b"].shape == (3, 1, 3)
    assert float(params["W"].abs().max()) <= 4**-0.5  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    alone = linear_init(layers, [torch_generator(rng(0, 1, 2))], "cpu")
    assert torch.equal(alone["W"][0], params["W"][2]) and torch.equal(alone["b"][0], params["b"][2])
