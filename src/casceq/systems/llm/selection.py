"""Measure prompt settings of a backbone on real items: zero- vs k-shot, uncalibrated vs calibrated.

This is how the offline default (``bundled.DEFAULT_BACKBONE``, ``DEFAULT_LLM_SETTINGS``) was chosen; the table
in docs/backbones.md is its output. Items are split three ways from one seeded ranking of the task's file
(``casceq.tasks.sample_rank``): the evaluated items are the *first* n (exactly ``load_examples(n=n, seed=seed)``),
the shots and the held-out calibration items come from the *end*, so none of them is ever evaluated.

Run: ``python -m casceq.systems.llm.selection --models gemma-3-270m smollm2-135m-instruct --tasks sst2 ag_news
--n 200 --out results.jsonl`` (append-only JSON lines, one per model/task/shots; a rerun skips what is done).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from casceq.stats.tests import wilson_interval
from casceq.systems.llm import make_llm
from casceq.systems.llm.calibration import CalibrationFitter, Calibrator, content_free_prompts
from casceq.systems.llm.prompting import few_shot_examples
from casceq.tasks import get_task, load_examples, sample_rank

METHODS = ("none", "content_free", "heldout")


@dataclass(frozen=True)
class SettingResult:
    """Accuracy of one (model, task, shots, calibration) setting on n items.

    Attributes:
        model: Backbone spec.
        task: Task name.
        shots: k of k-shot (0: zero-shot).
        calibration: ``"none"``, ``"content_free"`` or ``"heldout"``.
        n: Evaluated items.
        correct: Correct answers.
        accuracy: correct / n.
        ci: 95% Wilson interval of the accuracy.
        predicted: Count of each predicted label (the bias check).
        seconds: Wall time of scoring the evaluated items (uncalibrated; calibration reuses the scores).
    """

    model: str
    task: str
    shots: int
    calibration: str
    n: int
    correct: int
    accuracy: float
    ci: tuple[float, float]
    predicted: dict[str, int]
    seconds: float


def split_items(
    task_name: str, n: int, seed: int, k: int, heldout_n: int
) -> tuple[list[Any], list[Any], list[Any]]:
    """Split a task into (evaluated, shot items, held-out calibration items), pairwise disjoint."""
    task = get_task(task_name)
    evaluated = load_examples(task.name, n=n, seed=seed)
    ids = {ex.id for ex in evaluated}
    shot_prompts = {p for p, _ in few_shot_examples(task, ids, k, seed)}
    pool = sorted(load_examples(task.name), key=lambda ex: sample_rank(ex.id, seed), reverse=True)
    shots = [ex for ex in pool if task.prompt(ex.text, ex) in shot_prompts]
    held = [ex for ex in pool if ex.id not in ids and ex not in shots][:heldout_n]
    return evaluated, shots, held


def evaluate(llm: Any, task_name: str, *, n: int, seed: int, k: int, heldout_n: int) -> dict[str, Any]:
    """Score one task with k shots; return the raw record (ids, scores [n, C], offsets of every method)."""
    task = get_task(task_name)
    evaluated, _, held = split_items(task.name, n, seed, k, heldout_n)
    shots = few_shot_examples(task, {ex.id for ex in evaluated}, k, seed)
    labels = list(task.labels)
    t0 = time.perf_counter()
    scores = llm.score_options(
        [task.prompt(ex.text, ex) for ex in evaluated], [labels] * len(evaluated), shots=shots
    )
    seconds = time.perf_counter() - t0
    cf_prompts = content_free_prompts(task, held[:5])
    cf = llm.score_options(cf_prompts, [labels] * len(cf_prompts), shots=shots)
    ho = llm.score_options([task.prompt(ex.text, ex) for ex in held], [labels] * len(held), shots=shots)
    offsets = {
        "none": [0.0] * len(labels),
        "content_free": CalibrationFitter(labels, "content_free").update(cf).calibrator.offsets.tolist(),
        "heldout": CalibrationFitter(labels, "heldout").update(ho).calibrator.offsets.tolist(),
    }
    return {
        "model": llm.backbone, "task": task.name, "shots": k, "seed": seed, "heldout_n": len(held),
        "ids": [ex.id for ex in evaluated], "scores": scores.tolist(), "offsets": offsets, "seconds": seconds,
    }  # fmt: skip


def results_of(record: dict[str, Any], n: int | None = None) -> list[SettingResult]:
    """Accuracy, Wilson CI and predicted-label counts of one raw record, per calibration method.

    Args:
        record: A record written by ``evaluate``.
        n: Restrict to the first-n subsample of the same seed (contained in any larger one), so settings run
            with different n are compared on the same items.
    """
    task = get_task(record["task"])
    labels = tuple(task.labels)
    gold_of = {ex.id: ex.label for ex in load_examples(task.name)}
    keep = None if n is None else {ex.id for ex in load_examples(task.name, n=n, seed=record.get("seed", 0))}
    rows = [i for i, ex_id in enumerate(record["ids"]) if keep is None or ex_id in keep]
    scores = np.asarray(record["scores"])[rows]
    gold = [gold_of[record["ids"][i]] for i in rows]
    per_item = record["seconds"] / max(len(record["ids"]), 1)
    out = []
    for method, off in record["offsets"].items():
        pred = Calibrator(labels, np.asarray(off), method, record.get("heldout_n", 0)).predict(scores)
        correct = sum(p == g for p, g in zip(pred, gold, strict=True))
        lo, hi = wilson_interval(correct, len(gold))
        counts = Counter(pred)
        out.append(
            SettingResult(
                record["model"], task.name, record["shots"], method, len(gold), int(correct),
                correct / max(len(gold), 1), (float(lo), float(hi)), {lab: counts.get(lab, 0) for lab in labels},
                per_item * len(gold),
            )
        )  # fmt: skip
    return out


def markdown_table(results: Sequence[SettingResult]) -> str:
    """Format a Markdown table: one row per setting, accuracy with its Wilson CI and the predicted-label counts."""
    lines = [
        "| model | task | shots | calibration | n | accuracy [95% CI] | predicted labels | s/item |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        dist = ", ".join(f"{k} {v}" for k, v in r.predicted.items())
        lines.append(
            f"| {r.model} | {r.task} | {r.shots} | {r.calibration} | {r.n} | {r.accuracy:.3f} [{r.ci[0]:.2f}, {r.ci[1]:.2f}] "
            f"| {dist} | {r.seconds / max(r.n, 1):.3f} |"
        )
    return "\n".join(lines)


def load_records(path: Path) -> list[dict[str, Any]]:
    """Every raw record in a JSON-lines file written by ``main`` (a later record of a setting replaces one)."""
    recs: dict[tuple[str, str, int], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            recs[(rec["model"], rec["task"], rec["shots"])] = rec
    return list(recs.values())


def load_results(path: Path, n: int | None = None) -> list[SettingResult]:
    """Every setting's results in ``path`` (restricted to the first-n items of each record's seed if n)."""
    return [r for rec in load_records(path) for r in results_of(rec, n)]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: evaluate models x tasks x shots, append to ``--out``, print the Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["gemma-3-270m", "smollm2-135m-instruct"])
    ap.add_argument("--tasks", nargs="+", default=["sst2", "ag_news", "csqa"])
    ap.add_argument("--shots", nargs="+", type=int, default=[0, 4])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--heldout", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("backbone_selection.jsonl"))
    ap.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    ap.add_argument("--table-n", type=int, default=None, help="table on the first-n items of every record")
    args = ap.parse_args(argv)
    if not args.table_only:
        done = {(r["model"], r["task"], r["shots"]) for r in load_records(args.out)}
        llms: dict[str, Any] = {}
        for task in args.tasks:
            for model in args.models:
                for k in args.shots:
                    if model not in llms:
                        llms[model] = make_llm(
                            model, dtype=args.dtype, threads=args.threads, batch_size=args.batch_size
                        )
                    if (llms[model].backbone, get_task(task).name, k) in done:
                        continue
                    record = evaluate(
                        llms[model], task, n=args.n, seed=args.seed, k=k, heldout_n=args.heldout
                    )
                    with args.out.open("a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    print(markdown_table(results_of(record)), flush=True)
    print(markdown_table(load_results(args.out, args.table_n)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
