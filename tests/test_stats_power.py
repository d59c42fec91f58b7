"""Power, MDE, required n and TOST against statsmodels, hand formulas and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import ttost_paired

from casceq.stats.power import (
    mde,
    power_one_sided,
    required_n,
    se_from_ci,
    tost,
    tost_mde,
    tost_power,
    tost_required_n,
)


@pytest.mark.parametrize("d,n", [(0.2, 50), (0.5, 20), (0.1, 400)])
def test_power_matches_statsmodels_one_sample(d: float, n: int) -> None:
    # One-sample z-test: ratio=0 makes NormalIndPower a one-sample test with se = 1/sqrt(n) per unit sd.
    ref = NormalIndPower().power(effect_size=d, nobs1=n, alpha=0.025, ratio=0, alternative="larger")
    assert power_one_sided(d, 1 / math.sqrt(n), alpha=0.025) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("d", [0.1, 0.3, 0.6])
def test_required_n_matches_statsmodels(d: float) -> None:
    ref = NormalIndPower().solve_power(effect_size=d, power=0.8, alpha=0.025, ratio=0, alternative="larger")
    assert required_n(d, 1.0) == math.ceil(ref)


def test_mde_has_the_target_power() -> None:
    se = 0.07
    assert power_one_sided(mde(se), se) == pytest.approx(0.8, abs=1e-12)
    # hand: (1.959964 + 0.841621) * se
    assert mde(se) == pytest.approx(2.801585 * se, rel=1e-6)


def test_tost_matches_statsmodels_ttost_paired() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, 30)
    y = x + rng.normal(0.1, 0.5, 30)
    p_ref, low_res, high_res = ttost_paired(y, x, -0.4, 0.4)
    d = y - x
    out = tost(float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), -0.4, 0.4, df=len(d) - 1)
    assert out.p_value == pytest.approx(p_ref, rel=1e-9)
    assert out.p_low == pytest.approx(low_res[1], rel=1e-9)
    assert out.p_high == pytest.approx(high_res[1], rel=1e-9)
    assert out.equivalent == (p_ref < 0.05)


def test_tost_one_sided_and_decision() -> None:
    inside = tost(0.0, 0.02, -0.1, 0.1)
    assert inside.equivalent and inside.ci[1] < 0.1
    outside = tost(0.08, 0.05, -0.1, 0.1)
    assert not outside.equivalent and outside.ci[1] > 0.1
    # non-superiority only: the low side never blocks
    assert tost(-5.0, 0.1, -math.inf, 0.1).equivalent


def test_tost_power_against_simulation() -> None:
    rng = np.random.default_rng(0)
    se, margin = 0.05, 0.12
    for true in (0.0, 0.05):
        est = rng.normal(true, se, 40_000)
        sim = np.mean((est - 1.6448536 * se > -margin) & (est + 1.6448536 * se < margin))
        assert tost_power(margin, se, true) == pytest.approx(sim, abs=0.01)


def test_tost_mde_and_required_n_are_consistent() -> None:
    se = 0.04
    assert tost_power(tost_mde(se), se) == pytest.approx(0.8, abs=1e-9)
    n = tost_required_n(0.1, 0.5)
    assert tost_power(0.1, 0.5 / math.sqrt(n)) >= 0.8 > tost_power(0.1, 0.5 / math.sqrt(n - 1))


def test_se_from_ci() -> None:
    assert se_from_ci(-0.196, 0.196) == pytest.approx(0.1, rel=1e-4)
    assert se_from_ci(None, 1.0) is None and se_from_ci(0.6, 0.5) is None and se_from_ci(0.5, 0.5) == 0
