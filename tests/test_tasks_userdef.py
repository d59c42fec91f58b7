"""User-defined tasks from a tasks file: schema, equality with the built-ins, bad definitions, registry."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import casceq.tasks as tasks
from casceq.errors import InputError
from casceq.tasks.userdef import read_tasks_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "user_task"

# Outputs that exercise the parser's rules (prefixes, synonyms, negation, hedges, markdown, chain of thought).
OUTPUTS = (
    "positive", "Negative.", "**Positive**", "The answer is negative", "pos", "not positive", "positive or negative",
    "I think it is positive. Final answer: negative", "Sentiment: neg", "", "World", "sport", "Sci/Tech",
    "science and technology", "It is about business news", "world or sports", "Answer: tech", "not Business",
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("clean_task_registry")


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tasks.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


BUILTINS_AS_FILE = """
[tasks.my_sst2]
labels = ["negative", "positive"]
text_sufficient = true
instruction = "Classify the sentiment of the following text. Answer with exactly one word: positive or negative."
input_name = "Text"
synonyms = { pos = "positive", neg = "negative" }

[tasks.my_ag_news]
labels = ["World", "Sports", "Business", "Sci/Tech"]
text_sufficient = true
instruction = "Classify the topic of the following news article. Answer with exactly one of: World, Sports, Business, Sci/Tech."
input_name = "Text"
[tasks.my_ag_news.synonyms]
"world news" = "World"
sport = "Sports"
"sports news" = "Sports"
"business news" = "Business"
scitech = "Sci/Tech"
science = "Sci/Tech"
technology = "Sci/Tech"
tech = "Sci/Tech"
"science and technology" = "Sci/Tech"
"science/technology" = "Sci/Tech"
"sci/tech news" = "Sci/Tech"
"""


@pytest.mark.parametrize(("mine", "builtin"), [("my_sst2", "sst2"), ("my_ag_news", "ag_news")])
def test_builtin_task_expressed_in_the_schema_equals_the_builtin(tmp_path, mine, builtin):
    by_name = {u.task.name: u.task for u in read_tasks_file(_write(tmp_path, BUILTINS_AS_FILE))}
    user, ref = by_name[mine], tasks.get_task(builtin)
    for attr in ("labels", "text_sufficient", "open_answer", "instruction", "input_name", "synonyms"):
        assert getattr(user, attr) == getattr(ref, attr), attr
    assert user.prompt("a fine film") == ref.prompt("a fine film")
    assert [user.parse(o) for o in OUTPUTS] == [ref.parse(o) for o in OUTPUTS]
    # Positive control: the battery tells label sets apart (a task with other labels parses differently).
    other = by_name["my_ag_news" if mine == "my_sst2" else "my_sst2"]
    assert [other.parse(o) for o in OUTPUTS] != [ref.parse(o) for o in OUTPUTS]


@pytest.mark.parametrize("name", tasks.TASK_NAMES)
def test_every_builtin_round_trips_through_the_schema(tmp_path, name):
    """``casceq tasks --toml`` writes each built-in in the schema; reading it back gives the same task."""
    from casceq.tasks.userdef import task_to_toml

    ref = tasks.get_task(name)
    (user,) = read_tasks_file(_write(tmp_path, task_to_toml(ref, f"my_{name}")))
    got = user.task
    for attr in (
        "labels",
        "text_sufficient",
        "open_answer",
        "instruction",
        "input_name",
        "synonyms",
        "template",
    ):
        assert getattr(got, attr) == getattr(ref, attr), attr
    assert type(got.parser) is type(ref.parser)
    extra = (
        "yes",
        "No.",
        "not at all sarcastic",
        "Sarcastic: no",
        "no sarcasm",
        "happy",
        "B",
        "(c)",
        "Paris",
    )
    assert [got.parse(o) for o in OUTPUTS + extra] == [ref.parse(o) for o in OUTPUTS + extra]


def test_tasks_toml_command_prints_a_readable_tasks_file(tmp_path, capsys):
    from casceq.cli import main

    assert main(["tasks", "--toml"]) == 0
    text = capsys.readouterr().out
    for name in tasks.TASK_NAMES:
        text = text.replace(f"[tasks.{name}]", f"[tasks.my_{name}]")
    names = [u.task.name for u in read_tasks_file(_write(tmp_path, text))]
    assert names == [f"my_{n}" for n in tasks.TASK_NAMES]


def test_minimal_schema_defaults(tmp_path):
    (user,) = read_tasks_file(
        _write(
            tmp_path, '[tasks.intent_min]\nlabels = ["alarm", "weather", "music"]\ntext_sufficient = true\n'
        )
    )
    task = user.task
    assert task.labels == ("alarm", "weather", "music") and task.text_sufficient and not task.open_answer
    assert (
        task.instruction
        == "Classify the following text. Answer with exactly one of: alarm, weather or music."
    )
    assert task.prompt("play jazz") == f"{task.instruction}\n\nText: play jazz\nAnswer:"
    assert task.parse("**Music**") == "music" and task.parse("weather or music") == "INVALID"
    assert user.data is None


def test_prompt_template_letters_and_open_answers(tmp_path):
    path = _write(
        tmp_path,
        """
        [tasks.quiz]
        letters = ["A", "B", "C", "D"]
        text_sufficient = true
        prompt = "{instruction}\\nQ: {text}\\n{choices}\\nA:"
        [tasks.quiz.data]
        path = "quiz.jsonl"
        choices_column = "options"
        [tasks.capitals]
        open_answer = true
        text_sufficient = true
        [tasks.capitals.data]
        path = "capitals.csv"
        label_column = "answer"
        aliases_column = "aliases"
        """,
    )
    (tmp_path / "quiz.jsonl").write_text(
        '{"text": "Which is a fruit?", "label": "C", "options": ["stone", "car", "apple", "cloud"]}\n'
    )
    (tmp_path / "capitals.csv").write_text("text,answer,aliases\nCapital of France?,Paris,paris city|Paree\n")
    assert tasks.register_tasks_file(path) == ("quiz", "capitals")
    quiz = tasks.get_task("quiz")
    (ex,) = tasks.load_examples("quiz")
    assert ex.choices == ("stone", "car", "apple", "cloud") and ex.label == "C" and ex.id == "quiz-000000"
    assert quiz.prompt(ex.text, ex) == (
        "Answer the following multiple-choice question. Answer with exactly one letter: A, B, C or D.\n"
        "Q: Which is a fruit?\nA. stone\nB. car\nC. apple\nD. cloud\nA:"
    )
    assert quiz.parse("The answer is (C).", ex) == "C" and quiz.parse("D", ex) == "D"
    capitals = tasks.get_task("capitals")
    (cap,) = tasks.load_examples("capitals")
    assert cap.meta["aliases"] == ("Paris", "paris city", "Paree")
    assert capitals.open_answer and capitals.is_correct(capitals.parse("Paree."), cap)
    assert not capitals.is_correct(capitals.parse("Lyon"), cap)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('labels = ["alarm", "music", "alarm"]', "duplicate label"),
        ('labels = ["Sci/Tech", "sci tech"]', "duplicate label"),
        ("labels = []", "empty label set"),
        ('labels = ["alarm"]', "at least two labels"),
        ('labels = ["alarm", "music"]\nsynonyms = { song = "tune" }', "not a label"),
        ('labels = ["alarm", "music"]\nsynonyms = { music = "alarm" }', "ambiguous"),
        ('labels = ["sure, proceed", "cancel"]', "cannot tell"),
        ('labels = ["alarm", "???"]', "no letters or digits"),
        ('labels = ["a", "b"]\nprompt = "{instruction} {txt}"', "{txt}"),
        ('labels = ["a", "b"]\ncolour = "red"', "unknown key"),
        ('letters = ["A", "C"]', "consecutive from A"),
        ('letters = ["A", "B", "C", "D", "E", "F"]', "consecutive from A"),
        ('labels = ["a", "b"]\nletters = ["A", "B"]', "not both"),
        ('labels = ["a", "b"]\n[tasks.bad.data]\npath = "x.csv"\nhf = "u/d"', "exactly one of"),
    ],
)
def test_bad_definitions_are_refused_with_the_reason(tmp_path, body, message):
    path = _write(tmp_path, f"[tasks.bad]\ntext_sufficient = true\n{body}\n")
    with pytest.raises(InputError, match="task 'bad'") as err:
        read_tasks_file(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_nested_labels_are_told_apart(tmp_path):
    """A label inside another ("music" in "music video") is fine: the longer form is one mention."""
    (user,) = read_tasks_file(
        _write(tmp_path, '[tasks.nest]\nlabels = ["music", "music video", "video"]\ntext_sufficient = true\n')
    )
    parse = user.task.parse
    assert [parse(x) for x in ("music", "Music video.", "a video", "music or video")] == [
        "music",
        "music video",
        "video",
        "INVALID",
    ]


def test_text_sufficient_is_required(tmp_path):
    with pytest.raises(InputError, match="text_sufficient"):
        read_tasks_file(_write(tmp_path, '[tasks.t]\nlabels = ["a", "b"]\n'))


def test_registry_example_file_and_builtin_names(tmp_path):
    assert tasks.register_tasks_file(EXAMPLES / "tasks.toml") == ("intent3",)
    assert tasks.register_tasks_file(EXAMPLES / "tasks.toml") == ("intent3",)  # again: a no-op
    assert "intent3" in tasks.known_names() and tasks.canonical_name("intent3") == "intent3"
    examples = tasks.load_examples("intent3")
    assert [e.id for e in examples][:3] == ["r01", "r02", "r03"] and len(examples) == 12
    assert {e.label for e in examples} == {"alarm", "weather", "music"}
    sample = tasks.load_examples("intent3", n=5, seed=3)
    assert len(sample) == 5 and set(e.id for e in sample) <= {e.id for e in examples}
    clash = _write(tmp_path, '[tasks.sst2]\nlabels = ["a", "b"]\ntext_sufficient = true\n')
    with pytest.raises(InputError, match="built in"):
        tasks.register_tasks_file(clash)
    other = _write(tmp_path, '[tasks.intent3]\nlabels = ["a", "b"]\ntext_sufficient = true\n')
    with pytest.raises(InputError, match="already defined differently"):
        tasks.register_tasks_file(other)
    copy = tmp_path / "copy" / "tasks.toml"  # an identical copy (as next to a run folder) is accepted
    copy.parent.mkdir()
    copy.write_bytes((EXAMPLES / "tasks.toml").read_bytes())
    assert tasks.register_tasks_file(copy) == ("intent3",)
    assert tasks.user_task("intent3").source_file == str(EXAMPLES / "tasks.toml")


def test_bad_data_rows_name_file_and_line(tmp_path):
    path = _write(
        tmp_path,
        '[tasks.bin]\nlabels = ["no", "yes"]\ntext_sufficient = true\n[tasks.bin.data]\npath = "d.csv"\n',
    )
    (tmp_path / "d.csv").write_text("text,label\nfine,yes\nodd,maybe\n")
    tasks.register_tasks_file(path)
    with pytest.raises(InputError, match=r"d\.csv:3: label 'maybe' is not one of"):
        tasks.load_examples("bin")


def test_integer_labels_through_label_names(tmp_path):
    path = _write(
        tmp_path,
        '[tasks.sent]\nlabels = ["negative", "positive"]\ntext_sufficient = true\n'
        '[tasks.sent.data]\npath = "d.jsonl"\nlabel_names = ["negative", "positive"]\nid_column = "idx"\n',
    )
    (tmp_path / "d.jsonl").write_text(
        '{"idx": 7, "text": "great", "label": 1}\n{"idx": 9, "text": "bad", "label": 0}\n'
    )
    tasks.register_tasks_file(path)
    assert [(e.id, e.label) for e in tasks.load_examples("sent")] == [("7", "positive"), ("9", "negative")]


def test_experiment_config_tasks_file_key(tmp_path):
    from casceq.run.config import load_config

    (tmp_path / "user").mkdir()
    for name in ("tasks.toml", "intent3.csv"):
        (tmp_path / "user" / name).write_bytes((EXAMPLES / name).read_bytes())
    cfg_path = tmp_path / "exp.toml"
    cfg_path.write_text(
        'name = "mine"\ntasks_file = "user/tasks.toml"\n[tasks.intent3]\nn = 4\n'
        '[[systems]]\nname = "t"\nkind = "text"\nllm = "mock"\n'
    )
    cfg = load_config(cfg_path)
    assert cfg.tasks[0].name == "intent3" and cfg.tasks_file == str(
        (tmp_path / "user" / "tasks.toml").resolve()
    )
    assert "tasks_file" in cfg.to_dict()
    plain = cfg_path.read_text().replace('tasks_file = "user/tasks.toml"\n', "").replace("intent3", "sst2")
    cfg_path.write_text(plain)
    assert "tasks_file" not in load_config(cfg_path).to_dict()  # configs without user tasks hash as before


def test_cli_tasks_file_option_on_every_command(capsys):
    from casceq.cli import build_parser, main

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert any(a.dest == "tasks_file" for a in p._actions), name
    assert main(["tasks", "--tasks-file", str(EXAMPLES / "tasks.toml")]) == 0
    assert "intent3" in capsys.readouterr().out


def test_parquet_data(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = _write(
        tmp_path,
        '[tasks.pq]\nlabels = ["no", "yes"]\ntext_sufficient = true\n'
        '[tasks.pq.data]\npath = "d.parquet"\ntext_column = "sentence"\nlabel_column = "answer"\n',
    )
    pq.write_table(
        pa.table({"sentence": ["is it on", "is it off"], "answer": ["Yes", "no"]}), tmp_path / "d.parquet"
    )
    tasks.register_tasks_file(path)
    assert [(e.id, e.text, e.label) for e in tasks.load_examples("pq")] == [
        ("pq-000000", "is it on", "yes"),
        ("pq-000001", "is it off", "no"),
    ]
