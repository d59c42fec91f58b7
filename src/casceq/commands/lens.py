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
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
    from casceq.mech.lens import lens_capture, lens_texts

    texts = list(args.text)
    if args.text_file:
        path = Path(args.text_file)
        if not path.is_file():
            raise InputError("text file not found", path=str(path))
        texts += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if bool(texts) == bool(args.capture):
        raise InputError("give either a capture folder or --text/--text-file (not both)")
    prov = provenance(["casceq", "lens", *sys.argv[2:]])  # before the run: the checkout may move on meanwhile
    model, tokenizer = load_model(args.model, dtype=args.dtype)
    if args.capture:
        result = lens_capture(model, tokenizer, args.capture, args.layers)
    else:
        result = lens_texts(model, tokenizer, texts, layers=args.layers, name=args.model)
    import dataclasses

    result = dataclasses.replace(result, extra=prov)
    path = result.write(args.out)
    print(result.markdown(), end="")
    print(f"wrote {path}")
    return 0


def load_model(spec: str, *, dtype: str = "float32") -> tuple[Any, Any]:
    """Load a model for the lens: ``"family:model"`` speech LLMs (``make_speech_llm``) or a text LLM spec.

    Text LLM specs are those of ``casceq.systems.llm.bundled.resolve_llm`` (bundled names, folders, ``.gguf``
    files, hub ids). Returns ``(model_or_backend, tokenizer)``.
    """
    from casceq.systems.speech_llm.registry import SPEECH_LLM_FAMILIES, SpeechLLMSpec, make_speech_llm

    family, sep, _ = spec.partition(":")
    if sep and family in SPEECH_LLM_FAMILIES:
        backend = make_speech_llm(SpeechLLMSpec.parse(spec, dtype=dtype))
        return backend, backend.tokenizer
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from casceq.systems.llm.bundled import resolve_llm

    path, _ = resolve_llm(spec)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    return model, AutoTokenizer.from_pretrained(path)


def provenance(argv: Sequence[str]) -> dict[str, Any]:
    """Collect the command line, git commit of the checkout (if any), machine and library versions, for result files."""
    import os
    import platform
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    import torch
    import transformers

    return {
        "command": " ".join(argv),
        "commit": commit,
        "machine": f"{platform.machine()} {_cpu_model()}".strip(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo ('' if none): platform.processor() is empty on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
