"""A small learned model in the curated self-training loop: an MLP that adds numbers modulo p.

The prompts are all pairs ``(a, b)`` in ``Z_p^2`` (prompt ``x = a p + b``); a response is an
answer ``c`` in ``Z_p``, correct iff ``c = (a + b) mod p``. The "language model" is a
classifier whose *responses are samples from its softmax* (temperature 1). It plugs into the
same loop and the same curation filters as the book model of :mod:`collapse_lib.curation`:
data are response slots of shape ``(S, m, P, p)``, the answer key is ``task.correct``.

* :class:`PromptModel` (the loop's model of both): answer distributions ``probs (S, P, A)``
  that answer every prompt by sampling; :mod:`collapse_lib.curation` builds its book model on
  it too, which is why it lives here, below the curation filters (this module imports nothing
  from :mod:`collapse_lib.curation`).
* :class:`ModularTask` (the loop's truth): the weak "pretraining" data. A random fraction of
  the prompts (``seen``) get noisy labels, correct with a per-prompt probability
  ``pi(x) ~ U(lo, hi)``, otherwise a uniformly random wrong answer; the other prompts are never
  seen, so the base model is near chance (``1/p``) there.
* :class:`ModularMLP` (the learner): for all ``S`` seeds at once, a shared embedding of ``a`` and
  ``b``, concatenated, one ReLU hidden layer, logits over ``Z_p``; the ``S`` networks are one
  batched computation (``torch.baddbmm``) whose losses are summed, so their gradients (and
  Adam's per-parameter statistics) never mix. ``fit_summary`` pretrains from a fresh
  initialization; ``refit`` fine-tunes the *current* network (a warm start, fresh Adam state
  each round) on this round's curated data only. Training is full-batch on the weighted
  answer counts ``c(a | x)``: the loss is ``-sum_{x,a} c(a|x) log p_theta(a|x) / sum c``, the
  expectation of the minibatch loss over the round's pairs.

This is the book's toy in the spirit of a real self-improvement loop (the paper uses Gemma 2 2B
on GSM8K and MBPP); it departs from the book model's strong learner in exactly the ways a
learned model does: prompts absent from a round's data drift (interference through the shared
weights), and self-training sharpens the softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from collapse_lib.loop import Learner
from collapse_lib.runtime import (
    Stream,
    check_fraction,
    check_positive_int,
    linear_init,
    rng,
    seed_list,
    torch_generator,
)

# ---- answer models: distributions over the answers of every prompt ----------------------------


def sum_answers(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``sum_a x[..., a] (* weights[:, a])`` over the last (answer) axis.

    A Python loop over the few answers: numpy's reductions over a short trailing axis are
    several times slower than adding its slices.
    """
    A = x.shape[-1]
    if weights is None:
        return sum(x[..., a] for a in range(A))
    out = np.zeros(x.shape[:-1], dtype=np.result_type(x, weights))
    for a in range(A):
        if weights[:, a].any():
            out += x[..., a] * weights[:, a]
    return out


def answer_probs(probs: Any, name: str = "probs") -> np.ndarray:
    """Validate answer distributions ``(S, P, A)``: finite, non-negative, rows summing to 1."""
    p = np.asarray(probs, dtype=float)
    if p.ndim != 3:
        raise ValueError(f"{name} must have shape (S, P, A), got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    if not np.allclose(sum_answers(p), 1.0, atol=1e-6):
        raise ValueError(f"{name} must sum to 1 over the answers (last axis)")
    return p


@dataclass
class PromptModel:
    """A model that answers ``P`` prompts: ``probs`` of shape ``(S, P, A)``, one row per seed."""

    probs: np.ndarray

    def __post_init__(self) -> None:
        self.probs = answer_probs(self.probs)

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """``n`` responses to every prompt: one-hot slots of shape ``(S, n, P, A)``.

        Inverse-CDF sampling; replicate ``s`` draws ``n * P`` uniforms from ``rngs[s]`` only,
        and an answer of probability 0 is never drawn.
        """
        n = check_positive_int(n, "n")
        S, P, A = self.probs.shape
        if len(rngs) != S:
            raise ValueError(f"the model has {S} seeds but {len(rngs)} generators were given")
        cdf = np.cumsum(self.probs, axis=-1)[:, :, :-1]  # (S, P, A - 1)
        out = np.empty((S, n, P, A), dtype=np.float32)
        answers = np.arange(A)
        for s, g in enumerate(rngs):
            u = g.random((n, P))
            idx = sum_answers((u[..., None] >= cdf[s]).astype(np.int64))
            np.equal(idx[..., None], answers, out=out[s], casting="unsafe")
        return out


# ---- the modular-addition task and its network ------------------------------------------------


def answer_key(p: int) -> np.ndarray:
    """``correct[x, c] = (c == (a + b) mod p)`` for prompt ``x = a p + b``: shape ``(p^2, p)``."""
    p = check_positive_int(p, "p")
    if p < 2:
        raise ValueError(f"p must be >= 2, got {p}")
    a, b = np.divmod(np.arange(p * p), p)
    return (a + b)[:, None] % p == np.arange(p)[None, :]


@dataclass
class ModularTask:
    """The truth of the modular-addition loop: weak pretraining labels on some prompts.

    Attributes
    ----------
    p : int
        The modulus; there are ``P = p^2`` prompts and ``p`` answers.
    seen : ndarray of bool, shape (S, P)
        Prompts that get pretraining labels.
    accuracy : ndarray, shape (S, P)
        ``pi(x)``, the probability that a pretraining label of ``x`` is correct.
    """

    p: int
    seen: np.ndarray
    accuracy: np.ndarray

    def __post_init__(self) -> None:
        self.p = check_positive_int(self.p, "p")
        self.correct = answer_key(self.p)
        P = self.p**2
        self.seen = np.asarray(self.seen, dtype=bool)
        self.accuracy = np.asarray(self.accuracy, dtype=float)
        if self.seen.ndim != 2 or self.seen.shape[1] != P:
            raise ValueError(f"seen must have shape (S, {P}), got {self.seen.shape}")
        if self.accuracy.shape != self.seen.shape:
            raise ValueError(f"accuracy must have shape {self.seen.shape}")
        if not np.all((self.accuracy >= 0) & (self.accuracy <= 1)):
            raise ValueError("accuracy must lie in [0, 1]")

    @classmethod
    def draw(
        cls,
        p: int,
        seeds: int | Sequence[int],
        *,
        seen_fraction: float = 0.6,
        accuracy: tuple[float, float] = (0.05, 0.95),
        seed: int = 0,
    ) -> ModularTask:
        """Each prompt is seen with probability ``seen_fraction``; ``pi(x) ~ U(*accuracy)``.

        Replicate ``s`` draws from ``rng(seed, Stream.MODULAR_TASK, s)``.
        """
        p = check_positive_int(p, "p")
        f = check_fraction(seen_fraction, "seen_fraction")
        lo, hi = (check_fraction(v, "accuracy") for v in accuracy)
        if lo > hi:
            raise ValueError(f"accuracy must be (low, high) with low <= high, got {accuracy}")
        seeds = seed_list(seeds)
        gens = [rng(seed, Stream.MODULAR_TASK, s) for s in seeds]
        seen = np.stack([g.random(p * p) < f for g in gens])
        acc = np.stack([g.uniform(lo, hi, p * p) for g in gens])
        return cls(p, seen, acc)

    def sample(self, n: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """``n`` pretraining labels per seen prompt, one-hot ``(S, n, P, p)``; zeros if unseen."""
        n = check_positive_int(n, "n")
        S, P = self.seen.shape
        if len(rngs) != S:
            raise ValueError(f"the task has {S} seeds but {len(rngs)} generators were given")
        truth = np.argmax(self.correct, axis=1)  # (P,)
        out = np.zeros((S, n, P, self.p), dtype=np.float32)
        for s, g in enumerate(rngs):
            good = g.random((n, P)) < self.accuracy[s]
            wrong = (truth + g.integers(1, self.p, (n, P))) % self.p  # uniform among wrong ones
            answer = np.where(good, truth, wrong)
            np.equal(answer[..., None], np.arange(self.p), out=out[s], casting="unsafe")
        return out * self.seen[:, None, :, None]


@dataclass
class ModularModel(PromptModel):
    """The networks of all seeds (``params``) and their answer distributions ``probs``."""

    params: Any = None


@dataclass
class ModularMLP(Learner):
    """Batched MLP learner for modular addition (see the module docstring).

    Parameters
    ----------
    p : int
        The modulus.
    seeds : int or sequence of int
        The replicates (as passed to the loop): one network each.
    seed : int
        Root seed: replicate ``s`` initializes its network from
        ``torch_generator(rng(seed, Stream.MODULAR_INIT, s), device)`` and shuffles its
        minibatches with ``torch_generator(rng(seed, Stream.MODULAR_SHUFFLE, s), device)``; both
        restart with every fit from scratch, so every run of the loop starts from the same
        networks and streams.
    embed, hidden : int
        Embedding width (per operand) and hidden width.
    lr : float
        Adam's learning rate (a fresh optimizer for every fit and every round).
    pretrain_epochs, finetune_epochs : int
        Epochs from scratch (generation 0) and per round (warm start).
    batches : int
        Minibatches per epoch: each step uses the counts of ``P / batches`` random prompts
        (``1`` is full-batch training).
    device : str
        Torch device; data and answer distributions stay in numpy.
    """

    p: int
    seeds: int | Sequence[int] = 3
    seed: int = 0
    embed: int = 32
    hidden: int = 128
    lr: float = 3e-3
    pretrain_epochs: int = 30
    finetune_epochs: int = 6
    batches: int = 8
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.p = check_positive_int(self.p, "p")
        if self.p < 2:
            raise ValueError(f"p must be >= 2, got {self.p}")
        self.seeds = seed_list(self.seeds)
        for name in ("embed", "hidden", "pretrain_epochs", "finetune_epochs", "batches"):
            setattr(self, name, check_positive_int(getattr(self, name), name))
        if self.batches > self.p**2:
            raise ValueError(f"batches must be <= p^2 = {self.p**2}, got {self.batches}")
        if not (isinstance(self.lr, (int, float)) and np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        self._shuffle: list[Any] = []

    # -- the network ---------------------------------------------------------------------------

    def init(self) -> dict[str, Any]:
        """Fresh parameters for every seed (PyTorch's default initialization, per seed)."""
        import torch

        p, e, h = self.p, self.embed, self.hidden
        gens = [
            torch_generator(rng(self.seed, Stream.MODULAR_INIT, s), self.device) for s in self.seeds
        ]
        # nn.Embedding: N(0, 1), drawn first by every generator; then nn.Linear's default
        embed = torch.stack([torch.randn((p, e), generator=g, device=self.device) for g in gens])
        layers = {
            "W1": ((2 * e, h), 2 * e),
            "b1": ((1, h), 2 * e),
            "W2": ((h, p), h),
            "b2": ((1, p), h),
        }
        return {"E": embed, **linear_init(layers, gens, self.device)}

    def logits(self, params: dict[str, Any], prompts: Any = None) -> Any:
        """Logits ``(S, p^2, p)`` of every prompt, or ``(S, b, p)`` of ``prompts (S, b)``."""
        import torch

        if prompts is None:
            prompts = torch.arange(self.p**2, device=self.device).expand(len(self.seeds), -1)
        E = params["E"]
        a = torch.take_along_dim(E, (prompts // self.p)[..., None], dim=1)
        b = torch.take_along_dim(E, (prompts % self.p)[..., None], dim=1)
        hid = torch.relu(torch.baddbmm(params["b1"], torch.cat([a, b], dim=-1), params["W1"]))
        return torch.baddbmm(params["b2"], hid, params["W2"])

    def model(self, params: dict[str, Any]) -> ModularModel:
        """Wrap parameters as a loop model: answer distributions in float64 numpy."""
        import torch

        with torch.no_grad():
            probs = torch.softmax(self.logits(params), dim=-1).double().cpu().numpy()
        probs /= sum_answers(probs)[..., None]
        return ModularModel(probs, params=params)

    def train(self, params: dict[str, Any], counts: np.ndarray, epochs: int) -> dict[str, Any]:
        """``epochs`` passes of Adam over the prompts, in ``batches`` minibatches per pass.

        The loss of seed ``s`` on a minibatch ``b`` of prompts is
        ``-(batches / n_s) sum_{x in b, a} c_s(a|x) log p_s(a|x)`` with ``n_s`` the seed's total
        count: an unbiased estimate of its full-data cross-entropy. Losses are summed over
        seeds, whose parameters are disjoint, so each network trains on its own data only.
        """
        import torch

        S, P = len(self.seeds), self.p**2
        if counts.shape != (S, P, self.p):
            raise ValueError(f"counts must have shape {(S, P, self.p)}, got {counts.shape}")
        c = torch.as_tensor(counts, dtype=torch.float32, device=self.device)
        scale = self.batches / c.sum(dim=(1, 2)).clamp_min(1.0)  # (S,)
        params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        opt = torch.optim.Adam(params.values(), lr=self.lr)
        bounds = np.linspace(0, P, self.batches + 1).round().astype(int)
        for _ in range(epochs):
            perm = torch.stack(
                [torch.randperm(P, generator=g, device=self.device) for g in self._shuffle]
            )
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                idx = perm[:, lo:hi]
                cb = torch.take_along_dim(c, idx[..., None], dim=1)
                logp = torch.log_softmax(self.logits(params, idx), dim=-1)
                loss = (-(cb * logp).sum(dim=(1, 2)) * scale).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return {k: v.detach() for k, v in params.items()}

    # -- the loop's learner protocol -----------------------------------------------------------

    def summarize(self, data: np.ndarray) -> np.ndarray:
        x = np.asarray(data)
        if x.ndim != 4:
            raise ValueError(f"data must have shape (S, m, P, p), got {x.shape}")
        return x.sum(axis=1, dtype=float)

    def merge(self, pooled: np.ndarray, new: np.ndarray) -> np.ndarray:
        if pooled.shape != new.shape:
            raise ValueError(f"count shapes differ: {pooled.shape} and {new.shape}")
        return pooled + new

    def fit_summary(self, counts: np.ndarray) -> ModularModel:
        """Pretrain from a fresh initialization (generation 0); restarts the shuffling streams."""
        self._shuffle = [
            torch_generator(rng(self.seed, Stream.MODULAR_SHUFFLE, s), self.device)
            for s in self.seeds
        ]
        return self.model(self.train(self.init(), counts, self.pretrain_epochs))

    def refit(self, model: ModularModel, counts: np.ndarray) -> ModularModel:
        """Fine-tune the current networks on this round's counts (warm start, fresh Adam)."""
        if model.params is None or not self._shuffle:
            raise ValueError("refit needs a model produced by this learner's fit")
        return self.model(self.train(model.params, counts, self.finetune_epochs))
