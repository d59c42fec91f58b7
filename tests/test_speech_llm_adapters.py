"""Speech-LLM adapters on tiny random-weight instances of the real classes, loaded via from_pretrained."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests import tiny_models as tm  # noqa: E402

SR = 16_000
PROMPTS = ["Is this positive?", "Topic?"]


def _clips(seed: int = 0, seconds: tuple[float, ...] = (1.0, 1.5)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in seconds]


def _load(family: str, folder: Path) -> Any:
    from casceq.systems.speech_llm import SpeechLLMSpec, make_speech_llm

    if family == "ultravox-native":
        from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

        cfg = UltravoxNativeConfig(
            encoder=str(folder / "whisper"),
            backbone=str(folder / "lm"),
            backbone_name="tiny",
            hidden_dim=64,
            encoder_mode="unpadded",  # the padded mode is covered in test_speech_llm_ultravox.py
        )
        UltravoxNativeBackend.create(cfg, seed=3).save(folder / "projector")
        folder = folder / "projector"
    options: dict[str, Any] = {"batch_size": 4}
    if family == "phi4-mm":
        options["speech_lora"] = None  # the tiny model has none (see test_phi4_warns_without_its_speech_lora)
    return make_speech_llm(SpeechLLMSpec(family, str(folder), backbone="tiny", options=options))


BUILDERS = {
    "qwen2-audio": tm.tiny_qwen2_audio,
    "phi4-mm": tm.tiny_phi4_multimodal,
    "voxtral": tm.tiny_voxtral,
    "qwen2.5-omni": tm.tiny_qwen_omni_thinker,
    "ultravox-native": lambda d: (tm.tiny_whisper(d / "whisper"), tm.tiny_causal_lm(d / "lm"), d)[-1],
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp(request.param.replace(".", "_"))
    return _load(request.param, BUILDERS[request.param](folder))


def _reference_logits(b: Any, enc: Any, audio: np.ndarray) -> Any:
    """Full logits [L, V] of one unpadded row, through the model's own batch-of-one forward."""
    with torch.inference_mode():
        if b.family == "ultravox-native":
            return b.model(inputs_embeds=b.embed(enc)).logits[0]
        kwargs = dict(enc.audio_kwargs)
        if b.family == "phi4-mm":  # the model's native inputs, as its processor would build them
            kwargs = dict(b.feature_extractor([audio], sampling_rate=SR, return_tensors="pt"))
        return b.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, **kwargs).logits[0]


def test_generate_returns_strings_for_a_batch_of_different_lengths(backend: Any) -> None:
    from casceq.systems.base import SpeechLLMBackend

    assert isinstance(backend, SpeechLLMBackend) and backend.backbone == "tiny"
    out = backend.generate(_clips(), PROMPTS, max_new_tokens=3)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)


def test_generation_does_not_depend_on_the_batch(backend: Any) -> None:
    clips = _clips()
    together = backend.generate(clips, PROMPTS, max_new_tokens=3)
    alone = [backend.generate([c], [p], max_new_tokens=3)[0] for c, p in zip(clips, PROMPTS, strict=True)]
    assert together == alone


def test_scores_do_not_depend_on_the_batch(backend: Any) -> None:
    clips, options = _clips(), [["yes", "no"], ["yes", "no"]]
    s2 = backend.score_options(clips, PROMPTS, options)
    s1 = np.vstack(
        [backend.score_options([c], [p], [o]) for c, p, o in zip(clips, PROMPTS, options, strict=True)]
    )
    np.testing.assert_allclose(s2, s1, atol=1e-4)
    backend.batch_size = 1  # chunked internally: same rows, same order
    try:
        np.testing.assert_allclose(backend.score_options(clips, PROMPTS, options), s2, atol=1e-4)
    finally:
        backend.batch_size = 4


@pytest.mark.parametrize("options", [["yes", "maybe"], ["A", "B"]], ids=["multi-token", "one-token"])
def test_score_options_equals_naive_per_option_log_likelihood(backend: Any, options: list[str]) -> None:
    clips = _clips(seed=1)
    got = backend.score_options(clips, PROMPTS, [options, options])
    for i, (clip, prompt) in enumerate(zip(clips, PROMPTS, strict=True)):
        for c, option in enumerate(options):
            n = len(backend.tokenizer.encode(option, add_special_tokens=False))
            enc = backend.encode([clip], [prompt], [option])
            logp = _reference_logits(backend, enc, clip).float().log_softmax(-1)
            ids = enc.input_ids[0]
            want = sum(float(logp[p - 1, ids[p]]) for p in range(len(ids) - n, len(ids)))
            assert got[i, c] == pytest.approx(want, abs=1e-4)
    assert np.all(np.isfinite(got)) and np.all(got < 0)


def _expected_audio_positions(family: str, seconds: float) -> int:
    frames = int(seconds * SR) // 160  # Whisper-style log-mel: 100 frames per second
    if family in ("qwen2-audio", "qwen2.5-omni"):
        return (math.ceil(frames / 2) - 2) // 2 + 1  # 25 Hz: conv stride 2, then pooling (kernel 2, stride 2)
    if family == "phi4-mm":
        return math.ceil(((int(seconds * SR) - 400) // 160 + 1) / 8)  # 80 ms per embedding
    if family == "voxtral":
        return 375 * math.ceil(seconds / 30)  # a full padded 30 s chunk each
    return math.ceil(math.ceil(frames / 2) / 8)  # ultravox: 50 Hz encoder frames stacked by 8


def test_audio_positions_mask_has_the_expected_count(backend: Any) -> None:
    seconds = (1.0, 1.5, 31.0) if backend.family == "voxtral" else (1.0, 1.5)
    enc = backend.encode(_clips(seconds=seconds), ["x"] * len(seconds))
    mask = backend.describe().audio_positions(enc.input_ids)
    assert mask.shape == enc.input_ids.shape and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [_expected_audio_positions(backend.family, s) for s in seconds]
    assert not (mask & (enc.attention_mask == 0)).any()  # never on padding


def test_describe_parts_reproduce_the_logits(backend: Any) -> None:
    """Last layer output -> final_norm -> lm_head equals the model's logits: the anatomy is the right one."""
    anatomy = backend.describe()
    seen: dict[str, Any] = {}

    def grab(_m: Any, _a: Any, out: Any) -> None:
        seen["h"] = out[0] if isinstance(out, tuple) else out

    handle = anatomy.layers[-1].register_forward_hook(grab)
    try:
        enc = backend.encode(_clips()[:1], PROMPTS[:1])
        logits = backend.forward_logits(enc)
    finally:
        handle.remove()
    with torch.inference_mode():
        rebuilt = anatomy.lm_head(anatomy.final_norm(seen["h"])).float()
    torch.testing.assert_close(rebuilt, logits, atol=1e-4, rtol=1e-4)


def test_qwen2_audio_ids_match_the_reference_processor(tmp_path: Path) -> None:
    """Prompt format and audio-token count equal Qwen2AudioProcessor's (chat template + expansion)."""
    from transformers import AutoTokenizer, Qwen2AudioProcessor, WhisperFeatureExtractor

    b = _load("qwen2-audio", tm.tiny_qwen2_audio(tmp_path / "q"))
    clip = _clips()[1]
    proc = Qwen2AudioProcessor(
        WhisperFeatureExtractor.from_pretrained(tmp_path / "q"), AutoTokenizer.from_pretrained(tmp_path / "q")
    )
    messages = [
        {"role": "user", "content": [{"type": "audio", "audio": "x"}, {"type": "text", "text": "Topic?"}]}
    ]
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    want = proc(text=text, audio=[clip], sampling_rate=SR, return_tensors="pt")
    got = b.encode([clip], ["Topic?"])
    assert got.input_ids[0].tolist() == want["input_ids"][0].tolist()
    torch.testing.assert_close(got.audio_kwargs["input_features"], want["input_features"])


def test_bfloat16_load_scores_like_float32(tmp_path: Path) -> None:
    """The registry's dtype option reaches the loader, and a bfloat16 model scores like the float32 one."""
    from casceq.systems.speech_llm import SpeechLLMSpec, make_speech_llm

    folder = str(tm.tiny_qwen2_audio(tmp_path / "q"))
    clips, options = _clips(), [["A", "B"], ["A", "B"]]
    scores = {}
    for dtype in ("float32", "bfloat16"):
        backend = make_speech_llm(SpeechLLMSpec("qwen2-audio", folder, backbone="t", dtype=dtype))
        assert backend.model.dtype == getattr(torch, dtype)
        scores[dtype] = backend.score_options(clips, PROMPTS, options)
    np.testing.assert_allclose(scores["bfloat16"], scores["float32"], atol=0.1)


def test_phi4_warns_without_its_speech_lora(tmp_path: Path) -> None:
    from casceq.systems.speech_llm.phi4_mm import Phi4MMBackend

    folder = str(tm.tiny_phi4_multimodal(tmp_path / "p"))
    with pytest.warns(UserWarning, match="without the speech LoRA"):
        Phi4MMBackend.from_pretrained(folder, backbone="t")


def test_phi4_batched_native_forward_depends_on_batch_mates_ours_does_not(tmp_path: Path) -> None:
    """Why the Phi-4 adapter encodes clip by clip: the model's own batched forward is not batch-invariant."""
    b = _load("phi4-mm", tm.tiny_phi4_multimodal(tmp_path / "p"))
    clips = _clips()
    both, alone = b.encode(clips, PROMPTS), b.encode(clips[:1], PROMPTS[:1])
    native = {}
    with torch.inference_mode():
        for name, enc, audio in (("both", both, clips), ("alone", alone, clips[:1])):
            feats = b.feature_extractor(audio, sampling_rate=SR, return_tensors="pt")
            native[name] = b.model(
                input_ids=enc.input_ids,
                attention_mask=enc.attention_mask,
                position_ids=enc.position_ids(),
                **feats,
            ).logits[0, -1]
    assert (native["both"] - native["alone"]).abs().max() > 1e-4  # the problem exists ...
    ours = b.forward_logits(both, last=1)[0, -1] - b.forward_logits(alone, last=1)[0, -1]
    assert ours.abs().max() < 1e-5  # ... and the adapter avoids it
