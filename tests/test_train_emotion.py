"""The acoustic control's fine-tuning (``casceq.train.emotion``): it trains on the number inference reads.

On the real offline backbone (Gemma 3 270M) with a random continuous projector, the differentiable option
log-probabilities of the training loss equal what ``score_options`` (the runner's scoring) computes for the same
clip in the same prompt; a backbone whose tokenizer splits an option is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def backend() -> Any:
    from casceq.errors import MissingDependency

    try:
        from casceq.systems.asr.hf_whisper import resolve_hf_whisper
        from casceq.systems.llm.bundled import resolve_llm

        encoder = resolve_hf_whisper("base")
        folder, _ = resolve_llm("gemma-3-270m")
    except MissingDependency as exc:
        pytest.skip(f"offline weights not installed: {exc}")
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    cfg = UltravoxNativeConfig(
        encoder=encoder, backbone=folder, backbone_name="gemma-3-270m", encoder_mode="unpadded",
        stack_factor=4, hidden_dim=1024, prompt="matched", few_shot={},
    )  # fmt: skip
    return UltravoxNativeBackend.create(cfg, seed=0)


def _tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.slow
def test_training_logits_are_the_runners_option_scores(backend: Any) -> None:
    import torch

    from casceq.systems.compose import AUDIO_SLOT
    from casceq.systems.speech_llm.ultravox_native import encoder_frames
    from casceq.tasks import get_task
    from casceq.train.emotion import answer_parts, option_logits
    from casceq.train.matched import prefix_cache

    task = get_task("ravdess")
    audios = [_tone(1.5, 220.0), _tone(2.2, 330.0)]
    scores = backend.score_options(audios, [task.prompt(AUDIO_SLOT)] * 2, [list(task.labels)] * 2)
    parts = answer_parts(backend)
    frames = [encoder_frames(backend.encoder, backend.feature_extractor, a, "unpadded")[0] for a in audios]
    with torch.no_grad():
        mine = option_logits(backend, backend.projector, prefix_cache(backend.model, parts[0]), parts, frames)
    np.testing.assert_allclose(mine.numpy(), scores, atol=2e-3)
    assert np.ptp(scores, axis=1).min() > 0.01  # the options are told apart: not a trivial equality


def test_answer_parts_refuse_options_that_are_not_one_token(tmp_path: Path) -> None:
    from casceq.errors import InputError
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig
    from casceq.train.emotion import answer_parts
    from tests import tiny_models as tm

    cfg = UltravoxNativeConfig(
        encoder=str(tm.tiny_whisper(tmp_path / "w")), backbone=str(tm.tiny_causal_lm(tmp_path / "lm")),
        encoder_mode="unpadded", stack_factor=2, hidden_dim=64, prompt="matched", few_shot={},
    )  # fmt: skip
    tiny = UltravoxNativeBackend.create(cfg, seed=0)
    with pytest.raises(InputError, match="one backbone token"):
        answer_parts(tiny)  # the tiny byte-level tokenizer splits " neutral"


def test_emotion_config_file_sets_fields_and_refuses_bad_ones(tmp_path: Path) -> None:
    from casceq.errors import InputError
    from casceq.train.emotion import EmotionConfig, load_emotion_config

    good = tmp_path / "emotion.toml"
    good.write_text("steps = 240\nimitate_weight = 10\nimitate_batch = 16\nlr = 3e-4\n")
    cfg = load_emotion_config(good)
    assert (cfg.steps, cfg.imitate_weight, cfg.imitate_batch, cfg.lr) == (240, 10.0, 16, 3e-4)
    assert cfg.batch == EmotionConfig().batch  # the rest keep their defaults
    for text, words in [
        ("stepz = 3\n", "unknown keys"),
        ("steps = 2.5\n", "steps must be int"),
        ("imitate_weight = true\n", "imitate_weight must be float"),
        ("steps = \n", "invalid TOML"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(InputError, match=words):
            load_emotion_config(bad)
    with pytest.raises(InputError, match="not found"):
        load_emotion_config(tmp_path / "missing.toml")


def test_acoustic_control_takes_a_shipped_name_and_refuses_a_ctc_start(tmp_path: Path, capsys) -> None:
    from casceq.cli import main
    from casceq.systems.speech_llm.shipped import checkpoint_folder, shipped_folder

    assert checkpoint_folder("continuous") == shipped_folder("continuous")
    # the default --model (the shipped CTC model) is resolved to its package folder and refused by its record
    assert main(["train", "acoustic-control", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "starts from a continuous (imitation-trained) checkpoint" in err and "speech_llm" in err
