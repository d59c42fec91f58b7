"""Native Ultravox: audio splicing, encoder modes, projector checkpoints and their weight fingerprints."""

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


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ultravox")
    return {
        "whisper": tm.tiny_whisper(root / "whisper"),
        "lm": tm.tiny_causal_lm(root / "lm"),
        "lm_other": tm.tiny_causal_lm(root / "lm_other", seed=tm.SEED + 1),
        "whisper_other": tm.tiny_whisper(root / "whisper_other", seed=tm.SEED + 1),
        "root": root,
    }


def _backend(parts: dict[str, Path], mode: str = "padded") -> Any:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    cfg = UltravoxNativeConfig(
        encoder=str(parts["whisper"]),
        backbone=str(parts["lm"]),
        encoder_mode=mode,
        hidden_dim=64,  # type: ignore[arg-type]
    )
    backend = UltravoxNativeBackend.create(cfg, seed=7)
    return backend


def _clip(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.fixture(scope="module")
def backend(parts: dict[str, Path]) -> Any:
    return _backend(parts)


def _layer0_inputs(b: Any, enc: Any) -> Any:
    seen: dict[str, Any] = {}

    def grab(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen["h"] = args[0] if args else kwargs["hidden_states"]

    handle = b.describe().layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        b.forward_logits(enc)
    finally:
        handle.remove()
    return seen["h"]


def test_audio_embeddings_are_spliced_exactly_at_the_placeholder_span(backend: Any) -> None:
    clips = [_clip(1.0, 0), _clip(2.0, 1)]
    enc = backend.encode(clips, ["Sentiment?", "Topic?"])
    h = _layer0_inputs(backend, enc)  # [B, L, D]: what the first decoder layer sees
    mask = backend.describe().audio_positions(enc.input_ids)
    token_embeds = backend.model.get_input_embeddings()(enc.input_ids.masked_fill(mask, 0))
    for j, clip in enumerate(clips):
        with torch.inference_mode():
            audio = backend.audio_embeddings(clip)
        span = mask[j].nonzero().flatten()
        assert span.tolist() == list(range(int(span[0]), int(span[0]) + len(audio)))  # one contiguous run
        torch.testing.assert_close(h[j, mask[j]], audio)
        torch.testing.assert_close(h[j, ~mask[j]], token_embeds[j, ~mask[j]])


def test_changing_the_audio_changes_the_logits_but_padding_does_not(backend: Any) -> None:
    prompt = ["Sentiment?"]
    base = backend.forward_logits(backend.encode([_clip(1.0, 0)], prompt))[0, -1]
    other = backend.forward_logits(backend.encode([_clip(1.0, 5)], prompt))[0, -1]
    # The same row beside a longer clip: more left padding, nothing else changed.
    padded = backend.forward_logits(backend.encode([_clip(1.0, 0), _clip(3.0, 2)], prompt * 2))[0, -1]
    padding_effect = float((padded - base).abs().max())
    audio_effect = float((base - other).abs().max())
    assert padding_effect < 1e-5
    # Positive control: another clip of the same length moves the answer logits far beyond numerical noise
    # (a random tiny LM barely attends to anything, so the effect is small in absolute terms).
    assert audio_effect > 1e-5 and audio_effect > 20 * padding_effect


def test_unpadded_replay_equals_the_encoder_on_a_full_window(backend: Any) -> None:
    """On exactly 30 s the replay sees the encoder's own input: it must reproduce its output."""
    from casceq.systems.speech_llm.ultravox_native import encoder_frames

    clip = _clip(30.0, 3)
    padded = encoder_frames(backend.encoder, backend.feature_extractor, clip, "padded")
    replay = encoder_frames(backend.encoder, backend.feature_extractor, clip, "unpadded")
    assert len(padded) == len(replay) == 1
    torch.testing.assert_close(replay[0], padded[0], atol=1e-5, rtol=1e-5)
    short = _clip(2.0, 3)  # ... while on a short clip the two modes differ (documented trade-off)
    a = encoder_frames(backend.encoder, backend.feature_extractor, short, "padded")[0]
    b = encoder_frames(backend.encoder, backend.feature_extractor, short, "unpadded")[0]
    assert a.shape == b.shape and (a - b).abs().max() > 1e-3


def test_long_clips_are_encoded_in_30_second_chunks(backend: Any) -> None:
    enc = backend.encode([_clip(31.0, 4)], ["x"])
    # 30 s -> 1500 frames -> 188 embeddings; the 1 s rest -> 50 frames -> 7 embeddings.
    assert int(backend.describe().audio_positions(enc.input_ids).sum()) == 188 + 7


def test_checkpoint_round_trip_keeps_config_weights_and_scores(
    parts: dict[str, Path], tmp_path: Path
) -> None:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend

    b = _backend(parts, mode="unpadded")
    b.save(tmp_path / "ckpt")
    loaded = UltravoxNativeBackend.from_checkpoint(tmp_path / "ckpt")
    assert loaded.config == b.config and loaded.backbone == b.backbone
    for (k1, v1), (k2, v2) in zip(
        b.projector.state_dict().items(), loaded.projector.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    clips, prompts, options = [_clip(1.2, 0)], ["Topic?"], [["sports", "world"]]
    np.testing.assert_array_equal(
        b.score_options(clips, prompts, options), loaded.score_options(clips, prompts, options)
    )


@pytest.mark.parametrize("swap", ["backbone", "encoder"])
def test_checkpoint_refuses_other_encoder_or_backbone_weights(
    parts: dict[str, Path], tmp_path: Path, swap: str
) -> None:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend

    _backend(parts).save(tmp_path / "ckpt")
    other = {
        "backbone": {"backbone": str(parts["lm_other"])},
        "encoder": {"encoder": str(parts["whisper_other"])},
    }
    with pytest.raises(InputError, match=f"different {swap}"):
        UltravoxNativeBackend.from_checkpoint(tmp_path / "ckpt", **other[swap])
    # Same weights under another path and dtype are accepted (the fingerprint is of values, not paths).
    copy = tmp_path / "lm_copy"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(parts["lm"], dtype=torch.bfloat16).save_pretrained(copy)
    AutoTokenizer.from_pretrained(parts["lm"]).save_pretrained(copy)
    UltravoxNativeBackend.from_checkpoint(tmp_path / "ckpt", backbone=str(copy))


def test_fingerprint_sees_a_one_step_change(parts: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    from casceq.systems.speech_llm.ultravox_projector import weights_fingerprint

    lm = AutoModelForCausalLM.from_pretrained(parts["lm"])
    before = weights_fingerprint(lm)
    assert weights_fingerprint(AutoModelForCausalLM.from_pretrained(parts["lm"])) == before
    with torch.no_grad():
        for p in lm.parameters():
            p.add_(0.01 * torch.randn_like(p))  # a training-step-sized change everywhere
    assert weights_fingerprint(lm) != before


def test_malformed_checkpoints_are_named(tmp_path: Path) -> None:
    from casceq.systems.speech_llm.ultravox_projector import ProjectorConfig, read_checkpoint_record

    with pytest.raises(InputError, match=r"no projector\.json"):
        read_checkpoint_record(tmp_path)
    (tmp_path / "projector.json").write_text('{"format": "casceq-ultravox-projector",\n "version": ')
    with pytest.raises(InputError, match=r"projector\.json:2"):
        read_checkpoint_record(tmp_path)
    with pytest.raises(InputError, match="activation"):
        ProjectorConfig(encoder_dim=8, llm_dim=8, activation="relu")  # type: ignore[arg-type]
