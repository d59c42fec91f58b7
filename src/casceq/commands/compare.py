"""Behavioural statistics of predictions, per task and condition.

Accuracy (item-aware Wilson 95% interval); for every pair of systems on classification tasks, Cohen's kappa of
the predicted labels (INVALID a category of its own) with a 95% percentile bootstrap interval over items (one
seeded draw shared by all pairs of a task and condition), conditional error overlap against the chance level
1/(C-1), McNemar on correctness clustered by item (the exact McNemar test with one clip per item) with
Benjamini–Hochberg q-values over all tests of the call, and the backbone confound (kappa with the matched
cascade minus kappa with each mismatched cascade). Open-answer tasks (TriviaQA) get accuracy only. Rows that
share an interchange ``item`` (the voices of one sentence) are one unit for every interval and test
(docs/statistics.md).

Inputs are interchange JSONL files, stores or run folders; systems are aligned by (task, condition,
example_id). A system whose predictions carry transcripts counts as a cascade, any other as a speech LLM;
override with --kind NAME=KIND (cascade, speech_llm, text).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

WIDE = 200
"""Console width used when the output is not a terminal."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``compare`` options."""
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="interchange JSONL files, stores or run folders"
    )
    parser.add_argument(
        "--pairs",
        nargs="+",
        action="extend",
        metavar="A:B",
        help="only these system pairs (default: all pairs); put the option after the files",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples of items (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--json", metavar="OUT", help="also write every result as JSON to OUT ('-': stdout)")
    parser.add_argument(
        "--intersect",
        action="store_true",
        help="compare on the example ids all systems share instead of failing",
    )
    parser.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="NAME=KIND",
        help="declare a system's kind: cascade, speech_llm or text (default: transcripts => cascade)",
    )
    parser.add_argument("--run", help="read only this run from stores and run folders")
    parser.add_argument(
        "--bh-family",
        choices=("call", "speech_vs_cascade"),
        default="call",
        help="Benjamini-Hochberg family of the McNemar q-values: every pair, task and condition of the call "
        "(default), or per task and condition the speech LLMs' tests against cascades (the paper's family)",
    )


def _split_pair(text: str, systems: list[str]) -> tuple[str, str]:
    from casceq.errors import InputError

    # System names may contain ':'; accept the split whose two halves are both known systems.
    splits = [(text[:i], text[i + 1 :]) for i, ch in enumerate(text) if ch == ":"]
    known = [(a, b) for a, b in splits if a in systems and b in systems]
    if len(known) == 1:
        return known[0]
    if not splits:
        raise InputError(f"--pairs: {text!r} is not of the form A:B (put --pairs after the files)")
    raise InputError(f"--pairs: {text!r} does not name two of the systems {', '.join(systems)}")


def _kinds(items: list[str]) -> dict[str, str]:
    from casceq.errors import InputError

    out = {}
    for item in items:
        name, sep, kind = item.rpartition("=")
        if not sep or not name:
            raise InputError(f"--kind: {item!r} is not of the form NAME=KIND")
        out[name] = kind
    return out


def _write_json(path: str, text: str) -> None:
    from casceq.errors import InputError

    target = Path(path)
    if target.is_dir():
        raise InputError("is a folder: give the path of the JSON file to write", path=path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder of the path should be
        raise InputError(f"cannot create the folder {target.parent} ({exc.strerror})", path=path) from exc
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # atomic: a reader never sees half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    """Read the predictions, compute the statistics, print tables and optionally write JSON."""
    from rich.console import Console

    from casceq.io.interchange import read_predictions
    from casceq.report.console import print_tables, stored_kinds
    from casceq.stats.compare import compare

    predictions = read_predictions(args.files, run=args.run)
    systems = list(dict.fromkeys(p.system for p in predictions))
    pairs = [_split_pair(t, systems) for t in args.pairs] if args.pairs else None
    result = compare(
        predictions,
        pairs=pairs,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        intersect=args.intersect,
        kinds={**stored_kinds(args.files, args.run, systems), **_kinds(args.kind)} or None,
        bh_family=args.bh_family,
    )
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    # Piped or redirected output gets wide lines rather than rich's 80-column wrapping of long system names.
    print_tables(result, Console(file=out, width=None if out.isatty() else WIDE), args.bh_family)
    if to_stdout:
        print(result.to_json())
    elif args.json:
        _write_json(args.json, result.to_json())
    return _nothing_compared(result)


def _nothing_compared(result: Any) -> int:
    """Exit status 1 when two or more systems answer classification tasks but no pair shares one."""
    classified = {s for d in result.label_distribution for s in d.systems}
    if result.pairs or len(classified) < 2:
        return 0
    print(
        "casceq compare: no pair of systems could be compared: they share no classification task and "
        "condition (see the notes above)",
        file=sys.stderr,
    )
    return 1
