"""Per-label calibration of a run's label scores, fitted outside the evaluated items.

Tiny backbones are strongly biased towards one label (ASSETS.md). ``casceq.systems.llm.calibration`` holds the
estimator (contextual calibration: subtract each label's centred log mean probability on fitting inputs); this
module picks the fitting inputs for a run — ``heldout``: items of the task the run does not evaluate, read as
gold text through the same prompt and shots; ``content-free``: "N/A", "" and "[MASK]" — and saves the offsets
per (LLM spec + settings, task) in the run folder (``calibration.json``). The offsets are part of every
prediction's cache key. A cascade and the text ceiling on the same backbone and settings share them.
``run_offsets`` reads a finished run's offsets per system, for stages that answer outside the runner (the
mechanistic implicit cascade and erasure answer with the same decision rule as the behavioural run).

Speech LLMs in label-scoring mode get the same treatment, on audio: with ``heldout``, the same held-out items are
spoken (clean; item i by the run's voice i mod V, so the cost is one clip per item) or, for natural-speech tasks,
their own recordings are used, and the speech LLM's raw label scores on them give its offsets. A native
Ultravox model's fit is keyed by its projector's digest too, so retrained weights are never read with the old
weights' offsets. Comparing a calibrated cascade with an uncalibrated speech LLM would mix calibration into the
modality difference. There is no content-free input for audio, so ``content_free`` leaves speech LLMs
uncalibrated (their raw argmax).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError, LeakageError
from casceq.run.build import build_system
from casceq.run.config import load_run_config
from casceq.run.items import load_item_audio, natural_items, spoken_items
from casceq.systems.llm import (
    calibration as llm_calibration,  # heldout_examples at call time: tests replace it
)
from casceq.systems.llm.calibration import CalibrationFitter, fit_calibrator
from casceq.tasks import get_task, load_examples
from casceq.types import CLEAN, Example

FILE = "calibration.json"
ITEMS_FILE = "calibration_items.json"
"""Which items each fit used: ``{group key: {task: [example ids]}}`` (what ``check_not_fitted`` reads)."""


def group_key(spec: Any, system: Any, method: str) -> str:
    """The ``calibration.json`` key of a system's fit: systems with equal keys share offsets.

    Text LLMs: spec + settings + method. Speech LLMs: model, backbone, settings and the projector digest of a
    native Ultravox model (``system.spec["weights"]``), method ``heldout``.
    """
    if spec.kind == "speech_llm":
        parts = {"speech": spec.model, "backbone": system.backbone, "settings": spec.settings}
        if system.spec.get("weights"):
            parts["weights"] = system.spec["weights"]
        return json.dumps({**parts, "method": "heldout"}, sort_keys=True)
    return json.dumps({"llm": spec.llm, "settings": spec.settings, "method": method}, sort_keys=True)


def run_offsets(run_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """The saved offsets of a run folder's systems: system name -> task -> [C] (only systems with a fit).

    Reads ``config.json`` and ``calibration.json``; an uncalibrated run (no file, or ``calibration = "none"``)
    gives ``{}``. No model is loaded.

    Raises:
        InputError: No ``config.json`` (not a run folder), or an unreadable file (named).
    """
    cfg = load_run_config(run_dir)
    saved_path = Path(run_dir) / FILE
    if cfg.calibration == "none" or not saved_path.is_file():
        return {}
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"unreadable calibration ({exc})", path=str(saved_path)) from exc
    out: dict[str, dict[str, np.ndarray]] = {}
    for spec in cfg.systems:
        system = build_system(spec, cfg)
        if system.mode != "score":
            continue
        if spec.kind == "speech_llm" and cfg.calibration != "heldout":
            continue
        fit = saved.get(group_key(spec, system, cfg.calibration))
        if fit:
            out[spec.name] = {task: np.asarray(off, dtype=np.float64) for task, off in fit.items()}
    return out


def heldout_examples(
    task: str,
    evaluated: Sequence[Example],
    n: int,
    seed: int,
    llm: Any = None,
    spec: Any = None,
) -> list[Example]:
    """``n`` examples of the task that the run does not evaluate and that are not shots of ``llm``.

    ``spec``: the run's ``TaskSpec`` of the task; its split and data folder are the pool (None: the defaults).

    Taken from the far end of the run's own seeded ranking (``casceq.systems.llm.calibration``). ``llm`` is any
    back end with ``shots_for`` (a text LLM, or a speech LLM that draws shots the same way). The result is
    checked here, at run time, to share no id with ``evaluated`` and no prompt with the shots.

    Raises:
        LeakageError: An overlap (a bug in the picking; never silently fitted on).
    """
    t = get_task(task)
    shots: tuple[tuple[str, str], ...] = ()
    shots_for = getattr(llm, "shots_for", None)
    if callable(shots_for):
        shots = tuple(shots_for(t.prompt("x")) or ())
    split, data_dir = (getattr(spec, "split", None), getattr(spec, "data_dir", None))
    held = llm_calibration.heldout_examples(t, [ex.id for ex in evaluated], n, seed, shots, split, data_dir)
    leaked = {ex.id for ex in held} & {ex.id for ex in evaluated}
    shot_prompts = {p for p, _ in shots}
    as_shots = [ex.id for ex in held if t.prompt(ex.text, ex) in shot_prompts]
    if leaked or as_shots:
        raise LeakageError(
            f"calibration of {task}: {len(leaked)} evaluated items and {len(as_shots)} few-shot examples among "
            "the fitting items"
        )
    return held


def _record_items(ctx: Any, group: str, task: str, held: Sequence[Example]) -> None:
    """Add the ids a fit used to ``calibration_items.json`` (atomic)."""
    path: Path = ctx.out / ITEMS_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(group, {})[task] = [ex.id for ex in held]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def fitted_items(run_dir: str | Path, task: str) -> set[str] | None:
    """Ids of every item any fit of the run used for ``task`` (None: the run recorded none, older runs)."""
    path = Path(run_dir) / ITEMS_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {i for fits in data.values() for i in fits.get(task, ())}


def check_not_fitted(run_dir: str | Path, task: str, example_ids: Sequence[str]) -> None:
    """Refuse to evaluate items the run's calibration was fitted on (at run time, by id, before answering).

    Uses ``calibration_items.json``; a run without it (made before it was written) is checked against the
    fitting items recomputed from its config (its seed, items and ``calibration_n``, widened by the largest
    number of shots any fit could have skipped, so the recomputed set contains the real one).

    Raises:
        LeakageError: Naming how many of the evaluated items the offsets were fitted on.
    """
    fitted = fitted_items(run_dir, task)
    if fitted is None:
        cfg = load_run_config(run_dir)
        spec = next((t for t in cfg.tasks if t.name == task), None)
        if spec is None:
            return
        evaluated = load_examples(task, n=spec.n, seed=cfg.seed, split=spec.split, data_dir=spec.data_dir)
        fitted = {
            ex.id
            for ex in heldout_examples(task, evaluated, cfg.calibration_n + MAX_SHOTS, cfg.seed, spec=spec)
        }
    base = {i.split("@")[0] for i in example_ids}
    overlap = base & fitted
    if overlap:
        raise LeakageError(
            f"{len(overlap)} of the {len(base)} evaluated {task} items are items the run's calibration was fitted "
            f"on (e.g. {sorted(overlap)[:3]}): evaluate other items (the run's seed picks disjoint ones)",
            path=str(run_dir),
        )


MAX_SHOTS = 16
"""Upper bound on the shots a fit skips (recomputing an older run's fitting items widens the set by this)."""


def calibrate_run(ctx: Any) -> dict[str, dict[str, list[float]]]:
    """Fit (or load) offsets for every score-mode LLM system and classification task of a run.

    Systems sharing LLM spec and settings share one fit.
    """
    path: Path = ctx.out / FILE
    saved: dict[str, dict[str, list[float]]] = json.loads(path.read_text()) if path.exists() else {}
    if ctx.cfg.calibration == "none":
        return {}
    fits: dict[str, dict[str, list[float]]] = {}

    def keep(group: str, task: str, offsets: list[float]) -> None:
        # every fit is written as soon as it is made: a run killed during calibration (a long one can take an
        # hour) keeps the fits it finished
        saved.setdefault(group, {})[task] = offsets
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=2))
        tmp.replace(path)

    for spec in ctx.system_specs:
        system = ctx.systems[spec.name]
        if system.mode != "score":
            continue
        if spec.kind == "speech_llm":
            if ctx.cfg.calibration == "heldout":
                _calibrate_speech(ctx, spec, system, saved, fits, keep)
            continue
        group = group_key(spec, system, ctx.cfg.calibration)
        for tspec in ctx.task_specs:
            task = get_task(tspec.name)
            if task.open_answer:
                continue
            if group in saved and task.name in saved[group]:
                off = saved[group][task.name]
            else:
                items = ctx.items(task.name)
                evaluated = {it.base_id: it.example for it in items}
                llm = system.backend("llm")
                held = heldout_examples(
                    task.name, list(evaluated.values()), ctx.cfg.calibration_n, ctx.cfg.seed, llm, tspec
                )
                if not held and ctx.cfg.calibration == "heldout":
                    continue
                cal = fit_calibrator(llm, task, ctx.cfg.calibration, heldout=held)
                off = cal.offsets.tolist()
                _record_items(ctx, group, task.name, held)
                keep(group, task.name, off)
            system.offsets[task.name] = np.asarray(off)
            fits.setdefault(spec.name, {})[task.name] = off
    return fits


def _calibrate_speech(
    ctx: Any,
    spec: Any,
    system: Any,
    saved: dict[str, dict[str, list[float]]],
    fits: dict[str, Any],
    keep: Callable[[str, str, list[float]], None],
) -> None:
    """Fit a speech LLM's offsets per task on held-out audio (each new fit handed to ``keep``)."""
    group = group_key(spec, system, "heldout")
    for tspec in ctx.task_specs:
        task = get_task(tspec.name)
        if task.open_answer:
            continue
        if group in saved and task.name in saved[group]:
            off = saved[group][task.name]
        else:
            evaluated = {it.base_id: it.example for it in ctx.items(task.name)}
            # the speech LLM draws few-shot examples like the cascades: never fit on them
            backend = system.backend("speech")
            held = heldout_examples(
                task.name, list(evaluated.values()), ctx.cfg.calibration_n, ctx.cfg.seed, backend, tspec
            )
            if not held:
                continue
            if held[0].audio is not None:
                items = natural_items(held)
            else:
                voices = list(ctx.cfg.voices)
                items = []
                for v, voice in enumerate(voices):
                    mine = [ex for i, ex in enumerate(held) if i % len(voices) == v]
                    if mine:  # one folder per voice: a synthesis manifest lists everything in its folder
                        folder = ctx.out / "audio" / f"{task.name}-calibration" / voice
                        items += spoken_items(mine, [voice], folder)
            system.offsets.pop(task.name, None)  # raw scores
            fitter = CalibrationFitter(task.labels, "heldout")
            for b in range(0, len(items), ctx.cfg.batch_size):
                chunk = items[b : b + ctx.cfg.batch_size]
                wavs, exs = [], []
                for it in chunk:
                    try:
                        wavs.append(load_item_audio(it, CLEAN, ctx.cfg.seed))
                        exs.append(it.example)
                    except Exception as exc:  # an unreadable calibration clip is left out, not fatal
                        print(f"calibration of {spec.name}: skipped {it.example.id}: {exc}")
                if not exs:
                    continue
                preds = system.predict(task, CLEAN, exs, wavs)
                fitter.update(np.array([[p.label_scores[lab] for lab in task.labels] for p in preds]))
            if fitter.n == 0:
                continue
            off = fitter.calibrator.offsets.tolist()
            _record_items(ctx, group, task.name, held)
            keep(group, task.name, off)
        system.offsets[task.name] = np.asarray(off)
        fits.setdefault(spec.name, {})[task.name] = off
