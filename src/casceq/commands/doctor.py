r"""Check a speech LLM before spending GPU hours on it: weights, prompt ids, scores, batching, transcription.

Runs on 4 clips spoken by a bundled voice, in about a minute. Prints a pass/fail/skip table; the exit status is
1 when a check fails. Example::

    casceq doctor qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct
    casceq doctor ultravox-native:bundled
    casceq doctor qwen2-audio:./my-finetune --backbone qwen-7b --cascade-llm hf:Qwen/Qwen-7B-Chat \\
        --llm-option trust_remote_code=true --llm-option chat_template=chatml

See docs/speech_llms.md for what each check compares.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the model spec and its options."""
    parser.add_argument(
        "model", help="speech LLM spec 'family:model', e.g. qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"
    )
    parser.add_argument("--backbone", help="the backbone id it is matched on (default: the registry's)")
    parser.add_argument(
        "--dtype", default="auto", help="auto (bfloat16 on a GPU, float32 on CPU), float32, bfloat16"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="adapter option (value read as JSON)",
    )
    parser.add_argument("--cascade-llm", help="the matched cascade's LLM spec (default: the registry's)")
    parser.add_argument(
        "--llm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="its make_llm setting (JSON value)",
    )


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"option {pair!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string
    return out


def run(args: argparse.Namespace) -> int:
    """Load the model, run the checks, print the table; 1 if any check failed."""
    from casceq.systems.speech_llm.doctor import diagnose, format_table
    from casceq.systems.speech_llm.registry import SpeechLLMSpec

    spec = SpeechLLMSpec.parse(
        args.model,
        backbone=args.backbone,
        dtype=args.dtype,
        device=args.device,
        options=_options(args.option),
    )
    checks, seconds = diagnose(spec, cascade_llm=args.cascade_llm, llm_settings=_options(args.llm_option))
    print(format_table(checks))
    failed = [c.name for c in checks if c.status == "fail"]
    print(
        f"\n{len(checks)} checks in {seconds:.0f} s: "
        + (f"FAILED {', '.join(failed)}" if failed else "no failure")
    )
    return 1 if failed else 0
