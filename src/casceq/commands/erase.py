"""LEACE concept erasure during generation (Table 7 / Figure 6), with held-out completeness checks.

Erasers are fitted per probed layer, sequentially (each layer with the earlier layers' erasers active), on the
fitting utterances: those of a capture folder (``--fit CAPTURE_DIR``: its audio, transcripts and probed
layers) or, by default, the evaluated items themselves (their text as transcript). Then every task is answered
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
        "--fit", metavar="CAPTURE_DIR", help="fit on a capture folder's utterances (default: items)"
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
    clips = [
        FitClip(ex.id, wav, ex.text)
        for _task, examples, audios in evaluations
        for ex, wav in zip(examples, audios, strict=True)
    ]
    missing = [c.id for c in clips if not c.transcript.strip()]
    if missing:
        from casceq.errors import InputError

        raise InputError(
            f"fitting needs transcripts: items {missing[:5]} have no text (add 'text' or use --fit)"
        )
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
    )
    result = dataclasses.replace(result, extra=prov)
    path = result.write(args.out)
    print(result.markdown(), end="")
    print(f"wrote {path}")
    return 0
