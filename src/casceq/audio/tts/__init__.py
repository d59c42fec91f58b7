"""Offline text-to-speech voices behind one interface (:class:`TTSBackend`) and a lazy registry.

    from casceq.audio.tts import get_voice, list_voices, DEFAULT_VOICES
    wav, sr = get_voice("flite-slt").synthesize("A charming and often affecting journey.")  # (n,), 16000

Engine packages are imported only when a voice is used; see docs/voices.md for the voices, their licences,
their measured Whisper WER and speed.
"""

from __future__ import annotations

from casceq.audio.tts.base import PEAK, TARGET_SR, TTS_VERSION, TTSBackend, TTSError, VoiceInfo, cache_key
from casceq.audio.tts.registry import available_voices, get_voice, list_voices, voice_info

DEFAULT_VOICES: tuple[str, ...] = ()
"""The default voice set: offline voices whose Whisper tiny.en WER on SST-2 sentences is <= 0.5 (docs/voices.md)."""

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
