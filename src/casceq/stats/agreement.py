"""Cohen's kappa between systems' predicted labels, for every pair at once, with a vectorised bootstrap.

Labels are integer codes ``0 .. K-1`` (the task's labels plus ``INVALID`` as a category of its own). Kappa is
computed from counts exactly as ``sklearn.metrics.cohen_kappa_score`` does::

    kappa = 1 - observed_disagreement / expected_disagreement
          = 1 - n (n - agree) / (n^2 - sum_k count_a[k] count_b[k])

Undefined kappa. When the expected disagreement is zero (p_e = 1: both systems gave one and the same label
to every example) kappa is 0/0. Like sklearn (``replace_undefined_by=nan``) we return NaN, which the JSON
output writes as ``null``; we do not report 1.0, because with no variation in either rater there is no
evidence of agreement beyond chance. Bootstrap resamples with undefined kappa are left out of the percentile
interval; the interval is ``(nan, nan)`` when every resample is undefined.

The bootstrap resamples items, not rows and not pairs (:func:`bootstrap_pairwise_kappa`): G items are drawn
with replacement by ``numpy.random.default_rng(seed).integers(0, G, size=(B, G))`` and every row (clip) of a
drawn item comes along. One draw serves every pair of a task and condition, so intervals of different pairs
(and differences between them) come from the same resamples. With one row per item this is the row bootstrap
of earlier versions, resample for resample. Kappa's counts are sums over rows, so they are first summed per
item (``X [G, columns]``) and each block of item multiplicities ``W [b, G]`` gives every count of b resamples
as one matrix product ``W @ X``: memory grows with G and the block, not with rows x resamples, and there is
no Python loop over resamples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from casceq.stats.cluster import iter_item_weights, per_item_sums

CI_LEVEL = 0.95
"""Coverage of the percentile bootstrap intervals."""

WEIGHT_BLOCK = 64
"""Resamples per block when turning index rows into multiplicities (a cache-size choice, not a statistic)."""


def encode(labels: Sequence[str], categories: Sequence[str]) -> np.ndarray:
    """Integer codes of string labels.

    Args:
        labels: n label strings.
        categories: The K allowed labels in code order (every label must be one of them).

    Returns:
        int64 array [n] with values in ``0 .. K-1``.

    Raises:
        KeyError: A label is not in ``categories`` (callers turn this into an ``InputError``).
    """
    index = {c: i for i, c in enumerate(categories)}
    return np.fromiter((index[x] for x in labels), dtype=np.int64, count=len(labels))


def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """Draw the shared resampling matrix of one task and condition.

    Args:
        n: Number of examples.
        n_resamples: Number of bootstrap resamples B.
        seed: Seed of ``numpy.random.default_rng``; a fresh generator per call, so the resamples of a task
            depend only on ``(seed, n, B)`` and not on which other tasks or systems are compared.

    Returns:
        int32 array [B, n]: row r lists the (sorted-order) example positions drawn for resample r. The
        values are those of ``default_rng(seed).integers(0, n, size=(B, n))`` (int64); int32 draws the same
        stream faster (asserted in the tests).
    """
    if n >= 2**31:
        raise ValueError("too many examples for int32 indices")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n), dtype=np.int32)


def resample_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """Multiplicity of every example in every resample.

    Args:
        indices: int array [B, n_draws] from :func:`bootstrap_indices`.
        n: Number of examples (columns of the result).

    Returns:
        float32 array [B, n]; row r counts how often each example occurs in resample r (rows sum to n_draws).
        float32 holds these small integers exactly and halves the cost of the matrix products that use them.
    """
    b = indices.shape[0]
    out = np.empty((b, n), dtype=np.float32)
    # Offsetting row r of a block by r*n makes one flat bincount compute a whole block of per-row histograms.
    # Blocks of WEIGHT_BLOCK rows keep the counting array in cache (2x faster than one bincount over all
    # rows at paper scale); the loop runs B / WEIGHT_BLOCK times, never once per resample.
    offsets = (np.arange(WEIGHT_BLOCK, dtype=np.intp) * n)[:, None]
    for start in range(0, b, WEIGHT_BLOCK):
        block = indices[start : start + WEIGHT_BLOCK]
        flat = (block + offsets[: len(block)]).ravel()
        out[start : start + len(block)] = np.bincount(flat, minlength=len(block) * n).reshape(len(block), n)
    return out


def pairwise_kappa(
    codes: np.ndarray, pairs: np.ndarray, n_categories: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Cohen's kappa of many system pairs, on the data itself or on weighted resamples.

    Args:
        codes: int array [S, n], label codes of S systems on the same n examples.
        pairs: int array [P, 2] of system row indices (a, b).
        n_categories: K, the number of label codes (codes lie in ``0 .. K-1``).
        weights: Optional float array [B, n] of example multiplicities (see :func:`resample_weights`);
            None means every example once (B = 1).

    Returns:
        float64 array [B, P] (or [1, P] without weights); NaN where kappa is undefined (p_e = 1).
    """
    s, n = codes.shape
    if n >= 2**24:
        raise ValueError("more than 2**24 examples: float32 counts would no longer be exact")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    w = np.ones((1, n), dtype=np.float32) if weights is None else weights.astype(np.float32, copy=False)
    # Columns: one-hot indicators of (system, label), then each pair's "same label" indicator. One matrix
    # product W @ X then yields every marginal and agreement count of every resample. The counts are integers
    # <= n < 2**24, so float32 sums are exact (and twice as fast as float64).
    x = np.zeros((n, s * n_categories + len(pairs)), dtype=np.float32)
    x[np.arange(n)[:, None], np.arange(s) * n_categories + codes.T] = 1.0
    x[:, s * n_categories :] = (codes[pairs[:, 0]] == codes[pairs[:, 1]]).T
    counts = (w @ x).astype(np.float64)
    total = w.sum(axis=1, keepdims=True, dtype=np.float64)
    return _kappa_from_counts(counts, total, s, n_categories, pairs)


def bootstrap_pairwise_kappa(
    codes: np.ndarray,
    pairs: np.ndarray,
    n_categories: int,
    clusters: np.ndarray,
    n_resamples: int,
    seed: int,
    block: int | None = None,
) -> np.ndarray:
    """Kappa of many pairs on B item-cluster bootstrap resamples, computed a block of resamples at a time.

    Args:
        codes: int array [S, n], label codes of S systems on the same n rows.
        pairs: int array [P, 2] of system row indices (a, b).
        n_categories: K.
        clusters: int array [n] of item codes ``0 .. G-1`` (``casceq.stats.cluster.item_index``).
        n_resamples: B.
        seed: Seed of the item draws (``casceq.stats.cluster.iter_item_weights``).
        block: Resamples per block (default ``casceq.stats.cluster.auto_block``: about 16 MB of weights);
            memory is ``block x G``, and results do not depend on it.

    Returns:
        float64 array [B, P]; NaN where a resample's kappa is undefined.
    """
    s, n = codes.shape
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    clusters = np.asarray(clusters, dtype=np.int64)
    g = int(clusters.max()) + 1
    onehot = np.zeros((s * n_categories + len(pairs), n), dtype=np.uint8)
    onehot[np.arange(s)[:, None] * n_categories + codes, np.arange(n)] = 1
    onehot[s * n_categories :] = codes[pairs[:, 0]] == codes[pairs[:, 1]]
    per_item = per_item_sums(np.vstack([onehot, np.ones((1, n), dtype=np.uint8)]), clusters, g)
    # Resampled counts reach sum_i w_i x_i <= G * max(x_i); float32 sums stay exact below 2**24.
    exact32 = g * int(per_item.max()) < 2**24
    x = per_item.T.astype(np.float32 if exact32 else np.float64)
    out = np.empty((n_resamples, len(pairs)))
    start = 0
    for w in iter_item_weights(g, n_resamples, seed, block):
        counts = (w.astype(x.dtype, copy=False) @ x).astype(np.float64)
        out[start : start + len(w)] = _kappa_from_counts(
            counts[:, :-1], counts[:, -1:], s, n_categories, pairs
        )
        start += len(w)
    return out


def _kappa_from_counts(
    counts: np.ndarray, total: np.ndarray, s: int, n_categories: int, pairs: np.ndarray
) -> np.ndarray:
    """Kappa [B, P] from per-resample counts [B, S*K + P] (margins, then agreements) and totals [B, 1]."""
    margins = counts[:, : s * n_categories].reshape(counts.shape[0], s, n_categories)
    agree = counts[:, s * n_categories :]
    dot = np.einsum("bpk,bpk->bp", margins[:, pairs[:, 0]], margins[:, pairs[:, 1]])
    expected_disagreement = total * total - dot
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = 1.0 - total * (total - agree) / expected_disagreement
    return np.where(expected_disagreement > 0, kappa, np.nan)


def kappa(labels_a: Sequence[str] | np.ndarray, labels_b: Sequence[str] | np.ndarray) -> float:
    """Cohen's kappa of two label sequences (strings or codes); NaN when undefined (see module docstring).

    Args:
        labels_a: n labels of system a.
        labels_b: n labels of system b, aligned with ``labels_a``.

    Returns:
        Kappa in [-1, 1], or NaN.
    """
    a = np.asarray(labels_a)
    b = np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError("kappa needs two non-empty label sequences of equal length")
    categories, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    return float(pairwise_kappa(codes.reshape(2, -1), np.array([[0, 1]]), len(categories))[0, 0])


def percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> np.ndarray:
    """Percentile bootstrap interval of each column, ignoring undefined (NaN) resamples.

    Args:
        samples: float array [B, P] of resampled statistics.
        level: Two-sided coverage.

    Returns:
        float array [P, 2] of (lower, upper) with numpy's default linear interpolation between order
        statistics; ``(nan, nan)`` for a column without any defined resample.
    """
    tail = 100.0 * (1.0 - level) / 2.0
    out = np.full((samples.shape[1], 2), np.nan)
    defined = ~np.isnan(samples)
    full = defined.all(axis=0)
    if full.any():
        out[full] = np.percentile(samples[:, full], [tail, 100.0 - tail], axis=0).T
    for j in np.flatnonzero(~full & defined.any(axis=0)):
        out[j] = np.percentile(samples[defined[:, j], j], [tail, 100.0 - tail])
    return out
