"""Data of the HTML per-example explorer, and the audio clips it embeds.

The explorer lists, for any compared pair, task and condition, the examples where the two systems disagree or
share an error, with input text, gold label, both answers, transcripts and an audio player. Audio is embedded
as ``data:`` URIs (decoded, then re-encoded as FLAC: audio only, never a file's raw bytes) so the HTML stays one
self-contained file that works offline, for at most ``max_clips`` items (default :data:`MAX_CLIPS`), chosen in
order: shared errors of each pair, then its other disagreements.
Clips of noisy conditions are re-rendered exactly as the runner rendered them (same seed, example id and
speaker); when that fails (no babble source here) the clean clip is embedded and labelled as clean. A clip
larger than :data:`MAX_CLIP_BYTES` is not embedded; its row shows the file path instead.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from casceq.audio.conditions import render
from casceq.audio.io import SAMPLE_RATE, load_audio
from casceq.errors import InputError
from casceq.paths import cache_dir
from casceq.report.analysis import prediction_index
from casceq.report.data import ItemAudio, ReportData
from casceq.stats.results import CompareResult
from casceq.types import CLEAN

MAX_CLIPS = 200
"""Default cap on embedded audio clips (about 40-80 kB each for short TTS utterances as FLAC)."""

MAX_CLIP_BYTES = 1_500_000
"""Clips above this size (long natural recordings) are linked by path, not embedded."""

MAX_OUTPUT_CHARS = 200
"""Raw model outputs are cut to this length in the explorer."""


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_OUTPUT_CHARS:
        return text
    return text[: MAX_OUTPUT_CHARS - 1] + "…"


def clip_order(result: CompareResult) -> list[tuple[str, str, str]]:
    """(task, condition, item id) in embedding priority: each pair's shared errors, then its disagreements."""
    first: list[tuple[str, str, str]] = []
    second: list[tuple[str, str, str]] = []
    for p in result.pairs:
        d = result.disagreements(p.a, p.b, p.task, p.condition)
        first += [(p.task, p.condition, e) for e in (*d.both_wrong_same, *d.both_wrong_different)]
        second += [(p.task, p.condition, e) for e in d.labels_differ]
    return list(dict.fromkeys(first + second))


def encode_clip(path: str, condition: str, item_id: str, seed: int, where: str = "") -> tuple[str, bool]:
    """Return a ``data:`` URI of the item's audio under ``condition``; the flag says whether it is what the system heard.

    The file is decoded and the samples re-encoded as FLAC: only audio, never a file's raw bytes, goes into
    the page (a manifest naming any other file cannot smuggle it in).

    Raises:
        InputError: The file does not decode as audio (named with the manifest line ``where``).
    """
    try:
        wav = load_audio(path, sr=SAMPLE_RATE)
    except InputError as exc:
        raise InputError(f"refused {path}: not audio ({exc})", path=where or None) from exc
    if condition != CLEAN:
        try:
            return _flac_uri(_noisy(wav, condition, item_id, seed)), True
        except Exception:  # no babble source here: fall back to the clean clip, labelled
            pass
    return _flac_uri(wav), condition == CLEAN


def _noisy(wav: Any, condition: str, item_id: str, seed: int) -> Any:
    voice = item_id.split("@", 1)[1] if "@" in item_id else None
    return render(condition, wav, item_id, seed, cache_dir(), speaker=voice)


def _flac_uri(wav: Any) -> str:
    import soundfile as sf

    buf = io.BytesIO()
    # Clipped to [-1, 1]: decoded float audio may overshoot slightly, and FLAC stores integers.
    sf.write(buf, wav.clip(-1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return "data:audio/flac;base64," + base64.b64encode(buf.getvalue()).decode()


def explorer_data(data: ReportData, result: CompareResult, max_clips: int = MAX_CLIPS) -> dict[str, Any]:
    """Return the JSON the explorer script reads: groups of aligned rows, pairs, embedded clips.

    Returns:
        ``{"systems", "pairs": [[a, b, task, condition]], "groups": [{"task", "condition", "ids", "gold",
        "text", "labels", "outputs", "correct", "transcripts", "clip", "audio_path"}], "clips": [{"uri",
        "as_heard"}], "max_clips", "n_wanted"}``; ``clip[i]`` indexes ``clips`` or is -1.
    """
    index = prediction_index(data.predictions)
    order = clip_order(result)
    clips: list[dict[str, Any]] = []
    clip_of: dict[tuple[str, str, str], int] = {}
    for task, cond, eid in order:
        if len(clips) >= max_clips:
            break
        audio = data.audio.get((task, eid))
        if audio is None or _size(audio) > MAX_CLIP_BYTES:
            continue
        uri, as_heard = encode_clip(audio.path, cond, eid, data.seed, audio.where)
        clip_of[(task, cond, eid)] = len(clips)
        clips.append({"uri": uri, "as_heard": as_heard})
    groups = []
    for g in result.groups:
        texts = [data.text_of(g.task, e) for e in g.example_ids]
        groups.append(
            {
                "task": g.task,
                "condition": g.condition,
                "ids": list(g.example_ids),
                "gold": list(g.gold),
                "text": [t[0] if t else None for t in texts],
                "labels": {s: list(g.labels[i]) for i, s in enumerate(g.systems)},
                "correct": {s: [int(c) for c in g.correct[i]] for i, s in enumerate(g.systems)},
                "outputs": {
                    s: [_cut(index[(s, g.task, g.condition, e)].output) for e in g.example_ids]
                    for s in g.systems
                },
                "transcripts": _transcripts(index, g.systems, g.task, g.condition, g.example_ids),
                "clip": [clip_of.get((g.task, g.condition, e), -1) for e in g.example_ids],
                "audio_path": [_path(data, g.task, e) for e in g.example_ids],
            }
        )
    return {
        "systems": list(data.systems),
        "kinds": dict(data.kinds),
        "pairs": [[p.a, p.b, p.task, p.condition] for p in result.pairs],
        "groups": groups,
        "clips": clips,
        "max_clips": max_clips,
        "n_wanted": len(order),
    }


def _size(audio: ItemAudio) -> int:
    try:
        return Path(audio.path).stat().st_size
    except OSError as exc:  # checked when the manifest was read; gone since
        raise InputError(
            f"cannot read audio file {audio.path} ({exc.strerror})", path=audio.where or None
        ) from exc


def _path(data: ReportData, task: str, eid: str) -> str | None:
    a = data.audio.get((task, eid))
    return a.path if a else None


def _transcripts(
    index: Any, systems: Sequence[str], task: str, cond: str, ids: Sequence[str]
) -> dict[str, Any]:
    out = {}
    for s in systems:
        trs = [index[(s, task, cond, e)].transcript for e in ids]
        if any(t is not None for t in trs):
            out[s] = [_cut(t) for t in trs]
    return out
