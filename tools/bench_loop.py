"""Benchmark: the batched generation loop against running the same seeds one by one.

    python tools/bench_loop.py [--seeds 2000] [--generations 100] [--n 20]

Both runs compute identical numbers (each seed has its own random stream); the script
checks that, then prints the wall times and their ratio.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from collapse_lib import regime, run, set_threads
from collapse_lib.gaussian import Gaussian, GaussianMLE

METRICS = {"variance": lambda step: step.model.var, "mean": lambda step: step.model.mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    os.environ["COLLAPSE_LIB_PROGRESS"] = "0"
    set_threads(1)
    kwargs = dict(
        learner=GaussianMLE(),
        truth=Gaussian(0.0, 1.0),
        regime=regime("replace"),
        n=args.n,
        generations=args.generations,
        metrics=METRICS,
    )
    start = time.perf_counter()
    batched = run(seeds=args.seeds, **kwargs)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    single = pd.concat([run(seeds=[s], **kwargs) for s in range(args.seeds)])
    t_single = time.perf_counter() - start
    order = ["metric", "generation", "seed"]
    a = batched.sort_values(order)["value"].to_numpy()
    b = single.sort_values(order)["value"].to_numpy()
    assert np.array_equal(a, b), "batched and one-by-one runs disagree"
    print(f"{args.seeds} seeds x {args.generations} generations, n = {args.n} (identical results)")
    ratio = t_single / t_batched
    print(f"batched: {t_batched:.2f} s   one by one: {t_single:.2f} s   ratio: {ratio:.1f}x")


if __name__ == "__main__":
    main()
