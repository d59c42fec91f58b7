"""Item-clustered statistics against independent implementations written here (loops, hand computations)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import chi2, norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from casceq.stats.agreement import bootstrap_indices, resample_weights
from casceq.stats.cluster import (
    EXACT_SUPPORT,
    cluster_bootstrap_weights,
    cluster_mcnemar,
    clustered_proportion_ci,
    design_effect,
    item_index,
    iter_cluster_weights,
    paired_difference_ci,
    per_item_sums,
)


def test_item_index_codes_in_order_of_first_appearance():
    codes, g = item_index(["b", "a", "b", "c", "a"])
    assert g == 3
    assert codes.tolist() == [0, 1, 0, 2, 1]


def loop_cluster_weights(clusters: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Plain-loop item resampler: draw G items per resample, give each row its item's draw count."""
    g = int(clusters.max()) + 1
    draws = np.random.default_rng(seed).integers(0, g, size=(n_resamples, g), dtype=np.int32)
    out = np.zeros((n_resamples, clusters.size))
    for r in range(n_resamples):
        count = {}
        for item in draws[r]:
            count[int(item)] = count.get(int(item), 0) + 1
        for row, item in enumerate(clusters):
            out[r, row] = count.get(int(item), 0)
    return out


def test_cluster_weights_equal_a_plain_loop_resampler():
    clusters = np.array([0, 0, 1, 2, 2, 2, 3, 1, 4, 4])
    w = cluster_bootstrap_weights(clusters, 150, seed=3)
    assert w.shape == (150, clusters.size)
    np.testing.assert_array_equal(w, loop_cluster_weights(clusters, 150, 3))
    # Rows of one item always travel together; every resample draws G items.
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 2] == w[:, 7])
    items = per_item_sums(np.ones(clusters.size, dtype=int), clusters)
    np.testing.assert_array_equal(w[:, [0, 2, 3, 6, 8]].sum(axis=1), np.full(150, 5.0))
    assert items.tolist() == [2, 2, 3, 1, 2]


def test_one_clip_per_item_is_the_row_bootstrap_of_earlier_versions():
    n = 37
    old = resample_weights(bootstrap_indices(n, 300, 11), n)
    np.testing.assert_array_equal(cluster_bootstrap_weights(np.arange(n), 300, 11), old)


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_blocked_weights_do_not_depend_on_block_size(block):
    clusters = np.repeat(np.arange(30), 6)
    full = cluster_bootstrap_weights(clusters, 200, 5)
    blocks = list(iter_cluster_weights(clusters, 200, 5, block=block))
    assert max(len(b) for b in blocks) <= block
    np.testing.assert_array_equal(np.concatenate(blocks), full)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (1, 0), (3, 9), (12, 4), (25, 25), (40, 3), (0, 17)])
def test_cluster_mcnemar_with_one_clip_per_item_is_the_exact_mcnemar_test(b, c):
    g = b + c + 5
    per_b = np.r_[np.ones(b), np.zeros(c + 5)]
    per_c = np.r_[np.zeros(b), np.ones(c), np.zeros(5)]
    p = cluster_mcnemar(per_b, per_c, np.ones(g))
    assert p == pytest.approx(mcnemar([[0, b], [c, 0]], exact=True).pvalue, abs=1e-12)


def brute_force_sign_flip(d: np.ndarray) -> float:
    """Two-sided randomisation p by enumerating all 2^m sign patterns of the non-zero item differences."""
    nz = np.abs(d[d != 0])
    t = abs(d.sum())
    sums = [
        sum(s * v for s, v in zip(signs, nz, strict=True))
        for signs in itertools.product([1, -1], repeat=nz.size)
    ]
    return min(1.0, 2.0 * float(np.mean(np.array(sums) >= t - 1e-9)))


def test_cluster_mcnemar_hand_worked_example():
    # Item differences d = b - c = (2, -1, 1, 0): |d| = (2, 1, 1), T = 2. Of the 8 sign patterns the sums are
    # 4, 2, 2, 0, 0, -2, -2, -4, so P(T >= 2) = 3/8 and the two-sided p = 3/4.
    b, c, n = [2, 0, 1, 1], [0, 1, 0, 1], [6, 6, 6, 6]
    assert cluster_mcnemar(b, c, n) == pytest.approx(0.75, abs=1e-12)


def test_cluster_mcnemar_exact_path_equals_enumeration():
    rng = np.random.default_rng(0)
    for _ in range(40):
        g = int(rng.integers(3, 13))
        n = rng.integers(1, 7, size=g)
        b = rng.binomial(n, 0.3)
        c = rng.binomial(n - b, 0.3)
        assert cluster_mcnemar(b, c, n) == pytest.approx(brute_force_sign_flip(b - c), abs=1e-10)


def test_cluster_mcnemar_large_support_uses_durkalski_chi_square():
    rng = np.random.default_rng(1)
    g = 4000
    n = np.full(g, 6)
    b = rng.binomial(n, 0.4)
    c = rng.binomial(n - b, 0.4)
    d = b - c
    assert np.abs(d).sum() > EXACT_SUPPORT
    # Durkalski et al. (2003), eq. for X^2: (sum_i (b_i - c_i))^2 / sum_i (b_i - c_i)^2 on 1 df.
    num = sum(int(x) for x in d) ** 2
    den = sum(int(x) ** 2 for x in d)
    assert cluster_mcnemar(b, c, n) == pytest.approx(float(chi2.sf(num / den, 1)), rel=1e-9)


def test_cluster_mcnemar_exact_and_asymptotic_paths_agree_near_the_switch():
    rng = np.random.default_rng(2)
    g = 900
    n = np.full(g, 6)
    b = rng.binomial(n, 0.3)
    c = rng.binomial(n - b, 0.25)
    d = b - c
    assert np.abs(d).sum() <= EXACT_SUPPORT
    exact = cluster_mcnemar(b, c, n)
    durk = float(chi2.sf(d.sum() ** 2 / (d * d).sum(), 1))
    assert exact == pytest.approx(durk, rel=0.15)


def test_cluster_mcnemar_rejects_impossible_counts():
    with pytest.raises(ValueError):
        cluster_mcnemar([3], [2], [4])


def test_clustered_wilson_with_one_clip_per_item_is_plain_wilson():
    x = np.r_[np.ones(17), np.zeros(23)]
    lo, hi = clustered_proportion_ci(x, np.ones(40))
    ref = proportion_confint(17, 40, method="wilson")
    assert (lo, hi) == pytest.approx(ref, abs=1e-12)


def test_clustered_wilson_with_identical_clips_is_wilson_over_items():
    # Every item's 6 clips share one outcome: the data hold 14 / 40 independent successes, not 84 / 240.
    y = np.r_[np.ones(14), np.zeros(26)]
    lo, hi = clustered_proportion_ci(6 * y, np.full(40, 6))
    assert (lo, hi) == pytest.approx(proportion_confint(14, 40, method="wilson"), abs=1e-12)
    assert design_effect(6 * y, np.full(40, 6)) == pytest.approx(6.0)


def test_design_effect_by_hand_and_truncation():
    # x = (2, 0, 1), n = (2, 2, 2): p = 1/2, sum (x - p n)^2 = 1 + 1 + 0 = 2, N p (1 - p) = 6/4 -> deff 4/3.
    assert design_effect([2, 0, 1], [2, 2, 2]) == pytest.approx(4 / 3)
    # Perfectly balanced items (negative intra-item correlation) would give deff 0; truncated at 1.
    assert design_effect([1, 1, 1], [2, 2, 2]) == 1.0
    assert design_effect([0, 0], [3, 1]) == 1.0


def test_paired_difference_one_clip_per_item_is_the_paired_wald_interval():
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 2, 60), rng.integers(0, 2, 60)
    diff = paired_difference_ci(a, b, np.ones(60))
    d = a - b
    se = np.std(d, ddof=1) / np.sqrt(60)
    assert diff.estimate == pytest.approx(d.mean())
    assert diff.se == pytest.approx(se)
    assert diff.ci == pytest.approx((d.mean() - norm.isf(0.025) * se, d.mean() + norm.isf(0.025) * se))
    assert (diff.n_items, diff.n_clips) == (60, 60)


def test_paired_difference_matches_obuchowski_variance_written_out():
    rng = np.random.default_rng(5)
    k = 25
    n = rng.integers(1, 7, size=k)
    x1 = rng.binomial(n, 0.7)
    x2 = rng.binomial(n, 0.6)
    big_n = n.sum()
    p1, p2 = x1.sum() / big_n, x2.sum() / big_n
    # Obuchowski (1998), eqs. for var(p_j) and cov(p_1, p_2) of clustered correlated proportions.
    v1 = k / (k - 1) * sum((x1[i] - n[i] * p1) ** 2 for i in range(k)) / big_n**2
    v2 = k / (k - 1) * sum((x2[i] - n[i] * p2) ** 2 for i in range(k)) / big_n**2
    cov = k / (k - 1) * sum((x1[i] - n[i] * p1) * (x2[i] - n[i] * p2) for i in range(k)) / big_n**2
    diff = paired_difference_ci(x1, x2, n)
    assert diff.estimate == pytest.approx(p1 - p2)
    assert diff.se == pytest.approx(np.sqrt(v1 + v2 - 2 * cov))


def test_paired_difference_se_close_to_cluster_bootstrap_se():
    rng = np.random.default_rng(6)
    g = 80
    n = np.full(g, 6)
    skill = rng.random(g)
    x1 = rng.binomial(n, skill)
    x2 = rng.binomial(n, np.clip(skill - 0.1, 0, 1))
    clusters = np.repeat(np.arange(g), 6)
    w_items = cluster_bootstrap_weights(clusters, 2000, 0)[:, ::6]  # the first row of each item
    boot = (w_items @ x1 - w_items @ x2) / (w_items @ n)
    diff = paired_difference_ci(x1, x2, n)
    assert diff.se == pytest.approx(float(np.std(boot)), rel=0.1)


def test_clustered_binomial_one_clip_per_item_is_the_exact_binomial_test():
    from scipy.stats import binomtest

    from casceq.stats.cluster import clustered_binomial_greater

    for k, m, p0 in [(0, 10, 0.25), (7, 20, 0.25), (12, 20, 1 / 3), (20, 20, 0.5), (3, 3, 0.9)]:
        x = np.r_[np.ones(k), np.zeros(m - k)]
        expected = binomtest(k, m, p0, alternative="greater").pvalue
        assert clustered_binomial_greater(x, np.ones(m), p0) == pytest.approx(expected, abs=1e-12)


def test_clustered_binomial_with_identical_clips_is_the_binomial_test_over_items():
    from scipy.stats import binomtest

    from casceq.stats.cluster import clustered_binomial_greater

    # 9 of 20 items share an error label across all 4 of their clips: 9 independent observations, not 36.
    y = np.r_[np.ones(9), np.zeros(11)]
    p = clustered_binomial_greater(4 * y, np.full(20, 4), 0.25)
    assert p == pytest.approx(binomtest(9, 20, 0.25, alternative="greater").pvalue, abs=1e-12)
    assert p > binomtest(36, 80, 0.25, alternative="greater").pvalue * 100


def test_per_item_sums_equal_a_loop_for_unsorted_items_and_empty_items():
    rng = np.random.default_rng(8)
    clusters = rng.integers(0, 7, size=50)  # items interleaved, some codes possibly absent
    values = rng.random((3, 2, 50)) < 0.4
    out = per_item_sums(values, clusters, n_items=9)
    expected = np.zeros((3, 2, 9), dtype=np.int64)
    for row, c in enumerate(clusters):
        expected[:, :, c] += values[:, :, row]
    np.testing.assert_array_equal(out, expected)
    floats = rng.random(50)
    assert per_item_sums(floats, clusters) == pytest.approx(
        [floats[clusters == c].sum() for c in range(clusters.max() + 1)]
    )
