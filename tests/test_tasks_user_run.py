"""A user task end to end through ``casceq run``: tasks_file in the experiment TOML, then compare and report of
the run folder in a fresh registry (the run's config.json names the tasks file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import casceq.tasks as tasks
from casceq.io import records
from tests.tiny_models import tiny_causal_lm

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "user_task"


pytestmark = pytest.mark.usefixtures("clean_task_registry")


def test_run_a_user_task_then_compare_and_report_the_run_folder(tmp_path, capsys):
    from casceq.cli import main

    llm = tiny_causal_lm(tmp_path / "tiny")
    (tmp_path / "user").mkdir()
    for name in ("tasks.toml", "intent3.csv"):
        shutil.copy(EXAMPLES / name, tmp_path / "user" / name)
    exp = tmp_path / "exp.toml"
    exp.write_text(
        f'name = "u"\ntasks_file = "user/tasks.toml"\ncalibration = "none"\nbootstrap = 100\n'
        f"[tasks.intent3]\nn = 6\n"
        f'[[systems]]\nname = "A"\nkind = "text"\nllm = "hf:{llm}"\n'
        f'[[systems]]\nname = "B"\nkind = "text"\nllm = "hf:{llm}"\nanswer_mode = "generate"\n'
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(exp), "--out", str(run_dir)]) == 0
    examples = {e.id: e for e in tasks.load_examples("intent3", n=6, seed=0)}
    # A fresh registry, as in a new process: the run folder's config names the tasks file.
    tasks._USER.clear()
    tasks._BY_NAME.pop("intent3")
    records.load_task.cache_clear()
    capsys.readouterr()
    out = tmp_path / "compare.json"
    assert main(["compare", str(run_dir), "--json", str(out)]) == 0
    assert "not registered" not in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert {a["system"] for a in result["accuracy"]} == {"A", "B"}
    assert all(a["n"] == 6 for a in result["accuracy"])
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert {r["example_id"] for r in rows} == set(examples)
    assert all(r["gold"] == examples[r["example_id"]].label for r in rows)
    assert main(["report", str(run_dir), "--formats", "md", "--out", str(tmp_path / "rep")]) == 0
    assert "intent3" in (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")


def test_run_an_audiofolder_task_with_a_cascade(tmp_path):
    """Recorded speech at 44.1/8/22.05 kHz, mono and stereo, is transcribed by a cascade like MELD's audio is."""
    import numpy as np
    import soundfile as sf

    from casceq.cli import main
    from casceq.errors import MissingDependency
    from casceq.io.store import Store
    from casceq.systems.asr.bundled import bundled_whisper_dir

    pytest.importorskip("faster_whisper")
    try:
        bundled_whisper_dir("tiny.en")
    except MissingDependency:
        pytest.skip("bundled Whisper tiny.en not installed")
    llm = tiny_causal_lm(tmp_path / "tiny")
    (tmp_path / "calls").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i, (sr, ch, label) in enumerate([(44_100, 2, "anger"), (8_000, 1, "joy"), (22_050, 1, "neutral")]):
        n = int(sr * 1.2)
        sf.write(tmp_path / "calls" / f"c{i}.wav", 0.05 * rng.standard_normal((n, ch) if ch > 1 else n), sr)
        rows.append(f"c{i}.wav,call number {i},{label}")
    (tmp_path / "calls" / "metadata.csv").write_text("file_name,text,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "tasks.toml").write_text(
        '[tasks.calls]\nlabels = ["neutral", "anger", "joy"]\ntext_sufficient = false\n'
        '[tasks.calls.data]\naudiofolder = "calls"\n'
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(
        f'name = "n"\ntasks_file = "tasks.toml"\ncalibration = "none"\nbootstrap = 50\n[tasks.calls]\n'
        f'[[systems]]\nname = "Cascade"\nkind = "cascade"\nasr = "faster-whisper:tiny.en"\nllm = "hf:{llm}"\n'
    )
    assert main(["run", str(exp), "--out", str(tmp_path / "run")]) == 0
    with Store(tmp_path / "run" / "store.sqlite", read_only=True) as store:
        preds = store.predictions(run="n")
    assert sorted(p.example_id for p in preds) == ["c0", "c1", "c2"]
    assert all(p.transcript is not None for p in preds)  # the cascade's ASR read each recording
    assert {p.example_id: p.gold for p in preds} == {"c0": "anger", "c1": "joy", "c2": "neutral"}
