"""Synthesise a spoken test set: one 16 kHz mono FLAC per (example, voice) and a manifest, offline and cached.

Re-running skips files that already exist (their names carry a hash of the spoken text, the voice and its
settings), so a killed run resumes. ``--list-voices`` shows every voice, its engine, sex, licence and whether it
can run on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--task --n --voices --out --seed --jobs --split --data-dir --list-voices --json``."""
    parser.add_argument("--task", help="task name or alias (sst2, ag_news, csqa, ...)")
    parser.add_argument("--n", type=int, default=200, help="number of examples (0 = all; default 200)")
    parser.add_argument(
        "--voices", nargs="+", metavar="VOICE", help="voice names (default: the available default voices)"
    )
    parser.add_argument("--out", help="output folder (audio/, manifest.jsonl, summary.json)")
    parser.add_argument("--seed", type=int, default=0, help="subsampling seed, also seeds stochastic voices")
    parser.add_argument("--jobs", type=int, default=1, help="parallel synthesis threads (default 1)")
    parser.add_argument("--split", help="source split (default: the task's evaluation split)")
    parser.add_argument("--data-dir", help="folder of the task's official files (default: shared datasets)")
    parser.add_argument("--list-voices", action="store_true", help="list voices and exit")
    parser.add_argument("--json", action="store_true", help="with --list-voices: print JSON")


def _list_voices(as_json: bool) -> int:
    from casceq.audio.tts import DEFAULT_VOICES, get_voice, list_voices

    rows = []
    for info in list_voices():
        rows.append(
            {
                "name": info.name,
                "engine": info.engine,
                "sex": info.sex,
                "license": info.license,
                "available": get_voice(info.name).available(),
                "default": info.name in DEFAULT_VOICES,
                "offline": info.offline,
                "extra": info.extra,
                "description": info.description,
            }
        )
    if as_json:
        print(json.dumps({"voices": rows}, indent=2))
        return 0
    header = ("voice", "engine", "sex", "available", "default", "licence")
    table = [header] + [
        (
            r["name"],
            r["engine"],
            r["sex"],
            ("yes" if r["available"] else "no") + ("" if r["offline"] else " (online)"),
            "yes" if r["default"] else "",
            r["license"],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + str(row[5]))
    return 0


def run(args: argparse.Namespace) -> int:
    """List voices, or synthesise ``--n`` examples of ``--task`` in each voice into ``--out``."""
    if args.list_voices:
        return _list_voices(args.json)
    from casceq.errors import InputError

    if not args.task or not args.out:
        raise InputError("--task and --out are required (or use --list-voices)")
    if args.n < 0 or args.jobs < 1:
        raise InputError("--n must be >= 0 and --jobs >= 1")
    from casceq.audio.synth import synthesize_task
    from casceq.audio.tts import DEFAULT_VOICES, available_voices

    voices = args.voices
    if not voices:
        voices = list(available_voices(DEFAULT_VOICES))
        missing = [v for v in DEFAULT_VOICES if v not in voices]
        if missing:
            print(f"note: default voices not available here, left out: {', '.join(missing)}", file=sys.stderr)
        if not voices:
            raise InputError("no default voice can run here; see `casceq synth --list-voices`")

    step = {"next": 0.0}

    def progress(done: int, total: int) -> None:
        if done / total >= step["next"] or done == total:
            print(f"  {done}/{total} files", file=sys.stderr, flush=True)
            step["next"] = done / total + 0.1

    manifest = synthesize_task(
        args.task,
        args.n or None,
        voices,
        args.out,
        args.seed,
        jobs=args.jobs,
        split=args.split,
        data_dir=args.data_dir,
        progress=progress,
    )
    seconds = sum(e.duration for e in manifest.entries)
    print(
        f"{len(manifest.entries)} files ({seconds / 60:.1f} min of audio) in {args.out}; "
        f"{len(manifest.skips)} skipped (see summary.json)"
    )
    for s in manifest.skips[:10]:
        print(f"  skipped {s.example_id} / {s.voice}: {s.reason}", file=sys.stderr)
    return 1 if manifest.skips and not manifest.entries else 0
