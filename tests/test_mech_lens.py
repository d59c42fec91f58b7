"""Logit lens: the last layer's lens equals the real logits (norm applied once, soft-capping), precision counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from casceq.errors import InputError  # noqa: E402
from tests import tiny_models as tm  # noqa: E402

SR = 16_000


def _randomise_norm(norm: Any, seed: int = 0) -> None:
    """A non-trivial final norm weight, so applying the norm twice is visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(norm.weight.shape, generator=g) * 2.0 + 0.3)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lens")


@pytest.fixture(scope="module")
def llama(root: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tm.tiny_causal_lm(root / "llama")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    _randomise_norm(model.model.norm)
    return model, AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def gemma(root: Path) -> tuple[Any, Any]:
    """A tiny ``Gemma3ForCausalLM`` with a soft-cap small enough to bite (random logits are small)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tok = tm.byte_tokenizer(
        ["<pad>", "<bos>", "<eos>"], bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    cfg = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        final_logit_softcapping=0.5,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(tm.SEED)
    folder = root / "gemma"
    Gemma3ForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert type(model).__name__ == "Gemma3ForCausalLM"
    _randomise_norm(model.model.norm, seed=1)
    return model, AutoTokenizer.from_pretrained(folder)


def _last_layer_raw(model: Any, ids: Any) -> tuple[Any, Any, Any]:
    from casceq.mech.adapters import layout_of
    from casceq.mech.capture import LayerTap

    layout = layout_of(model)
    with LayerTap(layout, [layout.n_layers]) as tap, torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
    return layout, tap.states[layout.n_layers][0], out


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_lens_of_last_layer_equals_real_logits(which: str, request: pytest.FixtureRequest) -> None:
    from casceq.mech.lens import lens_token_ids

    model, tok = request.getfixturevalue(which)
    ids = torch.tensor([tok.encode("hello lens world", add_special_tokens=False)])
    layout, raw, out = _last_layer_raw(model, ids)
    with torch.inference_mode():
        lens_logits = layout.unembed(raw)
        torch.testing.assert_close(lens_logits, out.logits[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(lens_token_ids(layout, raw), out.logits[0].argmax(-1).numpy())
        # Positive controls: the norm applied twice (hidden_states[-1] already has it) gives other logits.
        double = layout.unembed(out.hidden_states[-1][0])
        assert (double - out.logits[0]).abs().max() > 1e-2
    if which == "gemma":
        assert layout.softcap == 0.5
        assert float(out.logits.abs().max()) <= 0.5  # capped
        uncapped = layout.lm_head(layout.final_norm(raw))
        assert (uncapped - out.logits[0]).abs().max() > 1e-2


def _clip(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.fixture(scope="module")
def ultravox(root: Path) -> Any:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    cfg = UltravoxNativeConfig(
        encoder=str(tm.tiny_whisper(root / "whisper")),
        backbone=str(tm.tiny_causal_lm(root / "uv_lm")),
        hidden_dim=64,
    )
    backend = UltravoxNativeBackend.create(cfg, seed=7)
    with torch.no_grad():
        backend.projector.ln_post.weight.mul_(20.0)
    _randomise_norm(backend.model.model.norm, seed=2)
    return backend


@pytest.fixture(scope="module")
def qwen2_audio(root: Path) -> Any:
    from casceq.systems.speech_llm.qwen2_audio import Qwen2AudioBackend

    backend = Qwen2AudioBackend.from_pretrained(str(tm.tiny_qwen2_audio(root / "qwen2a")), backbone="tiny")
    _randomise_norm(backend.model.model.language_model.norm, seed=3)
    return backend


@pytest.mark.parametrize("which", ["ultravox", "qwen2_audio"])
def test_speech_llm_lens_at_audio_positions_equals_real_logits(
    which: str, request: pytest.FixtureRequest
) -> None:
    from casceq.mech.adapters import layout_of
    from casceq.mech.capture import run_clip

    backend = request.getfixturevalue(which)
    layout = layout_of(backend)
    wav = _clip(1.2, 5)
    states = run_clip(backend, layout, wav, [layout.n_layers], prompt="Say it.")[0]  # [P, D] raw
    batch = backend.encode([wav], ["Say it."])
    logits = backend.forward_logits(batch)[0]  # [L, V]
    mask = batch.input_ids[0] == backend.audio_token_id
    real = logits[mask][: len(states)]
    with torch.inference_mode():
        lens = layout.unembed(torch.from_numpy(states)).float()
    torch.testing.assert_close(lens, real, rtol=1e-4, atol=1e-4)


def test_normaliser_drops_special_and_punctuation_and_bag_precision() -> None:
    from casceq.mech.lens_tokens import LayerTally, TokenNormaliser

    tok = tm.byte_tokenizer(["<|endoftext|>", "<|im_end|>"], eos_token="<|im_end|>")
    norm = TokenNormaliser(tok)
    ids = tok.encode("a,B", add_special_tokens=False)  # byte tokens: 'a', ',', 'B'
    assert [norm(i) for i in ids] == ["a", "", "b"]
    assert norm(tok.convert_tokens_to_ids("<|im_end|>")) == ""
    bag = norm.reference_bag("A cat")
    assert {"a", "c", "t", "cat"} <= bag
    tally = LayerTally(3)
    scored = [*tok.encode("az!", add_special_tokens=False), tok.convert_tokens_to_ids("<|im_end|>")]
    tally.add(np.array(scored), bag, norm)
    r = tally.result(text_mode=False)
    assert (r.n_tokens, r.n_hits, r.precision) == (2, 1, 0.5)  # 'a' hit, 'z' miss, '!' and special dropped


def test_text_lens_layer0_reads_the_input_tokens_with_tied_embeddings(gemma: tuple[Any, Any]) -> None:
    """Gemma ties its unembedding to the (scaled) input embeddings: the layer-0 lens mostly returns the input."""
    from casceq.mech.lens import lens_texts

    model, tok = gemma
    res = lens_texts(model, tok, ["the cat sat", "on a mat"], layers=[0, 2])
    first, _last = res.layers
    assert first.identity is not None and first.identity >= 0.8
    assert first.precision is not None and first.precision >= first.identity - 1e-9
    assert res.n_positions == len("the cat sat") + len("on a mat")  # byte tokens; <bos> not scored
    js = res.to_json()
    assert js["kind"] == "lens" and [x["layer"] for x in js["layers"]] == [0, 2]
    assert "| layer |" in res.markdown()
    with pytest.raises(InputError, match=r"valid indices are 0\.\.2"):
        lens_texts(model, tok, ["x"], layers=[3])


def test_lens_capture_counts_match_an_independent_recount(ultravox: Any, tmp_path: Path) -> None:
    import soundfile as sf

    from casceq.mech.adapters import layout_of
    from casceq.mech.capture import Utterance, capture
    from casceq.mech.lens import TokenNormaliser, lens_capture

    layout = layout_of(ultravox)
    utts = []
    for k, text in enumerate(["one two", "three four five"]):
        path = tmp_path / f"u{k}.wav"
        sf.write(path, _clip(1.0 + k, 10 + k), SR)
        utts.append(Utterance(f"u{k}", str(path), text))
    out = tmp_path / "cap"
    capture(ultravox, utts, str(out), model="tiny", layers=[0, 2], dtype="float32", pitch=False)
    res = lens_capture(ultravox, ultravox.tokenizer, out)
    assert [r.layer for r in res.layers] == [0, 2] and res.n_utterances == 2
    norm = TokenNormaliser(ultravox.tokenizer)
    n_tok = n_hit = 0
    for u in utts:
        import soundfile as sf2

        wav = sf2.read(u.audio, dtype="float32")[0]
        batch = ultravox.encode([wav], [""])
        ids = ultravox.forward_logits(batch)[0][batch.input_ids[0] == ultravox.audio_token_id].argmax(-1)
        bag = norm.reference_bag(u.transcript)
        toks = [s for s in (norm(int(i)) for i in ids) if s]
        n_tok += len(toks)
        n_hit += sum(s in bag for s in toks)
    assert (res.layers[1].n_tokens, res.layers[1].n_hits) == (n_tok, n_hit)
    assert layout.n_layers == 2
    with pytest.raises(InputError, match="not captured"):
        lens_capture(ultravox, ultravox.tokenizer, out, layers=[1])
    with torch.no_grad():
        ultravox.projector.ln_post.weight.mul_(1.5)  # other weights than captured
    try:
        with pytest.raises(InputError, match="other weights"):
            lens_capture(ultravox, ultravox.tokenizer, out)
    finally:
        with torch.no_grad():
            ultravox.projector.ln_post.weight.div_(1.5)


def _positions_clips(seconds: tuple[float, ...] = (1.0, 1.6)) -> list[tuple[str, np.ndarray, str]]:
    texts = ("one two", "three four five")
    return [(f"u{k}", _clip(s, 20 + k), texts[k % 2]) for k, s in enumerate(seconds)]


def test_all_position_lens_regions_count_every_position_and_match_real_logits(ultravox: Any) -> None:
    """Region sizes equal an independent count of the encoded prompt; the last layer's per-region tallies equal
    a recount from the model's own logits; the audio region equals the capture lens at audio positions."""
    from casceq.mech.adapters import layout_of
    from casceq.mech.lens import TokenNormaliser, lens_positions

    layout = layout_of(ultravox)
    clips = _positions_clips()
    res = lens_positions(ultravox, ultravox.tokenizer, clips, layers=[0, 2], prompt="Say it.")
    assert res.source == "all-positions" and [r.region for r in res.regions] == [
        "audio",
        "text-before",
        "text-after",
        "text",
    ]
    norm = TokenNormaliser(ultravox.tokenizer)
    want = dict.fromkeys(("audio", "text-before", "text-after"), 0)
    recount = {r: [0, 0] for r in want}
    for _uid, wav, text in clips:
        batch = ultravox.encode([wav], ["Say it."])
        ids = batch.input_ids[0].numpy()
        audio = np.flatnonzero(ids == ultravox.audio_token_id)
        assert len(audio) == layout.n_positions(wav)  # native Ultravox: no padding placeholders
        pos = np.arange(len(ids))
        masks = {
            "audio": ids == ultravox.audio_token_id,
            "text-before": pos < audio[0],
            "text-after": pos > audio[-1],
        }
        logits = ultravox.forward_logits(batch)[0].argmax(-1).numpy()
        bag = norm.reference_bag(text)
        for r, m in masks.items():
            want[r] += int(m.sum())
            toks = [s for s in (norm(int(i)) for i in logits[m]) if s]
            recount[r][0] += len(toks)
            recount[r][1] += sum(s in bag for s in toks)
    got = {r.region: r for r in res.regions}
    for r, n in want.items():
        assert got[r].n_positions == n > 0
        last = got[r].layers[1]
        assert last.layer == 2 and (last.n_tokens, last.n_hits) == tuple(recount[r])
    assert got["text"].n_positions == want["text-before"] + want["text-after"]
    assert res.n_positions == sum(want.values())
    for i in range(2):  # all positions together = the sum of the regions
        assert res.layers[i].n_tokens == got["audio"].layers[i].n_tokens + got["text"].layers[i].n_tokens
    assert "| layer | audio | text-before | text-after | text |" in res.markdown()
    back = type(res).from_json(res.to_json())
    assert back.regions == res.regions and back.region("audio") == got["audio"]


def test_all_position_lens_scores_text_positions_against_the_transcript(ultravox: Any) -> None:
    """Positive control: with the unembedding tied to the embeddings, layer 0's lens reads the input tokens back,
    so text positions score high exactly when the transcript is the prompt's own text."""
    from casceq.mech.lens import lens_positions

    model = ultravox.model
    saved = model.lm_head.weight.detach().clone()
    norm_w = model.model.norm.weight.detach().clone()
    try:
        with torch.no_grad():
            model.lm_head.weight.copy_(model.model.embed_tokens.weight)
            model.model.norm.weight.fill_(1.0)
        wav = _clip(1.0, 3)
        own = lens_positions(ultravox, ultravox.tokenizer, [("a", wav, "Say it. user assistant")], layers=[0])
        other = lens_positions(ultravox, ultravox.tokenizer, [("a", wav, "zzz qqq")], layers=[0])
    finally:
        with torch.no_grad():
            model.lm_head.weight.copy_(saved)
            model.model.norm.weight.copy_(norm_w)
    p_own = own.region("text-after").layers[0].precision
    p_other = other.region("text-after").layers[0].precision
    assert (
        p_own is not None and p_other is not None and p_own >= 0.6 and p_other <= 0.2
    )  # measured 0.81 and 0.0


@pytest.mark.slow
def test_cli_lens_all_positions_writes_lens_all_json(root: Path, tmp_path: Path) -> None:
    import soundfile as sf

    from casceq.cli import main
    from casceq.mech.lens import LensResult
    from casceq.mech.shards import CaptureReader
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    cfg = UltravoxNativeConfig(
        encoder=str(tm.tiny_whisper(tmp_path / "w")),
        backbone=str(tm.tiny_causal_lm(tmp_path / "lm")),
        hidden_dim=64,
        encoder_mode="unpadded",
    )
    ckpt = UltravoxNativeBackend.create(cfg, seed=7).save(tmp_path / "ckpt")
    audio = tmp_path / "audio"
    audio.mkdir()
    for uid, wav, text in _positions_clips((1.0, 1.4, 0.8)):
        sf.write(audio / f"{uid}.wav", wav, SR)
        (audio / f"{uid}.txt").write_text(text)
    model = f"ultravox-native:{ckpt}"
    cap = tmp_path / "cap"
    common = ["--layers", "0", "2"]
    assert (
        main(
            ["capture", "--model", model, "--audio-dir", str(audio), "--out", str(cap), "--no-pitch", *common]
        )
        == 0
    )
    out = tmp_path / "out"
    assert main(["lens", str(cap), "--model", model, "--all-positions", "--out", str(out)]) == 0
    res = LensResult.from_json(__import__("json").loads((out / "mech" / "lens_all.json").read_text()))
    assert [r.layer for r in res.layers] == [0, 2] and res.n_utterances == 3
    assert res.region("audio").n_positions == sum(r.count for r in CaptureReader(cap).utterances)
    assert (out / "mech" / "lens_all.md").is_file() and not (out / "mech" / "lens.json").exists()
    assert main(["lens", "--model", model, "--text", "hi", "--all-positions", "--out", str(out)]) == 2
