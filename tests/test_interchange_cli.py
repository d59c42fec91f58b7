"""`casceq import` / `casceq export`: all-or-nothing import, idempotent re-import, exact round trip."""

from __future__ import annotations

import json

from casceq.cli import main
from casceq.io.store import Store

RECORDS_A = [
    {"system": "cascade", "task": "sst2", "condition": "clean", "example_id": "0", "prediction": "positive",
     "gold": "positive", "transcript": "it is a charming film", "backbone": "smollm2", "seconds": 0.25},
    {"system": "cascade", "task": "sst2", "condition": "clean", "example_id": "1",
     "prediction": "Sentiment: negative", "gold": "positive", "transcript": "it isn't a charming film",
     "backbone": "smollm2"},
    {"system": "cascade", "task": "ag_news", "condition": "babble@5", "example_id": "7", "prediction": "World",
     "gold": "Business", "backbone": "smollm2", "label_scores": {"World": -0.5, "Business": -0.75}},
]  # fmt: skip
RECORDS_B = [
    {"system": "speech", "task": "sst2", "condition": "clean", "example_id": "0",
     "prediction": "Hmm, hard to say.", "gold": "positive", "backbone": "smollm2"},
    {"system": "speech", "task": "sst2", "condition": "clean", "example_id": "1", "prediction": "??",
     "gold": "positive", "label": "positive"},
    {"system": "speech", "task": "triviaqa", "condition": "clean", "example_id": "tq1",
     "prediction": "The answer is Paris.", "gold": "Paris", "correct": True},
    {"system": "speech", "task": "triviaqa", "condition": "clean", "example_id": "tq2",
     "prediction": "I don't know", "gold": "Rome", "correct": False},
]  # fmt: skip


def write_jsonl(path, records):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8"
    )
    return str(path)


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_import_then_export_gives_the_same_records(tmp_path, capsys):
    a, b = write_jsonl(tmp_path / "a.jsonl", RECORDS_A), write_jsonl(tmp_path / "b.jsonl", RECORDS_B)
    store = str(tmp_path / "s.sqlite")
    assert main(["import", a, b, "--store", store, "--run", "paper"]) == 0
    assert "7 new, 0 replaced, 0 unchanged (7 in the run)" in capsys.readouterr().out
    out = str(tmp_path / "out.jsonl")
    assert main(["export", "--store", store, "--out", out]) == 0
    assert read_jsonl(out) == RECORDS_A + RECORDS_B
    with Store(store, read_only=True) as s:
        assert {x.name: (x.backbone, x.kind) for x in s.systems("paper")} == {
            "cascade": ("smollm2", "imported"),
            "speech": ("smollm2", "imported"),
        }
        labels = [p.label for p in s.predictions(systems=["speech"])]
    assert labels == ["INVALID", "positive", "Paris", "INVALID"]
    # Filters select records; re-importing the export into a fresh store round-trips again.
    assert main(["export", "--store", store, "--out", out, "--task", "triviaqa"]) == 0
    assert read_jsonl(out) == RECORDS_B[2:]


def test_reimport_is_a_no_op_and_a_changed_record_replaces(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", RECORDS_A)
    store = str(tmp_path / "s.sqlite")
    assert main(["import", a, "--store", store]) == 0
    assert main(["import", a, "--store", store]) == 0
    assert "0 new, 0 replaced, 3 unchanged (3 in the run)" in capsys.readouterr().out
    changed = [dict(RECORDS_A[0], prediction="negative"), *RECORDS_A[1:]]
    assert main(["import", write_jsonl(tmp_path / "a2.jsonl", changed), "--store", store]) == 0
    assert "0 new, 1 replaced, 2 unchanged" in capsys.readouterr().out
    with Store(store, read_only=True) as s:
        assert [(p.example_id, p.label) for p in s.predictions(run="imported", tasks=["sst2"])] == [
            ("0", "negative"),
            ("1", "negative"),
        ]


def test_a_bad_line_anywhere_means_nothing_is_written(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", RECORDS_A)
    bad = write_jsonl(tmp_path / "bad.jsonl", [*RECORDS_B[:2], dict(RECORDS_B[2], task="trivia")])
    store = tmp_path / "s.sqlite"
    assert main(["import", a, bad, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert f"casceq import: error: {bad}:3: unknown task 'trivia'" in err
    assert not store.exists()  # the store is not even created
    # An existing store is left exactly as it was.
    assert main(["import", a, "--store", str(store)]) == 0
    assert main(["import", bad, "--store", str(store), "--run", "imported"]) == 2
    with Store(store, read_only=True) as s:
        assert s.count() == 3


def test_export_needs_run_when_the_store_has_several(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", RECORDS_A)
    store = str(tmp_path / "s.sqlite")
    assert main(["import", a, "--store", store, "--run", "r1"]) == 0
    assert main(["import", a, "--store", store, "--run", "r2"]) == 0
    out = tmp_path / "o.jsonl"
    assert main(["export", "--store", store, "--out", str(out)]) == 2
    assert "the store holds runs r1, r2: choose one with --run" in capsys.readouterr().err
    assert not out.exists()
    assert main(["export", "--store", store, "--out", str(out), "--run", "r3"]) == 2
    assert main(["export", "--store", store, "--out", str(out), "--run", "r2"]) == 0
    assert read_jsonl(out) == RECORDS_A


def test_run_folders_and_stores_as_inputs(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", RECORDS_A)
    folder = tmp_path / "runs" / "exp1"  # a new path without suffix: a run folder
    assert main(["import", a, "--store", str(folder)]) == 0
    assert (folder / "store.sqlite").is_file()
    # A run folder is also an input: copy its predictions into another store.
    copy = tmp_path / "copy.sqlite"
    assert main(["import", str(folder), "--store", str(copy), "--run", "copied"]) == 0
    assert "3 new" in capsys.readouterr().out
    out = tmp_path / "o.jsonl"
    assert main(["export", "--store", str(copy), "--out", str(out)]) == 0
    assert read_jsonl(out) == RECORDS_A
