"""Constants and input checks shared by the Whisper back ends (named once, derived elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from casceq.errors import InputError

SAMPLE_RATE = 16_000
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # one Whisper window: clips up to this length are decoded in one pass
SILENCE_PEAK = 1e-4
"""Peak amplitude (-80 dBFS, ~3 LSB of 16-bit audio) below which a clip is digital silence: transcribed as ""
without running the model, because Whisper hallucinates text ("you") on an empty window and the no-speech rule
does not catch it with every feature extractor."""


def is_silent(audio: np.ndarray) -> bool:
    """Whether a waveform is empty or digital silence (peak below ``SILENCE_PEAK``)."""
    return audio.size == 0 or float(np.abs(audio).max()) < SILENCE_PEAK


def check_waveforms(audios: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate a batch of waveforms and return them as contiguous 1-D float32 arrays.

    Args:
        audios: N waveforms, each 1-D (or [n, 1]) at 16 kHz.

    Raises:
        InputError: A waveform is not 1-D or holds NaN/inf (the message names its index in the batch), so
            bad audio is reported instead of silently transcribed as noise.
    """
    out = []
    for i, audio in enumerate(audios):
        arr = np.asarray(audio, dtype=np.float32)
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        if arr.ndim != 1:
            raise InputError(
                f"waveform {i} of the batch has shape {arr.shape}; expected 1-D mono 16 kHz audio"
            )
        if not np.isfinite(arr).all():
            raise InputError(f"waveform {i} of the batch contains NaN or infinite samples")
        out.append(np.ascontiguousarray(arr))
    return out


def batches(n: int, size: int) -> list[range]:
    """Split ``range(n)`` into consecutive ranges of at most ``size`` items."""
    size = max(1, size)
    return [range(i, min(i + size, n)) for i in range(0, n, size)]
