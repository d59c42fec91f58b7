"""Item-clustered statistics: the item, not the clip, is the unit of analysis.

One underlying item (a sentence, a question) becomes several rows when it is spoken by several voices, or
when a statistic pools several conditions. Those rows are not independent: a system that understands an
item usually gets all its voices right. Treating them as independent shrinks every interval and inflates
every test. The functions here take the item structure explicitly; with one row per item each reduces to
the textbook single-row statistic (asserted in ``tests/test_stats_cluster.py``).

Vocabulary (shapes in the docstrings use it):

- ``n``: rows (clips); ``G``: items (clusters); ``B``: bootstrap resamples.
- ``clusters``: int array [n] giving each row's item code ``0 .. G-1`` (from :func:`item_index`).
- per-item arrays: int/float arrays [G] of counts summed over an item's rows.

Methods (the reasons are in ``docs/statistics.md``):

- Bootstrap: resample G items with replacement; every row of a drawn item gets the item's multiplicity.
  All systems share the rows, so resamples stay paired across systems.
- McNemar: the sign-flip (randomisation) test over items of ``T = sum_i (b_i - c_i)``, exact when its
  support is small, else its normal approximation ``T^2 / sum_i (b_i - c_i)^2``, which is the statistic
  of Durkalski et al. (2003). With one clip per item the exact test *is* the exact McNemar test.
- Proportions: Wilson score interval on the effective sample size ``N / deff`` with the ratio-estimator
  design effect (Rao & Scott 1992), truncated so that ``n_eff <= N`` (Korn & Graubard 1998).
- Differences of two clustered proportions on the same items: Wald interval with the ratio-estimator
  (linearisation) variance of Obuchowski (1998).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from casceq.stats.tests import wilson_interval

WEIGHT_BLOCK = 64
"""Fewest resamples per block of bootstrap weights, and the rows counted per bincount (a cache-size choice)."""

BLOCK_ELEMENTS = 2**22
"""Target size of one block of weights (16 MB of float32): blocks hold ``max(WEIGHT_BLOCK, BLOCK_ELEMENTS // G)``
resamples. Few large blocks keep the matrix products big (small ones lose time to BLAS threading overhead);
the cap keeps memory at ``O(block x G)``, never ``B x n``."""

EXACT_SUPPORT = 5000
"""Largest ``sum_i |b_i - c_i|`` for which the cluster McNemar test enumerates its exact sign-flip
distribution (a convolution of that length); above it the normal approximation is used."""


def item_index(items: Sequence[str]) -> tuple[np.ndarray, int]:
    """Code rows by their item.

    Args:
        items: n item names, one per row (rows of the same item share the name).

    Returns:
        ``(clusters, G)``: int64 array [n] with values ``0 .. G-1`` numbered in order of first appearance,
        and G, the number of distinct items.
    """
    codes: dict[str, int] = {}
    out = np.fromiter((codes.setdefault(x, len(codes)) for x in items), dtype=np.int64, count=len(items))
    return out, len(codes)


def _check_clusters(clusters: ArrayLike) -> tuple[np.ndarray, int]:
    c = np.asarray(clusters, dtype=np.int64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError("clusters must be a non-empty 1-d array of item codes")
    if c.min() < 0:
        raise ValueError("item codes must be >= 0")
    return c, int(c.max()) + 1


def auto_block(n_items: int) -> int:
    """Resamples per block for G items (see ``BLOCK_ELEMENTS``)."""
    return max(WEIGHT_BLOCK, BLOCK_ELEMENTS // max(n_items, 1))


def iter_item_weights(
    n_items: int, n_resamples: int, seed: int, block: int | None = None
) -> Iterator[np.ndarray]:
    """Yield bootstrap multiplicities of items, a block of resamples at a time.

    The draws are consecutive calls of one ``numpy.random.default_rng(seed).integers(0, G, size=(b, G),
    dtype=int32)``; at the sizes casceq meets they equal the rows of one ``size=(B, G)`` draw (the
    generator's stream does not depend on the block size), so results do not depend on ``block``.

    Args:
        n_items: G, the number of items.
        n_resamples: B.
        seed: Seed of a fresh ``default_rng``.
        block: Resamples per yielded block (default :func:`auto_block`).

    Yields:
        float32 arrays [b, G] (b <= block, the blocks add up to B rows); each row sums to G.
    """
    if n_items >= 2**31:
        raise ValueError("too many items for int32 indices")
    block = auto_block(n_items) if block is None else block
    if block < 1:
        raise ValueError("block must be >= 1")
    rng = np.random.default_rng(seed)
    offsets = (np.arange(WEIGHT_BLOCK, dtype=np.intp) * n_items)[:, None]
    for start in range(0, n_resamples, block):
        b = min(block, n_resamples - start)
        draws = rng.integers(0, n_items, size=(b, n_items), dtype=np.int32)
        out = np.empty((b, n_items), dtype=np.float32)
        # Offsetting row r by r*G makes one flat bincount count WEIGHT_BLOCK rows at once (in cache).
        for r in range(0, b, WEIGHT_BLOCK):
            part = draws[r : r + WEIGHT_BLOCK]
            flat = (part + offsets[: len(part)]).ravel()
            out[r : r + len(part)] = np.bincount(flat, minlength=len(part) * n_items).reshape(-1, n_items)
        yield out


def iter_cluster_weights(
    clusters: ArrayLike, n_resamples: int, seed: int, block: int = WEIGHT_BLOCK
) -> Iterator[np.ndarray]:
    """Yield row multiplicities of an item-cluster bootstrap, a block of resamples at a time.

    Args:
        clusters: int array [n] of item codes ``0 .. G-1`` (see :func:`item_index`).
        n_resamples: B.
        seed: Seed of a fresh ``default_rng``; the same seed gives the same item draws as
            :func:`iter_item_weights` with G items.
        block: Resamples per yielded block.

    Yields:
        float32 arrays [b, n]: every row of a drawn item carries the item's multiplicity. Memory per block
        is ``b x n``, never ``B x n``.
    """
    c, g = _check_clusters(clusters)
    for w in iter_item_weights(g, n_resamples, seed, block):
        yield w[:, c]


def cluster_bootstrap_weights(clusters: ArrayLike, n_resamples: int, seed: int) -> np.ndarray:
    """Row multiplicities of all B resamples at once (use :func:`iter_cluster_weights` for large n).

    Args:
        clusters: int array [n] of item codes.
        n_resamples: B.
        seed: Seed of a fresh ``default_rng``.

    Returns:
        float32 array [B, n]; with ``clusters = arange(n)`` it equals the row bootstrap of
        ``casceq.stats.agreement.resample_weights(bootstrap_indices(n, B, seed), n)``.
    """
    c, _ = _check_clusters(clusters)
    blocks = list(iter_cluster_weights(c, n_resamples, seed))
    return np.concatenate(blocks) if blocks else np.zeros((0, c.size), dtype=np.float32)


def _per_item(*arrays: ArrayLike) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    if len({a.size for a in out}) != 1:
        raise ValueError("per-item arrays must have the same length")
    if any(np.any(a < 0) or np.any(np.isnan(a)) for a in out):
        raise ValueError("per-item counts must be non-negative numbers")
    return out


def _sign_flip_upper_tail(d: np.ndarray, t: float) -> float:
    """P(sum_i s_i |d_i| >= t) for independent fair signs s_i, by exact convolution (integer |d_i|)."""
    from scipy.stats import binom

    mags, counts = np.unique(np.abs(d[d != 0]).astype(np.int64), return_counts=True)
    # U = sum_v v * X_v with X_v ~ Binomial(m_v, 1/2) is the weight on the + side; T = 2U - sum_v v m_v.
    dist = np.ones(1)
    for v, m in zip(mags, counts, strict=True):
        part = np.zeros(v * m + 1)
        part[:: int(v)] = binom.pmf(np.arange(m + 1), m, 0.5)
        dist = np.convolve(dist, part)
    total = int((mags * counts).sum())
    u_min = (t + total) / 2.0
    return float(dist[int(np.ceil(u_min - 1e-9)) :].sum())


def cluster_mcnemar(
    a_right_b_wrong_per_item: ArrayLike, a_wrong_b_right_per_item: ArrayLike, clips_per_item: ArrayLike
) -> float:
    """Two-sided McNemar test of equal accuracy for clustered paired data.

    Under H0 the two systems are exchangeable within an item, so the item difference
    ``d_i = b_i - c_i`` is as likely to be ``+d`` as ``-d``. The test statistic is ``T = sum_i d_i``
    (``B - C``, the usual McNemar numerator) and its null distribution is that of ``sum_i s_i |d_i|`` for
    fair random signs: the randomisation test over items. Its variance is ``sum_i d_i^2``, so the normal
    approximation ``T^2 / sum_i d_i^2 ~ chi2(1)`` is Durkalski et al.'s (2003) statistic. We use

    - the binomial distribution when every non-zero ``|d_i|`` is the same (then T is a scaled binomial):
      with one clip per item this is exactly the exact McNemar test (``casceq.stats.tests.mcnemar_exact``);
    - the exact distribution by convolution while ``sum_i |d_i| <= EXACT_SUPPORT``;
    - Durkalski's chi-square beyond (thousands of discordant clips: the normal approximation is then good).

    So small counts get an exact (conservative, discrete) p-value rather than an asymptotic one, and no
    discordant item gives p = 1. The p-value is twice the upper tail at ``|T|``, capped at 1, as
    ``mcnemar_exact`` defines it.

    Args:
        a_right_b_wrong_per_item: b_i, int array [G]: clips of item i where only system b is wrong.
        a_wrong_b_right_per_item: c_i, int array [G]: clips of item i where only system a is wrong.
        clips_per_item: n_i, int array [G]: clips of item i (checked: ``b_i + c_i <= n_i``).

    Returns:
        The two-sided p-value in (0, 1].

    Raises:
        ValueError: Arrays of different lengths, negative counts, or more discordant clips than clips.
    """
    from scipy.stats import binom, chi2

    b, c, n = _per_item(a_right_b_wrong_per_item, a_wrong_b_right_per_item, clips_per_item)
    if np.any(b + c > n):
        raise ValueError("an item has more discordant clips than clips")
    d = b - c
    t = abs(float(d.sum()))
    nonzero = np.abs(d[d != 0])
    if nonzero.size == 0:
        return 1.0
    if np.all(nonzero == nonzero[0]):
        # T = |d| * (pos - neg): the count of positive signs is Binomial(pos + neg, 1/2).
        pos, neg = int((d > 0).sum()), int((d < 0).sum())
        p = 2.0 * float(binom.cdf(min(pos, neg), pos + neg, 0.5))
    elif nonzero.sum() <= EXACT_SUPPORT and np.all(nonzero == np.round(nonzero)):
        p = 2.0 * _sign_flip_upper_tail(d, t)
    else:
        p = float(chi2.sf(t * t / float((d * d).sum()), 1))
    return min(p, 1.0)


def design_effect(successes_per_item: ArrayLike, clips_per_item: ArrayLike) -> float:
    """Ratio-estimator design effect of a clustered proportion, truncated at 1.

    ``deff = sum_i (x_i - p n_i)^2 / (N p (1 - p))`` with ``p = sum x / N``, ``N = sum n_i`` (Rao & Scott
    1992, without the small-sample factor ``G / (G - 1)`` so that one clip per item gives exactly 1).
    Values below 1 (negative intra-item correlation) are raised to 1, as Korn & Graubard (1998) cap the
    effective n at N: an interval is never narrower than the one treating clips as independent. At
    ``p`` = 0 or 1 the variance is 0/0 and deff is 1.

    Args:
        successes_per_item: x_i, array [G].
        clips_per_item: n_i, array [G], every n_i >= 1.

    Returns:
        deff >= 1.
    """
    x, n = _per_item(successes_per_item, clips_per_item)
    if np.any(n <= 0) or np.any(x > n):
        raise ValueError("every item needs >= 1 clip and at most as many successes as clips")
    total = n.sum()
    p = x.sum() / total
    binomial = total * p * (1.0 - p)
    if binomial <= 0:
        return 1.0
    return max(1.0, float(((x - p * n) ** 2).sum() / binomial))


def clustered_proportion_ci(
    successes_per_item: ArrayLike, clips_per_item: ArrayLike, level: float = 0.95
) -> tuple[float, float]:
    """Wilson interval of a proportion over clips, with the variance of item clustering.

    The Wilson interval is computed on the effective sample size ``n_eff = N / deff`` with ``p`` unchanged
    (``k_eff = p n_eff``; see :func:`design_effect`). With one clip per item (or no intra-item correlation)
    ``deff = 1`` and this is the plain Wilson interval of ``sum x`` successes in ``N`` clips.

    Args:
        successes_per_item: x_i, array [G] of successes (e.g. correct clips) per item.
        clips_per_item: n_i, array [G] of clips per item (>= 1 each).
        level: Two-sided coverage.

    Returns:
        ``(lower, upper)`` in [0, 1].
    """
    x, n = _per_item(successes_per_item, clips_per_item)
    if x.size == 0:
        raise ValueError("no items")
    deff = design_effect(x, n)
    total = n.sum()
    n_eff = total / deff
    lo, hi = wilson_interval(x.sum() / total * n_eff, n_eff, level)
    return float(lo), float(hi)


def clustered_binomial_greater(successes_per_item: ArrayLike, clips_per_item: ArrayLike, p0: float) -> float:
    """One-sided test of ``p > p0`` for a clustered proportion: the binomial test on the effective counts.

    The counts are deflated by the design effect (``k_eff = k / deff``, ``n_eff = n / deff``, see
    :func:`design_effect`) and the p-value is the binomial upper tail ``P(X >= k_eff)``, written as the
    regularised incomplete beta ``I_p0(k_eff, n_eff - k_eff + 1)`` so that non-integer effective counts need
    no rounding. With one clip per item (deff 1) it is exactly ``scipy.stats.binomtest(k, n, p0,
    alternative="greater")``.

    Args:
        successes_per_item: x_i, array [G].
        clips_per_item: n_i, array [G] (items with 0 clips are dropped first).
        p0: The null proportion, in (0, 1).

    Returns:
        The p-value in [0, 1].
    """
    from scipy.special import betainc

    x, n = _per_item(successes_per_item, clips_per_item)
    keep = n > 0
    x, n = x[keep], n[keep]
    if x.size == 0:
        raise ValueError("no items with clips")
    deff = design_effect(x, n)
    k, total = x.sum() / deff, n.sum() / deff
    return 1.0 if k <= 0 else float(betainc(k, total - k + 1.0, p0))


@dataclass(frozen=True)
class Difference:
    """A difference of two clustered proportions on the same items, with its Wald interval.

    Attributes:
        estimate: ``p_a - p_b``.
        se: Its ratio-estimator standard error.
        ci: ``(lower, upper)`` (not clipped; a difference lies in [-1, 1]).
        n_items: G, items with at least one clip.
        n_clips: Total clips of a (and of b when they share the design).
    """

    estimate: float
    se: float
    ci: tuple[float, float]
    n_items: int
    n_clips: int


def paired_difference_ci(
    x_a_per_item: ArrayLike,
    x_b_per_item: ArrayLike,
    clips_per_item: ArrayLike,
    level: float = 0.95,
    clips_per_item_b: ArrayLike | None = None,
) -> Difference:
    """Difference of two proportions measured on the same items (two systems, or two conditions).

    ``p_a = sum x_a / N_a``, ``p_b = sum x_b / N_b``; the variance of ``p_a - p_b`` is the linearised
    ratio-estimator variance ``G / (G - 1) * sum_i z_i^2`` with
    ``z_i = (x_a,i - p_a n_a,i) / N_a - (x_b,i - p_b n_b,i) / N_b`` (Obuchowski 1998): it keeps the
    covariance between the two proportions that pairing on the same items creates. The interval is
    ``estimate +- z_(1+level)/2 * se``.

    Args:
        x_a_per_item: Successes of a per item, array [G].
        x_b_per_item: Successes of b per item, array [G] (same item order).
        clips_per_item: Clips per item of a, array [G] (also of b unless ``clips_per_item_b``).
        level: Two-sided coverage.
        clips_per_item_b: Clips per item of b when they differ from a's (e.g. two conditions with
            different voices); items with 0 clips in one arm still count for the other.

    Returns:
        The :class:`Difference`.
    """
    from scipy.stats import norm

    xa, xb, na = _per_item(x_a_per_item, x_b_per_item, clips_per_item)
    nb = na if clips_per_item_b is None else _per_item(clips_per_item_b, na)[0]
    if np.any(xa > na) or np.any(xb > nb) or na.sum() <= 0 or nb.sum() <= 0:
        raise ValueError("successes exceed clips, or an arm has no clips")
    g = int(((na + nb) > 0).sum())
    pa, pb = xa.sum() / na.sum(), xb.sum() / nb.sum()
    z = (xa - pa * na) / na.sum() - (xb - pb * nb) / nb.sum()
    var = g / (g - 1) * float((z * z).sum()) if g > 1 else float("nan")
    se = float(np.sqrt(var))
    half = float(norm.isf((1.0 - level) / 2.0)) * se
    est = float(pa - pb)
    return Difference(est, se, (est - half, est + half), g, int(na.sum()))


def per_item_sums(values: ArrayLike, clusters: ArrayLike, n_items: int | None = None) -> np.ndarray:
    """Sum row values over the rows of each item.

    Args:
        values: array [..., n] of per-row values (e.g. bool correctness [S, n]).
        clusters: int array [n] of item codes.
        n_items: G; default ``max(clusters) + 1``.

    Returns:
        int64 array [..., G] for integer/bool input, float64 otherwise.
    """
    v = np.asarray(values)
    c, g = _check_clusters(clusters)
    g = g if n_items is None else n_items
    if v.shape[-1] != c.size:
        raise ValueError("values and clusters must have the same number of rows")
    dtype = np.int64 if v.dtype.kind in "biu" else np.float64
    # One reduceat over rows sorted by item sums every array at once; it accumulates in ``dtype`` without
    # first copying ``values`` into that (wider) type.
    order = np.argsort(c, kind="stable")
    sorted_c = c[order]
    starts = np.flatnonzero(np.r_[True, sorted_c[1:] != sorted_c[:-1]])
    out = np.zeros((*v.shape[:-1], g), dtype=dtype)
    gathered = v[..., order]
    if gathered.dtype == bool:
        gathered = gathered.view(np.uint8)
    out[..., sorted_c[starts]] = np.add.reduceat(gathered, starts, axis=-1, dtype=dtype)
    return out
