"""Canonical correlation analysis, deep CCA and its noise regularization (NR-DCCA).

Chapter 7 follows He, Du, Xu & Ma (NeurIPS 2024): DCCA encoders trained to maximise the
canonical correlation between two views lose downstream performance as training goes on
("model collapse" of a representation); a penalty that keeps each encoder's correlation
with white noise equal to the input's (the Correlation Invariant Property) prevents it.

Notation. For ``H1`` (N x p) and ``H2`` (N x q) with centred columns,
``S11 = H1'H1/(N-1) + eps I``, ``S22 = H2'H2/(N-1) + eps I``, ``S12 = H1'H2/(N-1)``; the
canonical correlations ``rho_1 >= rho_2 >= ...`` are the singular values of
``T = S11^{-1/2} S12 S22^{-1/2}`` (any whitening with ``W'SW = I`` gives the same values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from collapse_lib.metrics import effective_rank, nesum, ridge_r2_cv, svc_f1_cv
from collapse_lib.results import Results
from collapse_lib.runtime import Stream, check_choice, check_nonnegative, check_positive_int, rng

METHODS = ("dcca", "nr", "nronly")
REDUCES = ("mean", "sum")
NOISES = ("gauss", "uniform")


def _check_pair(h1: Any, h2: Any) -> None:
    if h1.ndim != 2 or h2.ndim != 2:
        raise ValueError("h1 and h2 must be 2-D (samples x features)")
    if h1.shape[0] != h2.shape[0]:
        raise ValueError(
            f"h1 and h2 must have the same number of rows, got {h1.shape[0]} and {h2.shape[0]}"
        )
    if h1.shape[0] < 2:
        raise ValueError("h1 needs at least 2 rows")


# ---- canonical correlations ------------------------------------------------------------


def canonical_correlations(h1, h2, eps: float = 1e-3):
    """Differentiable canonical correlations of two torch matrices [standard, Andrew et al. 2013].

    ``rho = svdvals(L1^{-1} S12 L2^{-T})`` with Cholesky factors ``S11 = L1 L1'``,
    ``S22 = L2 L2'`` (ridge ``eps`` on the diagonals). Cholesky whitening and ``svdvals``
    keep the gradient finite when correlations coincide (``eigh``/``svd`` with vectors
    divide by eigenvalue gaps). Returns ``min(p, q)`` values, largest first.
    """
    import torch

    _check_pair(h1, h2)
    eps = check_nonnegative(eps, "eps")
    n = h1.shape[0]
    h1 = h1 - h1.mean(0)
    h2 = h2 - h2.mean(0)
    s11 = h1.T @ h1 / (n - 1) + eps * torch.eye(h1.shape[1], dtype=h1.dtype, device=h1.device)
    s22 = h2.T @ h2 / (n - 1) + eps * torch.eye(h2.shape[1], dtype=h2.dtype, device=h2.device)
    l1 = torch.linalg.cholesky(s11)
    l2 = torch.linalg.cholesky(s22)
    t = torch.linalg.solve_triangular(l1, h1.T @ h2 / (n - 1), upper=False)  # L1^-1 S12
    t = torch.linalg.solve_triangular(l2, t.T, upper=False).T  # ... L2^-T
    return torch.linalg.svdvals(t)


def _inv_sqrt(s: np.ndarray) -> np.ndarray:
    """``S^{-1/2}`` of a symmetric positive-definite matrix via ``eigh``."""
    w, v = np.linalg.eigh(s)
    return (v / np.sqrt(w)) @ v.T


def canonical_correlations_np(x: np.ndarray, y: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Numpy reference: singular values of ``S11^{-1/2} S12 S22^{-1/2}`` via ``eigh`` [standard]."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    _check_pair(x, y)
    eps = check_nonnegative(eps, "eps")
    n = x.shape[0]
    x, y = x - x.mean(0), y - y.mean(0)

    s11 = x.T @ x / (n - 1) + eps * np.eye(x.shape[1])
    s22 = y.T @ y / (n - 1) + eps * np.eye(y.shape[1])
    t = _inv_sqrt(s11) @ (x.T @ y / (n - 1)) @ _inv_sqrt(s22)
    return np.linalg.svd(t, compute_uv=False)


class LinearCCA:
    """Linear CCA with ``k`` components [standard].

    ``T = U S V'``; ``W1 = S11^{-1/2} U[:, :k]``, ``W2 = S22^{-1/2} V[:, :k]``, so that
    ``W_i' S_ii W_i = I_k`` and ``tr(W1' S12 W2) = rho_1 + ... + rho_k``. The representation
    used downstream is the concatenation ``[X1 W1, X2 W2]`` (as the paper does for CCA).
    """

    def __init__(self, k: int, eps: float = 1e-3) -> None:
        self.k = check_positive_int(k, "k")
        self.eps = check_nonnegative(eps, "eps")

    def fit(self, x1: np.ndarray, x2: np.ndarray) -> LinearCCA:
        x1, x2 = np.asarray(x1, dtype=float), np.asarray(x2, dtype=float)
        _check_pair(x1, x2)
        if self.k > min(x1.shape[1], x2.shape[1]):
            raise ValueError(f"k={self.k} exceeds the smaller view dimension")
        n = x1.shape[0]
        self.mean1_, self.mean2_ = x1.mean(0), x2.mean(0)
        c1, c2 = x1 - self.mean1_, x2 - self.mean2_
        w_inv = [_inv_sqrt(c.T @ c / (n - 1) + self.eps * np.eye(c.shape[1])) for c in (c1, c2)]
        u, s, vt = np.linalg.svd(w_inv[0] @ (c1.T @ c2 / (n - 1)) @ w_inv[1])
        self.w1_ = w_inv[0] @ u[:, : self.k]
        self.w2_ = w_inv[1] @ vt.T[:, : self.k]
        self.correlations_ = s[: self.k]
        return self

    def transform(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """The concatenated projections ``[X1 W1, X2 W2]`` (N x 2k)."""
        if not hasattr(self, "w1_"):
            raise ValueError("call fit before transform")
        x1, x2 = np.asarray(x1, dtype=float), np.asarray(x2, dtype=float)
        _check_pair(x1, x2)
        return np.hstack([(x1 - self.mean1_) @ self.w1_, (x2 - self.mean2_) @ self.w2_])


# ---- losses ---------------------------------------------------------------------------


def dcca_loss(z1, z2, eps: float = 1e-3):
    """DCCA loss ``-sum_i rho_i(z1, z2)`` (total correlation, the trace norm of T) [standard]."""
    return -canonical_correlations(z1, z2, eps).sum()


def _noise_like(x, kind: str, generator):
    import torch

    if kind == "gauss":
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (u - 0.5) * np.sqrt(12.0)  # unit variance


def nr_penalty(
    encoders: Sequence[Any],
    views: Sequence[Any],
    generator,
    eps: float = 1e-3,
    reduce: str = "mean",
    noise: str = "gauss",
    encoded: Sequence[Any] | None = None,
):
    """Noise-regularization penalty ``sum_k zeta_k`` [paper's form; normalisation ours].

    ``zeta_k = |Corr(f_k(X_k), f_k(A_k)) - Corr(X_k, A_k)|`` with ``A_k`` white noise of the
    shape of ``X_k`` (fresh from ``generator`` at every call) and ``Corr`` the ``mean`` (default)
    or ``sum`` of the canonical correlations. Gradients flow through ``f_k(X_k)`` and
    ``f_k(A_k)``; ``Corr(X_k, A_k)`` has no parameters. ``encoded`` may pass the outputs
    ``f_k(X_k)`` already computed for the DCCA term, which saves one encoder pass per view
    (the same value and gradient).
    """
    check_choice(reduce, REDUCES, "reduce")
    check_choice(noise, NOISES, "noise")
    if len(encoders) != len(views):
        raise ValueError("encoders and views must have the same length")
    if encoded is None:
        encoded = [None] * len(views)
    elif len(encoded) != len(views):
        raise ValueError("encoded must have one entry per view")
    total = 0.0
    for f, x, fx in zip(encoders, views, encoded, strict=True):
        a = _noise_like(x, noise, generator)
        rf = canonical_correlations(f(x) if fx is None else fx, f(a), eps)
        rx = canonical_correlations(x, a, eps).detach()
        cf, cx = (rf.mean(), rx.mean()) if reduce == "mean" else (rf.sum(), rx.sum())
        total = total + (cf - cx).abs()
    return total


def cip_gap(x: np.ndarray, w: np.ndarray, a: np.ndarray, eps: float = 1e-9) -> float:
    """``eta = |Corr(X W, A W) - Corr(X, A)|`` for a linear map ``W`` (mean-Corr, float64).

    [paper, Theorem 1] for square ``W``: ``eta = 0`` iff ``W`` is full rank (with ``eps = 0``).
    """
    x, w, a = (np.asarray(v, dtype=float) for v in (x, w, a))
    if w.ndim != 2 or w.shape[0] != x.shape[1]:
        raise ValueError("w must have as many rows as x has columns")
    if a.shape != x.shape:
        raise ValueError("a must have the shape of x")
    return float(
        abs(
            canonical_correlations_np(x @ w, a @ w, eps).mean()
            - canonical_correlations_np(x, a, eps).mean()
        )
    )


# ---- training -------------------------------------------------------------------------


def make_encoder(dim_in: int, k: int, hidden: int = 256, depth: int = 2):
    """MLP ``dim_in -> hidden (x depth, ReLU) -> k`` with PyTorch's default initialisation."""
    import torch

    dim_in, k = check_positive_int(dim_in, "dim_in"), check_positive_int(k, "k")
    hidden, depth = check_positive_int(hidden, "hidden"), check_positive_int(depth, "depth")
    layers: list[Any] = []
    width = dim_in
    for _ in range(depth):
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    layers.append(torch.nn.Linear(width, k))
    return torch.nn.Sequential(*layers)


def init_encoders(
    dims: Sequence[int],
    k: int,
    hidden: int = 256,
    depth: int = 2,
    seed: int = 0,
    device: str = "cpu",
) -> list[Any]:
    """The encoders at epoch 0 for ``seed``: the same for every method (``train_dcca`` uses it)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng(seed, Stream.TWO_VIEWS, 10).integers(2**62)))
        return [make_encoder(int(d), k, hidden, depth).to(device) for d in dims]


def default_eval_epochs(epochs: int) -> list[int]:
    """Dense early evaluation: every 2 epochs up to 20, then every 10, always the last."""
    epochs = check_positive_int(epochs, "epochs")
    ev = set(range(0, min(epochs, 20) + 1, 2)) | set(range(0, epochs + 1, 10)) | {epochs}
    return sorted(ev)


def train_dcca(
    data: dict[str, Any],
    method: str = "dcca",
    alpha: float = 0.0,
    k: int = 10,
    hidden: int = 256,
    depth: int = 2,
    epochs: int = 60,
    batch: int = 250,
    lr: float = 1e-3,
    eps: float = 1e-3,
    weight_decay: float = 0.0,
    reduce: str = "mean",
    noise: str = "gauss",
    seed: int = 0,
    eval_epochs: Sequence[int] | None = None,
    device: str = "cpu",
    return_encoders: bool = False,
):
    """Train encoders by DCCA (``"dcca"``), NR-DCCA (``"nr"``) or the penalty only (``"nronly"``).

    Loss per mini-batch [paper's form]: ``-sum_i rho_i(f1(x1), f2(x2)) + alpha * sum_k zeta_k``
    (``"nronly"`` drops the first term). Adam, float32 training, float64 evaluation. The
    encoders' initialisation and the shuffling depend only on ``seed``; the noise has its own
    ``torch.Generator``, so ``alpha = 0`` reproduces ``"dcca"`` exactly.

    Returns a tidy table, one row per evaluated epoch: ``r2`` (5-fold CV ridge on the
    evaluation split's representation ``[f1, f2]``), ``corr_train``/``corr_eval`` (sum of the
    canonical correlations between the encoded views), ``noise_corr_f``/``noise_corr_x``
    (mean canonical correlation of view 1 with fixed white noise after/before the encoder),
    ``nesum`` (first layer of encoder 1), ``eff_rank`` (of the representation); when
    ``data`` has ``labels``, also ``f1`` (5-fold CV macro-F1 of an RBF SVC on the
    evaluation representation). With ``return_encoders`` also the two encoders.
    """
    import torch

    method = check_choice(method, METHODS, "method")
    alpha = check_nonnegative(alpha, "alpha")
    if method == "dcca" and alpha != 0:
        raise ValueError("alpha must be 0 for method 'dcca' (use method='nr')")
    k, epochs, batch = (
        check_positive_int(v, name) for v, name in ((k, "k"), (epochs, "epochs"), (batch, "batch"))
    )
    check_nonnegative(lr, "lr")
    check_choice(reduce, REDUCES, "reduce")
    check_choice(noise, NOISES, "noise")
    ev = (
        default_eval_epochs(epochs)
        if eval_epochs is None
        else sorted(set(int(e) for e in eval_epochs))
    )
    if ev and (ev[0] < 0 or ev[-1] > epochs):
        raise ValueError("eval_epochs must lie in [0, epochs]")
    tr, te = data["train"], data["eval"]
    x1 = torch.as_tensor(data["x1"][tr], device=device)
    x2 = torch.as_tensor(data["x2"][tr], device=device)
    n_train = x1.shape[0]
    if batch > n_train:
        raise ValueError(f"batch={batch} exceeds the {n_train} training rows")
    encoders = init_encoders([x1.shape[1], x2.shape[1]], k, hidden, depth, seed, device)
    params = [p for f in encoders for p in f.parameters()]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    shuffle_gen = torch.Generator(device="cpu").manual_seed(
        int(rng(seed, Stream.TWO_VIEWS, 11).integers(2**62))
    )
    noise_gen = torch.Generator(device=device).manual_seed(
        int(rng(seed, Stream.TWO_VIEWS, 12).integers(2**62))
    )

    e1, e2 = (np.asarray(data[v][te], dtype=np.float64) for v in ("x1", "x2"))
    t_eval = np.asarray(data["tasks"][te])
    labels = data.get("labels")
    y_eval = None if labels is None else np.asarray(labels)[te]
    a_eval = rng(seed, Stream.TWO_VIEWS, 13).standard_normal(e1.shape)
    noise_corr_x = float(canonical_correlations_np(e1, a_eval, eps).mean())
    x1_np, x2_np = (np.asarray(data[v][tr], dtype=np.float64) for v in ("x1", "x2"))

    def encode(f, x):
        with torch.no_grad():
            return f(torch.as_tensor(x, dtype=torch.float32, device=device)).double().cpu().numpy()

    rows = []

    def evaluate(epoch: int) -> None:
        z1, z2 = encode(encoders[0], e1), encode(encoders[1], e2)
        z = np.hstack([z1, z2])
        rows.append(
            {
                "method": method,
                "alpha": alpha,
                "epoch": epoch,
                "r2": ridge_r2_cv(z, t_eval),
                "corr_train": float(
                    canonical_correlations_np(
                        encode(encoders[0], x1_np), encode(encoders[1], x2_np), eps
                    ).sum()
                ),
                "corr_eval": float(canonical_correlations_np(z1, z2, eps).sum()),
                "noise_corr_f": float(
                    canonical_correlations_np(z1, encode(encoders[0], a_eval), eps).mean()
                ),
                "noise_corr_x": noise_corr_x,
                "nesum": nesum(encoders[0][0].weight.detach().double().cpu().numpy()),
                "eff_rank": effective_rank(z),
                **({} if y_eval is None else {"f1": svc_f1_cv(z, y_eval)}),
            }
        )

    if 0 in ev:
        evaluate(0)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n_train, generator=shuffle_gen).to(device)
        for start in range(0, n_train - batch + 1, batch):  # drop the last partial batch
            idx = perm[start : start + batch]
            b1, b2 = x1[idx], x2[idx]
            z = [encoders[0](b1), encoders[1](b2)]  # one pass per view serves both terms
            loss = 0.0
            if method != "nronly":
                loss = dcca_loss(z[0], z[1], eps)
            if method != "dcca":
                loss = loss + alpha * nr_penalty(
                    encoders, [b1, b2], noise_gen, eps, reduce, noise, encoded=z
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch in ev:
            evaluate(epoch)
    table = pd.DataFrame(rows)
    return (table, encoders) if return_encoders else table


def tidy_epochs(tables: Sequence[pd.DataFrame], metrics: Sequence[str] = ("r2",)) -> Results:
    """Stack per-epoch tables of :func:`train_dcca` into the loop's :class:`Results`.

    Each table must carry ``label`` (the condition) and ``replicate`` (the seed axis)
    columns; epochs become the ``generation`` axis, so the book's standard figure
    (:func:`collapse_lib.plotting.plot_metric_vs_generation`) draws bands over replicates.
    """
    if not tables:
        raise ValueError("tables must not be empty")
    df = pd.concat(tables, ignore_index=True)
    missing = sorted({"label", "replicate", "epoch", *metrics} - set(df.columns))
    if missing:
        raise ValueError(f"tables lack the columns {missing}")
    tidy = df.melt(
        id_vars=["epoch", "replicate", "label"], value_vars=list(metrics), var_name="metric"
    ).rename(columns={"epoch": "generation", "replicate": "seed", "label": "condition"})
    return Results(tidy)


def plot_diagnostics(
    main: pd.DataFrame, spectra: dict[str, Any], colors: dict[str, Any], k: int
) -> Any:
    """Four collapse diagnostics of one training seed against the epoch (a 2 x 2 figure).

    ``main`` stacks :func:`train_dcca` tables with a ``label`` column; ``spectra`` maps a name
    (``"<label>, ..."`` or another) to a first-layer weight matrix whose normalised singular
    spectrum is drawn; ``k`` is the latent size per view. Returns the axes.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for lab, tab in main.groupby("label"):
        axes[0, 0].plot(tab["epoch"], tab["nesum"], "o-", ms=3, color=colors[lab], label=lab)
        axes[1, 0].plot(tab["epoch"], tab["eff_rank"], "o-", ms=3, color=colors[lab], label=lab)
        axes[1, 1].plot(
            tab["epoch"],
            tab["noise_corr_f"],
            "o-",
            ms=3,
            color=colors[lab],
            label=f"{lab}: Corr$(f_1(X_1), f_1(A))$",
        )
    axes[1, 1].axhline(
        main["noise_corr_x"].iloc[0], color="k", ls="--", lw=1, label="input level Corr$(X_1, A)$"
    )
    for lab, w in spectra.items():
        s2 = np.linalg.svd(w.detach().double().cpu().numpy(), compute_uv=False) ** 2
        color = colors.get(lab.split(",")[0], "k")
        axes[0, 1].loglog(np.arange(1, s2.size + 1), s2 / s2[0], "-", color=color, label=lab)
    idx = np.arange(1, s2.size + 1)
    axes[0, 1].loglog(idx, 1 / idx, "k--", lw=1, label="$1/i$ reference")
    axes[0, 0].set(xlabel="training epoch", ylabel="NESum of encoder 1, layer 1")
    axes[0, 1].set(xlabel="index $i$", ylabel="$\\sigma_i^2/\\sigma_1^2$, encoder 1, layer 1")
    axes[1, 0].set(
        xlabel="training epoch", ylabel=f"effective rank of the representation (of {2 * k})"
    )
    axes[1, 1].set(xlabel="training epoch", ylabel="mean canonical correlation with noise")
    for axis in axes.flat:
        axis.legend(fontsize=8)
    fig.tight_layout()
    return axes
