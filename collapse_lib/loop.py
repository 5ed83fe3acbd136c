"""The generation loop: fit, sample, (filter), mix, refit -- over many seeds at once.

Every chapter's experiment is one call of :func:`run` (or :func:`compare` for several
regimes on the same seeds). The loop is written once, for *batched* learners whose
data carry a leading seed axis, shape ``(S, n, ...)``. A learner that handles one seed
at a time (a torch model, say) is wrapped by :class:`PerSeed`, which turns it into a
batched learner; the loop itself never changes.

Protocols
---------
learner
    ``fit(data) -> model`` on a batch ``(S, n, ...)``. For accumulation a learner may
    keep sufficient statistics instead of raw data: ``summarize(data) -> summary``,
    ``merge(summary, summary) -> summary`` and ``fit_summary(summary) -> model``.
    :class:`Learner` supplies the raw-data defaults (identity, concatenate along the
    sample axis, ``fit``). A learner that continues training from the current model
    (a warm start, as fine-tuning does) defines ``refit(model, summary) -> model``: the
    loop then calls it at generations ``t >= 1`` instead of ``fit_summary`` (generation
    0 is always fitted from scratch on the real data).
model
    ``sample(n, rngs) -> (S, n, ...)`` where ``rngs`` holds one numpy ``Generator`` per
    seed; replicate ``s`` must draw only from ``rngs[s]``.
metric
    ``metric(step) -> (S,)``: a number per seed, computed from a :class:`Step`.
filter
    ``filter(ctx) -> (S, m, ...)``: the synthetic samples to keep, given a
    :class:`FilterContext` (the candidates, current and generation-0 models, the real
    data, and ``ctx.draw(k)`` to ask the current model for more candidates). The loop
    checks what a filter returns, right where it returns it: a numpy array or torch
    tensor with one row per seed (``S``) and the candidates' trailing shape, else a
    ``ValueError`` naming the filter, the generation and the expected shape. The number
    of kept samples ``m`` is the filter's to choose, and the generation trains on exactly
    what it returns (plus the generation's real part, under ``mixture``). A filter that
    keeps fewer than the ``N`` candidates makes the generation train on fewer points. It
    can return more only out of what it was given: at most the candidates plus the rows
    it drew with ``ctx.draw`` (``Selection("all")`` keeps all of them: the "trained on
    2N" control) plus the rows of outside data it declares in an ``extra_rows``
    attribute (``WeakLabeler`` appends one row of labels); more than that is a
    ``ValueError`` naming the filter and the generation. A filter may keep no sample at all
    (``m = 0``, e.g. :func:`collapse_lib.markov.discard_synthetic`) only when the
    generation has real data to train on; where it has none (``replace``,
    ``accumulate``) the loop raises a ``ValueError`` naming the filter and the
    generation rather than let the learner fail on empty data.

Subsampling regimes
-------------------
A regime with ``subsample=True`` (``accumulate_subsample``) keeps the *raw* pool (the real
data and every generation's new data, concatenated with :func:`concat`, numpy or torch)
instead of a merged summary. At ``t >= 1`` replicate ``s`` draws the indices of its
training set with ``rngs[s].choice(pool_size, m, replace=False)``, ``m`` being the number of
rows the generation added (``n_t``, or what a filter kept plus the real part), sorted so the
blocks keep their order; the learner then sees ``summarize(train)`` and ``fit_summary`` (or
``refit``) as usual. ``Step.data`` stays the generation's new data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from collapse_lib.regimes import Regime, sample_sizes
from collapse_lib.results import Results
from collapse_lib.runtime import _describe, check_positive_int, seed_generators, seed_list

Metric = Callable[["Step"], Any]
Filter = Callable[["FilterContext"], Any]


@runtime_checkable
class Sampler(Protocol):
    """A model or the truth: ``sample(n, rngs) -> (S, n, ...)``, replicate ``s`` from ``rngs[s]``.

    ``rngs`` is always a list of numpy ``Generator`` (one per replicate), never one generator.
    """

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> Any: ...


@runtime_checkable
class Fitter(Protocol):
    """A learner: ``fit(data (S, n, ...)) -> Sampler``; :class:`Learner` adds accumulation."""

    def fit(self, data: Any) -> Sampler: ...


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def concat(parts: Sequence[Any], axis: int = 1) -> Any:
    """Concatenate numpy arrays or torch tensors along ``axis`` (the sample axis by default).

    ``None`` parts are skipped. All-torch parts give a torch tensor; any other mix gives a
    numpy array, a torch part converted with :func:`as_numpy` (moved to the CPU): real
    data from a torch truth pooled with a numpy model's samples, or the other way round,
    concatenate the same way whichever comes first.
    """
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ValueError("concat needs at least one array that is not None")
    if len(parts) == 1:
        return parts[0]
    torch_parts = [_is_torch(p) for p in parts]
    if all(torch_parts):
        import torch

        return torch.cat(list(parts), dim=axis)
    if any(torch_parts):
        parts = [as_numpy(p) for p in parts]
    return np.concatenate(parts, axis=axis)


def as_numpy(x: Any) -> np.ndarray:
    """A numpy view of an array, a torch tensor (any device) or a number."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def pack(X: Any, Y: Any) -> np.ndarray:
    """One batch from covariates ``X (..., n, p)`` and targets ``Y (..., n)`` or ``(..., n, k)``.

    The loop's data for supervised learners: covariates then targets along the last axis.
    """
    X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
    if Y.ndim == X.ndim - 1:
        Y = Y[..., None]
    if Y.shape[:-1] != X.shape[:-1]:
        raise ValueError(
            f"X {X.shape} and Y {Y.shape} must agree on the leading (seed, sample) axes"
        )
    return np.concatenate([X, Y], axis=-1)


def unpack(data: Any, p: int) -> tuple[np.ndarray, np.ndarray]:
    """``(X (..., n, p), Y (..., n, k))`` from a :func:`pack`-ed batch (first ``p`` columns: X)."""
    p = check_positive_int(p, "p")
    data = np.asarray(data)
    if data.ndim < 2 or data.shape[-1] <= p:
        raise ValueError(f"data must have more than p={p} columns (covariates, then targets)")
    return data[..., :p], data[..., p:]


class Learner:
    """Base class for batched learners: raw-data defaults for the accumulation protocol."""

    def fit(self, data: Any) -> Any:
        """Fit on one batch: by default ``fit_summary(summarize(data))``.

        A learner defines ``fit`` (raw data), or ``summarize`` and ``fit_summary``
        (sufficient statistics, for which this default is the fit).
        """
        if type(self).fit_summary is Learner.fit_summary:
            raise NotImplementedError(f"{type(self).__name__} must define fit or fit_summary")
        return self.fit_summary(self.summarize(data))

    def summarize(self, data: Any) -> Any:
        """What accumulation keeps of a batch: by default the raw data."""
        return data

    def merge(self, pooled: Any, new: Any) -> Any:
        """Pool two summaries: by default concatenate the raw data along the sample axis."""
        return concat([pooled, new], axis=1)

    def fit_summary(self, summary: Any) -> Any:
        """Fit from a (pooled) summary: by default ``fit`` on the raw data."""
        return self.fit(summary)


class SeedModels:
    """The per-seed models of a :class:`PerSeed` learner, behaving as one batched model.

    ``sample`` stacks each model's samples along a new seed axis; any other attribute
    is stacked across seeds (``models.var`` -> array of shape ``(S,)``), so one metric
    serves batched and per-seed learners alike.
    """

    def __init__(self, models: Sequence[Any]) -> None:
        self.models = list(models)

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, s: int) -> Any:
        return self.models[s]

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> Any:
        draws = [m.sample(n, g) for m, g in zip(self.models, rngs, strict=True)]
        if hasattr(draws[0], "detach"):
            import torch

            return torch.stack(draws)
        return np.stack(draws)

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_") or name == "models":
            raise AttributeError(name)
        return np.stack([as_numpy(getattr(m, name)) for m in self.models])


class PerSeed(Learner):
    """Adapt a one-seed learner (``fit(data (n, ...))``, ``model.sample(n, rng)``) to the loop.

    Summaries are kept per seed as a list, so a per-seed learner may define its own
    ``summarize``/``merge``/``fit_summary`` for one seed.
    """

    def __init__(self, learner: Any) -> None:
        self.learner = learner
        if hasattr(learner, "refit"):  # warm starts, seed by seed (see the module docstring)
            self.refit = self._refit

    def _refit(self, models: SeedModels, summary: list[Any]) -> SeedModels:
        pairs = zip(models.models, summary, strict=True)
        return SeedModels([self.learner.refit(m, s) for m, s in pairs])

    def _one(self, name: str):
        method = getattr(self.learner, name, None)
        return method if method is not None else getattr(Learner, name).__get__(self.learner)

    def fit(self, data: Any) -> SeedModels:
        return SeedModels([self.learner.fit(d) for d in data])

    def summarize(self, data: Any) -> list[Any]:
        return [self._one("summarize")(d) for d in data]

    def merge(self, pooled: list[Any], new: list[Any]) -> list[Any]:
        merge = getattr(self.learner, "merge", None)
        if merge is None:
            return [concat([a, b], axis=0) for a, b in zip(pooled, new, strict=True)]
        return [merge(a, b) for a, b in zip(pooled, new, strict=True)]

    def fit_summary(self, summary: list[Any]) -> SeedModels:
        return SeedModels([self._one("fit_summary")(s) for s in summary])


@dataclass
class Step:
    """What a metric sees at generation ``generation``."""

    generation: int
    model: Any
    truth: Any
    data: Any  #: the new data of this generation (before pooling)
    real: Any  #: the real data of generation 0
    seeds: list[int]


@dataclass
class FilterContext:
    """What a filter sees when it curates the synthetic candidates of ``generation``."""

    generation: int
    candidates: Any
    model: Any  #: the model that produced the candidates (generation - 1)
    model0: Any  #: the generation-0 model, fitted on real data only
    real: Any  #: the real data of generation 0
    truth: Any
    rngs: list[np.random.Generator]
    drawn: list[int] = field(default_factory=list)  #: sizes of this generation's ctx.draw calls

    def draw(self, n: int) -> Any:
        """Ask the current model for ``n`` more candidates per seed (counted in ``drawn``)."""
        x = self.model.sample(check_positive_int(n, "n"), self.rngs)
        self.drawn.append(n)
        return x


class ModelRecorder:
    """A loop metric that keeps every generation's model and returns ``metric(step)``.

    :func:`run` returns only per-seed numbers; an experiment that needs the models themselves
    (to label new data downstream, to plot a fitted distribution) records ``step.model`` with
    this metric as it passes.
    """

    def __init__(self, metric: Callable[[Step], Any]) -> None:
        self.metric = metric
        self.models: list[Any] = []

    def __call__(self, step: Step) -> Any:
        self.models.append(step.model)
        return self.metric(step)


def _nonfinite_seeds(x: Any) -> np.ndarray:
    """Indices along axis 0 whose entries contain NaN or inf (floating data only)."""
    arr = as_numpy(x)
    if not np.issubdtype(arr.dtype, np.inexact):
        return np.array([], dtype=int)
    bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    return np.flatnonzero(bad)


def _check_finite(x: Any, what: str, seeds: list[int]) -> None:
    bad = _nonfinite_seeds(x)
    if bad.size:
        raise FloatingPointError(
            f"{what} is NaN or infinite for seed {seeds[bad[0]]}"
            f" ({bad.size} of {len(seeds)} seeds affected)"
        )


def _check_batch(x: Any, n: int, n_seeds: int, what: str) -> None:
    shape = tuple(x.shape)
    if len(shape) < 2 or shape[0] != n_seeds or shape[1] != n:
        raise ValueError(f"{what} must have shape (seeds={n_seeds}, n={n}, ...), got {shape}")


def _filter_name(f: Any) -> str:
    """A filter's name for messages: a function's ``__name__``, else its type's name."""
    name = getattr(f, "__name__", None)
    return name if isinstance(name, str) else type(f).__name__


def _check_filtered(
    out: Any, candidates: Any, n_seeds: int, t: int, name: str, n_real: int, most: int
) -> Any:
    """Return a filter's output ``out`` if it is a valid batch of kept samples, else raise.

    Valid: a numpy array or torch tensor of shape ``(n_seeds, m, *candidates.shape[2:])``
    with ``1 <= m <= most``, or ``m = 0`` when the generation has ``n_real > 0`` real samples.
    """
    trailing = tuple(candidates.shape[2:])
    want = f"(seeds={n_seeds}, m{''.join(f', {d}' for d in trailing)})"
    where = f"filter {name!r} at generation {t}"
    if not (isinstance(out, np.ndarray) or _is_torch(out)):
        raise ValueError(
            f"{where} must return a numpy array or torch tensor of shape {want}"
            f" (the kept samples), got {_describe(out)}"
        )
    shape = tuple(out.shape)
    if len(shape) != 2 + len(trailing) or shape[0] != n_seeds or shape[2:] != trailing:
        raise ValueError(
            f"{where} must return the kept samples with shape {want}"
            f" (candidates: {tuple(candidates.shape)}), got {shape}"
        )
    if shape[1] > most:
        raise ValueError(
            f"{where} returned {shape[1]} samples per seed, more than it was given: {most}"
            f" (the {candidates.shape[1]} candidates, the rows it drew with ctx.draw and"
            " the filter's declared extra_rows)"
        )
    if shape[1] == 0 and n_real == 0:
        raise ValueError(
            f"{where} kept no samples (an empty batch, m = 0) and the generation has no"
            f" real data: nothing to train on (return shape {want} with m >= 1)"
        )
    return out


def _subsample(pool: Any, m: int, rngs: Sequence[np.random.Generator]) -> Any:
    """``m`` rows per replicate of ``pool (S, N, ...)``, uniformly without replacement.

    Replicate ``s`` draws its indices from ``rngs[s]`` alone; they are sorted, so the rows
    keep the pool's order (real data first, then the generations' blocks).
    """
    size = pool.shape[1]
    idx = np.sort(np.stack([g.choice(size, m, replace=False) for g in rngs]), axis=1)
    if _is_torch(pool):
        import torch

        rows = torch.arange(len(rngs), device=pool.device)[:, None]
        return pool[rows, torch.as_tensor(idx, device=pool.device)]
    return pool[np.arange(len(rngs))[:, None], idx]


def _show_progress(progress: bool | None) -> bool:
    if progress is None:
        return os.environ.get("COLLAPSE_LIB_PROGRESS", "1") != "0"
    return bool(progress)


def run(
    learner: Fitter,
    truth: Sampler,
    regime: Regime,
    *,
    n: int | Callable[[int], int],
    generations: int,
    metrics: Mapping[str, Metric],
    seeds: int | Sequence[int] = 100,
    seed: int = 0,
    filter: Filter | None = None,
    condition: str | None = None,
    progress: bool | None = None,
) -> Results:
    """Run the fit-sample-refit loop for ``generations`` generations on many seeds at once.

    Parameters
    ----------
    learner
        A batched learner (see the module docstring), or ``PerSeed(one_seed_learner)``.
    truth
        The real data distribution: a model with ``sample(n, rngs)``.
    regime
        From :func:`collapse_lib.regimes.regime`. Under a subsampling regime
        (``accumulate_subsample``) generation ``t >= 1`` trains on as many points as it
        added, drawn without replacement from the raw pool of everything so far (see the
        module docstring).
    n
        Samples per generation: an int, or a schedule ``t -> n_t``
        (:func:`collapse_lib.regimes.sample_sizes`).
    generations
        Number of generations recorded, ``t = 0 .. generations - 1``; generation 0 is
        fitted on real data only.
    metrics
        ``{name: metric}``; each metric maps a :class:`Step` to one number per seed.
    seeds
        Replicate indices (or their number ``S``). Replicate ``s`` draws only from its
        own stream (:func:`collapse_lib.runtime.seed_generators`), so a run of seed
        ``s`` alone gives the same numbers as seed ``s`` inside a batch.
    seed
        The root seed every stream derives from.
    filter
        Optional curation of the synthetic candidates: ``filter(ctx) -> (S, m, ...)`` (see
        :class:`FilterContext`). The generation trains on the ``m`` samples it returns
        (plus the generation's real part): fewer than the candidates means fewer points,
        more (rows drawn with ``ctx.draw``, labels) means more. The output must be an
        array or tensor with one row per seed and the candidates' trailing shape, and
        may be empty (``m = 0``) only when the generation has real data; otherwise a
        ``ValueError`` names the filter and the generation.
    condition
        Label stored in the ``condition`` column; defaults to the regime's name.
    progress
        Show a progress bar over generations; ``None`` shows it unless the
        environment sets ``COLLAPSE_LIB_PROGRESS=0`` (as the book build and tests do).

    Returns
    -------
    Results
        The tidy table (``results.frame``): one row per (generation, seed, metric), with
        columns ``generation, seed, condition, metric, value``.
    """
    if not isinstance(learner, Fitter):
        raise ValueError(f"learner must have fit(data) (see loop.Fitter), got {_describe(learner)}")
    if not isinstance(truth, Sampler):
        raise ValueError(
            f"truth must have sample(n, rngs) (see loop.Sampler), got {_describe(truth)}"
        )
    if not isinstance(regime, Regime):
        raise ValueError(
            f"regime must be a Regime (see collapse_lib.regimes.regime), got {regime!r}"
        )
    generations = check_positive_int(generations, "generations")
    n_at = sample_sizes(check_positive_int(n, "n")) if not callable(n) else n
    if not metrics:
        raise ValueError("metrics must name at least one metric")
    seeds = seed_list(seeds)
    rngs = seed_generators(seed, seeds)
    S = len(seeds)

    def draw(model: Any, k: int, what: str) -> Any:
        if k == 0:
            return None
        x = model.sample(k, rngs)
        _check_batch(x, k, S, what)
        _check_finite(x, what, seeds)
        return x

    values = {name: np.empty((generations, S)) for name in metrics}
    real = draw(truth, check_positive_int(n_at(0), "n_0"), "real data at generation 0")
    data, pool = real, learner.summarize(real)
    raw = real if regime.subsample else None  # the raw pool a subsampling regime draws from
    model = model0 = learner.fit_summary(pool)

    bar = None
    if _show_progress(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=generations, desc=condition or regime.name, leave=False)
    for t in range(generations):
        if t > 0:
            n_t = check_positive_int(n_at(t), f"n_{t}")
            n_real = round(regime.alpha(t) * n_t)
            source = (
                f"synthetic data drawn from the model of generation {t - 1} (for generation {t})"
            )
            synthetic = draw(model, n_t - n_real, source)
            if synthetic is not None and filter is not None:
                ctx = FilterContext(t, synthetic, model, model0, real, truth, rngs)
                kept = filter(ctx)
                most = synthetic.shape[1] + sum(ctx.drawn) + getattr(filter, "extra_rows", 0)
                name = _filter_name(filter)
                synthetic = _check_filtered(kept, synthetic, S, t, name, n_real, most)
                _check_finite(synthetic, f"filtered data at generation {t}", seeds)
            data = concat([draw(truth, n_real, f"real data at generation {t}"), synthetic])
            if regime.subsample:
                raw = concat([raw, data])
                pool = learner.summarize(_subsample(raw, data.shape[1], rngs))
            else:
                new = learner.summarize(data)
                pool = learner.merge(pool, new) if regime.pooled else new
            refit = getattr(learner, "refit", None)  # warm start from the current model
            model = learner.fit_summary(pool) if refit is None else refit(model, pool)
        step = Step(t, model, truth, data, real, seeds)
        for name, metric in metrics.items():
            out = metric(step)
            try:
                if out is None:  # would become NaN
                    raise TypeError("None is not a number")
                v = as_numpy(out).astype(float).reshape(-1)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"metric {name!r} must return numbers, one per seed, at generation {t};"
                    f" got {_describe(out)}, which is not numeric ({err})"
                ) from err
            if v.shape != (S,):
                raise ValueError(
                    f"metric {name!r} must return one value per seed ({S}) at generation {t},"
                    f" got {v.shape}"
                )
            bad = np.flatnonzero(~np.isfinite(v))
            if bad.size:
                raise FloatingPointError(
                    f"metric {name!r} is NaN or infinite at generation {t} for seed {seeds[bad[0]]}"
                )
            values[name][t] = v
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return Results.from_array(values, seeds, condition or regime.name)


def compare(conditions: Mapping[str, Regime], **kwargs: Any) -> Results:
    """Run :func:`run` once per ``{label: regime}`` on the same seeds; one stacked table.

    All conditions share the root seed, so generation 0 (real data) is identical
    across them: differences are the regimes', not the dice's.
    """
    if not conditions:
        raise ValueError("conditions must name at least one regime")
    return Results.concat(
        run(regime=r, condition=label, **kwargs) for label, r in conditions.items()
    )
