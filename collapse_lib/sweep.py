"""Sweeps: one experiment run over a grid of configurations, on one core, many, or a cluster.

A *sweep* calls one function ``fn`` once per configuration of a grid (a sample size, a regime,
a fraction of real data, ...) and stacks what the calls return into one :class:`Results`, with
the configuration's parameters as columns::

    from collapse_lib.sweep import grid, sweep

    def variance(step):
        return step.model.var

    def cell(n, alpha, seed):  # fn: the parameters by name, and the seed
        return run(GaussianMLE(), Gaussian(0.0, 1.0), regime("mixture", alpha), n=n,
                   generations=50, metrics={"var": variance}, seeds=200, seed=seed,
                   progress=False)

    results = sweep(cell, {"n": [10, 100], "alpha": [0.0, 0.5]}, backend="processes")
    results.where(n=100, alpha=0.5).final("var")

Configurations
    :func:`grid` turns ``{"n": [10, 100], "alpha": [0.0, 0.5]}`` into the Cartesian product in
    the dict's key order, the last key varying fastest (``n=10, alpha=0.0``; ``n=10,
    alpha=0.5``; ``n=100, alpha=0.0``; ...), or takes a list of dicts as it is. Configuration
    ``i`` (its *position* in that list) runs as ``fn(**configuration, seed=s_i)`` and must
    return a :class:`Results`; the sweep adds the parameters as columns
    (:meth:`Results.assign`) and concatenates the tables in grid order.

The seeding rule
    ``streams="position"`` (the default) gives configuration ``i`` the integer
    ``s_i = rng(seed, Stream.SWEEP, i).integers(2**63)``: a stream of its own, derived from the
    root ``seed`` and the position alone. ``streams="common"`` gives every configuration the
    root seed itself (common random numbers, as :func:`collapse_lib.loop.compare` does: the
    cells differ by their parameters, not by their dice). Either way a configuration's seed
    does not depend on which worker runs it, when, or beside what, and the output is assembled
    in grid order, never in order of completion: the table is bit-identical across backends
    and worker counts (tested to the bit). Rerun cell ``i`` alone with
    ``fn(**grid(spec)[i], seed=configuration_seeds(len(grid(spec)), seed=seed)[i])``.

Backends
    * ``"serial"``: a plain loop in this process (the reference; the easiest to debug).
    * ``"processes"``: ``joblib`` with its ``loky`` backend, ``workers`` processes on this
      machine (default: all its cores), one BLAS thread each, as the chapters run
      (:func:`collapse_lib.runtime.set_threads`).
    * ``"dask"``: one task per configuration on a ``dask.distributed`` cluster: an existing
      ``client``, or a ``scheduler`` address the sweep connects to (and disconnects from).
      A Kubernetes, SLURM (``dask-jobqueue``) or cloud cluster runs a grid with::

          from dask.distributed import Client
          client = Client("tcp://scheduler:8786")
          results = sweep(fn, spec, backend="dask", client=client)

      dask is an optional extra: ``pip install ".[dask]"`` (or ``"collapse_lib[dask]"``).
      Dask's workers also run one BLAS thread each (its nanny sets ``OMP_NUM_THREADS=1``).

``fn`` travels to the workers by pickling: module-level functions always do; a notebook's
functions (and lambdas, closures) do through ``cloudpickle``, which loky and dask both use.
Pass ``progress=False`` to the loop inside ``fn``: the sweep draws one bar over configurations.

Failures
    A configuration whose ``fn`` raises does not stop the others. Once all have run,
    :class:`SweepError` lists every failed configuration (position, parameters, ``Type:
    message``) and carries the successful ones' table in ``.results``. Exceptions are caught
    inside the worker, so they come back from other processes and machines intact (or as
    their text, when they do not pickle), with their tracebacks.
"""

from __future__ import annotations

import itertools
import os
import pickle
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from collapse_lib.loop import _show_progress
from collapse_lib.results import COLUMNS, Results
from collapse_lib.runtime import (
    Stream,
    _describe,
    check_choice,
    check_positive_int,
    check_seed,
    rng,
)

BACKENDS: tuple[str, ...] = ("serial", "processes", "dask")
STREAMS: tuple[str, ...] = ("position", "common")
DASK_HINT = 'pip install "collapse_lib[dask]"'

Spec = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


class SweepError(RuntimeError):
    """Some configurations of a sweep failed; the others' results are in ``.results``.

    Attributes
    ----------
    results
        The :class:`Results` of the configurations that succeeded, in grid order, or ``None``
        if none did.
    failures
        ``[(position, configuration, exception)]`` in grid order; ``exception`` is the
        exception object, or its ``repr`` when it could not be pickled back from a worker.
    tracebacks
        The formatted traceback of each failure, in the order of ``failures``.
    """

    def __init__(
        self,
        message: str,
        results: Results | None = None,
        failures: Sequence[tuple[int, dict[str, Any], Any]] = (),
        tracebacks: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.results = results
        self.failures = list(failures)
        self.tracebacks = list(tracebacks)

    def __reduce__(self) -> tuple[Any, ...]:  # a sweep inside a worker's fn can fail too
        return (type(self), (str(self), self.results, self.failures, self.tracebacks))


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str):
        raise ValueError(f"{where}: parameter names must be strings, got {_describe(key)}")
    if key in COLUMNS:
        raise ValueError(
            f"{where}: parameter {key!r} would overwrite a tidy column of the results"
            f" ({', '.join(COLUMNS)}); rename it"
        )
    return key


def _values(values: Any, where: str) -> list[Any]:
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(
            f"{where} must be a list of values (a sequence, in order), got {_describe(values)}"
        )
    if len(values) == 0:
        raise ValueError(f"{where} must hold at least one value")
    return list(values)


def _grid(spec: Any, name: str) -> list[dict[str, Any]]:
    if isinstance(spec, Mapping):
        if not spec:
            raise ValueError(f"{name} must name at least one parameter")
        keys = [_check_key(k, name) for k in spec]
        lists = [_values(spec[k], f"{name}[{k!r}]") for k in keys]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
        raise ValueError(
            f"{name} must be a dict of parameter lists or a list of dicts, got {_describe(spec)}"
        )
    if len(spec) == 0:
        raise ValueError(f"{name} must hold at least one configuration")
    out = []
    for i, config in enumerate(spec):
        if not isinstance(config, Mapping):
            raise ValueError(f"{name}[{i}] must be a dict of parameters, got {_describe(config)}")
        out.append({_check_key(k, f"{name}[{i}]"): v for k, v in config.items()})
    return out


def grid(spec: Spec) -> list[dict[str, Any]]:
    """The configurations of a sweep: a Cartesian product, or a list of dicts as given.

    Parameters
    ----------
    spec
        ``{name: [values]}``: every combination, in the dict's key order with the last key
        varying fastest (``itertools.product``); or ``[{name: value}, ...]``: those
        configurations, copied, in that order.

    Returns
    -------
    list of dict
        One dict of parameters per configuration; its index is the configuration's
        *position*, which fixes its seed (:func:`configuration_seeds`).

    Raises
    ------
    ValueError
        Naming ``spec`` (or the entry ``spec['n']``, ``spec[2]``) for an empty spec, a
        parameter list that is empty or not a sequence (a string is not a list of values), an
        entry of a list that is not a dict, a parameter name that is not a string, or one
        that is a tidy column of :class:`Results` (``generation``, ``seed``, ``condition``,
        ``metric``, ``value``).

    Examples
    --------
    >>> grid({"n": [10, 100], "alpha": [0.0, 0.5]})  # doctest: +NORMALIZE_WHITESPACE
    [{'n': 10, 'alpha': 0.0}, {'n': 10, 'alpha': 0.5},
     {'n': 100, 'alpha': 0.0}, {'n': 100, 'alpha': 0.5}]
    """
    return _grid(spec, "spec")


def configuration_seeds(count: int, *, seed: int = 0, streams: str = "position") -> list[int]:
    """The seed each of ``count`` configurations runs with (the module docstring's rule).

    ``streams="position"``: configuration ``i`` gets
    ``int(rng(seed, Stream.SWEEP, i).integers(2**63))``; ``streams="common"``: every
    configuration gets ``seed``. Raises ``ValueError`` naming ``count``, ``seed`` or ``streams``.
    """
    count = check_positive_int(count, "count")
    seed = check_seed(seed, "seed")
    check_choice(streams, STREAMS, "streams")
    if streams == "common":
        return [seed] * count
    return [int(rng(seed, Stream.SWEEP, i).integers(2**63)) for i in range(count)]


def _label(results: Results, config: Mapping[str, Any]) -> Results:
    """``results`` with one column per parameter (a list per column, so tuples stay whole)."""
    rows = len(results)
    return results.assign(**{k: [v] * rows for k, v in config.items()})


def _portable(err: BaseException) -> Any:
    """``err`` if it survives pickling (to cross processes), else its ``repr``."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return repr(err)
    return err


def _failure(position: int, err: BaseException, tb: str) -> tuple[str, int, Any]:
    return ("error", position, (_portable(err), f"{type(err).__name__}: {err}", tb))


def _run_one(
    position: int, config: dict[str, Any], seed: int, fn: Callable[..., Results]
) -> tuple[str, int, Any]:
    """Run one configuration where it lands; never raise (errors come back as values)."""
    try:
        out = fn(**config, seed=seed)
        if not isinstance(out, Results):
            raise TypeError(f"fn must return a collapse_lib Results, got {_describe(out)}")
        return ("ok", position, _label(out, config))
    except Exception as err:
        return _failure(position, err, traceback.format_exc())


Task = tuple[int, dict[str, Any], int]  # (position, configuration, seed)


def _serial(fn: Callable[..., Results], tasks: list[Task]):
    for task in tasks:
        yield _run_one(*task, fn)


def _processes(fn: Callable[..., Results], tasks: list[Task], workers: int | None):
    import joblib

    n_jobs = min(workers or joblib.cpu_count(), len(tasks))
    with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        try:
            parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        except ValueError:  # joblib < 1.4: results in order, still one at a time
            parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator")
        yield from parallel(joblib.delayed(_run_one)(*task, fn) for task in tasks)


def _dask(fn: Callable[..., Results], tasks: list[Task], client: Any, scheduler: str | None):
    try:
        from dask.distributed import Client, as_completed
    except ImportError as err:
        raise ImportError(
            f'backend="dask" needs dask.distributed, an optional extra: {DASK_HINT}'
        ) from err
    own = client is None
    if own:
        client = Client(scheduler)
    futures: dict[Any, int] = {}
    try:
        positions, configs, seeds = zip(*tasks, strict=True)
        submitted = client.map(_run_one, positions, configs, seeds, fn=fn, pure=False)  # fn once
        futures = {future: task[0] for future, task in zip(submitted, tasks, strict=True)}
        for batch in as_completed(submitted).batches():  # what has finished since the last batch
            finished = [f for f in batch if f.status == "finished"]
            yield from client.gather(finished)  # one round trip for the batch
            for future in batch:
                if future.status == "finished":
                    continue
                try:  # the task itself was lost (a worker died, say): its own failure
                    future.result()
                except Exception as err:
                    tb = "".join(traceback.format_exception(err))
                    yield _failure(futures[future], err, tb)
    finally:
        if futures:
            client.cancel([f for f in futures if not f.done()])
        if own:
            client.close()


def _describe_failure(position: int, config: Mapping[str, Any], text: str) -> str:
    params = ", ".join(f"{k}={v!r}" for k, v in config.items())
    return f"  position {position} ({params}): {text}"


def sweep(
    fn: Callable[..., Results],
    configurations: Spec,
    *,
    seed: int = 0,
    streams: str = "position",
    backend: str = "serial",
    workers: int | None = None,
    client: Any = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> Results:
    """Run ``fn(**configuration, seed=s_i)`` for every configuration; one table in grid order.

    Parameters
    ----------
    fn
        ``fn(**parameters, seed) -> Results``, e.g. a function that calls
        :func:`collapse_lib.loop.run`. For ``"processes"`` and ``"dask"`` it must pickle
        (module-level functions do; a notebook's through cloudpickle).
    configurations
        What :func:`grid` takes: ``{name: [values]}`` (the Cartesian product) or a list of
        dicts. A parameter is a column of the output, so it may not be a tidy column's name.
    seed
        The root seed.
    streams
        ``"position"``: configuration ``i`` runs with its own seed derived from ``seed`` and
        ``i``; ``"common"``: every configuration runs with ``seed`` (common random numbers).
        See :func:`configuration_seeds` and the module docstring.
    backend
        ``"serial"``, ``"processes"`` (joblib's loky, this machine) or ``"dask"`` (a
        ``dask.distributed`` cluster). The output does not depend on it.
    workers
        ``"processes"`` only: the number of worker processes (default: the machine's cores;
        never more than the configurations). ``workers=1`` runs in this process.
    client
        ``"dask"`` only: a ``dask.distributed.Client`` to run on (left open).
    scheduler
        ``"dask"`` only, instead of ``client``: a scheduler's address
        (``"tcp://host:8786"``); the sweep connects a client and closes it afterwards.
    progress
        A bar over configurations, updated as they finish; ``None`` shows it unless
        ``COLLAPSE_LIB_PROGRESS=0`` (as in the book build and the tests).

    Returns
    -------
    Results
        The configurations' tables with one column per parameter, concatenated in grid order
        (not in order of completion): bit-identical across backends and worker counts.

    Raises
    ------
    ValueError
        Naming the argument: a bad ``configurations`` (see :func:`grid`), ``seed``,
        ``streams``, ``backend`` or ``workers``; ``workers`` with a backend other than
        ``"processes"``, ``client``/``scheduler`` with one other than ``"dask"``; ``"dask"``
        with neither ``client`` nor ``scheduler``, or with both.
    ImportError
        ``"dask"`` without dask installed (``pip install "collapse_lib[dask]"``).
    SweepError
        After all configurations have run, if any failed (``fn`` raised, or returned
        something other than a :class:`Results`): the message lists each failure's position,
        parameters and ``Type: message``; ``.results`` holds the others' table, ``.failures``
        and ``.tracebacks`` the details.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable (fn(**parameters, seed) -> Results), got {fn!r}")
    configs = _grid(configurations, "configurations")
    seeds = configuration_seeds(len(configs), seed=seed, streams=streams)
    check_choice(backend, BACKENDS, "backend")
    if workers is not None:
        workers = check_positive_int(workers, "workers")
        if backend != "processes":
            raise ValueError(
                f"workers applies to backend='processes' only, not {backend!r}"
                " (a dask cluster has the workers it was started with)"
            )
    if backend != "dask" and (client is not None or scheduler is not None):
        raise ValueError(f"client and scheduler apply to backend='dask' only, not {backend!r}")
    if backend == "dask" and (client is None) == (scheduler is None):
        raise ValueError(
            "backend='dask' needs exactly one of client (a dask.distributed.Client) and"
            " scheduler (an address such as 'tcp://scheduler:8786'), got "
            + ("both" if client is not None else "neither")
        )

    tasks = [(i, config, s) for i, (config, s) in enumerate(zip(configs, seeds, strict=True))]
    if backend == "serial":
        outputs = _serial(fn, tasks)
    elif backend == "processes":
        outputs = _processes(fn, tasks, workers)
    else:
        outputs = _dask(fn, tasks, client, scheduler)

    bar = None
    if _show_progress(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="sweep", leave=False)
    done: dict[int, tuple[str, Any]] = {}
    try:
        for status, position, payload in outputs:
            done[position] = (status, payload)
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()

    parts = [done[i][1] for i in range(len(configs)) if done[i][0] == "ok"]
    results = Results.concat(parts) if parts else None
    failed = [i for i in range(len(configs)) if done[i][0] == "error"]
    if not failed:
        return results
    lines = [_describe_failure(i, configs[i], done[i][1][1]) for i in failed]
    first_tb = done[failed[0]][1][2]
    raise SweepError(
        f"{len(failed)} of {len(configs)} configurations failed (SweepError.results holds the"
        f" other {len(configs) - len(failed)}; .failures and .tracebacks the details):\n"
        + "\n".join(lines)
        + f"\n\nTraceback of the first failure (position {failed[0]}):\n{first_tb.rstrip()}",
        results,
        [(i, configs[i], done[i][1][0]) for i in failed],
        [done[i][1][2] for i in failed],
    )


def local_cluster(workers: int = 2) -> Any:
    """A Dask client on a local cluster of ``workers`` processes, one thread each.

    The workers start *without* the ``MALLOC_TRIM_THRESHOLD_=65536`` that Dask's nanny sets by
    default (``distributed.nanny.pre-spawn-environ``): setting it switches off glibc's dynamic
    mmap threshold, so every large numpy temporary is mapped and unmapped afresh, and the
    book's filters (which allocate ``(S, m, d)`` distance arrays in a loop) ran about 3 times
    slower in a worker than in this process (measured on the book's 2-core machine); an earlier
    Dask cluster's value, which the nanny leaves in this process's environment, is removed too. On a
    cluster of your own, start the workers the same way (for instance with that key set to
    ``None`` in the Dask configuration). Close the client and its cluster with
    ``client.close(); client.cluster.close()``.
    """
    workers = check_positive_int(workers, "workers")
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise ImportError(f"local_cluster needs dask: {DASK_HINT}") from err
    key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    # A nanny writes its pre-spawn variables into *this* process's environment before it
    # spawns, so an earlier Dask cluster leaves dask's value here for later workers to inherit.
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") == str(dask.config.get(key, None)):
        del os.environ["MALLOC_TRIM_THRESHOLD_"]
    with dask.config.set({key: None}):  # read when each nanny starts: wait for them here
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
        client.wait_for_workers(workers)
    return client
