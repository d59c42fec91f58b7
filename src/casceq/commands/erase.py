"""LEACE concept erasure during generation (Table 7 / Figure 6), with held-out completeness checks.

Erasers are fitted per probed layer, sequentially (each layer with the earlier layers' erasers active), on the
fitting utterances: those of a capture folder (``--fit CAPTURE_DIR``: its audio, transcripts and probed
layers) or, by default, ``--n`` further items of each task (the next ones of the seeded ranking, spoken by the
same voices): never the evaluated items themselves (checked; an overlap is an error). The random control is drawn
``--n-random`` times. Then every task is answered
with no erasure and under each concept's erasers (text proxy, CTC characters, bag of characters, acoustic,
random control), all layers' erasers active at once through hooks on every forward pass (``--positions``).
Writes ``OUT/mech/erasure.json`` (schema in ``casceq.mech.erasure``) and ``OUT/mech/erasure.md``.
``--calibration RUN_DIR`` answers every condition with a ``casceq run`` folder's held-out offsets of the speech
LLM (score mode; see ``casceq implicit``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from casceq.commands.implicit import add_item_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``erase`` options."""
    add_item_arguments(parser)
    parser.add_argument(
        "--fit",
        metavar="CAPTURE_DIR",
        help="fit on a capture folder's utterances (default: --n other items of each task, same voices)",
    )
    parser.add_argument(
        "--n-random", type=int, default=5, help="draws of the random-subspace control (default 5)"
    )
    parser.add_argument("--layers", type=int, nargs="+", help="probed layers (default: captured / paper's)")
    parser.add_argument(
        "--concepts",
        nargs="+",
        default=["text", "ctc", "boc", "acoustic", "random"],
        help="concepts to erase (default: text ctc boc acoustic random)",
    )
    parser.add_argument(
        "--positions",
        choices=("all", "audio"),
        default="all",
        help="erase every position of every pass (all, the paper's) or the prompt's audio positions only",
    )
    parser.add_argument("--affine", action="store_true", help="LEACE with bias centering (default: none)")


def _fit_clips(args: argparse.Namespace, evaluations: list[Any]) -> tuple[list[Any], Any]:
    """Fitting clips and the capture's layers (None without --fit)."""
    from casceq.audio.io import load_audio
    from casceq.mech.erasure import FitClip

    if args.fit:
        from casceq.mech.shards import CaptureReader

        reader = CaptureReader(args.fit)
        clips = [FitClip(r.id, load_audio(r.audio, 16000), r.transcript) for r in reader.utterances]
        return clips, reader.meta.layers
    from casceq.errors import InputError

    if args.items or not args.voice or not args.audio_dir:
        raise InputError(
            "with --items give --fit CAPTURE_DIR: erasers fitted on the evaluated items would be judged on the "
            "utterances they were fitted on"
        )
    from pathlib import Path

    from casceq.run.items import natural_items, spoken_items
    from casceq.tasks import load_examples

    # Default: the next --n items of each task's seeded ranking (after the evaluated ones), in the same voices
    clips = []
    for task, examples, _ in evaluations:
        evaluated = {ex.id.split("@")[0] for ex in examples}
        seed = 0 if args.seed is None else args.seed
        pool = load_examples(task.name, n=len(evaluated) + args.n, seed=seed, data_dir=args.data_dir)
        fresh = [ex for ex in pool if ex.id not in evaluated][: args.n]
        natural = bool(fresh) and fresh[0].audio is not None
        items = (
            natural_items(fresh) if natural else spoken_items(fresh, args.voice, Path(args.audio_dir) / "fit")
        )
        for it in items:
            if it.example.audio is not None:
                clips.append(
                    FitClip(it.example.id, load_audio(it.example.audio.path, 16000), it.example.text)
                )
    missing = [c.id for c in clips if not c.transcript.strip()]
    if missing or not clips:
        raise InputError(f"fitting needs transcripts: items {missing[:5]} have no text (use --fit)")
    return clips, None


def run(args: argparse.Namespace) -> int:
    """Fit the erasers, answer the tasks under each condition, write the results."""
    import dataclasses

    from casceq.commands.implicit import load_items, run_speech_system
    from casceq.commands.lens import provenance
    from casceq.mech.erasure import run_erasure
    from casceq.tasks import get_task

    prov = provenance(
        ["casceq", "erase", *sys.argv[2:]]
    )  # before the run: the checkout may move on meanwhile
    load, offsets = run_speech_system(args)  # config errors before any model is loaded
    backend = load()
    evaluations = []
    for name in args.task:
        task = get_task(name)
        examples, audios = load_items(args, task)
        evaluations.append((task, examples, audios))
    clips, captured = _fit_clips(args, evaluations)
    result = run_erasure(
        backend,
        clips,
        evaluations,
        layers=args.layers or captured,
        concepts=args.concepts,
        affine=args.affine,
        positions=args.positions,
        mode=args.mode,
        seed=args.seed,
        model=args.model,
        offsets=offsets,
        n_random=args.n_random,
    )
    result = dataclasses.replace(result, extra=prov)
    path = result.write(args.out)
    print(result.markdown(), end="")
    print(f"wrote {path}")
    return 0
