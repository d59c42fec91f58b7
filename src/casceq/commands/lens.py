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
    from casceq.errors import InputError
    from casceq.mech.lens import lens_capture, lens_texts, load_model, provenance

    texts = list(args.text)
    if args.text_file:
        path = Path(args.text_file)
        if not path.is_file():
            raise InputError("text file not found", path=str(path))
        texts += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if bool(texts) == bool(args.capture):
        raise InputError("give either a capture folder or --text/--text-file (not both)")
    model, tokenizer = load_model(args.model, dtype=args.dtype)
    if args.capture:
        result = lens_capture(model, tokenizer, args.capture, args.layers)
    else:
        result = lens_texts(model, tokenizer, texts, layers=args.layers, name=args.model)
    import dataclasses

    result = dataclasses.replace(result, extra=provenance(["casceq", "lens", *sys.argv[2:]]))
    path = result.write(args.out)
    print(result.markdown(), end="")
    print(f"wrote {path}")
    return 0
