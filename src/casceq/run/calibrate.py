"""Per-label calibration of label scores, fitted on items outside the evaluated set.

Tiny backbones are strongly biased towards one label (ASSETS.md). We estimate each label's prior bias as its
mean log-softmax score over held-out items read as gold text through the same prompt, and subtract it before
the argmax (contextual calibration in log space, Zhao et al. 2021, with real held-out inputs in place of
content-free ones). Offsets are per (system, task), saved in the run folder (``calibration.json``) and part of
every prediction's cache key. A cascade and the text ceiling on the same backbone get the same offsets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from casceq.types import Example

FILE = "calibration.json"


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of [N, C] scores."""
    m = scores.max(axis=1, keepdims=True)
    return scores - m - np.log(np.exp(scores - m).sum(axis=1, keepdims=True))


def fit_offsets(scores: np.ndarray) -> np.ndarray:
    """Offsets [C] from held-out [N, C] label scores: the mean log-softmax per label, centred."""
    ls = log_softmax(np.asarray(scores, dtype=np.float64))
    off = ls.mean(axis=0)
    return off - off.mean()


def heldout_examples(task: str, evaluated: Sequence[Example], n: int, seed: int) -> list[Example]:
    """``n`` examples of the task that are not evaluated (a disjoint, seeded sample)."""
    from casceq.tasks import load_examples

    used = {ex.id for ex in evaluated}
    pool = load_examples(task, n=n + len(used), seed=seed + 7919)
    return [ex for ex in pool if ex.id not in used][:n]


def calibrate_run(ctx: Any) -> dict[str, dict[str, list[float]]]:
    """Fit (or load) offsets for every score-mode LLM system and classification task of a run.

    Systems sharing LLM spec and settings share one fit; speech LLMs are not calibrated (they would need
    held-out audio: their raw argmax is reported, as the paper does).
    """
    from casceq.tasks import get_task

    path: Path = ctx.out / FILE
    saved: dict[str, dict[str, list[float]]] = json.loads(path.read_text()) if path.exists() else {}
    if ctx.cfg.calibration == "none":
        return {}
    fits: dict[str, dict[str, list[float]]] = {}
    changed = False
    for spec in ctx.system_specs:
        system = ctx.systems[spec.name]
        if spec.kind == "speech_llm" or system.mode != "score":
            continue
        group = json.dumps({"llm": spec.llm, "settings": spec.settings}, sort_keys=True)
        for tspec in ctx.task_specs:
            task = get_task(tspec.name)
            if task.open_answer:
                continue
            if group in saved and task.name in saved[group]:
                off = saved[group][task.name]
            else:
                items = ctx.items(task.name)
                evaluated = {it.base_id: it.example for it in items}
                held = heldout_examples(
                    task.name, list(evaluated.values()), ctx.cfg.calibration_n, ctx.cfg.seed
                )
                if not held:
                    continue
                llm = system._get("llm")
                scores = llm.score_options(
                    [task.prompt(ex.text, ex) for ex in held], [list(task.labels)] * len(held)
                )
                off = fit_offsets(np.asarray(scores)).tolist()
                saved.setdefault(group, {})[task.name] = off
                changed = True
            system.offsets[task.name] = np.asarray(off)
            fits.setdefault(spec.name, {})[task.name] = off
    if changed:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=2))
        tmp.replace(path)
    return fits
