"""Offline text-to-speech voices behind one interface (:class:`TTSBackend`) and a lazy registry.

    from casceq.audio.tts import get_voice, list_voices, DEFAULT_VOICES
    wav, sr = get_voice("flite-slt").synthesize("A charming and often affecting journey.")  # (n,), 16000

Engine packages are imported only when a voice is used; see docs/voices.md for the voices, their licences,
their measured Whisper WER and speed.
"""

from __future__ import annotations

from casceq.audio.tts.base import PEAK, TARGET_SR, TTS_VERSION, TTSBackend, TTSError, VoiceInfo, cache_key
from casceq.audio.tts.registry import available_voices, get_voice, list_voices, voice_info

DEFAULT_VOICES: tuple[str, ...] = (
    "hibari-heart",
    "festival-slt-hts",
    "espeak-gb-f4",
    "piper-joe",
    "flite-rms",
    "flite-awb",
)
"""The default voice set, like the paper's six (three female, three male): six speakers from five engines, each
with Whisper tiny.en WER <= 0.5 on SST-2 sentences (measured values in docs/voices.md). piper-joe needs the
optional GPL extra ``casceq[piper]``; ``casceq synth`` leaves out defaults that cannot run and says so."""

__all__ = [
    "DEFAULT_VOICES",
    "PEAK",
    "TARGET_SR",
    "TTS_VERSION",
    "TTSBackend",
    "TTSError",
    "VoiceInfo",
    "available_voices",
    "cache_key",
    "get_voice",
    "list_voices",
    "voice_info",
]
