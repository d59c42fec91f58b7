import sys
import types

import numpy as np
import pytest

from casceq.audio.tts import (
    DEFAULT_VOICES,
    PEAK,
    TARGET_SR,
    TTSError,
    cache_key,
    get_voice,
    list_voices,
    voice_info,
)
from casceq.audio.tts import base as tts_base
from casceq.audio.tts.base import VoiceInfo, to_target
from casceq.errors import InputError, MissingDependency

SENTENCE = "A charming and often affecting journey."
OFFLINE = [v.name for v in list_voices() if v.offline]


def _voice_or_skip(name):
    voice = get_voice(name)
    if not voice.available():
        pytest.skip(f"{name} not available here ({voice.info.requires or voice.engine})")
    return voice


def test_registry_has_six_offline_voices_of_both_sexes_from_several_engines():
    infos = [v for v in list_voices() if v.offline]
    assert len({v.name for v in infos}) >= 6
    assert {v.sex for v in infos} == {"female", "male"}
    assert {"piper", "hibari", "espeak-ng", "flite", "festival"} <= {v.engine for v in infos}
    for v in list_voices():
        assert v.name and v.license and v.sex in ("female", "male")


def test_default_voices_are_offline_distinct_and_mixed_sex():
    assert len(set(DEFAULT_VOICES)) == len(DEFAULT_VOICES) >= 6
    infos = [voice_info(v) for v in DEFAULT_VOICES]
    assert all(i.offline for i in infos)
    assert {i.sex for i in infos} == {"female", "male"}


def test_unknown_voice_is_an_input_error_naming_the_known_ones():
    with pytest.raises(InputError, match="flite-slt"):
        get_voice("no-such-voice")


@pytest.mark.parametrize("name", OFFLINE)
def test_each_offline_voice_speaks_16k_mono_float32_deterministically(name):
    voice = _voice_or_skip(name)
    wav, sr = voice.synthesize(SENTENCE)
    assert sr == TARGET_SR == 16_000
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert 1.0 < len(wav) / sr < 8.0  # six words
    assert np.max(np.abs(wav)) == pytest.approx(PEAK, abs=1e-6)
    # speech, not a tone or silence: the level varies strongly between 50 ms frames
    frames = wav[: len(wav) // 800 * 800].reshape(-1, 800)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    assert rms.max() > 10 * np.percentile(rms, 10)
    again, _ = voice.synthesize(SENTENCE)
    np.testing.assert_array_equal(wav, again)


def test_hibari_seed_changes_audio_so_it_is_in_the_cache_key():
    voice = _voice_or_skip("hibari-heart")
    a, _ = voice.synthesize(SENTENCE, seed=1)
    b, _ = voice.synthesize(SENTENCE, seed=2)
    assert len(a) != len(b) or not np.array_equal(a, b)  # positive control: the seed matters
    info = voice.info
    assert cache_key(info, SENTENCE, 1) != cache_key(info, SENTENCE, 2)


def test_cache_key_covers_text_voice_settings_and_version(monkeypatch):
    info = voice_info("flite-slt")
    k = cache_key(info, "hello")
    assert k == cache_key(info, "hello", seed=5)  # deterministic engine: the seed is irrelevant
    assert k != cache_key(info, "hello.")
    assert k != cache_key(voice_info("flite-rms"), "hello")
    changed = VoiceInfo(**{**info.__dict__, "settings": (("voice", "slt"), ("x", "1"))})
    assert k != cache_key(changed, "hello")
    monkeypatch.setattr(tts_base, "TTS_VERSION", "999")
    assert k != cache_key(info, "hello")


def test_to_target_resamples_without_moving_a_tone():
    sr = 22_050
    t = np.arange(int(1.5 * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    y = to_target(x, sr)
    assert len(y) == round(len(x) * 16_000 / sr)
    spectrum = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spectrum) * 16_000 / len(y)
    assert abs(peak_hz - 440.0) < 1.0
    assert np.max(np.abs(y)) == pytest.approx(PEAK, abs=1e-6)
    stereo_int = (np.stack([x, x], axis=1) * 32767).astype(np.int16)
    np.testing.assert_allclose(to_target(stereo_int, sr), y, atol=1e-3)


def test_silence_and_empty_text_are_tts_errors():
    with pytest.raises(TTSError, match="audible"):
        to_target(np.zeros(16_000), 16_000)
    with pytest.raises(TTSError, match="empty"):
        get_voice("espeak-us").synthesize("   ")


def test_failing_engine_program_raises_tts_error():
    from casceq.audio.tts.espeak import EspeakBackend

    _voice_or_skip("espeak-us")
    bad = EspeakBackend(
        VoiceInfo("espeak-bad", "espeak-ng", "male", "x", "x", settings=(("voice", "xx-none"),))
    )
    with pytest.raises(TTSError, match="espeak-ng failed"):
        bad.synthesize("hello")


def test_festival_unknown_voice_is_unavailable_and_fails_cleanly():
    from casceq.audio.tts.festival import FestivalBackend

    _voice_or_skip("festival-kal")
    bad = FestivalBackend(
        VoiceInfo("f", "festival", "male", "x", "x", settings=(("voice", "nonexistent_voice"),))
    )
    assert not bad.available()
    with pytest.raises(TTSError, match=r"text2wave failed.*voice_nonexistent_voice"):
        bad.synthesize("hello")


def test_piper_missing_dependency_names_the_extra(monkeypatch):
    from casceq.audio.tts.piper import PiperBackend

    monkeypatch.setitem(sys.modules, "piper", None)  # import piper -> ImportError
    backend = PiperBackend(voice_info("piper-joe"))
    with pytest.raises(MissingDependency, match=r"casceq\[piper\]"):
        backend.synthesize("hello")


def test_edge_without_package_names_the_extra(monkeypatch):
    from casceq.audio.tts.edge import EdgeBackend

    monkeypatch.setitem(sys.modules, "edge_tts", None)
    backend = EdgeBackend(voice_info("edge-aria"))
    assert not backend.available()
    with pytest.raises(MissingDependency, match=r"casceq\[edge\]"):
        backend.synthesize("hello")


def test_edge_offline_is_a_clear_per_item_error(monkeypatch):
    from casceq.audio.tts.edge import EdgeBackend

    class Communicate:  # what edge-tts does without a network: the websocket connection fails
        def __init__(self, text, voice):
            self.voice = voice

        async def save(self, path):
            raise OSError("Cannot connect to host speech.platform.bing.com:443")

    monkeypatch.setitem(sys.modules, "edge_tts", types.SimpleNamespace(Communicate=Communicate))
    with pytest.raises(TTSError, match="needs internet"):
        EdgeBackend(voice_info("edge-guy")).synthesize("hello")
