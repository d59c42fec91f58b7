"""Behavioural statistics at paper scale: vectorised ``compare()`` vs a per-resample sklearn loop.

Paper scale: 9 systems, 5 classification tasks with 6,300 items in total, all 36 pairs per task, 1,000
bootstrap resamples of kappa, exact McNemar and Benjamini–Hochberg. The vectorised side is timed end to end
(``casceq.stats.compare.compare`` on Prediction rows: alignment, accuracy, kappa + bootstrap, overlap, tests).
The baseline is the obvious implementation: for each task, pair and resample, call
``sklearn.metrics.cohen_kappa_score`` on the resampled labels. It is timed on a subset of pairs and resamples
of every task and extrapolated linearly to 36 pairs x 1,000 resamples (it does nothing else, so the
extrapolated figure is a lower bound of a full baseline). Both sides use the same index matrices, and the
script checks that the baseline's kappas equal ours on the subset.

Run: ``.venv/bin/python benchmarks/bench_stats.py``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from casceq.stats.agreement import bootstrap_indices, encode, pairwise_kappa, resample_weights
from casceq.stats.align import InferredTask
from casceq.stats.compare import compare
from casceq.types import INVALID, Prediction

TASKS = {  # name: (n items, n labels); 6,300 items in total
    "sst2": (872, 2),
    "ag_news": (2000, 4),
    "csqa": (1221, 5),
    "meld": (1517, 7),
    "mustard": (690, 2),
}
N_SYSTEMS = 9
N_BOOTSTRAP = 1000
SEED = 0
BASELINE_PAIRS = 3  # per task, timed and extrapolated
BASELINE_RESAMPLES = 40


def synthetic_predictions(rng: np.random.Generator) -> tuple[list[Prediction], dict[str, InferredTask]]:
    """Correlated systems: each copies a shared 'backbone' answer with some probability, else guesses."""
    preds: list[Prediction] = []
    tasks = {}
    for task, (n, c) in TASKS.items():
        labels = tuple(f"L{k}" for k in range(c))
        tasks[task] = InferredTask(task, labels)
        gold = rng.integers(0, c, n)
        backbone = np.where(rng.random(n) < 0.7, gold, rng.integers(0, c, n))
        for s in range(N_SYSTEMS):
            ans = np.where(rng.random(n) < 0.8, backbone, rng.integers(0, c + 1, n))  # code c = INVALID
            for i in range(n):
                label = labels[ans[i]] if ans[i] < c else INVALID
                preds.append(
                    Prediction(
                        system=f"sys{s}",
                        task=task,
                        condition="clean",
                        example_id=f"{task}-{i:05d}",
                        output=label,
                        label=label,
                        gold=labels[gold[i]],
                        transcript="t" if s % 2 == 0 else None,
                        backbone=f"bb{s % 3}",
                    )
                )
    return preds, tasks


def main() -> None:
    from sklearn.metrics import cohen_kappa_score

    preds, tasks = synthetic_predictions(np.random.default_rng(1))
    n_items = sum(n for n, _ in TASKS.values())
    n_pairs = N_SYSTEMS * (N_SYSTEMS - 1) // 2
    print(
        f"{N_SYSTEMS} systems, {len(TASKS)} tasks, {n_items} items, {n_pairs} pairs/task, {N_BOOTSTRAP} resamples"
    )

    compare(preds, tasks=tasks, n_bootstrap=20, seed=SEED)  # warm-up (imports, caches)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = compare(preds, tasks=tasks, n_bootstrap=N_BOOTSTRAP, seed=SEED)
        times.append(time.perf_counter() - t0)
    ours = min(times)
    assert len(result.pairs) == n_pairs * len(TASKS)

    baseline = 0.0
    max_diff = 0.0
    for g in result.groups:
        categories = (*tasks[g.task].labels, INVALID)
        codes = np.stack([encode(lab, categories) for lab in g.labels])
        n = codes.shape[1]
        idx = bootstrap_indices(n, N_BOOTSTRAP, SEED)[:BASELINE_RESAMPLES]
        pairs = np.array([[0, j] for j in range(1, BASELINE_PAIRS + 1)])
        ours_k = pairwise_kappa(codes, pairs, len(categories), resample_weights(idx, n))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            ref = np.array(
                [[cohen_kappa_score(codes[a][row], codes[b][row]) for a, b in pairs] for row in idx]
            )
            elapsed = time.perf_counter() - t0
        max_diff = max(max_diff, float(np.nanmax(np.abs(ref - ours_k))))
        baseline += elapsed * (n_pairs / BASELINE_PAIRS) * (N_BOOTSTRAP / BASELINE_RESAMPLES)

    print(
        f"vectorised compare(), end to end: {ours:.3f} s (best of 3; runs {', '.join(f'{t:.3f}' for t in times)})"
    )
    print(
        f"baseline sklearn loop: {baseline:.1f} s, extrapolated linearly from {BASELINE_PAIRS} pairs x "
        f"{BASELINE_RESAMPLES} resamples per task to {n_pairs} x {N_BOOTSTRAP} (kappa bootstrap only)"
    )
    print(f"speed-up: {baseline / ours:.0f}x   (requirement: >= 100x and <= 1 s)")
    print(f"max |kappa_ours - kappa_sklearn| on the baseline subset: {max_diff:.2e}")


if __name__ == "__main__":
    main()
