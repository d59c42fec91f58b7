"""Power, minimum detectable effects, required sample sizes and equivalence tests (TOST) for normal estimates.

Every claim of ``casceq reproduce`` reduces to an estimate with a standard error: a difference of accuracies,
of kappas, of error overlap over its null, of accuracy drops. The functions here work on that pair
``(estimate, se)`` under the normal approximation, optionally with a Student t reference (``df``). They are
checked against ``statsmodels.stats.power`` and ``statsmodels.stats.weightstats.ttost_paired`` and, where
statsmodels has no function (the power of an equivalence test), against a Monte Carlo simulation
(``tests/test_stats_power.py``).

Conventions: ``alpha`` is the level of ONE one-sided test. A directional claim tested with a two-sided 95%
interval uses ``alpha = 0.025``; an equivalence test at ``alpha = 0.05`` is the 90% interval lying within the
margins (Schuirmann 1987).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

POWER = 0.8
"""Target power of the planning and minimum-detectable-effect functions."""


def _z(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def _cdf(x: float, df: float | None = None) -> float:
    from scipy.stats import norm, t

    return float(norm.cdf(x) if df is None else t.cdf(x, df))


def _quantile(p: float, df: float | None = None) -> float:
    from scipy.stats import norm, t

    return float(norm.ppf(p) if df is None else t.ppf(p, df))


@dataclass(frozen=True)
class Tost:
    """Result of two one-sided tests of ``low < effect < high``.

    Attributes:
        p_low: p of H0 ``effect <= low`` (small: the effect is above ``low``).
        p_high: p of H0 ``effect >= high`` (small: the effect is below ``high``).
        ci: The ``1 - 2 alpha`` interval whose inclusion in ``(low, high)`` is the equivalence decision.
        equivalent: Both one-sided tests reject at ``alpha``.
    """

    p_low: float
    p_high: float
    ci: tuple[float, float]
    equivalent: bool

    @property
    def p_value(self) -> float:
        """The TOST p-value: the larger of the two one-sided p-values."""
        return max(self.p_low, self.p_high)


def tost(
    estimate: float, se: float, low: float, high: float, alpha: float = 0.05, df: float | None = None
) -> Tost:
    """Two one-sided tests that the true effect lies in ``(low, high)``.

    Args:
        estimate: The effect estimate.
        se: Its standard error (> 0).
        low: Lower equivalence bound (``-inf`` for a one-sided non-inferiority test).
        high: Upper equivalence bound (``+inf`` for a one-sided non-superiority test).
        alpha: Level of each one-sided test.
        df: Degrees of freedom of a t reference (None: normal).
    """
    if not se > 0:
        raise ValueError(f"standard error must be positive, got {se}")
    p_low = 0.0 if low == -math.inf else 1.0 - _cdf((estimate - low) / se, df)
    p_high = 0.0 if high == math.inf else _cdf((estimate - high) / se, df)
    q = _quantile(1.0 - alpha, df)
    ci = (estimate - q * se, estimate + q * se)
    return Tost(p_low, p_high, ci, p_low < alpha and p_high < alpha)


def power_one_sided(effect: float, se: float, alpha: float = 0.025) -> float:
    """Power of a one-sided z-test of ``effect > 0`` at level ``alpha`` when the true effect is ``effect``."""
    if not se > 0:
        raise ValueError(f"standard error must be positive, got {se}")
    return _cdf(effect / se - _z(1.0 - alpha))


def mde(se: float, alpha: float = 0.025, power: float = POWER) -> float:
    """Smallest true effect a one-sided level-``alpha`` test with standard error ``se`` detects with ``power``."""
    return (_z(1.0 - alpha) + _z(power)) * se


def required_n(effect: float, sd: float, alpha: float = 0.025, power: float = POWER) -> int:
    """Units (items) for a one-sided test to detect ``effect`` with ``power`` when ``se = sd / sqrt(n)``.

    Raises:
        ValueError: ``effect`` or ``sd`` not positive.
    """
    if not (effect > 0 and sd > 0):
        raise ValueError(f"effect and sd must be positive, got {effect}, {sd}")
    return math.ceil(((_z(1.0 - alpha) + _z(power)) * sd / effect) ** 2)


def tost_power(margin: float, se: float, true_effect: float = 0.0, alpha: float = 0.05) -> float:
    """Power of the symmetric equivalence test ``|effect| < margin`` (normal approximation, floored at 0)."""
    if not se > 0:
        raise ValueError(f"standard error must be positive, got {se}")
    z = _z(1.0 - alpha)
    p = _cdf((margin - true_effect) / se - z) + _cdf((margin + true_effect) / se - z) - 1.0
    return max(p, 0.0)


def tost_mde(se: float, alpha: float = 0.05, power: float = POWER) -> float:
    """Smallest symmetric margin an equivalence test establishes with ``power`` when the true effect is 0."""
    return (_z(1.0 - alpha) + _z(0.5 + power / 2)) * se


def tost_required_n(margin: float, sd: float, alpha: float = 0.05, power: float = POWER) -> int:
    """Units for the symmetric equivalence test to pass with ``power`` when the true effect is 0."""
    if not (margin > 0 and sd > 0):
        raise ValueError(f"margin and sd must be positive, got {margin}, {sd}")
    return math.ceil(((_z(1.0 - alpha) + _z(0.5 + power / 2)) * sd / margin) ** 2)


def se_from_ci(low: float | None, high: float | None, level: float = 0.95) -> float | None:
    """Standard error implied by a symmetric normal interval (None when an end is missing or it is inverted).

    A degenerate interval (every bootstrap resample gave the same value) gives 0.
    """
    if low is None or high is None or not math.isfinite(low) or not math.isfinite(high) or high < low:
        return None
    return (high - low) / (2 * _z(0.5 + level / 2))
