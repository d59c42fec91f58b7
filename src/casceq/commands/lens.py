"""Logit lens: project each layer through final norm + unembedding and score the greedy tokens.

Two modes:

- ``casceq lens CAPTURE_DIR --model SPEC --out DIR``: the audio positions of a speech LLM's capture folder
  (``casceq capture``), scored against each utterance's transcript (Table 5 / Figure 5);
- ``casceq lens --model SPEC --text "..." [--text-file FILE] --out DIR``: text into a text LLM (e.g.
  ``smollm2-135m-instruct``, ``gemma-3-270m``), scored against the input text: where input words can still be
  read and where next-token prediction takes over.

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
    parser.add_argument("--out", required=True, help="output folder (mech/lens.json is written inside)")


def run(args: argparse.Namespace) -> int:
    """Run the lens and write its JSON and markdown table."""
    from casceq.mech.lens import LENS_FILE
    from casceq.stages.lens import LensConfig, run_lens

    config = LensConfig(
        model=args.model,
        out=args.out,
        capture=args.capture,
        texts=tuple(args.text),
        text_file=args.text_file,
        layers=tuple(args.layers) if args.layers else None,
        dtype=args.dtype,
        argv=("casceq", "lens", *sys.argv[2:]),
    )
    result = run_lens(config)
    print(result.markdown(), end="")
    print(f"wrote {Path(args.out) / LENS_FILE}")
    return 0
