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

    ``z`` is standardised inside each fold (a pipeline); folds are shuffled with seed 0 so
    that every representation is scored on the same split.
    """
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    z, targets = np.asarray(z, dtype=float), np.asarray(targets, dtype=float)
    if z.ndim != 2 or targets.ndim != 2 or z.shape[0] != targets.shape[0]:
        raise ValueError("z and targets must be 2-D with the same number of rows")
    folds = check_positive_int(folds, "folds")
    model = make_pipeline(StandardScaler(), Ridge(alpha=check_nonnegative(alpha, "alpha")))
    pred = cross_val_predict(model, z, targets, cv=KFold(folds, shuffle=True, random_state=0))
    ss_res = ((targets - pred) ** 2).sum(0)
    ss_tot = ((targets - targets.mean(0)) ** 2).sum(0)
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
