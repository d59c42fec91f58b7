"""Decode every recording of a natural-speech task up front, so a bad file stops a run before it starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from casceq.audio.io import SAMPLE_RATE, load_audio
from casceq.errors import InputError
from casceq.types import Example


@dataclass(frozen=True)
class AudioCheck:
    """One decoded recording: its example, the file's own rate (if the header says) and 16 kHz length."""

    example_id: str
    source_rate: int | None
    seconds: float


def check_audio(examples: Sequence[Example]) -> list[AudioCheck]:
    """Decode, downmix and resample each example's audio with ``casceq.audio.io.load_audio``.

    Raises:
        InputError: An example without audio, or a file that cannot be decoded (example id and file named).
    """
    out = []
    for ex in examples:
        if ex.audio is None:
            raise InputError(f"example {ex.id!r} has no audio")
        try:
            wav = load_audio(ex.audio.path)
        except InputError as exc:
            raise InputError(f"example {ex.id!r}: {exc}") from exc
        out.append(AudioCheck(ex.id, ex.audio.sample_rate, len(wav) / SAMPLE_RATE))
    return out
