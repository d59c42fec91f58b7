"""The speech LLM's accuracy gap to its matched cascade: paired difference and its bootstrap interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from casceq.io.interchange import write_predictions
from casceq.train.evaluate import accuracy_gaps
from casceq.types import Prediction


def _preds(
    system: str, correct: list[bool], task: str = "sst2", condition: str = "clean"
) -> list[Prediction]:
    out = []
    for i, c in enumerate(correct):
        label = "positive" if c else "negative"
        out.append(Prediction(system, task, condition, f"ex{i}@v", label, label, "positive", correct=c))
    return out


def test_gap_is_the_paired_difference_with_an_interval_around_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = list(rng.random(200) < 0.8)
    b = list(rng.random(200) < 0.6)
    path = tmp_path / "p.jsonl"
    write_predictions(path, _preds("S", a) + _preds("C", b) + _preds("S", [False] * 5, condition="babble@0"))
    (gap,) = accuracy_gaps([path], "S", "C")
    assert gap.task == "sst2" and gap.n == 200
    assert gap.gap == np.mean(np.array(a, float) - np.array(b, float))
    assert gap.low < gap.gap < gap.high
    # The paired interval's half-width is near 1.96 x the SE of the mean paired difference.
    d = np.array(a, float) - np.array(b, float)
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert abs((gap.high - gap.low) / 2 - 1.96 * se) < 0.25 * 1.96 * se


def test_identical_systems_have_a_zero_width_interval_and_only_shared_clips_count(tmp_path: Path) -> None:
    same = [True, False, True, True, False, True]
    path = tmp_path / "p.jsonl"
    write_predictions(path, _preds("S", same) + _preds("C", [*same, True, True]))
    (gap,) = accuracy_gaps([path], "S", "C")
    assert gap.n == len(same) and gap.gap == 0.0 and gap.low == 0.0 and gap.high == 0.0


def test_voices_of_an_item_are_one_unit(tmp_path: Path) -> None:
    from statsmodels.stats.proportion import proportion_confint

    from casceq.train.evaluate import accuracy_table

    rng = np.random.default_rng(2)
    a_item, b_item = rng.random(60) < 0.8, rng.random(60) < 0.6
    rows = []
    for system, right in (("S", a_item), ("C", b_item)):
        for i, c in enumerate(right):
            for v in ("v1", "v2"):  # both voices of an item answer alike
                label = "positive" if c else "negative"
                rows.append(
                    Prediction(system, "sst2", "clean", f"ex{i}@{v}", label, label, "positive", correct=c)
                )
    path = tmp_path / "p.jsonl"
    write_predictions(path, rows)
    (gap,) = accuracy_gaps([path], "S", "C", n_resamples=300, seed=5)
    # independent loop: draw 60 items (default_rng(5).integers) numbered in the order the sorted clip ids first
    # name them (ex0, ex1, ex10, ...), mean paired difference over their clips
    order = sorted(range(60), key=lambda i: f"ex{i}@v1")
    d = (a_item.astype(float) - b_item.astype(float))[order]
    idx = np.random.default_rng(5).integers(0, 60, size=(300, 60))
    ref = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    assert gap.n == 120 and np.allclose([gap.low, gap.high], ref, rtol=0, atol=1e-12)
    # copies add nothing: Wilson over the 60 items, not over 120 clips
    acc = {r.system: r for r in accuracy_table([path])}
    ref_acc = proportion_confint(int(a_item.sum()), 60, method="wilson")
    assert acc["S"].n == 120 and np.allclose((acc["S"].low, acc["S"].high), ref_acc, rtol=0, atol=1e-12)
