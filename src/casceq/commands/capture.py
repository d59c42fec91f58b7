"""Capture hidden states at chosen layers over the audio positions of N utterances, streamed to disk in shards.

Models (``--model``): ``whisper:tiny.en`` / ``whisper:base`` (bundled, converted to PyTorch once),
``whisper:FOLDER`` (a transformers or CTranslate2 Whisper folder; its encoder is captured), or a speech LLM
``FAMILY:PATH`` (``qwen2-audio``, ``phi4-mm``, ``voxtral``, ``qwen2.5-omni``, ``ultravox-native``).
Utterances: ``--task`` (a task whose examples carry audio, e.g. ``ravdess``) or ``--audio-dir`` (a ``casceq
synth`` output folder, or any folder of audio files with optional same-name ``.txt`` transcripts).
Clips longer than the model's window are truncated (recorded per utterance). ``--resume`` continues an
interrupted capture of the same model and layers. A capture that failed (a bad file, a full disk) leaves
``capture.partial.json``, not ``capture.json``: running the same command again continues it, no flag needed.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".m4a", ".mp4")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--model --task|--audio-dir --n --seed --layers --out --prompt --dtype ...``."""
    parser.add_argument(
        "--model", required=True, help="whisper:tiny.en | whisper:base | whisper:DIR | FAMILY:PATH"
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", help="task whose examples carry audio (ravdess, meld, mustard)")
    src.add_argument("--audio-dir", help="casceq synth output folder, or a folder of audio files (+ .txt)")
    parser.add_argument("--n", type=int, default=0, help="utterances to capture (0 = all; seeded subsample)")
    parser.add_argument("--seed", type=int, default=0, help="subsampling seed")
    parser.add_argument(
        "--layers", type=int, nargs="+", help="layer indices (default: the paper's fractions)"
    )
    parser.add_argument("--out", required=True, help="output capture folder")
    parser.add_argument("--prompt", default="Transcribe the audio.", help="instruction for speech LLMs")
    parser.add_argument("--backbone", help="backbone id of a speech LLM not in the known list")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="storage dtype")
    parser.add_argument("--no-pitch", action="store_true", help="skip F0 tracking (energy only)")
    parser.add_argument("--shard-positions", type=int, default=50_000, help="rows per shard (memory bound)")
    parser.add_argument("--data-dir", help="folder of the task's files (default: shared datasets)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted capture in --out")
    mode.add_argument("--force", action="store_true", help="replace an existing capture in --out")


def _rank(key: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def _subsample(items: list[Any], n: int, seed: int) -> list[Any]:
    if n <= 0 or n >= len(items):
        return items
    keep = {u.id for u in sorted(items, key=lambda u: _rank(u.id, seed))[:n]}
    return [u for u in items if u.id in keep]


def utterances_from_task(task: str, data_dir: str | None) -> list[Any]:
    """Utterances of a task's examples that carry audio (transcript = the example text)."""
    from casceq.errors import InputError
    from casceq.mech.capture import Utterance
    from casceq.tasks import load_examples

    out = []
    for e in load_examples(task, data_dir=data_dir):
        if e.audio is None:
            continue
        meta = {k: v for k, v in e.meta.items() if isinstance(v, str | int | float)}
        out.append(Utterance(e.id, e.audio.path, e.text, {**meta, "label": e.label}))
    if not out:
        raise InputError(f"task {task!r} has no examples with audio: synthesise it and use --audio-dir")
    return out


def utterances_from_dir(folder: str) -> list[Any]:
    """Utterances of a ``casceq synth`` folder (manifest) or of the audio files under ``folder``."""
    from casceq.audio.tts.manifest import Manifest
    from casceq.errors import InputError
    from casceq.mech.capture import Utterance

    root = Path(folder)
    if not root.is_dir():
        raise InputError("audio folder not found", path=folder)
    if (root / "manifest.jsonl").is_file():
        return [
            Utterance(
                f"{e.example_id}@{e.voice}",
                str(root / e.path),
                e.spoken_text,
                {"voice": e.voice, "example": e.example_id, "task": e.task},
            )
            for e in Manifest.load(root).entries
        ]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise InputError("no audio files", path=folder)
    out = []
    for p in files:
        txt = p.with_suffix(".txt")
        text = txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
        out.append(
            Utterance(str(p.relative_to(root).with_suffix("")), str(p), text, {"folder": p.parent.name})
        )
    return out


def load_model(spec: str, backbone: str | None) -> tuple[Any, Any]:
    """Load the object to capture (Whisper model or speech-LLM backend) and a feature extractor (Whisper only)."""
    from casceq.errors import InputError

    family, sep, target = spec.partition(":")
    if not sep or not target:
        raise InputError(f"model spec {spec!r} is not 'whisper:NAME|DIR' or 'FAMILY:PATH'")
    if family == "whisper":
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

        from casceq.systems.asr.bundled import BUNDLED
        from casceq.systems.asr.convert import converted_whisper

        folder = Path(target)
        if target in BUNDLED or (folder / "model.bin").is_file():
            folder = converted_whisper(target)
        elif not (folder / "config.json").is_file():
            raise InputError("not a Whisper folder (no config.json or model.bin)", path=target)
        model = WhisperForConditionalGeneration.from_pretrained(str(folder)).eval()
        return model, WhisperFeatureExtractor.from_pretrained(str(folder))
    from casceq.systems.speech_llm.registry import SpeechLLMSpec, default_backbone, make_speech_llm

    chosen = backbone or default_backbone(target) or "unknown"
    backend = make_speech_llm(SpeechLLMSpec(family=family, model=target, backbone=chosen))
    return backend, None


def _prepare_out(out: Path, args: argparse.Namespace) -> tuple[frozenset[str], int]:
    """Ids already captured and the next shard number (``--resume``), after checking ``--out``."""
    from casceq.errors import InputError
    from casceq.mech.shards import META_FILE, PARTIAL_META_FILE, CaptureReader

    # only capture.partial.json: an earlier attempt failed (a bad file, a full disk) or was stopped; it is
    # continued without --resume, so that fixing the input and running the same command again just works
    unfinished = not (out / META_FILE).is_file() and (out / PARTIAL_META_FILE).is_file()
    if not (out / META_FILE).is_file() and not unfinished:
        return frozenset(), 0
    if args.force:
        for p in [*out.glob("shard-*"), out / META_FILE, out / PARTIAL_META_FILE]:
            p.unlink(missing_ok=True)
        return frozenset(), 0
    if not args.resume and not unfinished:
        raise InputError(
            "a capture exists here: pass --resume to continue it or --force to replace it", path=str(out)
        )
    reader = CaptureReader(out, partial_ok=True)
    how = (
        "the unfinished capture here (pass --force to replace it)" if unfinished else "--resume: the capture"
    )
    if reader.meta.model != args.model:
        raise InputError(f"{how} is of {reader.meta.model!r}, not {args.model!r}", path=str(out))
    if args.layers and tuple(sorted(set(args.layers))) != reader.meta.layers:
        raise InputError(f"{how} has layers {list(reader.meta.layers)}, not {args.layers}", path=str(out))
    if unfinished:
        print(
            f"capture: continuing the unfinished capture in {out} ({len(reader.utterances)} utterances kept)"
        )
    args.layers = list(reader.meta.layers)
    done = frozenset(r.id for r in reader.utterances)
    return done, (max(n for n, _ in reader.shards) + 1) if reader.shards else 0


def _command_line(args: argparse.Namespace) -> str:
    """Spell out the capture command these arguments stand for (recorded in capture.json)."""
    src = f"--task {args.task}" if args.task else f"--audio-dir {args.audio_dir}"
    parts = ["casceq capture", f"--model {args.model}", src, f"--n {args.n}", f"--seed {args.seed}"]
    if args.layers:
        parts.append("--layers " + " ".join(map(str, args.layers)))
    parts += [f"--dtype {args.dtype}", f"--out {args.out}"] + (["--no-pitch"] if args.no_pitch else [])
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Capture and print a one-line summary."""
    import platform

    import torch

    from casceq.errors import InputError
    from casceq.mech.capture import capture
    from casceq.mech.shards import CaptureReader

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    skip, first_shard = _prepare_out(out, args)
    utts = (
        utterances_from_task(args.task, args.data_dir) if args.task else utterances_from_dir(args.audio_dir)
    )
    utts = _subsample(utts, args.n, args.seed)
    todo = [u for u in utts if u.id not in skip]
    if not todo:
        print(f"capture: all {len(utts)} utterances already in {out}")
        return 0
    obj, fe = load_model(args.model, args.backbone)
    if skip:
        from casceq.mech.adapters import layout_of
        from casceq.mech.capture import fingerprint

        old = CaptureReader(out, partial_ok=True).meta
        if old.fingerprint != fingerprint(obj, layout_of(obj)):
            raise InputError(
                "--resume: the model's weights differ from the capture in progress", path=str(out)
            )
    extra = {
        "command": _command_line(args),
        "machine": platform.node(),
        "n_requested": args.n,
        "seed": args.seed,
        "source": args.task or args.audio_dir,
    }

    def progress(i: int, uid: str) -> None:
        if i % 25 == 0 or i == len(todo):
            print(f"  {i}/{len(todo)} {uid}", file=sys.stderr, flush=True)

    meta = capture(
        obj,
        todo,
        str(out),
        model=args.model,
        layers=args.layers,
        prompt=args.prompt,
        dtype=args.dtype,
        pitch=not args.no_pitch,
        shard_positions=args.shard_positions,
        feature_extractor=fe,
        extra=extra,
        first_shard=first_shard,
        progress=progress,
    )
    reader = CaptureReader(out)
    n_pos = sum(r.count for r in reader.utterances)
    n_trunc = sum(r.truncated for r in reader.utterances)
    print(
        f"captured {len(reader.utterances)} utterances, {n_pos} positions, layers {list(meta.layers)} of "
        f"{meta.n_layers}, D={meta.width}, {len(reader.shards)} shards, {n_trunc} truncated -> {out}"
    )
    return 0
