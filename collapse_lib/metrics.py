"""Metrics of a fitted model against the truth, vectorised over a leading seed axis.

Divergences are in nats. The direction of every KL divergence is in its name:
``kl_true_model(p, q) = KL(p_true || q_model) = sum p log(p / q)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr, rel_entr

from collapse_lib.runtime import check_probabilities


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
