"""The CTranslate2 -> transformers Whisper converter.

Fast tests: a tiny random-weight WhisperForConditionalGeneration is written to CTranslate2 format by
CTranslate2's own converter (the independent reference for the file format and the q/k/v fusing), converted
back by casceq, and must reproduce every original weight exactly. Slow tests: the bundled tiny.en and base
weights, whose converted models must give CTranslate2's greedy tokens and encoder outputs (fp32 vs fp32).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from casceq.errors import InputError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ctranslate2 = pytest.importorskip("ctranslate2")

torch.set_num_threads(2)


def _tiny_en_dir() -> Path:
    try:
        from casceq.systems.asr.bundled import bundled_whisper_dir

        return bundled_whisper_dir("tiny.en")
    except Exception as exc:  # MissingDependency
        pytest.skip(f"bundled tiny.en not installed: {exc}")


@pytest.fixture(scope="module")
def tiny_random(tmp_path_factory):
    """A random 2+2-layer Whisper (English vocabulary) and its CTranslate2 conversion by ctranslate2 itself."""
    root = tmp_path_factory.mktemp("rt")
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(
        vocab_size=51864, num_mel_bins=80, d_model=16, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        pad_token_id=50256, bos_token_id=50256, eos_token_id=50256, decoder_start_token_id=50257,
    )  # fmt: skip
    model = transformers.WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # non-zero biases everywhere, so that a misplaced bias cannot go unnoticed
        for name, p in model.named_parameters():
            if "bias" in name or "layer_norm" in name:
                p.normal_(0.0, 0.5)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, suppress_tokens=[1, 2, 7],
        begin_suppress_tokens=[220, 50256], no_timestamps_token_id=50362, is_multilingual=False,
    )  # fmt: skip
    hf = root / "hf"
    model.save_pretrained(hf)
    shutil.copy(_tiny_en_dir() / "tokenizer.json", hf / "tokenizer.json")
    ct2 = ctranslate2.converters.TransformersConverter(str(hf), copy_files=["tokenizer.json"]).convert(
        str(root / "ct2"), force=True
    )
    return model, Path(ct2), root


def test_roundtrip_through_ctranslate2_reproduces_every_weight(tiny_random):
    from casceq.systems.asr.convert import MANIFEST, convert_ct2_whisper

    model, ct2_dir, root = tiny_random
    out = convert_ct2_whisper(ct2_dir, root / "back")
    back = transformers.WhisperForConditionalGeneration.from_pretrained(out, dtype=torch.float32)
    want, got = model.state_dict(), back.state_dict()
    assert set(want) == set(got)
    for name, value in want.items():
        if name.endswith("k_proj.bias"):  # Whisper's key projections have none
            continue
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    assert got["proj_out.weight"].data_ptr() == got["model.decoder.embed_tokens.weight"].data_ptr()
    gen = back.generation_config
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.no_timestamps_token_id) == (50257, 50256, 50362)
    assert list(gen.suppress_tokens) == [1, 2, 7] and list(gen.begin_suppress_tokens) == [220, 50256]
    assert not gen.is_multilingual and not hasattr(gen, "lang_to_id")  # .en: no language/task tokens
    meta = json.loads((out / MANIFEST).read_text())
    assert meta["converter_version"] and len(meta["source_sha256"]["model.bin"]) == 64


def test_roundtrip_generates_the_same_tokens_as_ctranslate2(tiny_random):
    from casceq.systems.asr.convert import convert_ct2_whisper

    _, ct2_dir, root = tiny_random
    out = convert_ct2_whisper(ct2_dir, root / "gen")
    back = transformers.WhisperForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    feats = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 80, 3000)).astype(np.float32))
    ct = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32", intra_threads=2)
    sv = ctranslate2.StorageView.from_array(feats.numpy())
    ref = ct.generate(sv, [[50257, 50362]] * 2, beam_size=1, max_length=20, suppress_tokens=[-1])
    with torch.inference_mode():
        got = back.generate(feats, max_new_tokens=18)
    for r, g in zip(ref, got.tolist(), strict=True):
        tokens = [t for t in g if t not in (50257, 50362)]
        n = min(len(tokens), len(r.sequences_ids[0]))
        assert n >= 5 and tokens[:n] == r.sequences_ids[0][:n]


def test_refuses_existing_output_and_non_whisper_folders(tiny_random, tmp_path):
    from casceq.systems.asr.convert import convert_ct2_whisper

    _, ct2_dir, _ = tiny_random
    (tmp_path / "exists").mkdir()
    with pytest.raises(InputError, match="exists"):
        convert_ct2_whisper(ct2_dir, tmp_path / "exists")
    with pytest.raises(InputError, match="not a CTranslate2 Whisper folder"):
        convert_ct2_whisper(tmp_path / "exists", tmp_path / "out")
    broken = tmp_path / "broken"
    shutil.copytree(ct2_dir, broken)
    data = (broken / "model.bin").read_bytes()
    (broken / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        convert_ct2_whisper(broken, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()  # nothing half-written is left behind
    assert not any(p.name.startswith(".out2") for p in tmp_path.iterdir())


def test_cli_convert_whisper(tiny_random, tmp_path, capsys):
    from casceq.commands import convert_whisper

    _, ct2_dir, _ = tiny_random
    import argparse

    parser = argparse.ArgumentParser()
    convert_whisper.add_arguments(parser)
    args = parser.parse_args([str(ct2_dir), str(tmp_path / "o")])
    assert convert_whisper.run(args) == 0
    assert (tmp_path / "o" / "model.safetensors").is_file()
    assert capsys.readouterr().out.strip() == str(tmp_path / "o")
    with pytest.raises(InputError):
        convert_whisper.run(args)  # exists, no --force
    args = parser.parse_args([str(ct2_dir), str(tmp_path / "o"), "--force"])
    assert convert_whisper.run(args) == 0


def _speech() -> list[np.ndarray]:
    """Two RAVDESS clips and one espeak-ng clip at 16 kHz."""
    import subprocess

    import soundfile as sf

    from casceq.paths import datasets_dir

    root = datasets_dir()
    if root is None or not (root / "ravdess").is_dir():
        pytest.skip("../shared/datasets/ravdess not found")
    clips = [sf.read(root / "ravdess" / f, dtype="float32")[0] for f in (
        "Actor_01/03-01-01-01-01-01-01.flac", "Actor_02/03-01-05-02-02-01-02.flac")]  # fmt: skip
    if shutil.which("espeak-ng"):
        wav = subprocess.run(
            ["espeak-ng", "--stdout", "Where is the nearest train station?"], capture_output=True, check=True
        ).stdout
        import io

        from scipy.signal import resample_poly

        audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
        clips.append(resample_poly(audio, 16000, sr).astype(np.float32))
    return clips


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_bundled_conversion_matches_ctranslate2(name):
    from casceq.systems.asr.bundled import bundled_whisper_dir
    from casceq.systems.asr.convert import converted_whisper

    try:
        src = bundled_whisper_dir(name)
    except Exception as exc:
        pytest.skip(f"bundled {name} not installed: {exc}")
    folder = converted_whisper(name)
    assert converted_whisper(name) == folder  # second call reuses the cache
    model = transformers.WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    proc = transformers.WhisperProcessor.from_pretrained(folder)
    expect = (4, 384, False) if name == "tiny.en" else (6, 512, True)
    assert (
        model.config.encoder_layers,
        model.config.d_model,
        model.generation_config.is_multilingual,
    ) == expect
    feats = proc.feature_extractor(_speech(), sampling_rate=16000, return_tensors="pt").input_features
    ct = ctranslate2.models.Whisper(str(src), device="cpu", compute_type="float32", intra_threads=2)
    sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats.numpy()))
    gen = model.generation_config
    lang = [gen.lang_to_id["<|en|>"], gen.task_to_id["transcribe"]] if gen.is_multilingual else []
    prompt = [gen.decoder_start_token_id, *lang, gen.no_timestamps_token_id]
    with torch.inference_mode():
        enc = model.model.encoder(feats).last_hidden_state.numpy()
        kwargs = {"language": "en", "task": "transcribe"} if gen.is_multilingual else {}
        out = model.generate(feats, **kwargs).tolist()
    # Two float32 engines with different kernels: the weights are equal bit for bit (above), the outputs to
    # rounding. Base's outputs reach |12|; on an AVX2-only CPU one of 2.3M values differed by 1.07e-3 at -11.6.
    np.testing.assert_allclose(np.asarray(ct.encode(sv)), enc, atol=1e-3, rtol=2e-4)
    ref = ct.generate(sv, [prompt] * len(out), beam_size=1, suppress_blank=True, suppress_tokens=[-1])
    eos = gen.eos_token_id
    for r, g in zip(ref, out, strict=True):
        assert [t for t in g if t not in (*prompt, eos)] == r.sequences_ids[0]
    text = proc.tokenizer.decode(out[0], skip_special_tokens=True).strip().lower()
    assert "by the door" in text  # positive control: real speech decodes to real words
