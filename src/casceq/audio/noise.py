"""Additive noise at an exact SNR, and babble noise sources.

:func:`mix_at_snr` scales a noise segment so that ``10·log10(P_speech / P_noise)`` over the speech clip's length
equals the target SNR, where ``P_noise`` is the power of the noise *actually added* (after looping/cropping and
scaling), so the guarantee holds up to float error rather than "on average". If the sum would clip, speech and
noise are rescaled by one common gain, which leaves the SNR unchanged; the gain is recorded, never hidden.

Two babble sources implement :class:`BabbleSource` (defined in :mod:`casceq.audio.babble`, re-exported here):

- :class:`RecordedBabble`: real multi-talker babble recordings (the default; offline: the NOISEX-92-style files in
  ``datasets/babble``), resampled to 16 kHz and looped from a random offset.
- :class:`TalkerBabble`: MUSAN-style babble built by summing 3–7 level-normalised talkers drawn from a folder of
  speech (RAVDESS actors offline, or a user's MUSAN ``speech`` folder), never including the target speaker.

All arrays are float mono at one sample rate (:data:`~casceq.audio.io.SAMPLE_RATE` unless stated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Babble sources are re-exported so that "noise = babble + SNR mixing" is one import (babble.py never imports
# this module, so there is no cycle).
from casceq.audio.babble import BabbleSource, RecordedBabble, TalkerBabble, speaker_key
from casceq.audio.io import is_silent, validate
from casceq.errors import InputError


@dataclass(frozen=True)
class MixResult:
    """The outcome of :func:`mix_at_snr`.

    Attributes:
        mixture: ``speech_part + noise_part``, float32, shape ``(n,)``; peak ≤ ``peak_limit``.
        speech_part: The speech as it appears in the mixture (``gain * speech``), float32, shape ``(n,)``.
        noise_part: The noise as it appears in the mixture, float32, shape ``(n,)``.
        snr_db: Target SNR in dB.
        measured_snr_db: ``10·log10(P(speech_part) / P(noise_part))`` over the clip.
        noise_scale: Factor applied to the noise segment before ``gain``.
        gain: Common gain applied to speech and noise (1.0 unless the mixture would have clipped).
        noise_offset: Sample index in ``noise`` where the (looped) segment starts.
    """

    mixture: np.ndarray
    speech_part: np.ndarray
    noise_part: np.ndarray
    snr_db: float
    measured_snr_db: float
    noise_scale: float
    gain: float
    noise_offset: int


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def mix_at_snr(
    speech: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    *,
    name: str | None = None,
    peak_limit: float = 1.0,
) -> MixResult:
    """Add ``noise`` to ``speech`` at ``snr_db`` dB, looping/cropping the noise from a random offset.

    Args:
        speech: Speech samples, shape ``(n,)``.
        noise: Noise samples at the same sample rate, shape ``(m,)``; looped when ``m < n``.
        snr_db: Target SNR in dB (speech power over added-noise power, over the speech clip's length).
        rng: Source of the random noise offset.
        name: File or example id named in errors.
        peak_limit: If the mixture's peak exceeds it, speech and noise are both scaled by ``peak_limit / peak``.

    Returns:
        A :class:`MixResult` (float32 arrays of shape ``(n,)``).

    Raises:
        InputError: Empty, non-finite or silent speech, or a silent noise segment (the SNR is undefined).
    """
    s = validate(speech, name).astype(np.float64)
    nz = validate(noise, None if name is None else f"{name} (noise)").astype(np.float64)
    if is_silent(s):
        raise InputError("speech is silent: an SNR is undefined", path=name)
    offset = int(rng.integers(nz.size))
    segment = np.take(nz, np.arange(offset, offset + s.size), mode="wrap")
    p_speech, p_noise = _power(s), _power(segment)
    if is_silent(segment):
        raise InputError("noise segment is silent: an SNR is undefined", path=name)
    # Scale the segment actually added, so the SNR is exact over this clip rather than over the noise file.
    scale = float(np.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0))))
    noise_part = segment * scale
    mixture = s + noise_part
    peak = float(np.max(np.abs(mixture)))
    gain = peak_limit / peak if peak > peak_limit else 1.0
    speech_out = (s * gain).astype(np.float32)
    noise_out = (noise_part * gain).astype(np.float32)
    measured = 10.0 * np.log10(_power(speech_out) / _power(noise_out))
    return MixResult(
        mixture=(mixture * gain).astype(np.float32),
        speech_part=speech_out,
        noise_part=noise_out,
        snr_db=float(snr_db),
        measured_snr_db=float(measured),
        noise_scale=scale,
        gain=gain,
        noise_offset=offset,
    )


__all__ = ["BabbleSource", "MixResult", "RecordedBabble", "TalkerBabble", "mix_at_snr", "speaker_key"]
