"""Significance tests and intervals: exact McNemar, Benjamini–Hochberg, Wilson.

Every function is vectorised over tests and reproduces an independent reference exactly (checked in
``tests/test_stats_core.py``): McNemar = ``statsmodels.stats.contingency_tables.mcnemar(table, exact=True)``,
BH = ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")``, Wilson =
``statsmodels.stats.proportion.proportion_confint(k, n, method="wilson")``. statsmodels is only a test
dependency; scipy (a core dependency) supplies the binomial and normal distributions.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def mcnemar_exact(a_right_b_wrong: ArrayLike, a_wrong_b_right: ArrayLike) -> np.ndarray:
    """Exact two-sided McNemar p-values from the discordant counts of paired binary outcomes.

    Under H0 the ``b + c`` discordant examples split Binomial(b + c, 1/2); the two-sided p is twice the
    smaller tail, capped at 1 (so it is 1.0 when there are no discordant examples).

    Args:
        a_right_b_wrong: Discordant counts b, int array of any shape.
        a_wrong_b_right: Discordant counts c, same shape as ``a_right_b_wrong``.

    Returns:
        float array of p-values, the broadcast shape of the inputs.
    """
    from scipy.stats import binom

    b = np.asarray(a_right_b_wrong, dtype=np.int64)
    c = np.asarray(a_wrong_b_right, dtype=np.int64)
    if np.any(b < 0) or np.any(c < 0):
        raise ValueError("discordant counts must be non-negative")
    p = binom.cdf(np.minimum(b, c), b + c, 0.5) * 2.0
    return np.minimum(np.asarray(p, dtype=np.float64), 1.0)


def benjamini_hochberg(pvalues: ArrayLike) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) controlling the false discovery rate.

    ``q_(i) = min_{j >= i} p_(j) * m / j`` over the ascending order statistics, capped at 1. Ties and the
    input order are handled as in statsmodels (stable sort), so equal p-values get equal q-values.

    Args:
        pvalues: float array [m] of p-values in [0, 1]; NaN is not allowed.

    Returns:
        float array [m] of q-values in input order (empty for empty input).
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    m = p.size
    if m == 0:
        return p.copy()
    if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("p-values must lie in [0, 1] and not be NaN")
    order = np.argsort(p, kind="mergesort")
    scaled = p[order] / (np.arange(1, m + 1) / m)  # statsmodels' exact arithmetic (p / ecdf factor)
    # Step-up: each q is the smallest scaled p at or above its rank, hence a reversed running minimum.
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def wilson_interval(successes: ArrayLike, n: ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (well behaved at 0 and n successes, unlike Wald).

    Args:
        successes: int array of success counts k (any shape).
        n: int array of trials (same shape, every n > 0).
        level: Two-sided coverage level, 0.95 for a 95% interval.

    Returns:
        ``(lower, upper)``, float arrays of the broadcast shape, clipped to [0, 1].
    """
    from scipy.stats import norm

    k = np.asarray(successes, dtype=np.float64)
    total = np.asarray(n, dtype=np.float64)
    if np.any(total <= 0):
        raise ValueError("the number of trials must be positive")
    z = float(norm.isf((1.0 - level) / 2.0))
    p = k / total
    denom = 1.0 + z * z / total
    centre = (p + z * z / (2.0 * total)) / denom
    half = z * np.sqrt(p * (1.0 - p) / total + z * z / (4.0 * total * total)) / denom
    # At k = 0 and k = n one bound is exactly 0 or 1; set it so rounding cannot leave 1 - 1e-16.
    lower = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    upper = np.where(k == total, 1.0, np.clip(centre + half, 0.0, 1.0))
    return lower, upper
