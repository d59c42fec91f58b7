"""Erasure stage (Table 7 / Figure 6): LEACE concept erasure during generation, with held-out completeness checks.

Erasers are fitted per layer on the fitting utterances: a capture folder's (its audio, transcripts and layers) or
the next ``n_fit`` items of each task's seeded ranking spoken by the same voices, never the evaluated items
(``casceq.mech.erasure.check_disjoint``: an overlap is an error). Then every task is answered with no erasure and
under each concept's erasers. Writes ``OUT/mech/erasure.json`` (``casceq.mech.erasure_concepts.ErasureResult``)
and ``OUT/mech/erasure.md``.

With ``diagnostic`` (``casceq erase --diagnostic``) a seeded ``diagnostic_fraction`` of the fitting items is held
out of eraser fitting, and the §5.4 diagnostic (does erasing the acoustic concept reduce text decodability more
than a random subspace of the same rank? ``casceq.mech.erasure_diagnostic``) is scored on them; it is the result's
``diagnostic`` (in ``erasure.json`` and ``erasure.md``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casceq.audio.io import load_audio
from casceq.errors import InputError
from casceq.mech.erasure import FitClip, Positions, run_erasure
from casceq.mech.erasure_concepts import ErasureResult
from casceq.mech.erasure_diagnostic import N_BOOT, split_heldout
from casceq.mech.shards import CaptureReader
from casceq.run.items import natural_items, spoken_items
from casceq.stages.context import SAMPLE_RATE, StageContext, provenance
from casceq.tasks import get_task, load_examples

DEFAULT_CONCEPTS = ("text", "ctc", "boc", "acoustic", "acoustic2d", "random")


@dataclass(frozen=True)
class EraseConfig:
    """One erasure run (the options of ``casceq erase`` beyond the context's).

    Attributes:
        tasks: Tasks answered.
        out: Output folder.
        fit: Capture folder whose utterances the erasers are fitted on (None: ``n_fit`` other items per task).
        n_fit: Fitting items per task without ``fit``.
        exclude_fitted: Evaluate each task's next items after the fitting ones (``casceq reproduce``), instead
            of refusing an overlap.
        layers: Probed layers (None: the capture's / the paper's).
        concepts: Concepts erased.
        positions: ``all`` (every position of every pass) or ``audio``.
        affine: LEACE with bias centering.
        mode: Answer mode.
        n_random: Draws of the random-subspace control.
        diagnostic: Hold ``diagnostic_fraction`` of the fitting items out of eraser fitting and run the §5.4
            text-decodability diagnostic on them.
        diagnostic_fraction: Share of fitting items held out for the diagnostic (by item, seeded).
        n_boot: Bootstrap resamples of the diagnostic's intervals.
        argv: The command line recorded in the result's provenance (without ``provenance``).
        provenance: The provenance to record (None: collected from ``argv`` at the start).
    """

    tasks: tuple[str, ...]
    out: str
    fit: str | None = None
    n_fit: int = 50
    exclude_fitted: bool = False
    layers: tuple[int, ...] | None = None
    concepts: tuple[str, ...] = DEFAULT_CONCEPTS
    positions: Positions = "all"
    affine: bool = False
    mode: str = "score"
    n_random: int = 5
    diagnostic: bool = False
    diagnostic_fraction: float = 0.3
    n_boot: int = N_BOOT
    argv: tuple[str, ...] = ()
    provenance: Mapping[str, Any] | None = None


def read_erasure(path: str | Path) -> ErasureResult:
    """Read a ``mech/erasure.json`` file."""
    return ErasureResult.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def capture_clips(folder: str | Path) -> tuple[list[FitClip], tuple[int, ...]]:
    """The fitting clips of a capture folder (its audio and transcripts) and its layers."""
    reader = CaptureReader(folder)
    clips = [FitClip(r.id, load_audio(r.audio, SAMPLE_RATE), r.transcript) for r in reader.utterances]
    return clips, tuple(reader.meta.layers)


def task_clips(config: EraseConfig, ctx: StageContext, evaluations: list[Any]) -> list[FitClip]:
    """The next ``n_fit`` items of each task's seeded ranking after the evaluated ones, in the same voices.

    Raises:
        InputError: Items from a file (give a capture to fit on), no voices, or fitting items without text.
    """
    items = ctx.config.items
    if items.file or not items.voices or not items.audio_dir:
        raise InputError(
            "with --items give --fit CAPTURE_DIR: erasers fitted on the evaluated items would be judged on the "
            "utterances they were fitted on"
        )
    clips = []
    for task, examples, _ in evaluations:
        evaluated = {ex.id.split("@")[0] for ex in examples}
        pool = load_examples(
            task.name, n=len(evaluated) + config.n_fit, seed=ctx.seed, data_dir=items.data_dir
        )
        fresh = [ex for ex in pool if ex.id not in evaluated][: config.n_fit]
        natural = bool(fresh) and fresh[0].audio is not None
        found = (
            natural_items(fresh)
            if natural
            else spoken_items(fresh, list(items.voices), Path(items.audio_dir) / "fit")
        )
        for it in found:
            if it.example.audio is not None:
                clips.append(
                    FitClip(it.example.id, load_audio(it.example.audio.path, SAMPLE_RATE), it.example.text)
                )
    missing = [c.id for c in clips if not c.transcript.strip()]
    if missing or not clips:
        raise InputError(f"fitting needs transcripts: items {missing[:5]} have no text (use --fit)")
    return clips


def run_erase(config: EraseConfig, ctx: StageContext) -> ErasureResult:
    """Fit the erasers, answer the tasks under each condition, write and return the result.

    Raises:
        InputError: See :func:`task_clips` and the context; ``LeakageError`` when evaluated items overlap the
            fitting utterances or the calibration items.
    """
    prov = dict(config.provenance) if config.provenance is not None else provenance(config.argv)
    offsets = ctx.speech_offsets()  # config errors before any model is loaded
    if ctx.config.items.file and len(config.tasks) > 1:
        raise InputError("--items holds one task's items: give one --task")
    clips, captured = capture_clips(config.fit) if config.fit else ([], None)
    fitted = frozenset(c.id.split("@")[0] for c in clips) if config.exclude_fitted else frozenset()
    backend = ctx.speech_llm()
    evaluations = []
    for name in config.tasks:
        examples, audios = ctx.items(name, fitted)  # never the utterances the erasers were fitted on
        evaluations.append((get_task(name), examples, audios))
    if not config.fit:
        clips = task_clips(config, ctx, evaluations)
    heldout: list[FitClip] = []
    if config.diagnostic:
        keep, held = split_heldout([c.id for c in clips], config.diagnostic_fraction, ctx.seed)
        clips, heldout = [clips[i] for i in keep], [clips[i] for i in held]
    result = run_erasure(
        backend,
        clips,
        evaluations,
        layers=list(config.layers) if config.layers else (list(captured) if captured else None),
        concepts=list(config.concepts),
        affine=config.affine,
        positions=config.positions,
        mode=config.mode,
        seed=ctx.seed,
        model=ctx.config.model,
        offsets=offsets,
        n_random=config.n_random,
        heldout=heldout,
        n_boot=config.n_boot,
    )
    result = dataclasses.replace(result, extra=prov)
    result.write(config.out)
    return result
