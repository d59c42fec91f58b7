"""The statistics core against independent references: sklearn (kappa), statsmodels (McNemar, BH, Wilson)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from casceq.stats.agreement import (
    bootstrap_indices,
    kappa,
    pairwise_kappa,
    percentile_interval,
    resample_weights,
)
from casceq.stats.errors import chance_overlap, disagreements, pair_counts
from casceq.stats.tests import benjamini_hochberg, mcnemar_exact, wilson_interval
from casceq.types import INVALID

LABELS = ["neg", "pos", "neutral", "joy", "anger", "fear", "sad", INVALID]


def sk_kappa(a, b) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(a, b))


def same_or_close(x: float, y: float) -> bool:
    return (np.isnan(x) and np.isnan(y)) or bool(np.isclose(x, y, rtol=0, atol=1e-12))


@st.composite
def label_pairs(draw, max_n: int = 40):
    k = draw(st.integers(1, len(LABELS)))
    n = draw(st.integers(1, max_n))
    pool = st.sampled_from(LABELS[:k])
    return draw(st.lists(pool, min_size=n, max_size=n)), draw(st.lists(pool, min_size=n, max_size=n))


@settings(max_examples=300, deadline=None)
@given(label_pairs())
def test_kappa_equals_sklearn(pair):
    a, b = pair
    assert same_or_close(kappa(a, b), sk_kappa(a, b))


@settings(max_examples=100, deadline=None)
@given(label_pairs())
def test_kappa_is_symmetric_and_one_on_itself(pair):
    a, b = pair
    assert same_or_close(kappa(a, b), kappa(b, a))
    expected_self = np.nan if len(set(a)) == 1 else 1.0  # p_e = 1 only for a constant rater
    assert same_or_close(kappa(a, a), expected_self)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (["pos"], ["pos"], np.nan),  # n = 1: p_e = 1, undefined as in sklearn
        (["pos"], ["neg"], 0.0),
        (["pos"] * 3, ["pos"] * 3, np.nan),  # one class only, identical
        ([INVALID] * 4, [INVALID] * 4, np.nan),  # all INVALID
        (["pos", "neg"], ["pos", "neg"], 1.0),
        (["pos", "neg"], ["neg", "pos"], -1.0),
        (["pos", "pos", "neg"], ["pos", "neg", "neg"], 0.4),
    ],
)
def test_kappa_degenerate_and_tiny_cases(a, b, expected):
    assert same_or_close(kappa(a, b), sk_kappa(a, b))
    assert same_or_close(kappa(a, b), expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 7), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_bootstrap_kappas_equal_a_sklearn_loop_over_the_same_indices(n_classes, n, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_classes, size=(4, n))
    codes[1] = np.where(rng.random(n) < 0.6, codes[0], codes[1])  # some agreement
    pairs = np.array([[0, 1], [0, 2], [1, 3], [2, 3]])
    idx = bootstrap_indices(n, 25, seed)
    ours = pairwise_kappa(codes, pairs, n_classes, resample_weights(idx, n))
    ref = np.array([[sk_kappa(codes[a][row], codes[b][row]) for a, b in pairs] for row in idx])
    assert ours.shape == (25, 4)
    assert all(same_or_close(x, y) for x, y in zip(ours.ravel(), ref.ravel(), strict=True))


def test_bootstrap_indices_are_the_documented_numpy_draws():
    for n, b, seed in [(1, 5, 0), (872, 100, 0), (2000, 30, 123)]:
        reference = np.random.default_rng(seed).integers(0, n, size=(b, n))
        assert np.array_equal(bootstrap_indices(n, b, seed), reference)
    assert not np.array_equal(bootstrap_indices(50, 10, 0), bootstrap_indices(50, 10, 1))


def test_resample_weights_count_each_row():
    idx = bootstrap_indices(37, 150, 5)  # 150 rows: crosses the block boundary
    w = resample_weights(idx, 37)
    assert w.shape == (150, 37)
    assert np.array_equal(w, np.stack([np.bincount(r, minlength=37) for r in idx]))


def test_percentile_interval_matches_numpy_and_skips_undefined():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    assert np.allclose(percentile_interval(x), np.percentile(x, [2.5, 97.5], axis=0).T)
    x[:50, 1] = np.nan
    x[:, 2] = np.nan
    ci = percentile_interval(x)
    assert np.allclose(ci[1], np.percentile(x[50:, 1], [2.5, 97.5]))
    assert np.isnan(ci[2]).all()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 80), st.integers(0, 80))
def test_mcnemar_equals_statsmodels_exact(b, c):
    expected = mcnemar([[10, b], [c, 7]], exact=True).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_mcnemar_vectorised_and_edge_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 * 0.5**10)
    p = mcnemar_exact([0, 3, 20], [0, 9, 1])
    assert p.shape == (3,)
    assert p[2] < 0.001 < p[1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=60))
def test_bh_equals_statsmodels_and_is_monotone(pvalues):
    p = np.array(pvalues)
    q = benjamini_hochberg(p)
    assert np.allclose(q, multipletests(p, method="fdr_bh")[1], rtol=1e-12, atol=0)
    order = np.argsort(p, kind="mergesort")
    assert np.all(np.diff(q[order]) >= -1e-15)  # q is non-decreasing in p
    assert np.all(q >= p - 1e-15) and np.all(q <= 1.0)


def test_bh_known_values_and_empty():
    # sorted p 0.01, 0.03, 0.04, 0.2 -> p * 4 / rank = 0.04, 0.06, 0.0533, 0.2 -> running min from the top
    assert np.allclose(benjamini_hochberg([0.01, 0.04, 0.03, 0.2]), [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert benjamini_hochberg([]).size == 0
    with pytest.raises(ValueError):
        benjamini_hochberg([0.1, np.nan])


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 500), st.data())
def test_wilson_equals_statsmodels(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    ref_lo, ref_hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert float(lo) == pytest.approx(ref_lo, abs=1e-12)
    assert float(hi) == pytest.approx(ref_hi, abs=1e-12)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 7), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_pair_counts_equal_a_plain_loop(n_classes, n, seed):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, n_classes, n)
    codes = rng.integers(0, n_classes + 1, size=(3, n))  # code n_classes = INVALID, never correct
    correct = codes == gold
    pairs = np.array([[0, 1], [1, 2], [2, 0]])
    got = pair_counts(codes, correct, pairs)
    for j, (a, b) in enumerate(pairs):
        both = [i for i in range(n) if not correct[a, i] and not correct[b, i]]
        assert got.both_wrong[j] == len(both)
        assert got.same_wrong[j] == sum(codes[a, i] == codes[b, i] for i in both)
        assert got.a_right_b_wrong[j] == sum(correct[a, i] and not correct[b, i] for i in range(n))
        assert got.a_wrong_b_right[j] == sum(not correct[a, i] and correct[b, i] for i in range(n))


def test_two_invalids_are_the_same_wrong_answer():
    codes = np.array([[2, 2, 0], [2, 1, 1]])  # code 2 = INVALID; gold is 0 everywhere
    correct = codes == 0
    got = pair_counts(codes, correct, np.array([[0, 1]]))
    assert (got.both_wrong[0], got.same_wrong[0]) == (2, 1)


def test_chance_overlap():
    assert chance_overlap(2) == 1.0
    assert chance_overlap(5) == 0.25
    assert chance_overlap(7) == pytest.approx(1 / 6)
    assert chance_overlap(1) is None


def test_disagreements_groups():
    d = disagreements(
        ("e1", "e2", "e3", "e4", "e5"),
        ("pos", "neg", INVALID, "neg", "pos"),
        ("pos", "pos", INVALID, "neutral", "neg"),
        (True, False, False, False, True),
        (True, True, False, False, False),
    )
    assert d.labels_differ == ("e2", "e4", "e5")
    assert d.both_wrong_same == ("e3",)
    assert d.both_wrong_different == ("e4",)
    assert d.a_right_b_wrong == ("e5",)
    assert d.a_wrong_b_right == ("e2",)
