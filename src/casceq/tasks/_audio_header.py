"""Sample rate and duration from a WAV or FLAC header, standard library only (no decoding, no soundfile)."""

from __future__ import annotations

import wave
from pathlib import Path


def audio_header(path: Path) -> tuple[int | None, float | None]:
    """Return ``(sample_rate, duration_seconds)`` read from the file header, ``(None, None)`` when unknown.

    Reads at most 42 bytes for FLAC (the STREAMINFO block) and the RIFF header for PCM WAV; other containers
    (MP4, MP3, float WAV) are left to the audio loader that decodes them.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".flac":
            return _flac_header(path)
        if suffix == ".wav":
            with wave.open(str(path), "rb") as w:
                rate = w.getframerate()
                return rate, (w.getnframes() / rate if rate else None)
    except (OSError, EOFError, wave.Error):
        pass
    return None, None


def _flac_header(path: Path) -> tuple[int | None, float | None]:
    with open(path, "rb") as f:
        head = f.read(42)
    # "fLaC", then a 4-byte block header whose low 7 bits of the first byte are the type (0 = STREAMINFO).
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        return None, None
    info = int.from_bytes(head[18:26], "big")  # 20 bits rate, 3 channels-1, 5 bits-1, 36 total samples
    rate = info >> 44
    total = info & ((1 << 36) - 1)
    if rate == 0:
        return None, None
    return rate, (total / rate if total else None)
