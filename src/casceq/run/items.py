"""The evaluated items of a task: examples, and their audio when a system listens.

Text-sufficient tasks are spoken by each configured TTS voice (an item per example and voice, id
``"{example_id}@{voice}"``); tasks with natural speech (RAVDESS, or MELD/MUStARD with a user's audio folder)
use their recordings (one item per example). Text systems answer once per example; the runner copies their
answer to every voice of it.

The predictions of a voiced item carry ``item = base_id`` (set from ``meta["base_id"]`` where rows are built),
so the statistics resample the voices of an example, and the text ceiling's copies of one answer, together.
The item does not name the condition: where a statistic pools conditions, one example under every condition
is one cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from casceq.audio.conditions import render
from casceq.audio.io import load_audio
from casceq.audio.synth import synthesize_examples
from casceq.errors import InputError
from casceq.paths import cache_dir
from casceq.types import CLEAN, AudioRef, Example


@dataclass(frozen=True)
class Item:
    """One evaluated item.

    Attributes:
        example: The example as stored (its ``id`` is the item id: voiced items carry ``@voice``).
        base_id: The task example's id (shared by every voice of it).
        audio: The clean audio, or None for a text-only run.
    """

    example: Example
    base_id: str
    audio: AudioRef | None

    @property
    def audio_key(self) -> str:
        """Identifies the clean audio content (sha256, or the path when no hash is known)."""
        if self.audio is None:
            return ""
        return self.audio.sha256 or self.audio.path

    @property
    def duration(self) -> float:
        """Audio duration in seconds (0 when unknown), or text length as a proxy for sorting."""
        if self.audio is not None and self.audio.duration:
            return float(self.audio.duration)
        return len(self.example.text) / 15.0


def text_items(examples: Sequence[Example]) -> list[Item]:
    """Items of a text-only run: one per example, no audio."""
    return [Item(ex, ex.id, None) for ex in examples]


def natural_items(examples: Sequence[Example]) -> list[Item]:
    """Items of a natural-speech task: the examples' own recordings, keyed by the SHA-256 of their bytes.

    A recording keyed by its path would keep a stale row after the file is fixed or replaced; keyed by its
    content (as synthesised audio is) it is predicted again. An unreadable file keeps its path as key (it
    never becomes a prediction; see the runner's input failures).
    """
    items = []
    for ex in examples:
        if ex.audio is None:
            raise InputError(f"example {ex.id} of {ex.task} has no audio (natural-speech task)")
        ref = ex.audio if ex.audio.sha256 else replace(ex.audio, sha256=content_sha256(ex.audio.path))
        items.append(Item(replace(ex, audio=ref), ex.id, ref))
    return items


def content_sha256(path: str) -> str | None:
    """SHA-256 hex digest of a file's bytes, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def spoken_items(
    examples: Sequence[Example], voices: Sequence[str], audio_dir: Path, jobs: int = 1
) -> list[Item]:
    """Synthesise (or find cached) audio of every example in every voice; an item per (example, voice).

    Examples a voice could not speak (empty text, engine failure) are left out here and listed by the
    synthesis manifest's skips; the runner reports how many.
    """
    manifest = synthesize_examples(list(examples), list(voices), audio_dir, jobs=jobs)
    by_id = {ex.id: ex for ex in examples}
    items = []
    for row in manifest.entries:
        ex = by_id.get(row.example_id)
        if ex is None or row.voice not in voices:  # the folder's manifest also lists earlier, larger requests
            continue
        ref = row.audio_ref(audio_dir)
        voiced = Example(
            id=f"{ex.id}@{row.voice}",
            task=ex.task,
            text=ex.text,
            label=ex.label,
            choices=ex.choices,
            audio=ref,
            meta={**dict(ex.meta), "voice": row.voice, "base_id": ex.id},
        )
        items.append(Item(voiced, ex.id, ref))
    return items


def load_item_audio(item: Item, condition: str, seed: int) -> np.ndarray:
    """The item's 16 kHz waveform under a condition (noise variants are rendered once and cached)."""
    if item.audio is None:
        raise InputError(f"item {item.example.id} has no audio")
    wav = load_audio(item.audio.path, sr=16000)
    if condition == CLEAN:
        return wav
    speaker = (
        item.example.meta.get("actor") or item.example.meta.get("speaker") or item.example.meta.get("voice")
    )
    return render(condition, wav, item.example.id, seed, cache_dir(), speaker=speaker)
