"""Logit lens: project each layer through final norm + unembedding and score the greedy tokens.

Two modes:

- ``casceq lens CAPTURE_DIR --model SPEC --out DIR``: the audio positions of a speech LLM's capture folder
  (``casceq capture``), scored against each utterance's transcript (Table 5 / Figure 5);
- ``casceq lens --model SPEC --text "..." [--text-file FILE] --out DIR``: text into a text LLM (e.g.
  ``smollm2-135m-instruct``, ``gemma-3-270m``), scored against the input text: where input words can still be
  read and where next-token prediction takes over.

- ``casceq lens CAPTURE_DIR --model SPEC --all-positions --out DIR``: the speech LLM run on the full prompt of each
  of the capture's utterances (text before the audio, the audio, the prompt after it), every position scored
  against the transcript and reported per region (audio / text-before / text-after / text): where in the
  sequence the transcript becomes decodable (the paper's Qwen2-Audio analysis). Writes ``DIR/mech/lens_all.json``.

Writes ``DIR/mech/lens.json`` (schema in ``casceq.mech.lens``) and ``DIR/mech/lens.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``lens`` options."""
    parser.add_argument("capture", nargs="?", help="capture folder of a speech LLM (omit with --text)")
    parser.add_argument(
        "--model",
        required=True,
        help="the captured speech LLM ('family:model') or, with --text, a text LLM (bundled name, folder, .gguf)",
    )
    parser.add_argument("--text", action="append", default=[], help="an input text (repeatable)")
    parser.add_argument("--text-file", help="input texts, one per line")
    parser.add_argument("--layers", type=int, nargs="+", help="layer indices (default: all captured / all)")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16"), help="model weights dtype"
    )
    parser.add_argument(
        "--all-positions",
        action="store_true",
        help="run the speech LLM on each captured utterance's full prompt and score every position, per region "
        "(audio, text before/after it); writes mech/lens_all.json",
    )
    parser.add_argument("--prompt", help="with --all-positions: the instruction (default: the capture's)")
    parser.add_argument("--out", required=True, help="output folder (mech/lens.json is written inside)")


def run(args: argparse.Namespace) -> int:
    """Run the lens and write its JSON and markdown table."""
    from casceq.mech.lens import LENS_ALL_FILE, LENS_FILE
    from casceq.stages.lens import LensConfig, run_lens

    config = LensConfig(
        model=args.model,
        out=args.out,
        capture=args.capture,
        texts=tuple(args.text),
        text_file=args.text_file,
        layers=tuple(args.layers) if args.layers else None,
        dtype=args.dtype,
        all_positions=args.all_positions,
        prompt=args.prompt,
        argv=("casceq", "lens", *sys.argv[2:]),
    )
    result = run_lens(config)
    print(result.markdown(), end="")
    print(f"wrote {Path(args.out) / (LENS_ALL_FILE if args.all_positions else LENS_FILE)}")
    return 0
