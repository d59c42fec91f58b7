"""Per-label calibration of a run's label scores, fitted outside the evaluated items.

Tiny backbones are strongly biased towards one label (ASSETS.md). ``casceq.systems.llm.calibration`` holds the
estimator (contextual calibration: subtract each label's centred log mean probability on fitting inputs); this
module picks the fitting inputs for a run — ``heldout``: items of the task the run does not evaluate, read as
gold text through the same prompt and shots; ``content-free``: "N/A", "" and "[MASK]" — and saves the offsets
per (LLM spec + settings, task) in the run folder (``calibration.json``). The offsets are part of every
prediction's cache key. A cascade and the text ceiling on the same backbone and settings share them. Speech LLMs
are not calibrated (it would need held-out audio); their raw argmax is reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from casceq.types import Example

FILE = "calibration.json"


def heldout_examples(
    task: str, evaluated: Sequence[Example], n: int, seed: int, llm: Any = None
) -> list[Example]:
    """``n`` examples of the task that the run does not evaluate and that are not shots of ``llm``.

    Taken from the far end of the run's own seeded ranking (``casceq.systems.llm.calibration``).
    """
    from casceq.systems.llm.calibration import heldout_examples as pick
    from casceq.tasks import get_task

    t = get_task(task)
    shots = ()
    shots_for = getattr(llm, "shots_for", None)
    if callable(shots_for):
        shots = tuple(shots_for(t.prompt("x")) or ())
    return pick(t, [ex.id for ex in evaluated], n, seed, shots)


def calibrate_run(ctx: Any) -> dict[str, dict[str, list[float]]]:
    """Fit (or load) offsets for every score-mode LLM system and classification task of a run.

    Systems sharing LLM spec and settings share one fit.
    """
    from casceq.systems.llm.calibration import fit_calibrator
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
        group = json.dumps(
            {"llm": spec.llm, "settings": spec.settings, "method": ctx.cfg.calibration}, sort_keys=True
        )
        for tspec in ctx.task_specs:
            task = get_task(tspec.name)
            if task.open_answer:
                continue
            if group in saved and task.name in saved[group]:
                off = saved[group][task.name]
            else:
                items = ctx.items(task.name)
                evaluated = {it.base_id: it.example for it in items}
                llm = system._get("llm")
                held = heldout_examples(
                    task.name, list(evaluated.values()), ctx.cfg.calibration_n, ctx.cfg.seed, llm
                )
                if not held and ctx.cfg.calibration == "heldout":
                    continue
                cal = fit_calibrator(llm, task, ctx.cfg.calibration, heldout=held)
                off = cal.offsets.tolist()
                saved.setdefault(group, {})[task.name] = off
                changed = True
            system.offsets[task.name] = np.asarray(off)
            fits.setdefault(spec.name, {})[task.name] = off
    if changed:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=2))
        tmp.replace(path)
    return fits
