"""Capture: states at audio positions equal an independent forward pass; shards, truncation, NaN, full disk, resume."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sf = pytest.importorskip("soundfile")

from casceq.errors import InputError  # noqa: E402
from casceq.mech.adapters import layout_of  # noqa: E402
from casceq.mech.capture import Utterance, capture  # noqa: E402
from casceq.mech.shards import CaptureReader, read_meta  # noqa: E402
from tests import tiny_models as tm  # noqa: E402

SR = 16_000


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    from transformers import WhisperFeatureExtractor, WhisperModel

    folder = tm.tiny_whisper(tmp_path_factory.mktemp("w") / "whisper")
    return (
        WhisperModel.from_pretrained(folder).eval(),
        WhisperFeatureExtractor.from_pretrained(folder),
        folder,
    )


def _utts(folder: Path, seconds: list[float], seed: int = 0) -> list[Utterance]:
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(seconds):
        t = np.arange(int(s * SR)) / SR
        wav = 0.3 * np.sin(2 * np.pi * 180 * t) * (
            1 + np.sin(2 * np.pi * 2 * t)
        ) + 0.01 * rng.standard_normal(t.size)
        path = folder / f"u{i}.wav"
        sf.write(path, wav.astype(np.float32), SR)
        out.append(Utterance(f"u{i}", str(path), f"utterance number {i}", {"speaker": f"s{i % 2}"}))
    return out


def test_states_equal_an_independent_encoder_run_and_times_follow_20ms(whisper: Any, tmp_path: Path) -> None:
    model, fe, _ = whisper
    utts = _utts(tmp_path, [1.0, 2.33, 0.5])
    meta = capture(
        model,
        utts,
        str(tmp_path / "cap"),
        model="tiny",
        layers=[0, 1],
        dtype="float32",
        feature_extractor=fe,
        shard_positions=120,
    )
    reader = CaptureReader(tmp_path / "cap")
    assert reader.meta == read_meta(tmp_path / "cap") and meta.layers == (0, 1) and meta.width == 32
    assert [r.count for r in reader.utterances] == [50, math.ceil(2.33 / 0.02), 25]
    assert len(reader.shards) == 2  # 50 + 117 >= 120 rows -> shard 0; the last clip -> shard 1
    feats = fe(sf.read(utts[1].audio)[0].astype(np.float32), sampling_rate=SR, return_tensors="pt")
    with torch.inference_mode():
        ref = model.encoder(feats["input_features"], output_hidden_states=True).hidden_states
    blocks = {layer: list(reader.iter_layer(layer)) for layer in (0, 1)}
    rec = reader.utterances[1]
    block0, block1 = blocks[0][0], blocks[1][0]
    np.testing.assert_allclose(block0.states[block0.rows(rec)], ref[0][0, : rec.count].numpy(), atol=1e-5)
    # Layer 1 is the last: stored raw, while transformers' hidden_states[-1] has the final norm applied.
    raw = torch.from_numpy(block1.states[block1.rows(rec)])
    with torch.inference_mode():
        np.testing.assert_allclose(
            layout_of(model).normed(raw).numpy(), ref[1][0, : rec.count].numpy(), atol=1e-4
        )
    assert not np.allclose(raw.numpy(), ref[1][0, : rec.count].numpy(), atol=1e-2)
    frames = blocks[0][0].frames[blocks[0][0].rows(rec)]
    np.testing.assert_allclose(frames[:, 0], np.arange(rec.count) * 0.02, atol=1e-6)
    np.testing.assert_allclose(frames[:, 1] - frames[:, 0], 0.02, atol=1e-6)
    assert (
        np.isfinite(frames[:, 2]).all() and frames[:, 4].max() > 0.5
    )  # energy everywhere; the tone is voiced
    assert meta.tracker == "praat-ac" and "voiced" in meta.voicing_rule


def test_float16_storage_and_default_layers(whisper: Any, tmp_path: Path) -> None:
    model, fe, _ = whisper
    meta = capture(
        model, _utts(tmp_path, [0.6]), str(tmp_path / "c"), model="tiny", feature_extractor=fe, pitch=False
    )
    assert meta.layers == layout_of(model).default_layers() == (0, 1) and meta.dtype == "float16"
    assert np.load(tmp_path / "c" / "shard-00000.states.npy").dtype == np.float16


def test_long_clips_are_truncated_to_the_window_and_recorded(whisper: Any, tmp_path: Path) -> None:
    model, fe, _ = whisper
    capture(
        model,
        _utts(tmp_path, [31.0, 1.0]),
        str(tmp_path / "c"),
        model="tiny",
        layers=[1],
        feature_extractor=fe,
        pitch=False,
    )
    long, short = CaptureReader(tmp_path / "c").utterances
    assert (long.truncated, long.duration, long.count) == (True, 30.0, 1500)
    assert (short.truncated, short.count) == (False, 50)


def test_nan_states_name_the_utterance(whisper: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import casceq.mech.capture as cap

    model, fe, _ = whisper
    real = cap.run_clip
    calls = iter(range(100))

    def poisoned(*a: Any, **k: Any) -> np.ndarray:
        out = real(*a, **k)
        if next(calls) == 1:
            out[0, 3, 5] = np.nan
        return out

    monkeypatch.setattr(cap, "run_clip", poisoned)
    with pytest.raises(InputError, match=r"utterance 'u1': NaN or infinite hidden states at layers \[0\]"):
        capture(
            model,
            _utts(tmp_path, [0.5, 0.5]),
            str(tmp_path / "c"),
            model="tiny",
            layers=[0, 1],
            feature_extractor=fe,
            pitch=False,
        )


def test_full_disk_is_a_clear_error_and_leaves_no_partial_shard(
    whisper: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import casceq.mech.shards as shards

    model, fe, _ = whisper
    real_save = np.save
    saves = iter(range(100))

    def save(f: Any, arr: Any) -> None:
        if next(saves) >= 3:  # shard 0 (states, frames) succeeds; shard 1 runs out of space mid-write
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(f, arr)

    monkeypatch.setattr(shards.np, "save", save)
    out = tmp_path / "c"
    with pytest.raises(
        InputError, match=r"disk full while writing shard-00001.*1 complete shards are intact"
    ):
        capture(
            model,
            _utts(tmp_path, [1.0, 1.0, 1.0]),
            str(out),
            model="tiny",
            layers=[0],
            feature_extractor=fe,
            pitch=False,
            shard_positions=50,
        )
    assert sorted(p.name for p in out.iterdir()) == [
        "capture.partial.json",  # unfinished: capture.json is written only when a capture completes
        "shard-00000.frames.npy",
        "shard-00000.jsonl",
        "shard-00000.states.npy",
    ]
    reader = CaptureReader(out, partial_ok=True)
    assert [r.id for r in reader.utterances] == ["u0"]
    assert next(reader.iter_layer(0)).states.shape == (50, 32)


def test_cli_resume_continues_without_duplicates(whisper: Any, tmp_path: Path) -> None:
    from casceq.cli import main

    _model, _fe, folder = whisper
    audio = tmp_path / "audio"
    audio.mkdir()
    utts = _utts(audio, [0.4, 0.5, 0.6, 0.7])
    for u in utts:
        Path(u.audio).with_suffix(".txt").write_text(u.transcript)
    out = tmp_path / "cap"
    args = [
        "capture",
        "--model",
        f"whisper:{folder}",
        "--audio-dir",
        str(audio),
        "--layers",
        "0",
        "1",
        "--out",
        str(out),
        "--no-pitch",
        "--shard-positions",
        "10",
    ]
    assert main([*args, "--n", "2"]) == 0
    first = [r.id for r in CaptureReader(out).utterances]
    assert len(first) == 2
    assert main([*args, "--n", "2"]) == 2  # exists: refuses without --resume/--force
    assert main([*args, "--n", "4", "--resume"]) == 0
    ids = [r.id for r in CaptureReader(out).utterances]
    assert sorted(ids) == ["u0", "u1", "u2", "u3"] and ids[:2] == first
    assert main([*args, "--layers", "0", "--resume"]) == 2  # different layers: refused
    meta = json.loads((out / "capture.json").read_text())
    assert meta["format"] == "casceq-capture" and "casceq capture" in meta["extra"]["command"]
    assert all(r.transcript == f"utterance number {r.id[1:]}" for r in CaptureReader(out).utterances)


def test_speech_llm_capture_keeps_only_the_clip_positions(tmp_path: Path) -> None:
    from casceq.systems.speech_llm import SpeechLLMSpec, make_speech_llm

    backend = make_speech_llm(
        SpeechLLMSpec("voxtral", str(tm.tiny_voxtral(tmp_path / "vox")), backbone="tiny")
    )
    lay = layout_of(backend)
    capture(
        backend,
        _utts(tmp_path, [1.0, 2.0]),
        str(tmp_path / "c"),
        model="vox",
        layers=[0, lay.n_layers],
        dtype="float32",
        pitch=False,
    )
    recs = CaptureReader(tmp_path / "c").utterances
    assert [r.count for r in recs] == [13, 25]  # ceil(s / 0.08), not the 375 padded chunk positions
    enc = backend.encode([sf.read(recs[0].audio)[0].astype(np.float32)], ["Transcribe the audio."])
    with torch.inference_mode():
        hs = backend.model(**backend._model_inputs(enc), output_hidden_states=True).hidden_states
    pos = (enc.input_ids[0] == backend.audio_token_id).nonzero()[:13, 0]
    block = next(CaptureReader(tmp_path / "c").iter_layer(0))
    np.testing.assert_allclose(block.states[block.rows(recs[0])], hs[0][0, pos].numpy(), atol=1e-5)


def test_layers_above_the_deepest_requested_one_do_not_run(whisper: Any) -> None:
    from casceq.mech.capture import run_clip

    model, fe, _ = whisper
    lay = layout_of(model)
    wav = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    ran: list[int] = []
    handle = lay.layers[0].register_forward_hook(lambda *_: ran.append(1))
    try:
        only0 = run_clip(model, lay, wav, [0], feature_extractor=fe)
        assert ran == []  # stopped before layer 0 ran
        both = run_clip(model, lay, wav, [1, 0], feature_extractor=fe)
        assert ran == [1]
    finally:
        handle.remove()
    assert only0.shape == (1, 50, 32) and both.shape == (2, 50, 32)
    np.testing.assert_array_equal(only0[0], both[1])  # returned in the requested order
