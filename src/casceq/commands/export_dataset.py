"""Export spoken test sets (synthesis folders) as a Hugging Face dataset on disk.

One row per clip with an Audio column (the clip's bytes), text, spoken_text, label, voice, condition, item
and task; ``datasets.load_from_disk(OUT)`` reads it back. See docs/import.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``casceq export-dataset SYNTH_DIR... --out DIR``."""
    parser.add_argument(
        "dirs", nargs="+", metavar="SYNTH_DIR", help="synthesis folders (with manifest.jsonl)"
    )
    parser.add_argument("--out", required=True, help="the (new or empty) folder to write the dataset into")


def run(args: argparse.Namespace) -> int:
    """Write the dataset and say how many clips it holds."""
    from casceq.audio.hf_dataset import export_hf_dataset

    n = export_hf_dataset(args.dirs, args.out)
    print(f"{n} clips from {len(args.dirs)} folder(s) written as a Hugging Face dataset to {args.out}")
    return 0
