"""Task registry, prompts, the hub mapping (on rows shaped like the hub's) and ``casceq tasks``."""

from __future__ import annotations

import json
import sys
import types

import pytest

from casceq.cli import main
from casceq.errors import InputError, MissingDependency
from casceq.tasks import TASK_NAMES, get_task, load_examples
from casceq.tasks.hub import hub_row_to_example
from casceq.types import Example


def test_names_and_aliases() -> None:
    assert TASK_NAMES == ("sst2", "ag_news", "csqa", "triviaqa", "meld", "mustard", "ravdess")
    for alias, name in [
        ("agnews", "ag_news"),
        ("AG-News", "ag_news"),
        ("sst-2", "sst2"),
        ("SST2", "sst2"),
        ("commonsense_qa", "csqa"),
        ("CommonsenseQA", "csqa"),
        ("trivia_qa", "triviaqa"),
        ("MUStARD", "mustard"),
    ]:
        assert get_task(alias).name == name
    with pytest.raises(InputError) as err:
        get_task("imdb")
    for name in TASK_NAMES:
        assert name in str(err.value)


def test_text_sufficiency_split_and_classes() -> None:
    sufficient = {n for n in TASK_NAMES if get_task(n).text_sufficient}
    assert sufficient == {"ag_news", "sst2", "csqa", "triviaqa"}
    assert {n: get_task(n).n_classes for n in TASK_NAMES} == {
        "sst2": 2,
        "ag_news": 4,
        "csqa": 5,
        "triviaqa": 0,
        "meld": 7,
        "mustard": 2,
        "ravdess": 8,
    }
    assert [n for n in TASK_NAMES if get_task(n).open_answer] == ["triviaqa"]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_prompt_names_every_label_and_asks_for_one(name: str) -> None:
    task = get_task(name)
    prompt = task.prompt("  some input text ")
    assert prompt.startswith(task.instruction) and prompt.endswith("Answer:")
    assert f"{task.input_name}: some input text\n" in prompt
    for label in task.labels:
        assert label in task.instruction
    assert "exactly one" in task.instruction or task.open_answer


def test_csqa_prompt_lists_choices() -> None:
    ex = Example("q", "csqa", "Where?", "B", ("bank", "bookstore", "market", "station", "morgue"))
    prompt = get_task("csqa").prompt(ex.text, ex)
    for letter, choice in zip("ABCDE", ex.choices, strict=True):
        assert f"\n{letter}. {choice}" in prompt


HUB_ROWS = {
    "ag_news": {"text": "Wall St. Bears Claw Back (Reuters) Reuters - Short-sellers ...", "label": 2},
    "sst2": {"sentence": "it 's a charming and often affecting journey . ", "label": 1, "idx": 0},
    "csqa": {
        "id": "1afa02df02c908a558b4036e80242fac",
        "question": "A revolving door is convenient for two direction travel, but also a security measure at a what?",
        "question_concept": "revolving door",
        "choices": {
            "label": ["A", "B", "C", "D", "E"],
            "text": ["bank", "library", "department store", "mall", "new york"],
        },
        "answerKey": "A",
    },
    "triviaqa": {
        "question": '"What type of clothing is a ""sou-wester""?"',
        "question_id": "qb_123",
        "question_source": "http://www.quizballs.com/",
        "answer": {
            "value": "Hat",
            "aliases": ["Hat", "Hats"],
            "normalized_aliases": ["hat", "hats"],
            "type": "WikipediaEntity",
        },
    },
}


def test_hub_rows_map_like_the_files() -> None:
    ag = hub_row_to_example("ag_news", HUB_ROWS["ag_news"], 42, "test")
    assert ag.id == "ag_news-test-000042" and ag.label == "Business"
    sst = hub_row_to_example("sst2", HUB_ROWS["sst2"], 0, "dev")
    assert sst.id == "sst2-dev-000000" and sst.label == "positive"
    assert sst.text == "it 's a charming and often affecting journey ."
    cs = hub_row_to_example("csqa", HUB_ROWS["csqa"], 0, "dev")
    assert cs.id == HUB_ROWS["csqa"]["id"] and cs.label == "A" and cs.choices[2] == "department store"
    tq = hub_row_to_example("triviaqa", HUB_ROWS["triviaqa"], 0, "validation")
    assert tq.text == 'What type of clothing is a "sou-wester"?' and tq.label == "Hat"
    assert tq.meta["aliases"] == ("Hat", "Hats") and tq.id == "triviaqa-qb_123"
    assert get_task("triviaqa").is_correct(get_task("triviaqa").parse("A hat."), tq)


def test_hub_rows_bad_shapes() -> None:
    with pytest.raises(InputError, match="no labels"):
        hub_row_to_example("sst2", {"sentence": "x", "label": -1, "idx": 3}, 3, "test")
    with pytest.raises(InputError, match="row 7"):
        hub_row_to_example("ag_news", {"text": "x", "label": 9}, 7, "test")
    with pytest.raises(InputError, match="row 1"):
        hub_row_to_example("csqa", {"id": "q", "question": "?"}, 1, "dev")
    with pytest.raises(InputError, match="audio"):
        hub_row_to_example("meld", {}, 0, "test")


def test_hub_loading_through_a_stand_in_datasets_module(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(repo, config=None, split=None):  # type: ignore[no-untyped-def]
        calls.append((repo, config, split))
        return [HUB_ROWS["sst2"], {**HUB_ROWS["sst2"], "idx": 1, "label": 0}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    exs = load_examples("sst-2", source="hub")
    assert calls == [("nyu-mll/glue", "sst2", "validation")]
    assert [e.label for e in exs] == ["positive", "negative"]
    with pytest.raises(InputError, match="hub split"):
        load_examples("sst2", source="hub", split="test_unknown")


def test_hub_needs_datasets_and_audio_tasks_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(MissingDependency, match="datasets"):
        load_examples("csqa", source="hub")
    for name in ("meld", "mustard", "ravdess"):
        with pytest.raises(InputError, match="no standard hub release"):
            load_examples(name, source="hub")
    with pytest.raises(InputError, match="unknown source"):
        load_examples("sst2", source="s3")


def test_cli_tasks_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["tasks"]
    assert [t["name"] for t in data["tasks"]] == list(TASK_NAMES)
    for row in data["tasks"]:
        assert list(row) == ["name", "labels", "text_sufficient", "open_answer"]
        task = get_task(row["name"])
        assert row["labels"] == list(task.labels) and row["text_sufficient"] == task.text_sufficient


def test_cli_tasks_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + len(TASK_NAMES)
    ravdess = next(line for line in out if line.startswith("ravdess"))
    assert " no " in ravdess and "surprised" in ravdess
