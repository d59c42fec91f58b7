"""Interchange JSONL reading/writing: exact predictions, every error names file:line, atomic writes."""

from __future__ import annotations

import json
import os

import pytest

from casceq.errors import InputError
from casceq.io.interchange import MAX_ERRORS, read_predictions, write_predictions
from casceq.io.store import Store
from casceq.types import INVALID, Prediction


def rec(system="cascade", task="sst2", example_id="e1", prediction="positive", gold="positive", **kw):
    return {
        "system": system,
        "task": task,
        "example_id": example_id,
        "prediction": prediction,
        "gold": gold,
        **kw,
    }


def write_jsonl(path, records):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8"
    )
    return path


def test_reading_parses_free_text_and_fills_defaults(tmp_path):
    f = write_jsonl(
        tmp_path / "a.jsonl",
        [
            rec(prediction="positive", backbone="smollm2", transcript="a fine film", seconds=0.5),
            rec(example_id="e2", prediction="The sentiment is **negative**.", gold="positive"),
            rec(example_id=3, prediction="I am not sure, it could be positive or negative.", gold="negative"),
            "",
            rec(
                task="ag_news",
                prediction="Answer: Sci/Tech",
                gold="Sci/Tech",
                condition="babble@5",
                label_scores={"World": -3.0, "Sci/Tech": -0.1},
            ),
            rec(system="s2", example_id="e2", prediction="whatever", label="negative", gold="positive"),
        ],
    )
    got = read_predictions(f)
    assert got == [
        Prediction("cascade", "sst2", "clean", "e1", "positive", "positive", "positive", "a fine film",
                   seconds=0.5, backbone="smollm2", correct=True),
        Prediction("cascade", "sst2", "clean", "e2", "The sentiment is **negative**.", "negative", "positive",
                   correct=False),
        Prediction("cascade", "sst2", "clean", "3", "I am not sure, it could be positive or negative.", INVALID,
                   "negative", correct=False),
        Prediction("cascade", "ag_news", "babble@5", "e1", "Answer: Sci/Tech", "Sci/Tech", "Sci/Tech",
                   correct=True),
        Prediction("s2", "sst2", "clean", "e2", "whatever", "negative", "positive", correct=False),
    ]  # fmt: skip
    assert got[3].label_scores == {"World": -3.0, "Sci/Tech": -0.1}


def test_open_answer_gold_aliases_decide_correctness(tmp_path):
    f = write_jsonl(
        tmp_path / "t.jsonl",
        [
            rec(
                task="triviaqa",
                example_id="q1",
                prediction="The answer is Paris, France.",
                gold=["Paris", "Paris, France"],
            ),
            rec(task="triviaqa", example_id="q2", prediction="Lyon", gold="Marseille"),
            rec(task="triviaqa", example_id="q3", prediction="I don't know.", gold="Nice"),
            rec(task="triviaqa", example_id="q4", prediction="Big Apple", gold="New York", correct=True),
        ],
    )
    got = read_predictions(f)
    assert [(p.gold, p.correct) for p in got] == [("Paris", True), ("Marseille", False), ("Nice", False),
                                                  ("New York", True)]  # fmt: skip
    assert got[2].label == INVALID


BAD_LINES = [
    ('{"system": "a", "task": "sst2",', r"not valid JSON"),
    ("[1, 2]", r"must be a JSON object"),
    (rec(gold=None), r"gold None is not a label"),
    ({k: v for k, v in rec().items() if k != "gold"}, r"missing field\(s\) 'gold'"),
    (rec(conditon="clean"), r"unknown field\(s\) 'conditon'"),
    (rec(task="sst3"), r"unknown task 'sst3' \(known tasks: sst2, "),
    (rec(gold="Positive"), r"gold 'Positive' is not a label of task 'sst2' .*did you mean 'positive'"),
    (rec(gold="neutral"), r"gold 'neutral' is not a label of task 'sst2'"),
    (rec(prediction=1), r"field 'prediction' must be a string"),
    (rec(system=""), r"field 'system' must be a non-empty string"),
    (rec(example_id=1.5), r"field 'example_id' must be a non-empty string or an integer"),
    (rec(transcript=5), r"field 'transcript' must be a string or null"),
    (rec(label="maybe"), r"label 'maybe' is neither a label of task 'sst2' nor 'INVALID'"),
    (rec(correct=False), r"'correct' is False but label 'positive' vs gold 'positive' says True"),
    (rec(seconds=-1), r"'seconds' must not be negative"),
    (rec(seconds="fast"), r"'seconds' must be a finite number"),
    (rec(label_scores={"positive": "high"}), r"label_scores\['positive'\] must be a finite number"),
    (rec(task="triviaqa", gold=[]), r"must be a string or a list of strings"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_each_bad_line_is_an_input_error_naming_file_and_line(tmp_path, line, message):
    f = write_jsonl(tmp_path / "bad.jsonl", [rec(example_id="ok1"), "", line, rec(example_id="ok2")])
    with pytest.raises(InputError, match=message) as info:
        read_predictions(f)
    assert str(info.value).startswith(f"{f}:3: ")
    assert (info.value.path, info.value.line) == (str(f), 3)
    # Positive control: without the bad line the same file reads.
    good = write_jsonl(tmp_path / "good.jsonl", [rec(example_id="ok1"), "", rec(example_id="ok2")])
    assert len(read_predictions(good)) == 2


def test_duplicates_and_gold_conflicts_within_and_across_files(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [rec(example_id="1"), rec(example_id="2", gold="negative")])
    dup_within = write_jsonl(tmp_path / "w.jsonl", [rec(), rec(system="x"), rec()])
    with pytest.raises(InputError, match=r"w\.jsonl:3: duplicate prediction .* first given at .*w\.jsonl:1"):
        read_predictions(dup_within)
    dup_across = write_jsonl(
        tmp_path / "b.jsonl", [rec(system="s2", example_id="1"), rec(example_id="2", gold="negative")]
    )
    with pytest.raises(InputError, match=r"b\.jsonl:2: duplicate prediction .* first given at .*a\.jsonl:2"):
        read_predictions([a, dup_across])
    # Another condition of the same example is no duplicate.
    other = write_jsonl(tmp_path / "c.jsonl", [rec(example_id="1", condition="babble@0")])
    assert len(read_predictions([a, other])) == 3
    conflict = write_jsonl(tmp_path / "d.jsonl", [rec(system="s3", example_id="2", gold="positive")])
    with pytest.raises(InputError, match=r"d\.jsonl:1: gold 'positive' of sst2 example '2' differs from gold "
                                         r"'negative' given at .*a\.jsonl:2"):  # fmt: skip
        read_predictions([a, conflict])
    backbone = write_jsonl(
        tmp_path / "e.jsonl", [rec(backbone="x"), rec(example_id="2", gold="negative", backbone="y")]
    )
    with pytest.raises(InputError, match=r"e\.jsonl:2: system 'cascade' has backbone 'y' here but 'x'"):
        read_predictions(backbone)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(InputError, match=r"empty\.jsonl: empty file: no prediction records"):
        read_predictions(empty)
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file"):
        read_predictions(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="no input files"):
        read_predictions([])


def test_all_bad_lines_are_listed_in_one_error(tmp_path):
    f = write_jsonl(
        tmp_path / "m.jsonl", [rec(), "{oops", rec(example_id="2", gold="meh"), rec(example_id="3")]
    )
    with pytest.raises(InputError) as info:
        read_predictions(f)
    text = str(info.value)
    assert text.startswith(f"{f}:2: not valid JSON")
    assert f"1 more error(s):\n  {f}:3: gold 'meh'" in text
    many = write_jsonl(tmp_path / "many.jsonl", ["{"] * (MAX_ERRORS + 5))
    with pytest.raises(InputError, match=r"stopped reading here") as info:
        read_predictions(many)
    assert str(info.value).count("not valid JSON") == MAX_ERRORS


def test_store_and_run_folder_inputs(tmp_path):
    rows = read_predictions(write_jsonl(tmp_path / "a.jsonl", [rec(), rec(example_id="e2", gold="negative")]))
    with Store(tmp_path / "run1") as s:
        s.write_batch("r1", rows, ["k", "k"])
    assert read_predictions(tmp_path / "run1") == rows
    assert read_predictions(tmp_path / "run1" / "store.sqlite") == rows
    with Store(tmp_path / "run1") as s:
        s.write_batch("r2", rows[:1], ["k"])
    with pytest.raises(InputError, match=r"holds runs r1, r2 .*: choose one with --run"):
        read_predictions(tmp_path / "run1")
    assert read_predictions(tmp_path / "run1", run="r2") == rows[:1]
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match=r"a folder without store\.sqlite"):
        read_predictions(tmp_path / "plain")


def test_write_is_atomic_and_leaves_old_file_on_failure(tmp_path):
    out = tmp_path / "out.jsonl"
    rows = read_predictions(write_jsonl(tmp_path / "a.jsonl", [rec(), rec(example_id="e2", gold="negative")]))
    assert write_predictions(out, rows) == 2
    before = out.read_bytes()
    bad = [*rows, Prediction("x", "no_such_task", "clean", "1", "a", "a", "a")]
    with pytest.raises(InputError, match=r"out\.jsonl: cannot export: unknown task 'no_such_task'"):
        write_predictions(out, bad)
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl", "out.jsonl"]  # no temporary file left behind
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)


def test_task_aliases_are_stored_under_the_canonical_name(tmp_path):
    f = write_jsonl(
        tmp_path / "a.jsonl", [rec(task="SST-2"), rec(task="agnews", gold="World", prediction="world")]
    )
    assert [(p.task, p.label, p.correct) for p in read_predictions(f)] == [
        ("sst2", "positive", True),
        ("ag_news", "World", True),
    ]
    # An alias and its canonical name are the same task: a duplicate.
    dup = write_jsonl(tmp_path / "d.jsonl", [rec(task="SST-2"), rec(task="sst2")])
    with pytest.raises(InputError, match=r"d\.jsonl:2: duplicate prediction"):
        read_predictions(dup)


def test_item_is_read_written_and_checked(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [rec(example_id="e1@v1", item="e1"), rec(example_id="e1@v2", item="e1"), rec(example_id="e2")],
    )
    preds = read_predictions(path)
    assert [p.item for p in preds] == ["e1", "e1", None]
    out = tmp_path / "out.jsonl"
    write_predictions(out, preds)
    first = json.loads(out.read_text().splitlines()[0])
    assert list(first)[:6] == ["system", "task", "condition", "example_id", "item", "prediction"]
    assert "item" not in json.loads(out.read_text().splitlines()[2])
    assert read_predictions(out) == preds
    # The item is a property of the example: two systems naming different items for it is an error.
    bad = write_jsonl(tmp_path / "b.jsonl", [rec(system="other", example_id="e1@v1", item="zz")])
    with pytest.raises(InputError, match=r"item 'zz' of sst2 example 'e1@v1' differs from item 'e1'"):
        read_predictions([path, bad])
    with pytest.raises(InputError, match="field 'item' must be a non-empty string"):
        read_predictions(write_jsonl(tmp_path / "c.jsonl", [rec(item="")]))
