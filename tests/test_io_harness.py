"""Importers of lm-evaluation-harness, lmms-eval and inspect_ai per-example logs, and the no-code workflow.

Fixture lines follow what the tools write: lm-eval ``lm_eval/loggers/evaluation_tracker.py``
(``save_results_samples``: ``arguments`` as ``gen_args_i``/``arg_j``, ``sanitize_list`` turns log-likelihood
tuples into strings, ``target`` is ``str()``-ed), lmms-eval ``lmms_eval/loggers/evaluation_tracker.py`` (``doc`` and
``arguments`` popped, ``input`` added, one-element lists flattened, ``resps`` dropped when equal to
``filtered_resps``), inspect_ai ``tests/log/test_eval_log/log_read_sample.json`` (log version 2) and the ``.eval``
zip layout (``header.json`` + ``samples/<id>_epoch_<n>.json``).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

import casceq.tasks as tasks
from casceq.errors import InputError
from casceq.io import records
from casceq.io.harness import read_harness
from casceq.types import INVALID

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "user_task"
LM_EVAL = EXAMPLES / "lm-eval"
INSPECT = next((EXAMPLES / "inspect").glob("*.json"))
GOLD = ["alarm"] * 4 + ["weather"] * 4 + ["music"] * 4


@pytest.fixture(autouse=True)
def _intent3():
    saved_user, saved_by = dict(tasks._USER), dict(tasks._BY_NAME)
    records.load_task.cache_clear()
    tasks.register_tasks_file(EXAMPLES / "tasks.toml")
    yield tasks.get_task("intent3")
    tasks._USER.clear()
    tasks._USER.update(saved_user)
    tasks._BY_NAME.clear()
    tasks._BY_NAME.update(saved_by)
    records.load_task.cache_clear()


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_lm_eval_generate_until_through_the_task_parser(_intent3):
    got = read_harness("lm-eval", LM_EVAL, task=_intent3, system="casc", id_field="id")
    preds = got.predictions
    assert [p.example_id for p in preds] == [f"r{i:02d}" for i in range(1, 13)]
    assert [p.gold for p in preds] == GOLD
    # Raw generations, parsed by the task's parser: "Alarm" -> alarm, a sentence -> its label, a hedge -> INVALID.
    assert preds[1].output == " Alarm" and preds[1].label == "alarm"
    assert preds[6].output == " The intent is weather." and preds[6].label == "weather"
    assert preds[11].label == INVALID and preds[11].correct is False
    assert [p.label for p in preds][2] == "music" and preds[2].correct is False
    assert sum(p.correct for p in preds) == 9 and all(p.label_scores is None for p in preds)
    assert got.model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert got.settings["model_args"] == "pretrained=Qwen/Qwen2.5-0.5B-Instruct,dtype=float32"
    assert got.settings["generation_kwargs"]["intent3"]["max_gen_toks"] == 16
    # Without --id-field the harness's doc_id is the example id.
    plain = read_harness("lm-eval", LM_EVAL, task=_intent3, system="casc")
    assert [p.example_id for p in plain.predictions][:3] == ["0", "1", "2"]


def _mc_line(doc_id: int, lls: list[str], target: str, conts: list[str]) -> dict:
    # lm-eval multiple_choice (loglikelihood) sample after save_results_samples.
    prompt = f"Review {doc_id}\nQuestion: Is this sentence positive or negative?\nAnswer:"
    return {
        "doc_id": doc_id,
        "doc": {"sentence": f"review {doc_id}", "label": int(target), "idx": 100 + doc_id},
        "target": target,
        "arguments": {f"gen_args_{i}": {"arg_0": prompt, "arg_1": c} for i, c in enumerate(conts)},
        "resps": [[[ll, "False"]] for ll in lls],
        "filtered_resps": [[ll, "False"] for ll in lls],
        "filter": "none",
        "metrics": ["acc"],
        "doc_hash": "0" * 64,
        "prompt_hash": "1" * 64,
        "target_hash": "2" * 64,
        "acc": 1.0,
    }


def test_lm_eval_multiple_choice_loglikelihoods_to_argmax_label(tmp_path):
    sst2 = tasks.get_task("sst2")
    path = _jsonl(
        tmp_path / "samples_sst2_2026-01-01T00-00-00.000000.jsonl",
        [
            _mc_line(0, ["-4.25", "-0.5"], "1", [" negative", " positive"]),
            # Choices logged in the other order: matched to labels by their continuation text, not position;
            # the index target points into the logged choices (lm-eval's doc_to_target), so 0 is " positive".
            _mc_line(1, ["-0.25", "-3.0"], "0", [" positive", " negative"]),
            # Continuations that do not name labels: by position (lm-eval's doc_to_choice order).
            _mc_line(2, ["-2.0", "-1.0"], "0", [" bad", " good"]),
        ],
    )
    preds = read_harness("lm-eval", path, task=sst2, system="s", id_field="idx").predictions
    assert [p.example_id for p in preds] == ["100", "101", "102"]
    assert [p.label for p in preds] == ["positive", "positive", "positive"]
    assert [p.gold for p in preds] == ["positive", "positive", "negative"]
    assert dict(preds[0].label_scores or {}) == {"negative": -4.25, "positive": -0.5}
    assert dict(preds[1].label_scores or {}) == {"positive": -0.25, "negative": -3.0}
    assert [p.correct for p in preds] == [True, True, False]  # as lm-eval's own acc of each line
    assert read_harness("lm-eval", tmp_path, task=sst2, system="s").model is None  # no results file


def test_lm_eval_filters_first_by_default_or_chosen(tmp_path, _intent3):
    rows = []
    for i, (strict, flexible) in enumerate([("alarm", "alarm"), ("[invalid]", "music")]):
        for name, text in (("strict-match", strict), ("flexible-extract", flexible)):
            rows.append({"doc_id": i, "doc": {}, "target": "music", "arguments": {}, "resps": [["x " + text]],
                         "filtered_resps": [text], "filter": name, "metrics": ["exact_match"],
                         "exact_match": float(text == "music")})  # fmt: skip
    path = _jsonl(tmp_path / "samples_intent3_2026.jsonl", rows)
    first = read_harness("lm-eval", path, task=_intent3, system="s")
    assert len(first.predictions) == 2 and len(first.skipped) == 2 and "flexible-extract" in first.skipped[0]
    assert [p.label for p in first.predictions] == ["alarm", INVALID]  # raw resps "x [invalid]": no label


def test_lmms_eval_flattened_samples_and_results(tmp_path, _intent3):
    folder = tmp_path / "Qwen__Qwen2-Audio-7B-Instruct"
    folder.mkdir()
    date = "20261206_021503"
    _jsonl(
        folder / f"{date}_samples_intent3.jsonl",
        [
            {"doc_id": 0, "target": "alarm", "filtered_resps": "Alarm.", "doc_hash": "a" * 64,
             "exact_match": 1.0, "input": "<audio> Classify the intent."},
            {"doc_id": 1, "target": "music", "resps": ["The request is about music"], "filtered_resps": "music",
             "doc_hash": "b" * 64, "exact_match": 1.0, "input": "<audio> Classify the intent."},
            {"doc_id": 2, "target": "2", "filtered_resps": [["-3.0", "False"], ["-2.5", "False"], ["-0.1", "True"]],
             "resps": [[["-3.0", "False"]], [["-2.5", "False"]], [["-0.1", "True"]]], "doc_hash": "c" * 64,
             "acc": 1.0, "input": "<audio> Classify the intent."},
        ],
    )  # fmt: skip
    (folder / f"{date}_results.json").write_text(
        json.dumps(
            {
                "results": {},
                "config": {"model": "qwen2_audio", "model_args": "pretrained=Qwen/Qwen2-Audio-7B-Instruct"},
                "model_name": "Qwen/Qwen2-Audio-7B-Instruct",
            }
        )
    )
    got = read_harness("lmms-eval", tmp_path, task=_intent3, system="slm")
    assert [(p.example_id, p.label, p.gold) for p in got.predictions] == [
        ("0", "alarm", "alarm"),
        ("1", "music", "music"),
        ("2", "music", "music"),
    ]
    assert dict(got.predictions[2].label_scores or {}) == {"alarm": -3.0, "weather": -2.5, "music": -0.1}
    assert got.model == "Qwen/Qwen2-Audio-7B-Instruct" and got.settings["model"] == "qwen2_audio"
    with pytest.raises(InputError, match="doc has no field 'id'"):  # lmms-eval drops the doc
        read_harness("lmms-eval", tmp_path, task=_intent3, system="slm", id_field="id")


def test_inspect_json_log(_intent3):
    got = read_harness("inspect", INSPECT, task=_intent3, system="slm")
    preds = got.predictions
    assert [p.example_id for p in preds] == [f"r{i:02d}" for i in range(1, 13)]
    assert [p.gold for p in preds] == GOLD
    assert preds[2].output == "Music." and preds[2].label == "music"
    assert sum(p.correct for p in preds) == 9
    assert got.model == "hf/Qwen/Qwen2-Audio-7B-Instruct"
    assert got.settings["model_generate_config"] == {"temperature": 0.0, "max_tokens": 16}


def test_inspect_eval_zip_with_content_blocks_and_epochs(tmp_path, _intent3):
    log = json.loads(INSPECT.read_text(encoding="utf-8"))
    samples = log.pop("samples")[:3]
    samples[0]["output"]["choices"][0]["message"]["content"] = [
        {"type": "reasoning", "reasoning": "the user wants music?"},
        {"type": "text", "text": "weather"},
    ]
    second = json.loads(json.dumps(samples[1]))
    second["epoch"] = 2
    path = tmp_path / "2026-12-06T02-15-03+00-00_intent3-audio_x.eval"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", json.dumps(log))
        for s in [*samples, second]:
            zf.writestr(f"samples/{s['id']}_epoch_{s['epoch']}.json", json.dumps(s))
    got = read_harness("inspect", path, task=_intent3, system="slm")
    assert [(p.example_id, p.label) for p in got.predictions] == [
        ("r01", "weather"),
        ("r02", "alarm"),
        ("r03", "music"),
    ]
    assert len(got.skipped) == 1 and "epoch 2" in got.skipped[0]
    by_text = read_harness("inspect", path, task=_intent3, system="slm", id_field="text")
    assert by_text.predictions[0].example_id == "wake me up at six thirty tomorrow"


def test_bad_documents_are_listed_with_file_and_line(tmp_path, _intent3):
    path = _jsonl(
        tmp_path / "samples_intent3_x.jsonl",
        [
            {"doc_id": 0, "target": "alarm", "resps": [["alarm"]], "filtered_resps": ["alarm"]},
            {"doc_id": 1, "target": "snooze", "resps": [["alarm"]], "filtered_resps": ["alarm"]},
            {"doc_id": 0, "target": "music", "resps": [["music"]], "filtered_resps": ["music"]},
            {"doc_id": 3, "resps": [["music"]], "filtered_resps": ["music"]},
        ],
    )
    with pytest.raises(InputError) as err:
        read_harness("lm-eval", path, task=_intent3, system="s")
    text = str(err.value)
    assert f"{path}:2: target 'snooze' is not a label" in text
    assert f"{path}:3: example id '0' repeats" in text and f"{path}:4: no 'target'" in text


def test_user_csv_and_two_harness_logs_to_comparison_and_report(tmp_path, capsys):
    """The no-code workflow of docs/import.md: import two harness logs for a user task -> compare -> report."""
    from sklearn.metrics import cohen_kappa_score

    from casceq.cli import main

    store, tf = str(tmp_path / "store.sqlite"), str(EXAMPLES / "tasks.toml")
    assert main(["import", str(LM_EVAL), "--from", "lm-eval", "--system", "cascade", "--kind", "cascade",
                 "--task", "intent3", "--id-field", "id", "--tasks-file", tf, "--store", store]) == 0  # fmt: skip
    assert main(["import", str(INSPECT), "--from", "inspect", "--system", "speech-llm", "--kind", "speech_llm",
                 "--task", "intent3", "--tasks-file", tf, "--store", store]) == 0  # fmt: skip
    out_json = tmp_path / "compare.json"
    assert main(["compare", store, "--json", str(out_json), "--tasks-file", tf]) == 0
    result = json.loads(out_json.read_text())
    casc = read_harness("lm-eval", LM_EVAL, task=tasks.get_task("intent3"), system="c", id_field="id")
    slm = read_harness("inspect", INSPECT, task=tasks.get_task("intent3"), system="s")
    expected = cohen_kappa_score([p.label for p in casc.predictions], [p.label for p in slm.predictions])
    (pair,) = result["pairs"]
    assert pair["kappa"] == pytest.approx(expected)
    acc = {a["system"]: a["accuracy"] for a in result["accuracy"]}
    assert acc == {"cascade": pytest.approx(9 / 12), "speech-llm": pytest.approx(9 / 12)}
    out = tmp_path / "report"
    assert main(["report", store, "--out", str(out), "--formats", "md", "--tasks-file", tf]) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "intent3" in report and "cascade=cascade (declared)" in report
    capsys.readouterr()


def test_imported_predictions_go_straight_into_compare(_intent3):
    from sklearn.metrics import cohen_kappa_score

    from casceq.stats.compare import compare

    casc = read_harness("lm-eval", LM_EVAL, task=_intent3, system="cascade", id_field="id").predictions
    slm = read_harness("inspect", INSPECT, task=_intent3, system="speech-llm").predictions
    result = compare([*casc, *slm], n_bootstrap=0)
    (pair,) = result.pairs
    assert pair.kappa == pytest.approx(cohen_kappa_score([p.label for p in casc], [p.label for p in slm]))
    assert pair.n == 12


def test_import_checks_ids_and_golds_against_the_user_tasks_data(tmp_path, capsys):
    from casceq.cli import main

    tf, store = str(EXAMPLES / "tasks.toml"), str(tmp_path / "s.sqlite")
    # Without --id-field the lm-eval doc ids (0..11) are not the CSV's ids (r01..): a warning, not an error.
    assert main(["import", str(LM_EVAL), "--from", "lm-eval", "--system", "c", "--task", "intent3",
                 "--tasks-file", tf, "--store", store]) == 0  # fmt: skip
    assert "give --id-field" in capsys.readouterr().out
    # Ids that name other documents: golds contradict the data, nothing is written.
    log = json.loads(INSPECT.read_text(encoding="utf-8"))
    log["samples"][0]["id"], log["samples"][4]["id"] = "r05", "r01"
    bad = tmp_path / "swapped.json"
    bad.write_text(json.dumps(log), encoding="utf-8")
    assert main(["import", str(bad), "--from", "inspect", "--system", "s", "--task", "intent3",
                 "--tasks-file", tf, "--store", store]) == 2  # fmt: skip
    assert "differ from the task's data" in capsys.readouterr().err
