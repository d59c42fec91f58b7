"""Convert a CTranslate2 Whisper folder (or a bundled model: tiny.en, base) into a transformers folder.

The output loads with WhisperForConditionalGeneration.from_pretrained and WhisperProcessor.from_pretrained,
decodes the same greedy tokens as CTranslate2, and carries casceq_conversion.json (source SHA-256, converter
version).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's arguments."""
    parser.add_argument(
        "src", metavar="SRC_CT2_DIR", help="CTranslate2 Whisper folder, or 'tiny.en' / 'base'"
    )
    parser.add_argument("out", metavar="OUT_DIR", help="output folder (created atomically)")
    parser.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")


def run(args: argparse.Namespace) -> int:
    """Convert and print the output folder; returns the exit code."""
    from casceq.systems.asr.convert import convert_ct2_whisper

    out = convert_ct2_whisper(args.src, args.out, overwrite=args.force)
    print(out)
    return 0
