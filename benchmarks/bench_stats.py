"""Behavioural statistics at paper scale, with six voices per item: speed, and memory at 1x and 4x the rows.

Speed. Paper scale: 9 systems, 5 classification tasks with 6,300 items in total; the three text tasks (SST-2,
AG News, CSQA) are spoken by 6 voices each (the paper's six), MELD and MUStARD are natural speech (one clip per
item): 26,765 clips per system, 240,885 prediction rows. All 36 pairs per task, 1,000 item-bootstrap
resamples of kappa, cluster McNemar, item-aware Wilson intervals and Benjamini–Hochberg. The vectorised side
is timed end to end (``casceq.stats.compare.compare`` on Prediction rows). The baseline is the obvious
implementation: for each task, pair and resample, gather the rows of the drawn items and call
``sklearn.metrics.cohen_kappa_score``. It is timed on a subset of pairs and resamples of every task and
extrapolated linearly to 36 pairs x 1,000 resamples (it does nothing else, so the extrapolated figure is a
lower bound of a full baseline). Both sides use the same item draws, and the script checks that the
baseline's kappas equal ours on the subset. Requirement: >= 100x and <= 1 s.

Memory. ``compare()`` on one task with 4 systems and items spoken by 4 voices, 1,000 resamples, at 1x
(91,000 rows) and 4x (364,000 rows, the size of the 50 MB interchange file of issue 23), each in a fresh
subprocess. "Added" is the peak RSS during the call (VmHWM, reset just before it; ``resource.getrusage``
where /proc does not allow that) minus the RSS just before it: what the statistics add on top of the
prediction rows (after a warm-up call on a few rows, so imports do not count). The same is measured for the
kappa bootstrap as it was before items (one ``[B, n]`` index matrix and one ``[B, n]`` weight matrix), side by
side. Memory that grows with rows x resamples is large and quadruples from 1x to 4x.

Run: ``.venv/bin/python benchmarks/bench_stats.py`` (``--memory-only`` / ``--speed-only`` for one half).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import numpy as np

from casceq.stats.agreement import bootstrap_pairwise_kappa, encode
from casceq.stats.align import InferredTask
from casceq.stats.compare import compare
from casceq.types import INVALID, Prediction

TASKS = {  # name: (n items, n labels, voices per item); 6,300 items in total
    "sst2": (872, 2, 6),
    "ag_news": (2000, 4, 6),
    "csqa": (1221, 5, 6),
    "meld": (1517, 7, 1),
    "mustard": (690, 2, 1),
}
N_SYSTEMS = 9
N_BOOTSTRAP = 1000
SEED = 0
BASELINE_PAIRS = 3  # per task, timed and extrapolated
BASELINE_RESAMPLES = 20
MEMORY_ROWS_1X = 91_000  # rows of all systems together; 4x = 364,000 (issue 23's file)
MEMORY_SYSTEMS = 4
MEMORY_VOICES = 4


def synthetic_predictions(
    rng: np.random.Generator, tasks: dict[str, tuple[int, int, int]], n_systems: int
) -> tuple[list[Prediction], dict[str, InferredTask]]:
    """Correlated systems: each copies a shared per-item 'backbone' answer with some probability, else guesses."""
    preds: list[Prediction] = []
    defs = {}
    for task, (n, c, voices) in tasks.items():
        labels = tuple(f"L{k}" for k in range(c))
        defs[task] = InferredTask(task, labels)
        gold = np.repeat(rng.integers(0, c, n), voices)
        backbone = np.repeat(np.where(rng.random(n) < 0.7, gold[::voices], rng.integers(0, c, n)), voices)
        ids = [
            f"{task}-{i:05d}@v{v}" if voices > 1 else f"{task}-{i:05d}"
            for i in range(n)
            for v in range(voices)
        ]
        items = [f"{task}-{i:05d}" for i in range(n) for _ in range(voices)]
        for s in range(n_systems):
            ans = np.where(
                rng.random(n * voices) < 0.8, backbone, rng.integers(0, c + 1, n * voices)
            )  # c: INVALID
            for i in range(n * voices):
                label = labels[ans[i]] if ans[i] < c else INVALID
                preds.append(
                    Prediction(
                        system=f"sys{s}",
                        task=task,
                        condition="clean",
                        example_id=ids[i],
                        output=label,
                        label=label,
                        gold=labels[gold[i]],
                        transcript="t" if s % 2 == 0 else None,
                        backbone=f"bb{s % 3}",
                        item=items[i] if voices > 1 else None,
                    )
                )
    return preds, defs


def speed() -> None:
    """Time compare() at paper scale with 6 voices and compare it with an sklearn loop."""
    from sklearn.metrics import cohen_kappa_score

    preds, tasks = synthetic_predictions(np.random.default_rng(1), TASKS, N_SYSTEMS)
    n_items = sum(n for n, _, _ in TASKS.values())
    n_pairs = N_SYSTEMS * (N_SYSTEMS - 1) // 2
    print(
        f"{N_SYSTEMS} systems, {len(TASKS)} tasks, {n_items} items ({len(preds) // N_SYSTEMS} clips per system, "
        f"6 voices on sst2/ag_news/csqa), {n_pairs} pairs/task, {N_BOOTSTRAP} item resamples"
    )
    compare(preds, tasks=tasks, n_bootstrap=20, seed=SEED)  # warm-up (imports, caches)
    times, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        result = compare(preds, tasks=tasks, n_bootstrap=N_BOOTSTRAP, seed=SEED)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    ours = min(times)
    assert len(result.pairs) == n_pairs * len(TASKS)

    baseline = 0.0
    max_diff = 0.0
    for g in result.groups:
        categories = (*tasks[g.task].labels, INVALID)
        codes = np.stack([encode(lab, categories) for lab in g.labels])
        clusters, n_groups = g.clusters()
        pairs = np.array([[0, j] for j in range(1, BASELINE_PAIRS + 1)])
        ours_k = bootstrap_pairwise_kappa(codes, pairs, len(categories), clusters, BASELINE_RESAMPLES, SEED)
        rows_of = [np.flatnonzero(clusters == c) for c in range(n_groups)]
        draws = np.random.default_rng(SEED).integers(
            0, n_groups, size=(BASELINE_RESAMPLES, n_groups), dtype=np.int32
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            ref = []
            for row in draws:
                rows = np.concatenate([rows_of[c] for c in row])
                ref.append([cohen_kappa_score(codes[a][rows], codes[b][rows]) for a, b in pairs])
            elapsed = time.perf_counter() - t0
        max_diff = max(max_diff, float(np.nanmax(np.abs(np.array(ref) - ours_k))))
        baseline += elapsed * (n_pairs / BASELINE_PAIRS) * (N_BOOTSTRAP / BASELINE_RESAMPLES)

    print(
        f"vectorised compare(), end to end: {ours:.3f} s (best of 3; runs {', '.join(f'{t:.3f}' for t in times)})"
    )
    # CPU time of this process: on a shared machine the wall time above also counts other jobs' turns.
    print(f"  CPU time of the same runs: {', '.join(f'{t:.3f}' for t in cpu)} s")
    print(
        f"baseline sklearn loop: {baseline:.1f} s, extrapolated linearly from {BASELINE_PAIRS} pairs x "
        f"{BASELINE_RESAMPLES} resamples per task to {n_pairs} x {N_BOOTSTRAP} (kappa bootstrap only)"
    )
    print(f"speed-up: {baseline / ours:.0f}x   (requirement: >= 100x and <= 1 s)")
    print(f"max |kappa_ours - kappa_sklearn| on the baseline subset: {max_diff:.2e}")


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so that building the rows does not count (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass  # then the peak is ru_maxrss over the whole process, an upper bound


def _peak_bytes() -> int | None:
    """VmHWM of this process (its peak RSS since the last reset), or None where /proc does not say."""
    try:
        with open("/proc/self/status") as fh:
            line = next(x for x in fh if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024


def child(mode: str, scale: int) -> None:
    """One memory measurement (run in a fresh process); prints a JSON line."""
    import resource

    n_items = MEMORY_ROWS_1X * scale // (MEMORY_SYSTEMS * MEMORY_VOICES)
    # Warm-up on a few rows first, so that imports (scipy alone is ~100 MB) are not counted as data memory.
    small, small_tasks = synthetic_predictions(np.random.default_rng(3), {"ag_news": (50, 4, 2)}, 2)
    compare(small, tasks=small_tasks, n_bootstrap=10, seed=SEED)
    preds, tasks = synthetic_predictions(
        np.random.default_rng(2), {"ag_news": (n_items, 4, MEMORY_VOICES)}, MEMORY_SYSTEMS
    )
    before = _rss_bytes()
    _reset_peak()
    t0 = time.perf_counter()
    if mode == "compare":
        compare(preds, tasks=tasks, n_bootstrap=N_BOOTSTRAP, seed=SEED)
    else:  # the kappa bootstrap before items: every resample's row weights at once
        from casceq.stats.agreement import bootstrap_indices, pairwise_kappa, resample_weights
        from casceq.stats.align import align

        (g,), _ = align(preds, tasks)
        codes = np.stack([encode(lab, (*tasks["ag_news"].labels, INVALID)) for lab in g.labels])
        pairs = np.array([(a, b) for a in range(MEMORY_SYSTEMS) for b in range(a + 1, MEMORY_SYSTEMS)])
        n = codes.shape[1]
        pairwise_kappa(codes, pairs, 5, resample_weights(bootstrap_indices(n, N_BOOTSTRAP, SEED), n))
    seconds = time.perf_counter() - t0
    peak = _peak_bytes() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"rows": len(preds), "before": before, "peak": peak, "seconds": seconds}))


def memory() -> None:
    """Peak RSS of compare() and of the old kappa bootstrap at 1x and 4x the rows, in fresh processes."""
    print(
        f"\nmemory: one task, {MEMORY_SYSTEMS} systems, {MEMORY_VOICES} voices per item, {N_BOOTSTRAP} resamples; "
        "added = peak RSS - RSS before the call"
    )
    print(f"{'':34s}{'rows':>9s}{'before MB':>11s}{'peak MB':>9s}{'added MB':>10s}{'s':>7s}")
    added = {}
    for mode, name in (
        ("compare", "compare() (items, blocked)"),
        ("old", "old kappa bootstrap ([B, n])"),
    ):
        for scale in (1, 4):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(scale)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            added[(mode, scale)] = r["peak"] - r["before"]
            print(
                f"{name + f' {scale}x':34s}{r['rows']:>9d}{r['before'] / 2**20:>11.0f}{r['peak'] / 2**20:>9.0f}"
                f"{added[(mode, scale)] / 2**20:>10.0f}{r['seconds']:>7.2f}"
            )
    for mode, name in (("compare", "compare()"), ("old", "old kappa bootstrap")):
        ratio = added[(mode, 4)] / max(added[(mode, 1)], 1)
        print(f"{name}: added memory 4x / 1x = {ratio:.2f}")
    print(f"old / compare() added memory at 4x: {added[('old', 4)] / max(added[('compare', 4)], 1):.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        if "--memory-only" not in sys.argv:
            speed()
        if "--speed-only" not in sys.argv:
            memory()
