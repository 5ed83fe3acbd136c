"""Metrics of a fitted model against the truth, vectorised over a leading seed axis.

Divergences are in nats. The direction of every KL divergence is in its name:
``kl_true_model(p, q) = KL(p_true || q_model) = sum p log(p / q)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr, rel_entr

from collapse_lib.runtime import check_nonnegative, check_positive_int, check_probabilities


def _probabilities(p: np.ndarray, name: str) -> np.ndarray:
    return check_probabilities(p, name)


def _pair(p: np.ndarray, q: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    p, q = _probabilities(p, names[0]), _probabilities(q, names[1])
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of categories,"
            f" got {p.shape[-1]} and {q.shape[-1]}"
        )
    return p, q


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy ``H(p) = -sum_k p_k log p_k`` (nats) along the last axis."""
    return entr(_probabilities(p, "p")).sum(axis=-1)


def kl_true_model(p_true: np.ndarray, q_model: np.ndarray) -> np.ndarray:
    """``KL(p_true || q_model) = sum_k p_k log(p_k / q_k)`` (nats).

    Infinite where the model lost a category that the truth still has.
    """
    p, q = _pair(p_true, q_model, ("p_true", "q_model"))
    return rel_entr(p, q).sum(axis=-1)


def kl_model_true(q_model: np.ndarray, p_true: np.ndarray) -> np.ndarray:
    """``KL(q_model || p_true) = sum_k q_k log(q_k / p_k)`` (nats).

    Finite as long as the model stays on the truth's support.
    """
    q, p = _pair(q_model, p_true, ("q_model", "p_true"))
    return rel_entr(q, p).sum(axis=-1)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation ``TV(p, q) = 1/2 sum_k |p_k - q_k|`` along the last axis."""
    p, q = _pair(p, q, ("p", "q"))
    return 0.5 * np.abs(p - q).sum(axis=-1)


def empirical_distribution(samples: np.ndarray, categories: int) -> np.ndarray:
    """Category frequencies of integer samples ``(..., n)`` -> ``(..., categories)``."""
    x = np.asarray(samples)
    if categories < 1:
        raise ValueError(f"categories must be >= 1, got {categories}")
    if not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() >= categories:
        raise ValueError(f"samples must be integers in [0, {categories})")
    flat = x.reshape(-1, x.shape[-1])
    offsets = np.arange(flat.shape[0])[:, None] * categories
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * categories)
    counts = counts.reshape(flat.shape[0], categories)
    return (counts / x.shape[-1]).reshape(*x.shape[:-1], categories)


def gaussian_kl_true_model(
    mean_true: np.ndarray, var_true: np.ndarray, mean: np.ndarray, var: np.ndarray
) -> np.ndarray:
    """``KL(N(mean_true, var_true) || N(mean, var))``
    ``= 1/2 [log(var/var_true) + (var_true + (mean_true - mean)^2)/var - 1]``."""
    mean_true, var_true, mean, var = (
        np.asarray(a, dtype=float) for a in (mean_true, var_true, mean, var)
    )
    if np.any(var_true <= 0) or np.any(var <= 0):
        raise ValueError("var_true and var must be > 0")
    return 0.5 * (np.log(var / var_true) + (var_true + (mean_true - mean) ** 2) / var - 1)


def gaussian_parameter_errors(
    mean_true: float, var_true: float, mean: np.ndarray, var: np.ndarray
) -> dict[str, np.ndarray]:
    """Squared mean error ``(mu - mu*)^2``, variance ratio ``sigma^2/sigma*^2`` and its log."""
    mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    if var_true <= 0:
        raise ValueError("var_true must be > 0")
    return {
        "mean_sq_error": (mean - mean_true) ** 2,
        "var_ratio": var / var_true,
        "log_var_ratio": np.log(var / var_true),
    }


# ---- representations and samples -------------------------------------------------


def ridge_r2_cv(z: np.ndarray, targets: np.ndarray, folds: int = 5, alpha: float = 1.0) -> float:
    """Mean over tasks of the cross-validated ridge R^2 of ``targets`` from ``z`` [paper].

    In each of ``folds`` shuffled folds (``KFold(folds, shuffle=True, random_state=0)``, so
    every representation is scored on the same split) ``z`` is standardised with the
    training fold's mean and standard deviation and the ridge
    ``beta = (Z'Z + alpha I)^{-1} Z'(y - ybar)`` with an unpenalised intercept is fitted:
    scikit-learn's ``StandardScaler`` + ``Ridge`` pipeline in closed form (a test checks
    that they agree), about 30 times faster at this size. Then
    ``R^2_j = 1 - sum (y_j - yhat_j)^2 / sum (y_j - ybar_j)^2`` over the out-of-fold
    predictions, averaged over the task columns ``j``.
    """
    from sklearn.model_selection import KFold

    z, targets = np.asarray(z, dtype=float), np.asarray(targets, dtype=float)
    if z.ndim != 2 or targets.ndim != 2 or z.shape[0] != targets.shape[0]:
        raise ValueError("z and targets must be 2-D with the same number of rows")
    folds = check_positive_int(folds, "folds")
    alpha = check_nonnegative(alpha, "alpha")
    ss_tot = ((targets - targets.mean(0)) ** 2).sum(0)
    if np.any(ss_tot == 0):
        raise ValueError(f"targets columns {np.flatnonzero(ss_tot == 0).tolist()} are constant")
    pred = np.empty_like(targets)
    for train, test in KFold(folds, shuffle=True, random_state=0).split(z):
        mu, sd = z[train].mean(0), z[train].std(0)
        sd[sd == 0] = 1.0  # as StandardScaler: a constant column is only centred
        zt, zs = (z[train] - mu) / sd, (z[test] - mu) / sd
        zc, ybar = zt - zt.mean(0), targets[train].mean(0)
        gram = zc.T @ zc + alpha * np.eye(z.shape[1])
        beta = np.linalg.solve(gram, zc.T @ (targets[train] - ybar))
        pred[test] = (zs - zt.mean(0)) @ beta + ybar
    ss_res = ((targets - pred) ** 2).sum(0)
    return float(np.mean(1.0 - ss_res / ss_tot))


def nesum(w: np.ndarray) -> float:
    """NESum ``sum_i sigma_i^2 / sigma_1^2`` of a weight matrix (He & Ozay 2022) [recollection].

    Between 1 (rank one) and ``min(w.shape)`` (all singular values equal).
    """
    s = np.linalg.svd(np.asarray(w, dtype=float), compute_uv=False)
    return float((s**2).sum() / s[0] ** 2)


def effective_rank(z: np.ndarray) -> float:
    """``exp(entropy)`` of the normalised covariance eigenvalues of ``z`` (Roy & Vetterli)."""
    z = np.asarray(z, dtype=float)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError("z must be 2-D with at least 2 rows")
    lam = np.clip(np.linalg.eigvalsh(np.cov(z, rowvar=False)), 0, None)
    return float(np.exp(entropy(lam / lam.sum())))


def svc_f1_cv(z: np.ndarray, labels: np.ndarray, folds: int = 5) -> float:
    """Cross-validated macro-F1 of an RBF support-vector classifier of ``labels`` from ``z``.

    ``z`` is standardised inside each fold; ``StratifiedKFold`` shuffled with seed 0, so
    every representation is scored on the same split.
    """
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    z, labels = np.asarray(z, dtype=float), np.asarray(labels)
    if z.ndim != 2 or labels.ndim != 1 or z.shape[0] != labels.shape[0]:
        raise ValueError("z must be 2-D and labels 1-D with the same number of rows")
    folds = check_positive_int(folds, "folds")
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    pred = cross_val_predict(make_pipeline(StandardScaler(), SVC()), z, labels, cv=cv)
    return float(f1_score(labels, pred, average="macro"))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two samples (the formula behind FID).

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})`` with sample
    means and covariances of the rows of ``a`` (n x d) and ``b`` (m x d). The trace term
    uses the eigenvalues of ``S_a^{1/2} S_b S_a^{1/2}`` (symmetric, so no complex
    round-off). Biased upward at small n: compare like with like, at equal sample sizes.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must be 2-D with the same number of columns, got {a.shape} and {b.shape}"
        )
    if min(len(a), len(b)) < 2:
        raise ValueError("a and b need at least 2 rows each")
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    lam, vec = np.linalg.eigh(sa)
    root_a = (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T
    cross = np.clip(np.linalg.eigvalsh(root_a @ sb @ root_a), 0, None)
    mean_term = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    return mean_term + float(np.trace(sa) + np.trace(sb) - 2 * np.sqrt(cross).sum())


# ---- nearest-neighbour statistics (chapter 3) ----------------------------------------------


def _points(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(
            f"{name} must be a non-empty 2-D array (n points x d), got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    return x


def nn_distances(a: np.ndarray, b: np.ndarray | None = None, k: int = 1) -> np.ndarray:
    """Euclidean distances from each row of ``a`` to its ``k`` nearest rows of ``b``: ``(n_a, k)``.

    ``b=None`` searches ``a`` itself, excluding each point (its own zero distance); exact
    duplicates of a point still count as neighbours at distance 0. Sorted ascending along
    the last axis (scipy's ``cKDTree``).
    """
    from scipy.spatial import cKDTree

    a = _points(a, "a")
    k = check_positive_int(k, "k")
    own = b is None
    b = a if own else _points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    if k + own > b.shape[0]:
        raise ValueError(f"k = {k} neighbours need more than {b.shape[0]} points in b")
    dist, _ = cKDTree(b).query(a, k=k + own)
    dist = np.asarray(dist).reshape(a.shape[0], k + own)
    return dist[:, 1:] if own else dist


def kl_entropy(x: np.ndarray, k: int = 1, eps: float = 1e-10) -> float:
    """Kozachenko-Leonenko k-NN estimate of the differential entropy (nats) of the rows of ``x``.

    ``H^_k = psi(n) - psi(k) + log c_d + (d/n) sum_i log(r_k(i) + eps)`` with
    ``c_d = pi^{d/2} / Gamma(d/2 + 1)`` the volume of the unit d-ball and ``r_k(i)`` the
    distance of ``x_i`` to its k-th nearest other point (Kozachenko & Leonenko 1987; as in the
    code of Shi et al. 2025, including the ``eps`` that keeps duplicates finite). Consistent,
    but biased at fixed n in high d; a relative statistic: compare only at equal ``(n, k, d)``.
    """
    from scipy.special import digamma, gammaln

    x = _points(x, "x")
    n, d = x.shape
    k = check_positive_int(k, "k")
    if n <= k:
        raise ValueError(f"x needs more than k = {k} points, got {n}")
    eps = check_nonnegative(eps, "eps")
    r = nn_distances(x, None, k=k)[:, -1]
    log_cd = 0.5 * d * np.log(np.pi) - gammaln(0.5 * d + 1)
    return float(digamma(n) - digamma(k) + log_cd + d * np.mean(np.log(r + eps)))


def generalization_score(g: np.ndarray, d: np.ndarray, squared: bool = True) -> float:
    """Generalization score ``GS = (1/|G|) sum_{x in G} min_{y in D} |x - y|^2`` (Shi et al. 2025).

    Large: the samples ``g`` are novel; near 0: they copy the training set ``d``. With
    ``squared=False`` the mean (unsquared) nearest-neighbour distance. Divide by the dimension
    for the per-coordinate MSE version.
    """
    r = nn_distances(g, d, k=1)[:, 0]
    return float(np.mean(r**2) if squared else np.mean(r))


def copy_fraction(g: np.ndarray, d: np.ndarray, threshold: float) -> float:
    """Share of the rows of ``g`` within ``threshold`` (Euclidean) of some row of ``d``."""
    threshold = check_nonnegative(threshold, "threshold")
    return float(np.mean(nn_distances(g, d, k=1)[:, 0] < threshold))


def ratio_test_fraction(g: np.ndarray, d: np.ndarray, ratio: float = 1 / 3) -> float:
    """Share of ``g`` flagged as copies by ``|x - NN1| / |x - NN2| < ratio`` (NN1, NN2 in ``d``).

    The common copy test of image-memorization work. It fails inside clusters of
    near-duplicates (``NN1 ~ NN2``), which recursive training produces: use a fixed threshold
    (:func:`copy_fraction`) there. An exact copy of a unique point (``NN1 = 0 < NN2``) is flagged.
    """
    ratio = check_nonnegative(ratio, "ratio")
    r = nn_distances(g, d, k=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(r[:, 1] > 0, r[:, 0] / r[:, 1], 1.0)
    return float(np.mean(q < ratio))


def relative_nn_distance(g: np.ndarray, d: np.ndarray) -> float:
    """Scale-free copy index: ``median_x NN(x, d) / median_y NN(y, d - y)``, x in ``g``, y in ``d``.

    The typical distance of a sample to the training set, in units of the training set's own
    nearest-neighbour spacing [book]. About 1 when ``g`` is an independent draw from the
    distribution of ``d`` (a new point and a training point see the same neighbourhood); near 0
    when ``g`` copies ``d``. A contraction of both sets leaves it unchanged, so it separates
    copying from shrinkage, which the generalization score cannot.
    """
    inside = nn_distances(d, None, k=1)[:, 0]
    spacing = float(np.median(inside))
    if spacing == 0:
        raise ValueError("d has more than half of its points duplicated: its spacing is 0")
    return float(np.median(nn_distances(g, d, k=1)[:, 0]) / spacing)


# ---- copy indices that stay valid under recursion (chapter 3) --------------------------------


def nn_spacing(x: np.ndarray, k: int = 1) -> float:
    """Median distance of a point of ``x`` to its ``k``-th nearest *other* point of ``x``."""
    return float(np.median(nn_distances(x, None, k=k)[:, -1]))


def fixed_nn_index(g: np.ndarray, d: np.ndarray, yardstick: float) -> float:
    """Fixed-yardstick copy index: ``median_x NN(x, d) / yardstick``, x in ``g`` [book].

    ``yardstick`` is fixed for the whole run: the median nearest-neighbour spacing of the
    *real* generation-0 training set (:func:`nn_spacing`). Unlike
    :func:`relative_nn_distance`, whose denominator is the current training set's own spacing,
    it cannot be moved by the training set: near-duplicates ("siblings") in a recursive
    training set shrink that set's spacing but not this yardstick. 0 for exact copies; for new
    samples, the typical distance to the training set in units of the real digits' spacing.
    A contraction of the distribution lowers it too: read it with :func:`copy_fraction`.
    """
    yardstick = float(yardstick)
    if not (np.isfinite(yardstick) and yardstick > 0):
        raise ValueError(f"yardstick must be a positive number, got {yardstick!r}")
    return float(np.median(nn_distances(g, d, k=1)[:, 0]) / yardstick)


def sibling_robust_index(g: np.ndarray, d: np.ndarray, k: int = 4) -> float:
    """Self-referenced copy index that siblings cannot move: ``median NN_1(g, d) / spacing_k(d)``.

    The denominator is the median distance of a training point to its ``k``-th nearest other
    training point (:func:`nn_spacing`). In a recursive loop ``N`` samples of a model fitted
    to ``N`` points share parents: a training point's nearest neighbours are often its
    *siblings* (other samples of the same source image, at the model's jitter scale), and the
    naive spacing (``k = 1``) collapses to that jitter. With ``k`` above the typical sibling
    count (a training point's siblings number about Poisson(1) when each of ``N`` samples picks
    one of ``N`` parents; ``k = 4`` skips up to three, ``P(>= 4) = 0.02``), the ``k``-th
    neighbour lies in another family,
    so the denominator measures the spacing *between* source images [book]. Not 1 for new
    samples (``NN_1 < NN_k``): compare it with the same statistic for held-out real data.
    Valid for one generation of siblings: over several generations cousins gather, families
    outgrow ``k`` and the ``k``-th neighbour is a relative again (then read
    :func:`fixed_nn_index` and the near-copy fraction, which do not depend on ``k``).
    """
    k = check_positive_int(k, "k")
    spacing = nn_spacing(d, k)
    if spacing == 0:
        raise ValueError(f"d has too many duplicates: its median {k}-th neighbour distance is 0")
    return float(np.median(nn_distances(g, d, k=1)[:, 0]) / spacing)


def near_copy_threshold(
    heldout: np.ndarray, real_sets: np.ndarray, quantile: float = 0.01
) -> float:
    """Distance under which held-out real images almost never fall: a calibrated copy threshold.

    The ``quantile`` (default 1%) of the distances from every held-out image to its nearest
    image in each real training set of ``real_sets (R, n, d)``, pooled. By construction at most
    about ``quantile`` of new real images count as near-copies (:func:`copy_fraction`) [book].
    """
    from collapse_lib.runtime import check_fraction

    quantile = check_fraction(quantile, "quantile")
    sets = np.asarray(real_sets, dtype=float)
    if sets.ndim == 2:
        sets = sets[None]
    if sets.ndim != 3:
        raise ValueError(f"real_sets must have shape (R, n, d), got {sets.shape}")
    r = np.concatenate([nn_distances(heldout, s, k=1)[:, 0] for s in sets])
    return float(np.quantile(r, quantile))


# --------------------------------------------------------------------------------------------
# slopes: least-squares fits of a curve, per seed
# --------------------------------------------------------------------------------------------


def per_seed_slope(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``values (S, N)`` against ``x (N,)``, one per seed."""
    x = np.asarray(x, dtype=float)
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != x.size or x.size < 2:
        raise ValueError(f"values must have shape (S, {x.size}) with at least 2 points")
    return np.polyfit(x, v.T, 1)[0]


def loglog_slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``log y`` on ``log x``; ``y`` is ``(N,)`` or ``(S, N)`` (per row)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for log-log slopes")
    if y.ndim == 1:
        return np.polyfit(np.log(x), np.log(y), 1)[0]
    return per_seed_slope(np.log(x), np.log(y))


def local_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Local log-log slopes ``d log y / d log x`` by finite differences (``numpy.gradient``)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got {x.shape}, {y.shape}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for log-log slopes")
    return np.gradient(np.log(y), np.log(x))
