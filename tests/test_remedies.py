"""The map of chapter 9: protocol, cells, closed forms, the summary and its verdicts."""

import numpy as np
import pytest

from collapse_lib import remedies as RM
from collapse_lib.gaussian import MultivariateGaussian
from collapse_lib.loop import Step
from collapse_lib.results import Results

SMALL = RM.Protocol(n=40, generations=6, seeds=400, dim=3, tokens=8, features=3)


def _step(model, truth=None):
    return Step(0, model, truth, None, None, [0])


def test_gaussian_error_is_the_kl_of_the_fit_from_the_truth():
    cov = np.array([[[2.0, 0.3], [0.3, 0.5]]])
    mean = np.array([[0.4, -1.0]])
    got = RM.gaussian_error(_step(MultivariateGaussian(mean, cov)))
    # KL(N(m, C) || N(0, I)) = (tr C + |m|^2 - d - log det C) / 2
    expected = 0.5 * (np.trace(cov[0]) + (mean**2).sum() - 2 - np.log(np.linalg.det(cov[0])))
    assert got == pytest.approx([expected], rel=1e-12)


@pytest.mark.parametrize(
    "regime, alpha", [("mixture", 0.25), ("accumulate", 0.0), ("accumulate_subsample", 0.0)]
)
def test_the_second_moment_is_a_martingale_so_kl_is_minus_half_the_log_det(regime, alpha):
    """Theorem ch9-thm-second-moment: E[tr Sigma + |mu|^2] = d and E KL = -E log det / 2."""
    from collapse_lib.gaussian import log_det_ratio
    from collapse_lib.loop import run

    def second_moment(step):
        return np.trace(step.model.cov, axis1=1, axis2=2) + (step.model.mean**2).sum(-1)

    model, truth = RM.setting("gaussian", SMALL)
    res = run(
        model,
        truth,
        RM.regime_of(regime, alpha),
        n=SMALL.n,
        generations=6,
        metrics={"m2": second_moment, "kl": RM.gaussian_error, "logdet": log_det_ratio},
        seeds=2000,
        seed=3,
        progress=False,
    )
    m2, se = res.final("m2")
    assert abs(m2 - SMALL.dim) < 4 * se
    gap = res.per_seed("kl").iloc[-1] + 0.5 * res.per_seed("logdet").iloc[-1]
    assert abs(gap.mean()) < 4 * gap.std(ddof=1) / np.sqrt(gap.size)


@pytest.mark.parametrize(
    "learner, regime, alpha",
    [
        ("gaussian", "replace", 0.0),
        ("categorical", "replace", 0.0),
        ("categorical", "mixture", 0.25),
        ("categorical", "accumulate", 0.0),
        ("regression", "replace", 0.0),
        ("regression", "real_only", 1.0),
    ],
)
def test_simulated_cells_agree_with_their_closed_forms(learner, regime, alpha):
    res = RM.cell(learner, regime, alpha, "none", 1, seed=1, protocol=SMALL)
    R, se = RM.relative_error(res, SMALL.generations - 1)
    theory = RM.theory_ratio(learner, regime, alpha, "none", SMALL)
    assert np.isfinite(theory)
    assert abs(R - theory) < 4 * se, (R, se, theory)


def test_theory_is_exact_where_it_is_exact_and_absent_elsewhere():
    assert RM.theory_ratio("gaussian", "replace", 0.0, "none", SMALL) == pytest.approx(6.0)
    assert RM.theory_ratio("regression", "real_only", 1.0, "none", SMALL) == 1.0
    assert np.isnan(RM.theory_ratio("gaussian", "accumulate", 0.0, "none", SMALL))
    assert np.isnan(RM.theory_ratio("categorical", "replace", 0.0, "select", SMALL))


def test_the_grid_holds_every_defined_cell_once():
    cells = RM.grid(RM.LEARNERS, (0.5,), (2,), (4,))
    columns = 5  # replace, 0.5, real_only, accumulate, accumulate_subsample
    assert len(cells) == columns * sum(len(RM.DEFINED[L]) for L in RM.LEARNERS)
    assert not any(c["learner"] == "gaussian" and c["filter"] == "verify" for c in cells)
    assert not any(c["learner"] == "regression" and c["filter"] == "select" for c in cells)
    assert len({tuple(c.values()) for c in cells}) == len(cells)


def test_filters_run_and_cost_what_the_price_says():
    res = RM.cell("categorical", "mixture", 0.25, "verify", 4, seed=0, protocol=SMALL)
    assert res.per_seed("error").shape == (SMALL.generations, SMALL.seeds)
    price = RM.price("mixture", 0.25, "verify", 4, SMALL)
    assert price == {
        "fresh real / gen": 10,
        "extra synthetic / gen": 90,
        "verifier calls / gen": 120,
        "trains on (last gen)": 40,
        "stores (last gen)": 40,
    }
    assert RM.price("accumulate", 0.0, "select", 2, SMALL)["trains on (last gen)"] == 240
    subsample = RM.price("accumulate_subsample", 0.0, "none", 1, SMALL)
    assert (subsample["trains on (last gen)"], subsample["stores (last gen)"]) == (40, 240)


def test_summary_verdicts_follow_their_definition():
    cells = [
        {"learner": "categorical", "regime": r, "alpha": a, "filter": "none", "strength": 1}
        for r, a in (("replace", 0.0), ("real_only", 1.0))
    ]
    res = Results.concat(RM.cell(**c, seed=0, protocol=SMALL).assign(**c) for c in cells)
    table = RM.summarize(res, SMALL).set_index("regime")
    assert table.loc["replace", "verdict"] == "growing"
    assert table.loc["real_only", "verdict"] == "stable"
    R, se = RM.relative_error(res.where(regime="replace"), SMALL.generations - 1)
    assert table.loc["replace", "R"] == pytest.approx(R)
    assert table.loc["replace", "R_se"] == pytest.approx(se)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="n must exceed"):
        RM.Protocol(n=5, dim=5)
    with pytest.raises(ValueError, match="seeds"):
        RM.Protocol(seeds=0)
    with pytest.raises(ValueError, match="learner"):
        RM.defined("llm", "none")
    with pytest.raises(ValueError, match="not defined for the 'gaussian'"):
        RM.make_filter("gaussian", "verify", 4, SMALL)
    with pytest.raises(ValueError, match="strength"):
        RM.make_filter("categorical", "select", 0, SMALL)
    with pytest.raises(ValueError, match="alphas must lie strictly"):
        RM.columns((0.0, 0.5))
    with pytest.raises(ValueError, match="alpha"):
        RM.regime_of("mixture", 1.5)
    with pytest.raises(ValueError, match="regime"):
        RM.theory_ratio("gaussian", "recycle", 0.0, "none", SMALL)
