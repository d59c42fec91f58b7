"""Independent reference implementations of the item-clustered statistics, written as plain loops.

They share nothing with ``casceq.stats`` but the documented contract of the resampling: items are numbered in
order of first appearance over the examples sorted by id, and resample r draws the G item numbers
``numpy.random.default_rng(seed).integers(0, G, size=(B, G), dtype=int32)[r]``. Everything else (which rows
a draw brings, kappa, percentiles) is computed here from scratch with sklearn and Python loops.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import cohen_kappa_score


def sk_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """sklearn's Cohen's kappa, NaN (not a warning) when undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(list(a), list(b)))


def item_draws(items: Sequence[str], n_resamples: int, seed: int) -> list[list[int]]:
    """For every resample, the list of row positions it contains (each row of a drawn item, once per draw)."""
    order: list[str] = []
    rows_of: dict[str, list[int]] = {}
    for row, item in enumerate(items):
        if item not in rows_of:
            order.append(item)
            rows_of[item] = []
        rows_of[item].append(row)
    g = len(order)
    draws = np.random.default_rng(seed).integers(0, g, size=(n_resamples, g), dtype=np.int32)
    out = []
    for r in range(n_resamples):
        rows: list[int] = []
        for code in draws[r]:
            rows.extend(rows_of[order[int(code)]])
        out.append(rows)
    return out


def percentile_ci(values: Sequence[float]) -> tuple[float, float]:
    """The 95% percentile interval of the defined (non-NaN) values."""
    v = np.array([x for x in values if not np.isnan(x)])
    lo, hi = np.percentile(v, [2.5, 97.5])
    return float(lo), float(hi)


def loop_kappa_ci(
    a: Sequence[str], b: Sequence[str], items: Sequence[str], n_resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile CI of kappa(a, b) over an item bootstrap, one sklearn call per resample."""
    ks = []
    for rows in item_draws(items, n_resamples, seed):
        ks.append(sk_kappa([a[i] for i in rows], [b[i] for i in rows]))
    return percentile_ci(ks)


def loop_delta_kappa_ci(
    s: Sequence[str],
    m: Sequence[str],
    x: Sequence[str],
    items: Sequence[str],
    n_resamples: int,
    seed: int,
) -> tuple[float, float]:
    """Percentile CI of kappa(s, m) - kappa(s, x), both on the same item resamples."""
    ds = []
    for rows in item_draws(items, n_resamples, seed):
        ss = [s[i] for i in rows]
        ds.append(sk_kappa(ss, [m[i] for i in rows]) - sk_kappa(ss, [x[i] for i in rows]))
    return percentile_ci(ds)
