"""Curated self-training: a model answers prompts, a noisy verifier and a weak labeler curate.

The book's model of a self-training loop with outside help, written for the chapter on
Amin et al. (2025), "Escaping Collapse: The Strength of Weak Data". The paper's own
definitions could not be consulted; everything here is the book's formalization of its idea
[derived], and every formula below is checked by simulation in ``tests/test_curation.py``.

The model
---------
* **Prompts and answers.** ``P`` prompts, each with ``A`` possible answers, some of them correct
  (an answer key ``correct`` of shape ``(P, A)``). The model is a distribution over answers per
  prompt, ``probs`` of shape ``(S, P, A)`` (``S`` seeds); its success probability on prompt ``x``
  is ``q(x) = sum_{a correct} probs(a | x)``. The binary case ``A = 2`` (answer 1 correct) is the
  book model of the chapter; :mod:`collapse_lib.modular` puts a small neural network in its place.
* **Data** are response slots: a batch has shape ``(S, m, P, A)``, ``m`` slots per prompt, each a
  vector of weights over the answers. A sampled response is one-hot, a rejected one is all
  zeros, a label of weight ``w`` is ``w`` times one-hot, and the base model's pretraining data
  are soft (its own probabilities), so that generation 0 of the loop reproduces the base model.
* **Round** ``t -> t + 1`` (one generation of :func:`collapse_lib.loop.run`, replace regime):
  the model answers every prompt ``k`` times (the loop's ``n``); the curation filter
  (:class:`Curation`) runs the :class:`Verifier` (accepts a correct response with probability
  ``tpr``, an incorrect one with probability ``fpr``) and the :class:`WeakLabeler` (spends a
  budget of ``B`` label queries per round with a policy; a label is correct with probability
  ``beta``); the :class:`SmoothedLearner` refits ``probs`` from the round's counts ``c(a|x)``
  with ``lam`` pseudo-counts of the current model (a warm start)::

      probs_{t+1}(a|x) = (c(a|x) + lam * probs_t(a|x)) / (n(x) + lam),   n(x) = sum_a c(a|x),

  and keeps ``probs_t(.|x)`` when ``n(x) + lam = 0``. ``lam = 0`` is the exact "strong learner".

Closed forms [derived]
----------------------
With ``r = tpr / fpr`` the verifier's likelihood ratio and ``gamma = tpr - fpr`` its advantage:

* no curation (``tpr = fpr``, no labels): ``E[q_{t+1} | q_t] = q_t`` (a martingale) and
  ``E[q_{t+1}(1 - q_{t+1}) | q_t] = q_t (1 - q_t) (1 - k / (k + lam)^2)``
  (:func:`heterozygosity_factor`);
* verifier alone, ``k -> infinity``, ``lam = 0``: the odds multiply by ``r`` each round,
  ``q_t = expit(logit q_0 + t ln r)`` (:func:`odds_law`); ``q = 0`` is absorbing, so accuracy
  cannot exceed the base model's coverage ``P(q_0 > 0)``;
* weak labels alone, spent uniformly: ``E mean q_T = beta + (mean q_0 - beta) (1 - (B/N) w /
  (k + lam + w))^T`` (:func:`weak_only_mean`);
* labels on every unsolved prompt (``B >= |H_t|``, ``lam > 0``): the unsolved set
  ``H_t = {x: q_t(x) = 0}`` thins binomially, ``|H_t| ~ Bin(|H_0|, (1 - beta)^t)``; spread
  uniformly, ``E |H_t| = |H_0| (1 - beta B / N)^t`` (:func:`unsolved_fraction`); the rounds until
  the unsolved fraction falls from ``rho`` to ``eps`` are ``ln(rho / eps) / (-ln(1 - beta))``
  (:func:`rounds_to_clear`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit, logit

from collapse_lib.loop import FilterContext, Learner, Step, run
from collapse_lib.modular import PromptModel, answer_probs, sum_answers
from collapse_lib.regimes import regime
from collapse_lib.results import Results
from collapse_lib.runtime import (
    Stream,
    check_choice,
    check_fraction,
    check_nonnegative,
    check_positive_int,
    rng,
    seed_list,
)

Rngs = Sequence[np.random.Generator]
POLICIES: tuple[str, ...] = ("uniform", "hard", "oracle", "adaptive")


def _nonneg_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _answer_key(correct: Any) -> np.ndarray:
    key = np.asarray(correct)
    if key.ndim != 2 or key.dtype != bool:
        raise ValueError(f"correct must be a boolean array of shape (P, A), got {key.shape}")
    if key.shape[1] < 2:
        raise ValueError("correct must allow at least two answers per prompt (A >= 2)")
    if not key.any(axis=1).all() or key.all(axis=1).any():
        raise ValueError("correct must mark at least one right and one wrong answer per prompt")
    return key


def _responses(data: Any, name: str = "data") -> np.ndarray:
    x = np.asarray(data)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (S, m, P, A), got {x.shape}")
    return x


# ---- the model and its data -------------------------------------------------------------------


def success(probs: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """``q(x) = sum_{a correct} probs(a | x)``: the success probability, shape ``(S, P)``."""
    p = np.asarray(probs)
    return sum_answers(p, np.asarray(correct, dtype=p.dtype))


def one_hot(idx: np.ndarray, answers: int) -> np.ndarray:
    """Response slots from answer indices: ``(..., )`` ints -> ``(..., answers)`` float32."""
    return np.eye(answers, dtype=np.float32)[idx]


@dataclass
class Pretraining:
    """The truth of a curation experiment: the base model's data and the answer key.

    ``sample(n, rngs)`` returns ``n`` *soft* slots per prompt, each equal to the base model's
    probabilities, so that the loop's generation 0 (fitted on these "real" data) is exactly the
    base model. The draws of the experiment happen later, in the loop's rounds.
    """

    probs: np.ndarray
    correct: np.ndarray

    def __post_init__(self) -> None:
        self.probs = answer_probs(self.probs)
        self.correct = _answer_key(self.correct)
        if self.probs.shape[1:] != self.correct.shape:
            raise ValueError(
                f"probs (S, P, A) = {self.probs.shape} and correct (P, A) = "
                f"{self.correct.shape} disagree"
            )

    def sample(self, n: int, rngs: Rngs) -> np.ndarray:
        n = check_positive_int(n, "n")
        S = self.probs.shape[0]
        if len(rngs) != S:
            raise ValueError(f"the base model has {S} seeds but {len(rngs)} generators were given")
        soft = self.probs.astype(np.float32)[:, None]
        return np.broadcast_to(soft, (S, n, *self.probs.shape[1:])).copy()

    @property
    def q0(self) -> np.ndarray:
        """The base model's success probabilities, shape ``(S, P)``."""
        return success(self.probs, self.correct)


def base_success(
    seeds: int | Sequence[int],
    prompts: int,
    *,
    rho: float,
    a: float = 2.0,
    b: float = 3.0,
    seed: int = 0,
) -> np.ndarray:
    """The base model's success probabilities ``q_0``, shape ``(S, P)`` [derived].

    A fraction ``rho`` of the prompts is unsolvable (``q_0 = 0``, each prompt independently);
    the others have ``q_0 ~ Beta(a, b)``. Replicate ``s`` draws from
    ``rng(seed, Stream.BASE_MODEL, s)``, a stream the loop's replicate streams never use.
    """
    seeds = seed_list(seeds)
    P = check_positive_int(prompts, "prompts")
    rho = check_fraction(rho, "rho")
    if not (a > 0 and b > 0):
        raise ValueError(f"a and b must be > 0, got a={a!r}, b={b!r}")
    out = np.empty((len(seeds), P))
    for i, s in enumerate(seeds):
        g = rng(seed, Stream.BASE_MODEL, s)
        q = g.beta(a, b, P)
        q[g.random(P) < rho] = 0.0
        out[i] = q
    return out


def binary_task(q0: np.ndarray) -> Pretraining:
    """The chapter's book model: two answers per prompt, answer 1 correct, success ``q0 (S, P)``."""
    q0 = np.asarray(q0, dtype=float)
    if q0.ndim != 2:
        raise ValueError(f"q0 must have shape (S, P), got {q0.shape}")
    if not np.all((q0 >= 0) & (q0 <= 1)):
        raise ValueError("q0 must lie in [0, 1]")
    correct = np.zeros((q0.shape[1], 2), dtype=bool)
    correct[:, 1] = True
    return Pretraining(np.stack([1.0 - q0, q0], axis=-1), correct)


# ---- the learner --------------------------------------------------------------------------------


@dataclass
class SmoothedLearner(Learner):
    """The smoothed strong learner: answer counts plus ``lam`` pseudo-counts [derived].

    ``fit_summary`` (generation 0) returns the empirical answer distribution of the data;
    ``refit`` (every later round, called by the loop) adds ``lam`` pseudo-counts of the current
    model, ``(c + lam probs_t) / (n + lam)``, and keeps a prompt's row when ``n + lam = 0``.
    Summaries are the counts ``(S, P, A)``, so accumulation pools counts.
    """

    lam: float = 2.0

    def __post_init__(self) -> None:
        self.lam = check_nonnegative(self.lam, "lam")

    def summarize(self, data: np.ndarray) -> np.ndarray:
        return _responses(data).sum(axis=1, dtype=float)

    def merge(self, pooled: np.ndarray, new: np.ndarray) -> np.ndarray:
        if pooled.shape != new.shape:
            raise ValueError(f"count shapes differ: {pooled.shape} and {new.shape}")
        return pooled + new

    def fit_summary(self, counts: np.ndarray) -> PromptModel:
        n = sum_answers(counts)[..., None]
        if np.any(n <= 0):
            raise ValueError("every prompt needs data to fit a model from scratch")
        return PromptModel(counts / n)

    def refit(self, model: PromptModel, counts: np.ndarray) -> PromptModel:
        """One round of training from the current model: ``(c + lam probs) / (n + lam)``."""
        if counts.shape != model.probs.shape:
            raise ValueError(f"counts {counts.shape} do not match the model {model.probs.shape}")
        num = counts + self.lam * model.probs
        den = sum_answers(num)[..., None]
        safe = np.where(den > 0, den, 1.0)
        return PromptModel(np.where(den > 0, num / safe, model.probs))


# ---- curation: the filters of the loop ----------------------------------------------------------


def _correct_slots(data: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Which response slots hold a correct answer (one-hot slots), shape ``(S, m, P)``."""
    return sum_answers(data, correct.astype(data.dtype)) > 0


@dataclass
class Verifier:
    """A noisy filter: keeps a correct response w.p. ``tpr``, an incorrect one w.p. ``fpr``.

    A loop filter (``filter(ctx) -> kept slots``): rejected slots are zeroed, so the batch keeps
    its shape. The answer key comes from ``ctx.truth.correct``. Its strength is the likelihood
    ratio ``r = tpr / fpr`` (:func:`odds_law`), not the advantage ``gamma = tpr - fpr``.
    """

    tpr: float = 1.0
    fpr: float = 0.5

    def __post_init__(self) -> None:
        self.tpr = check_fraction(self.tpr, "tpr")
        self.fpr = check_fraction(self.fpr, "fpr")

    @property
    def gamma(self) -> float:
        """The advantage ``tpr - fpr``."""
        return self.tpr - self.fpr

    @property
    def ratio(self) -> float:
        """The likelihood ratio ``tpr / fpr`` (infinite for a perfect verifier)."""
        return np.inf if self.fpr == 0 else self.tpr / self.fpr

    def apply(self, data: np.ndarray, correct: np.ndarray, rngs: Rngs) -> np.ndarray:
        """Zero the rejected slots of ``data (S, m, P, A)``; replicate ``s`` uses ``rngs[s]``."""
        data = _responses(data)
        S, m, P, _ = data.shape
        good = _correct_slots(data, correct)
        keep = np.empty((S, m, P), dtype=bool)
        for s, g in enumerate(rngs):
            keep[s] = g.random((m, P)) < np.where(good[s], self.tpr, self.fpr)
        return data * keep[..., None]

    def __call__(self, ctx: FilterContext) -> np.ndarray:
        return self.apply(ctx.candidates, ctx.truth.correct, ctx.rngs)


Policy = Callable[[FilterContext, np.ndarray, int], np.ndarray]


def _pick(score: np.ndarray, budget: int, rngs: Rngs) -> np.ndarray:
    """Boolean mask of the ``budget`` lowest scores per seed, ties broken at random.

    Integer scores (counts) get a uniform jitter in [0, 1), which keeps their order and
    randomizes ties (one ``argpartition``); other scores are sorted with the jitter as the
    second key.
    """
    S, P = score.shape
    mask = np.zeros((S, P), dtype=bool)
    B = min(budget, P)
    if B == 0:
        return mask
    integer = np.array_equal(score, np.round(score))
    for s, g in enumerate(rngs):
        u = g.random(P)
        if B == P:
            chosen = np.arange(P)
        elif integer:
            chosen = np.argpartition(score[s] + u, B - 1)[:B]
        else:
            chosen = np.lexsort((u, score[s]))[:B]
        mask[s, chosen] = True
    return mask


@dataclass
class WeakLabeler:
    """A weak labeler with a budget: ``budget`` queries per round, each correct w.p. ``beta``.

    A loop filter that appends one label slot per prompt to the candidates: ``weight`` times a
    random correct answer (probability ``beta``) or a random wrong one, on the prompts the
    ``policy`` chooses, and zeros elsewhere. Policies (``accepted`` = the candidates' weight per
    prompt, i.e. the responses that survived the filter before this step):

    * ``"uniform"`` -- ``budget`` prompts uniformly at random, without replacement;
    * ``"hard"`` -- the ``budget`` prompts with the fewest accepted responses, ties at random
      (observable, like boosting's re-weighting towards current mistakes);
    * ``"oracle"`` -- the ``budget`` smallest true ``q`` (a diagnostic: not observable);
    * ``"adaptive"`` -- only prompts with no accepted response, at most ``budget`` of them;
    * a callable ``policy(ctx, accepted, budget) -> mask (S, P)``.

    With ``verifier`` set, the labels pass through it too. ``queries`` holds the number of
    label queries per seed of the last round (see :func:`label_queries`).
    """

    #: rows of outside data this filter appends to its candidates (one of labels); the loop
    #: lets a filter return at most its candidates, its ``ctx.draw`` rows and these
    extra_rows: ClassVar[int] = 1

    beta: float = 0.3
    budget: int = 0
    policy: str | Policy = "hard"
    weight: float = 1.0
    verifier: Verifier | None = None
    queries: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.beta = check_fraction(self.beta, "beta")
        self.budget = _nonneg_int(self.budget, "budget")
        if not callable(self.policy):
            check_choice(self.policy, POLICIES, "policy")
        self.weight = check_nonnegative(self.weight, "weight")
        if self.weight == 0:
            raise ValueError("weight must be > 0")
        if self.verifier is not None and not isinstance(self.verifier, Verifier):
            raise ValueError(f"verifier must be a Verifier or None, got {self.verifier!r}")

    def choose(self, ctx: FilterContext) -> np.ndarray:
        """The prompts to label this round: a boolean mask ``(S, P)``."""
        cand = _responses(ctx.candidates, "candidates")
        accepted = sum_answers(cand.sum(axis=1, dtype=float))
        if callable(self.policy):
            mask = np.asarray(self.policy(ctx, accepted, self.budget), dtype=bool)
            if mask.shape != accepted.shape:
                raise ValueError(f"policy must return a mask of shape {accepted.shape}")
            return mask
        if self.policy == "uniform":
            return _pick(np.zeros_like(accepted), self.budget, ctx.rngs)
        if self.policy == "oracle":
            return _pick(success(ctx.model.probs, ctx.truth.correct), self.budget, ctx.rngs)
        mask = _pick(accepted, self.budget, ctx.rngs)
        return mask & (accepted == 0) if self.policy == "adaptive" else mask

    def __call__(self, ctx: FilterContext) -> np.ndarray:
        cand = _responses(ctx.candidates, "candidates")
        correct = ctx.truth.correct
        S, _, P, A = cand.shape
        mask = self.choose(ctx)
        labels = np.zeros((S, 1, P, A), dtype=cand.dtype)
        key = correct.astype(float)
        for s, g in enumerate(ctx.rngs):
            good = g.random(P) < self.beta
            pool = np.where(good[:, None], key, 1.0 - key)  # the answers a label may take
            answer = np.argmax(g.random((P, A)) * pool, axis=-1)  # uniform among them
            labels[s, 0] = one_hot(answer, A) * (self.weight * mask[s])[:, None]
        self.queries = mask.sum(axis=1)
        if self.verifier is not None:
            labels = self.verifier.apply(labels, correct, ctx.rngs)
        return np.concatenate([cand, labels], axis=1)


@dataclass
class Curation:
    """A chain of loop filters: each step sees the previous step's output as its candidates.

    ``Curation(Verifier(1, 0.5), WeakLabeler(0.3, 100, "hard"))`` filters the model's responses
    and then spends the labels on the prompts with the fewest accepted responses.
    """

    steps: tuple[Callable[[FilterContext], Any], ...]

    def __init__(self, *steps: Callable[[FilterContext], Any]) -> None:
        if not steps or not all(callable(s) for s in steps):
            raise ValueError("Curation needs at least one callable step")
        self.steps = tuple(steps)

    @property
    def extra_rows(self) -> int:
        """The rows of outside data the chain's steps append (see ``WeakLabeler.extra_rows``)."""
        return sum(getattr(step, "extra_rows", 0) for step in self.steps)

    @property
    def labeler(self) -> WeakLabeler | None:
        """The chain's weak labeler, if any."""
        return next((s for s in self.steps if isinstance(s, WeakLabeler)), None)

    def __call__(self, ctx: FilterContext) -> np.ndarray:
        for step in self.steps:
            ctx = replace(ctx, candidates=step(ctx))
        return ctx.candidates


# ---- metrics (functions of the loop's Step) -----------------------------------------------------


def q_of(step: Step) -> np.ndarray:
    """The current model's success probabilities ``q``, shape ``(S, P)``."""
    return success(step.model.probs, step.truth.correct)


def pass_at_1(step: Step) -> np.ndarray:
    """Mean success probability over prompts (exact, no sampling), per seed."""
    return q_of(step).mean(axis=1)


def pass_at(k: int) -> Callable[[Step], np.ndarray]:
    """Metric ``pass@k = mean_x 1 - (1 - q(x))^k``: at least one of ``k`` samples is correct."""
    k = check_positive_int(k, "k")

    def metric(step: Step) -> np.ndarray:
        return (1.0 - (1.0 - q_of(step)) ** k).mean(axis=1)

    return metric


def heterozygosity(step: Step) -> np.ndarray:
    """Mean ``q (1 - q)`` over prompts: the diversity that self-training destroys."""
    q = q_of(step)
    return (q * (1.0 - q)).mean(axis=1)


def unsolved(step: Step) -> np.ndarray:
    """Fraction of prompts the model never solves, ``q = 0`` (the set ``H_t``)."""
    return (q_of(step) == 0).mean(axis=1)


def below(threshold: float) -> Callable[[Step], np.ndarray]:
    """Metric: fraction of prompts with ``q < threshold`` (for learned models, never exactly 0)."""
    threshold = check_fraction(threshold, "threshold")

    def metric(step: Step) -> np.ndarray:
        return (q_of(step) < threshold).mean(axis=1)

    return metric


def label_queries(labeler: WeakLabeler) -> Callable[[Step], np.ndarray]:
    """Metric: label queries spent by ``labeler`` in this round (0 at generation 0)."""

    def metric(step: Step) -> np.ndarray:
        if step.generation == 0 or labeler.queries is None:
            return np.zeros(len(step.seeds))
        return labeler.queries

    return metric


class QRecorder:
    """A loop metric that keeps ``q`` at chosen generations and returns ``pass@1``.

    Each run of the loop (one condition of :func:`simulate`) starts a new entry of ``runs``
    when it reaches generation 0; ``q`` is the last run's ``{generation: q (S, P)}``.
    """

    def __init__(self, generations: Sequence[int]) -> None:
        self.generations = {_nonneg_int(t, "generations") for t in generations}
        self.runs: list[dict[int, np.ndarray]] = []

    @property
    def q(self) -> dict[int, np.ndarray]:
        return self.runs[-1] if self.runs else {}

    def __call__(self, step: Step) -> np.ndarray:
        q = q_of(step)
        if step.generation == 0 or not self.runs:
            self.runs.append({})
        if step.generation in self.generations:
            self.runs[-1][step.generation] = q.copy()
        return q.mean(axis=1)


def default_metrics(k: int) -> dict[str, Callable[[Step], np.ndarray]]:
    """``pass@1``, ``pass@k``, heterozygosity and the unsolved fraction."""
    return {
        "pass@1": pass_at_1,
        f"pass@{k}": pass_at(k),
        "heterozygosity": heterozygosity,
        "unsolved": unsolved,
    }


def simulate(
    conditions: Mapping[str, Callable[[FilterContext], Any] | None],
    task: Any,
    *,
    k: int,
    rounds: int,
    lam: float = 2.0,
    seeds: int | Sequence[int] = 4,
    seed: int = 0,
    learner: Any = None,
    metrics: Mapping[str, Callable[[Step], Any]] | None = None,
    pooled: bool = False,
    n0: int | None = None,
) -> Results:
    """Run the loop once per condition (``{label: curation filter or None}``) on the same seeds.

    Generation ``t = 0`` is the base model (``task``'s data), ``t = 1..rounds`` the rounds of
    self-training, each on ``k`` fresh responses per prompt through the condition's filter. All
    conditions share the root ``seed``, so they start from the same base model and use the same
    streams: differences come from the curation. ``pooled=True`` uses the accumulate regime
    (every earlier round's counts are kept). ``n0`` is the number of real responses per prompt
    at generation 0 (default ``k``; it matters only for a task that samples them, such as
    :class:`collapse_lib.modular.ModularTask`). ``learner`` defaults to
    :class:`SmoothedLearner` ``(lam)``. A :class:`WeakLabeler` in a condition also records
    ``labels`` (queries per round). Returns the runs' :class:`~collapse_lib.results.Results`.
    """
    if not conditions:
        raise ValueError("conditions must name at least one condition")
    k = check_positive_int(k, "k")
    rounds = check_positive_int(rounds, "rounds")
    learner = SmoothedLearner(lam) if learner is None else learner
    n0 = k if n0 is None else check_positive_int(n0, "n0")
    parts = []
    for label, curation in conditions.items():
        if curation is not None and not callable(curation):
            raise ValueError(f"condition {label!r} must be a loop filter or None")
        m = dict(default_metrics(k) if metrics is None else metrics)
        labeler = curation if isinstance(curation, WeakLabeler) else None
        if isinstance(curation, Curation):
            labeler = curation.labeler
        if labeler is not None:
            m["labels"] = label_queries(labeler)
        parts.append(
            run(
                learner,
                task,
                regime("accumulate" if pooled else "replace"),
                n=lambda t: n0 if t == 0 else k,
                generations=rounds + 1,
                metrics=m,
                seeds=seeds,
                seed=seed,
                filter=curation,
                condition=label,
            )
        )
    return Results.concat(parts)


# ---- closed forms [derived] ---------------------------------------------------------------------


def heterozygosity_factor(k: int, lam: float) -> float:
    """``1 - k / (k + lam)^2``: the per-round factor of ``E q(1 - q)`` without curation.

    With ``C ~ Bin(k, q)`` and ``q' = (C + lam q) / (k + lam)``: ``E q' = q`` and
    ``Var q' = k q (1 - q) / (k + lam)^2``, so ``E q'(1 - q') = q (1 - q) (1 - k / (k + lam)^2)``.
    The same holds for any verifier with ``tpr = fpr = f`` when ``k`` is replaced by the number
    of accepted responses and averaged (not used here).
    """
    k = check_positive_int(k, "k")
    lam = check_nonnegative(lam, "lam")
    return 1.0 - k / (k + lam) ** 2


def odds_law(q0: np.ndarray, tpr: float, fpr: float, t: int | np.ndarray) -> np.ndarray:
    """Population limit of the verifier alone (``k -> inf``, ``lam = 0``, no labels) [derived].

    The accepted responses of a prompt are correct in proportion ``tpr q : fpr (1 - q)``, so the
    odds ``q / (1 - q)`` multiply by ``r = tpr / fpr`` each round:
    ``q_t = expit(logit(q_0) + t ln r)``. ``q_0 = 0`` stays 0 and ``q_0 = 1`` stays 1.
    Returns shape ``(len(t), *q0.shape)`` for an array ``t``, ``q0.shape`` for a scalar.
    """
    tpr = check_fraction(tpr, "tpr")
    fpr = check_fraction(fpr, "fpr")
    if tpr == 0 or fpr == 0:
        raise ValueError("odds_law needs tpr > 0 and fpr > 0 (r = tpr / fpr finite and > 0)")
    q0 = np.asarray(q0, dtype=float)
    if not np.all((q0 >= 0) & (q0 <= 1)):
        raise ValueError("q0 must lie in [0, 1]")
    t_arr = np.asarray(t, dtype=float)
    if np.any(t_arr < 0):
        raise ValueError("t must be >= 0")
    with np.errstate(divide="ignore"):
        z = logit(q0)
    shift = t_arr.reshape(t_arr.shape + (1,) * q0.ndim) * np.log(tpr / fpr)
    return expit(z + shift)


def coverage(q0: np.ndarray) -> np.ndarray:
    """``P(q_0 > 0)`` per seed: the ceiling of the verifier alone (``q = 0`` is absorbing)."""
    return (np.asarray(q0) > 0).mean(axis=-1)


def weak_only_mean(
    q0_mean: float | np.ndarray,
    beta: float,
    *,
    budget_fraction: float,
    k: int,
    lam: float,
    weight: float = 1.0,
    rounds: int,
) -> np.ndarray:
    """``E mean q_t`` with uniform weak labels and no verifier, ``t = 0..rounds`` [derived].

    A labelled prompt's expected update is ``q + w (beta - q) / (k + lam + w)``; each prompt is
    labelled with probability ``B / N``, independently of ``q``. Hence
    ``E mean q_t = beta + (mean q_0 - beta) (1 - (B / N) w / (k + lam + w))^t``.
    """
    beta = check_fraction(beta, "beta")
    f = check_fraction(budget_fraction, "budget_fraction")
    k = check_positive_int(k, "k")
    lam, weight = check_nonnegative(lam, "lam"), check_nonnegative(weight, "weight")
    rounds = _nonneg_int(rounds, "rounds")
    t = np.arange(rounds + 1).reshape(-1, *([1] * np.ndim(q0_mean)))
    factor = 1.0 - f * weight / (k + lam + weight)
    return beta + (np.asarray(q0_mean, dtype=float) - beta) * factor**t


def unsolved_fraction(
    rho: float | np.ndarray, beta: float, rounds: int, budget_fraction: float = 1.0
) -> np.ndarray:
    """``E |H_t| / N = rho (1 - beta f)^t``, ``t = 0..rounds`` [derived].

    ``f = 1`` when every unsolved prompt is labelled each round (``B >= |H_t|``, a focused
    policy); ``f = B / N`` when the labels are spread uniformly. A prompt leaves ``H`` when its
    label is correct (probability ``beta``) and, with ``lam > 0``, never comes back: the
    counts thin binomially, ``|H_t| ~ Bin(|H_0|, (1 - beta f)^t)`` in the focused case.
    """
    beta = check_fraction(beta, "beta")
    f = check_fraction(budget_fraction, "budget_fraction")
    rounds = _nonneg_int(rounds, "rounds")
    t = np.arange(rounds + 1).reshape(-1, *([1] * np.ndim(rho)))
    return np.asarray(rho, dtype=float) * (1.0 - beta * f) ** t


def rounds_to_clear(rho: float, eps: float, beta: float) -> float:
    """``ln(rho / eps) / (-ln(1 - beta))``: rounds until ``rho (1 - beta)^t = eps`` [derived].

    About ``ln(rho / eps) / beta`` for small ``beta``: the ``log(1/eps)/beta`` shape of the
    paper's reported round complexity.
    """
    rho = check_fraction(rho, "rho")
    eps = check_fraction(eps, "eps")
    beta = check_fraction(beta, "beta")
    if not (0 < eps < rho) or not (0 < beta < 1):
        raise ValueError("need 0 < eps < rho and 0 < beta < 1")
    return float(np.log(rho / eps) / -np.log1p(-beta))


def labels_to_clear(rho: float, eps: float, beta: float, prompts: int, policy: str) -> float:
    """Label queries needed to shrink the unsolved fraction from ``rho`` to ``eps`` [derived].

    Focused (``"hard"``/``"oracle"``, ``B >= |H_t|``): ``sum_t |H_t| ~ rho N (1 - (eps/rho)) /
    beta``, about ``rho N / beta``. Uniform: each round costs ``B`` and removes the fraction
    ``beta B / N`` of ``H``, so ``N ln(rho / eps) / beta`` in total (small ``beta B / N``).
    """
    check_choice(policy, ("hard", "oracle", "uniform"), "policy")
    N = check_positive_int(prompts, "prompts")
    T = rounds_to_clear(rho, eps, beta)  # also validates rho, eps, beta
    if policy == "uniform":
        return float(N * np.log(rho / eps) / beta)
    return float(rho * N * (1.0 - eps / rho) / beta) if T > 0 else 0.0


# ---- the chapter's figures ----------------------------------------------------------------------


def plot_regimes(
    book: Results,
    q0: np.ndarray,
    weak_th: np.ndarray,
    colors: Mapping[str, Any],
    title: str,
) -> Any:
    """The three regimes: the filtered runs left, the two unfiltered runs zoomed on the right.

    ``book`` holds the conditions ``"filter only"``, ``"filter + uniform labels"``, ``"filter +
    hard labels"``, ``"no curation"`` and ``"weak labels only"``; ``weak_th`` is the theory of
    the last (:func:`weak_only_mean`), the base model's mean ``q0`` that of no curation.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    from collapse_lib.plotting import plot_metric_vs_generation

    rounds = len(weak_th) - 1
    fig = plt.figure(figsize=(13, 5), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[2, 1])
    ax = fig.add_subplot(grid[:, 0])
    curated = ["filter only", "filter + uniform labels", "filter + hard labels"]
    plot_metric_vs_generation(
        Results.concat(book.where(condition=c) for c in curated),
        "pass@1",
        ax=ax,
        colors=colors,
        ylabel="pass@1 (mean success probability)",
        title=title,
    )
    ax.axhline(q0.mean(), color="grey", ls=":", lw=1, label="base model (uncurated runs: right)")
    ax.axhline(
        coverage(q0).mean(),
        color="black",
        ls="--",
        lw=1.6,
        label="coverage P(q0 > 0) (theory: the ceiling)",
    )
    ax.set_xlabel("round $t$")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 0.07), fontsize=8)  # below the curves
    zoom, zooms = None, []
    for row, (c, th) in enumerate(
        (("no curation", np.full(rounds + 1, q0.mean())), ("weak labels only", weak_th))
    ):
        zoom = fig.add_subplot(grid[row, 1], sharex=ax, sharey=zoom)
        plot_metric_vs_generation(
            book.where(condition=c),
            "pass@1",
            theory={c: th},
            ax=zoom,
            colors=colors,
            ylabel="pass@1 (zoom)",
            title=f"{c}: near the base model",
        )
        zoom.set_xlabel("round $t$")
        zooms.append(zoom)
    lo, hi = zoom.get_ylim()  # shared by both zooms: room below the data for a one-row legend
    zoom.set_ylim(lo - 0.7 * (hi - lo), hi)
    for z in zooms:
        z.legend(fontsize=7, loc="lower center", ncol=3)
    return fig


def plot_collapse(
    book: Results,
    q0: np.ndarray,
    q_by_round: Mapping[int, np.ndarray],
    het_th: np.ndarray,
    k: int,
) -> Any:
    """Uncurated self-training in three panels: pass@1 and pass@k, ``q (1 - q)``, histograms.

    ``book`` holds the condition ``"no curation"`` with the metrics ``pass@1``, ``pass@k`` and
    ``heterozygosity``; ``q_by_round`` is that run's ``{round: q (S, N)}``
    (:class:`QRecorder`), ``het_th`` the closed form of the heterozygosity. Returns the axes.
    """
    import matplotlib.pyplot as plt

    from collapse_lib.plotting import plot_metric_vs_generation

    t_all = np.arange(len(het_th))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for m, color in (("pass@1", "C0"), (f"pass@{k}", "C1")):
        v = book.per_seed(m, "no curation").to_numpy()
        mean, se = v.mean(1), v.std(1, ddof=1) / np.sqrt(v.shape[1])
        axes[0].plot(t_all, mean, color=color, label=f"{m}, simulation mean ± 2 SE")
        axes[0].fill_between(t_all, mean - 2 * se, mean + 2 * se, color=color, alpha=0.25, lw=0)
    axes[0].plot(t_all, np.full(t_all.size, q0.mean()), "--", color="C0", label="pass@1, theory")
    axes[0].set(xlabel="round $t$", ylabel="accuracy", title="No curation: pass@1 and pass@k")
    axes[0].legend(fontsize=8)
    plot_metric_vs_generation(
        book.where(condition="no curation"),
        "heterozygosity",
        theory={"no curation": het_th},
        ax=axes[1],
        ylabel=r"mean $q_t(1-q_t)$ over prompts",
        title=r"Diversity decays like $(1 - k/(k+\lambda)^2)^t$",
    )
    axes[1].set_xlabel("round $t$")
    bins = np.linspace(0, 1, 21)
    for t, color in zip(sorted(q_by_round), ("C0", "C1", "C2", "C3"), strict=False):
        axes[2].hist(
            q_by_round[t].ravel(),
            bins=bins,
            density=True,
            histtype="step",
            lw=2,
            color=color,
            label=f"round {t}",
        )
    axes[2].set(
        yscale="log",
        xlabel="$q_t(x)$",
        ylabel="density over prompts",
        title="Prompts drift to always-wrong or always-right",
    )
    axes[2].legend(fontsize=8)
    return axes


def plot_label_costs(
    book: Results,
    labels: Mapping[str, np.ndarray],
    passage: Mapping[float, tuple[np.ndarray, float, bool]],
    rho: float,
    eps: float,
    colors: Mapping[str, Any],
    color: Any,
) -> Any:
    """What the labels cost: pass@1 per label spent (left), rounds to clear against ``beta``.

    ``labels`` maps a condition of ``book`` to its cumulative labels per prompt;
    ``passage[beta] = (rounds to clear per seed, predicted rounds, every seed cleared)``
    (the sweep of the hard policy, drawn in ``color``). Returns the axes.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
    for c, x in labels.items():
        v = book.per_seed("pass@1", c).to_numpy()
        mean, se = v.mean(1), v.std(1, ddof=1) / np.sqrt(v.shape[1])
        axes[0].plot(x, mean, color=colors[c], label=c)
        axes[0].fill_between(x, mean - 2 * se, mean + 2 * se, color=colors[c], alpha=0.25, lw=0)
    axes[0].set(
        xlabel="labels spent per prompt (cumulative)",
        ylabel="pass@1",
        title="Noisy filter: accuracy per label spent (mean ± 2 SE)",
    )
    axes[0].legend(fontsize=8)
    betas = np.array(list(passage))
    med = np.array([np.median(passage[b][0]) for b in betas])
    lo = med - np.array([passage[b][0].min() for b in betas])
    hi = np.array([passage[b][0].max() for b in betas]) - med
    grid = np.linspace(betas.min() * 0.9, betas.max() * 1.1, 100)
    axes[1].errorbar(
        betas,
        med,
        yerr=[lo, hi],
        fmt="o",
        color=color,
        capsize=3,
        label="simulation: median, min-max over seeds",
    )
    axes[1].plot(
        grid,
        [rounds_to_clear(rho, eps, b) for b in grid],
        "--",
        color=color,
        label=r"theory $\ln(\rho/\varepsilon)/(-\ln(1-\beta))$",
    )
    axes[1].plot(
        grid, np.log(rho / eps) / grid, ":", color="grey", label=r"$\ln(\rho/\varepsilon)/\beta$"
    )
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel=r"labeler accuracy $\beta$",
        ylabel=r"rounds until $|H_t|/N \leq 0.01$",
        title="Perfect verifier, B = N/2: rounds to clear",
    )
    axes[1].set_xticks(betas, [f"{b:g}" for b in betas])
    axes[1].set_yticks([5, 10, 20, 50, 100], ["5", "10", "20", "50", "100"])
    axes[1].minorticks_off()
    axes[1].legend(fontsize=8)
    return axes
