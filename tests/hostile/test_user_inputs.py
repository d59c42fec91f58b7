"""Hostile inputs to the surfaces of user tasks (issue 24): tasks files, their data, audiofolders, harness logs,
``export-dataset`` and ``compare`` of imported systems (docs/security.md, "Your tasks, your audio, your logs").

Each test is one case a careless or malicious user could produce; it asserts the one-line error (exit 2) or the
documented behaviour instead of a traceback or a silently wrong row.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from casceq import tasks
from casceq.cli import main
from casceq.errors import InputError
from casceq.io.harness import read_harness
from casceq.io.store import Store
from tests.hostile.test_run_mech import stand_ins  # noqa: F401  (fixture: stand-in ASR and LLM)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "user_task"
INTENT3 = EXAMPLES / "tasks.toml"
LABELS = '["alarm", "weather", "music"]'


pytestmark = pytest.mark.usefixtures("clean_task_registry")


def _tasks_file(folder: Path, body: str, name: str = "tasks.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"[tasks.d]\nlabels = {LABELS}\ntext_sufficient = true\n{body}", encoding="utf-8")
    return path


def _error(capsys: Any, argv: list[str]) -> str:
    """Run the CLI, expect exit 2 (an input error, no traceback) and return its one error message."""
    assert main(argv) == 2
    return str(capsys.readouterr().err)


def _load(path: Path) -> list[Any]:
    tasks.register_tasks_file(path)
    return tasks.load_examples("d")


# --- tasks files ---------------------------------------------------------------------------------------------


def test_a_prompt_with_an_unmatched_brace_is_a_clear_error(tmp_path, capsys):
    path = _tasks_file(tmp_path, 'prompt = "{instruction} {text} {oops"\n')
    err = _error(capsys, ["tasks", "--tasks-file", str(path)])
    assert "task 'd': prompt template is not a valid format string" in err and "{{" in err


def test_a_tasks_file_saved_with_a_bom_is_read(tmp_path, capsys):
    path = tmp_path / "tasks.toml"
    path.write_bytes(b"\xef\xbb\xbf" + f"[tasks.d]\nlabels = {LABELS}\ntext_sufficient = true\n".encode())
    assert main(["tasks", "--tasks-file", str(path)]) == 0
    assert "alarm, weather, music" in capsys.readouterr().out


def test_a_data_path_that_is_not_a_string_is_refused(tmp_path, capsys):
    path = _tasks_file(tmp_path, "[tasks.d.data]\npath = 5\n")
    assert "data.path must be a string, got 5" in _error(capsys, ["tasks", "--tasks-file", str(path)])


def test_a_data_path_may_lead_outside_the_tasks_files_folder(tmp_path, capsys):
    """A tasks file is the user's configuration (like a run TOML): ../ and absolute data paths are read, and
    ``casceq tasks --json`` shows where from, so a tasks file from someone else can be checked first."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("text,label\nwake me,alarm\n", encoding="utf-8")
    rel = _tasks_file(tmp_path / "conf", '[tasks.d.data]\npath = "../data/rows.csv"\n')
    assert [e.label for e in _load(rel)] == ["alarm"]
    tasks._USER.clear()
    assert main(["tasks", "--json", "--tasks-file", str(rel)]) == 0
    (row,) = [t for t in json.loads(capsys.readouterr().out)["tasks"] if t["name"] == "d"]
    assert row["data"] == {"path": str((tmp_path / "data" / "rows.csv").resolve())}
    tasks._USER.clear()
    absolute = _tasks_file(tmp_path / "other", f'[tasks.d.data]\npath = "{tmp_path / "data" / "rows.csv"}"\n')
    assert [e.text for e in _load(absolute)] == ["wake me"]


def test_a_copy_of_a_tasks_file_with_edited_data_is_another_definition(tmp_path, capsys):
    """Two tasks files naming the same task with same-named data files of different content: the first one
    registered won silently, so --tasks-file order decided which golds an import was checked against."""
    for name, label in (("a", "alarm"), ("b", "music")):
        _tasks_file(tmp_path / name, '[tasks.d.data]\npath = "rows.csv"\n')
        (tmp_path / name / "rows.csv").write_text(f"id,text,label\nr1,wake me,{label}\n", encoding="utf-8")
    a, b = str(tmp_path / "a" / "tasks.toml"), str(tmp_path / "b" / "tasks.toml")
    err = _error(capsys, ["tasks", "--tasks-file", a, "--tasks-file", b])
    assert "task 'd' is already defined differently" in err and "content differ" in err
    tasks._USER.clear()
    (tmp_path / "b" / "rows.csv").write_text("id,text,label\nr1,wake me,alarm\n", encoding="utf-8")
    assert main(["tasks", "--tasks-file", a, "--tasks-file", b]) == 0  # an identical copy is the same task


# --- their data ----------------------------------------------------------------------------------------------


def test_task_data_csv_that_is_not_utf8_names_the_file(tmp_path):
    (tmp_path / "rows.csv").write_bytes(b"text,label\n\xff\xfehello,alarm\n")
    path = _tasks_file(tmp_path, '[tasks.d.data]\npath = "rows.csv"\n')
    with pytest.raises(InputError, match=r"rows\.csv: not UTF-8 text"):
        _load(path)


@pytest.mark.parametrize(
    ("row", "cells"),
    [("set an alarm, please,alarm", 3), ("set an alarm", 1)],
    ids=["unquoted-comma", "short-row"],
)
def test_task_data_csv_row_that_does_not_match_the_header_is_refused(tmp_path, row, cells):
    """A surplus cell (an unquoted comma) or a missing one would make the label a guess, or silently drop text."""
    (tmp_path / "rows.csv").write_text(f"text,label\nplay a song,music\n{row}\n", encoding="utf-8")
    path = _tasks_file(tmp_path, '[tasks.d.data]\npath = "rows.csv"\n')
    with pytest.raises(InputError, match=rf"rows\.csv:3: {cells} cells where the header has 2"):
        _load(path)


def test_task_data_jsonl_duplicate_key_is_refused(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"text": "hi", "label": "alarm", "label": "music"}\n', "utf-8")
    path = _tasks_file(tmp_path, '[tasks.d.data]\npath = "rows.jsonl"\n')
    with pytest.raises(InputError, match=r"rows\.jsonl:1: duplicate key 'label'"):
        _load(path)


@pytest.mark.parametrize("content", [b"not parquet at all", b"text,label\nhello,alarm\n"])
def test_task_data_parquet_that_is_not_parquet_is_a_clear_error(tmp_path, content):
    pytest.importorskip("pyarrow")
    (tmp_path / "rows.parquet").write_bytes(content)
    path = _tasks_file(tmp_path, '[tasks.d.data]\npath = "rows.parquet"\n')
    with pytest.raises(InputError, match=r"rows\.parquet: not a readable Parquet file"):
        _load(path)


def test_integer_labels_of_a_csv_go_through_label_names(tmp_path):
    """docs/tasks.md: label_names names the integers of a 0/1/2 column; a CSV cell "2" is such an integer."""
    (tmp_path / "rows.csv").write_text("text,label\nwake me,0\nplay jazz,2\n", encoding="utf-8")
    path = _tasks_file(tmp_path, f'[tasks.d.data]\npath = "rows.csv"\nlabel_names = {LABELS}\n')
    assert [e.label for e in _load(path)] == ["alarm", "music"]
    (tmp_path / "rows.csv").write_text("text,label\nwake me,7\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"rows\.csv:2: label index 7 outside label_names"):
        tasks.load_examples("d")


# --- audiofolder ---------------------------------------------------------------------------------------------


def _audiofolder(tmp: Path, extra_row: str, make: Any = None) -> Path:
    import soundfile as sf

    folder = tmp / "calls"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        sf.write(folder / f"c{i}.wav", 0.05 * rng.standard_normal(16_000), 16_000)
    if make is not None:
        make(folder)
    rows = ["c0.wav,call zero,alarm", "c1.wav,call one,music", extra_row]
    (folder / "metadata.csv").write_text("file_name,text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    tf = _tasks_file(tmp, '[tasks.d.data]\naudiofolder = "calls"\n').read_text()
    (tmp / "tasks.toml").write_text(tf.replace("text_sufficient = true", "text_sufficient = false"))
    return tmp / "tasks.toml"


def _outside(tmp: Path) -> Path:
    import soundfile as sf

    target = tmp / "outside.wav"
    sf.write(target, np.zeros(1600), 16_000)
    return target


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("dotdot", "file_name '../outside.wav' points outside the audiofolder"),
        ("absolute", "points outside the audiofolder"),
        ("symlink", "file_name 'ln.wav' points outside the audiofolder"),
        ("missing", "audio file 'gone.wav' not found"),
        ("empty", "audio file 'z.wav' is empty"),
        ("folder", "audio file 'sub' not found"),
    ],
)
def test_audiofolder_rows_that_name_no_usable_file_inside_stop_the_load(tmp_path, case, message):
    outside = _outside(tmp_path)
    rows = {"dotdot": "../outside.wav", "absolute": str(outside), "symlink": "ln.wav", "missing": "gone.wav",
            "empty": "z.wav", "folder": "sub"}  # fmt: skip
    makers = {
        "symlink": lambda d: (d / "ln.wav").symlink_to(outside),
        "empty": lambda d: (d / "z.wav").write_bytes(b""),
        "folder": lambda d: (d / "sub").mkdir(),
    }
    path = _audiofolder(tmp_path, f"{rows[case]},hostile,alarm", makers.get(case))
    with pytest.raises(InputError, match=r"metadata\.csv:4: ") as info:
        _load(path)
    assert message in str(info.value)


def test_audiofolder_corrupt_and_nan_audio_are_input_failures_of_a_run(tmp_path, stand_ins, capsys):  # noqa: F811
    """Decodable-looking but unusable files: not scored, listed at the end, exit 1 (docs/security.md)."""
    import soundfile as sf

    def make(folder: Path) -> None:
        (folder / "k.wav").write_bytes(b"RIFF" + bytes(range(256)) * 8)
        sf.write(folder / "n.wav", np.full(16_000, np.nan, dtype=np.float32), 16_000, subtype="FLOAT")

    path = _audiofolder(tmp_path, "k.wav,corrupt,alarm\nn.wav,nan,music", make)
    exp = tmp_path / "exp.toml"
    exp.write_text(
        f'name = "n"\ntasks_file = "{path.name}"\ncalibration = "none"\nbootstrap = 20\n[tasks.d]\n'
        '[[systems]]\nname = "Cascade"\nkind = "cascade"\nasr = "stand-in-asr"\nllm = "stand-in"\n'
    )
    assert main(["run", str(exp), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Cascade · d · clean: 2 of 4 unusable" in err and "NaN/inf samples" in err
    with Store(tmp_path / "run" / "store.sqlite", read_only=True) as store:
        assert sorted(p.example_id for p in store.predictions(run="n")) == ["c0", "c1"]


# --- harness logs --------------------------------------------------------------------------------------------


def _inspect_log(tmp: Path, edit: Any) -> Path:
    (src,) = (EXAMPLES / "inspect").glob("*.json")
    doc = json.loads(src.read_text(encoding="utf-8"))
    edit(doc)
    out = tmp / "log.json"
    out.write_text(json.dumps(doc), encoding="utf-8")
    return out


def _import(tmp: Path, log: Path, harness: str = "inspect", *extra: str) -> list[str]:
    return ["import", "--from", harness, str(log), "--system", "s", "--task", "intent3", "--tasks-file",
            str(INTENT3), "--store", str(tmp / "s.sqlite"), *extra]  # fmt: skip


def _set(key: str, value: Any, where: str = "") -> Any:
    def edit(doc: dict[str, Any]) -> None:
        target = doc["samples"][0]
        for part in filter(None, where.split(".")):
            target = target[part]
        target[key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("epoch", "one"), "log.json sample 0: epoch 'one' is not a whole number"),
        (_set("epoch", None), "log.json sample 0: epoch None is not a whole number"),
        (_set("output", "alarm"), "log.json sample 0: 'output' must be an object, got str"),
        (
            _set("choices", ["alarm"], "output"),
            "log.json sample 0: output.choices[0] has no 'message' object",
        ),
    ],
    ids=["epoch-text", "epoch-null", "output-text", "choice-text"],
)
def test_inspect_samples_of_the_wrong_shape_are_named(tmp_path, capsys, edit, message):
    log = _inspect_log(tmp_path, edit)
    assert message in _error(capsys, _import(tmp_path, log))
    assert not (tmp_path / "s.sqlite").exists()


def test_an_inspect_sample_that_ended_in_an_error_is_left_out_not_scored_invalid(tmp_path, capsys):
    def edit(doc: dict[str, Any]) -> None:
        doc["samples"][0]["error"] = {"message": "RuntimeError: CUDA out of memory", "traceback": ""}
        doc["samples"][0]["output"] = {"model": "m", "choices": []}

    assert main(_import(tmp_path, _inspect_log(tmp_path, edit))) == 0
    out = capsys.readouterr().out
    assert "skipped 1 line(s)" in out and "ended in an error (RuntimeError: CUDA out of memory)" in out
    with Store(tmp_path / "s.sqlite", read_only=True) as store:
        ids = {p.example_id for p in store.predictions(run="imported")}
    assert len(ids) == 11 and "r01" not in ids  # not an INVALID row counted as the model's wrong answer


def test_an_unfinished_inspect_log_is_imported_with_a_warning(tmp_path, capsys):
    def edit(doc: dict[str, Any]) -> None:
        doc["status"] = "cancelled"
        doc["samples"] = doc["samples"][:4]

    assert main(_import(tmp_path, _inspect_log(tmp_path, edit))) == 0
    assert "warning: " in (out := capsys.readouterr().out) and "status is 'cancelled'" in out


def _eval_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"hello"), "an .eval log is a zip archive"),
        (lambda p: p.write_bytes(b"PK\x03\x04 cut short"), "an .eval log is a zip archive"),
        (
            lambda p: _eval_zip(p, {"header.json": b"{broken"}),
            "unreadable member header.json of the .eval log",
        ),
        (
            lambda p: _eval_zip(p, {"header.json": b"[1, 2]"}),
            "header.json of the .eval log is not a JSON object",
        ),
        (
            lambda p: _eval_zip(p, {"header.json": b'{"eval": {}}', "samples/a_epoch_1.json": b"\xff\xfe{}"}),
            "unreadable member samples/a_epoch_1.json",
        ),
    ],
    ids=["not-zip", "truncated", "bad-header", "header-list", "bad-sample"],
)
def test_an_eval_log_that_is_not_a_readable_zip_is_named(tmp_path, capsys, make, message):
    log = tmp_path / "x.eval"
    make(log)
    err = _error(capsys, _import(tmp_path, log))
    assert "x.eval" in err and message in err


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[1, 2]"], ids=["not-utf8", "not-object"])
def test_an_unreadable_lm_eval_results_file_is_named(tmp_path, capsys, content):
    (src,) = (EXAMPLES / "lm-eval").rglob("samples_*.jsonl")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / src.name).write_bytes(src.read_bytes())
    date = src.stem.rsplit("_", 1)[-1]
    (tmp_path / "out" / f"results_{date}.json").write_bytes(content)
    err = _error(capsys, _import(tmp_path, tmp_path / "out", "lm-eval", "--id-field", "id"))
    assert f"results_{date}.json: unreadable results file" in err


def test_a_folder_holding_two_runs_of_a_log_says_so(tmp_path, capsys):
    """lm-eval writes a new dated samples file per run: two in one folder repeat every document, and the hint
    to use --id-field (already given here) was misleading."""
    (src,) = (EXAMPLES / "lm-eval").rglob("samples_*.jsonl")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / src.name).write_bytes(src.read_bytes())
    (tmp_path / "out" / "samples_intent3_2026-12-07T00-00-00.000000.jsonl").write_bytes(src.read_bytes())
    err = _error(capsys, _import(tmp_path, tmp_path / "out", "lm-eval", "--id-field", "id"))
    assert (
        "the logs hold the same documents twice (a re-run in the same folder?): import one of the files"
        in err
    )
    assert "use --id-field" not in err


def test_a_folder_holding_logs_of_several_harness_tasks_is_refused(tmp_path, capsys):
    """One lm-eval output folder of ``--tasks a,b``: all were read as the one casceq task named."""
    (src,) = (EXAMPLES / "lm-eval").rglob("samples_*.jsonl")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / src.name).write_bytes(src.read_bytes())
    (tmp_path / "out" / src.name.replace("intent3", "intent3_v2")).write_bytes(src.read_bytes())
    err = _error(capsys, _import(tmp_path, tmp_path / "out", "lm-eval", "--id-field", "id"))
    assert "the folder holds logs of 2 harness tasks (intent3, intent3_v2)" in err


def _ll_log(tmp: Path, conts: list[str], target: Any) -> Path:
    """lm-eval multiple_choice samples (loglikelihood): choice 0 has the highest log-likelihood."""
    lls = ["-1.0", "-2.0", "-3.0"]
    line = {"doc_id": 0, "doc": {"id": "r04"}, "target": target,
            "arguments": {f"gen_args_{i}": {"arg_0": "Request: x\nAnswer:", "arg_1": c} for i, c in enumerate(conts)},
            "resps": [[[ll, "False"]] for ll in lls], "filtered_resps": [[ll, "False"] for ll in lls],
            "filter": "none", "metrics": ["acc"], "acc": 1.0}  # fmt: skip
    path = tmp / "samples_intent3_2026-01-01T00-00-00.000000.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    return path


def test_an_index_target_points_into_the_logged_choices(tmp_path):
    """lm-eval's target is an index into the document's choices (its acc is argmax == target): choice 0 here."""
    tasks.register_tasks_file(INTENT3)
    task = tasks.get_task("intent3")
    log = _ll_log(tmp_path, [" weather", " alarm", " music"], 0)
    (p,) = read_harness("lm-eval", log, task=task, system="s", id_field="id").predictions
    assert (p.label, p.gold, p.correct) == ("weather", "weather", True)  # as the log's own "acc": 1.0


def test_logged_choices_that_contradict_the_label_order_are_refused(tmp_path):
    """Two of three continuations name labels, in another order: a positional mapping would swap them."""
    tasks.register_tasks_file(INTENT3)
    log = _ll_log(tmp_path, [" weather", " alarm", " tune"], 0)
    with pytest.raises(
        InputError, match=r"choice 0 is ' weather' \(label 'weather'\) but task 'intent3' has"
    ):
        read_harness("lm-eval", log, task=tasks.get_task("intent3"), system="s", id_field="id")


# --- export-dataset and compare --------------------------------------------------------------------------------


def _synth_folder(tmp: Path, paths: list[str]) -> Path:
    from casceq.audio.io import write_flac

    folder = tmp / "synth"
    (folder / "audio").mkdir(parents=True)
    write_flac(folder / "audio" / "r01.flac", np.zeros(1600, dtype=np.float32))
    lines = [{"example_id": "r01", "task": "intent3", "voice": "v", "path": p, "duration": 0.1,
              "sample_rate": 16000, "text": "t", "spoken_text": "t", "sha256": "0" * 64} for p in paths]  # fmt: skip
    (folder / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return folder


@pytest.mark.parametrize("name", ["../secret.txt", "ABS"])
def test_export_dataset_puts_no_file_from_outside_the_synthesis_folder_into_the_dataset(
    tmp_path, capsys, name
):
    pytest.importorskip("datasets")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET\n")
    synth = _synth_folder(tmp_path, [str(secret) if name == "ABS" else name])
    err = _error(
        capsys, ["export-dataset", str(synth), "--out", str(tmp_path / "ds"), "--tasks-file", str(INTENT3)]
    )
    assert "outside the synthesis folder" in err and "refused" in err
    assert not (tmp_path / "ds").exists()


def test_export_dataset_refuses_a_clip_that_is_not_audio(tmp_path, capsys):
    pytest.importorskip("datasets")
    synth = _synth_folder(tmp_path, ["audio/r01.flac"])
    (synth / "audio" / "r01.flac").write_text("not audio")
    err = _error(
        capsys, ["export-dataset", str(synth), "--out", str(tmp_path / "ds"), "--tasks-file", str(INTENT3)]
    )
    assert "clip of 'r01' (v) is not audio" in err


def test_export_dataset_out_naming_a_file_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("datasets")
    (tmp_path / "afile").write_text("mine")
    synth = _synth_folder(tmp_path, ["audio/r01.flac"])
    argv = ["export-dataset", str(synth), "--out", str(tmp_path / "afile"), "--tasks-file", str(INTENT3)]
    assert "afile: exists and is not a folder" in _error(capsys, argv)
    assert (tmp_path / "afile").read_text() == "mine"


def test_compare_uses_the_kinds_declared_at_import_as_report_does(tmp_path, capsys):
    """``import --kind`` is recorded with the system; compare ignored it and guessed from the name."""
    store = str(tmp_path / "s.sqlite")
    common = ["--task", "intent3", "--tasks-file", str(INTENT3), "--store", store]
    assert main(["import", "--from", "lm-eval", str(EXAMPLES / "lm-eval"), "--system", "my-cascade",
                 "--kind", "speech_llm", "--id-field", "id", *common]) == 0  # fmt: skip
    assert main(["import", "--from", "inspect", str(EXAMPLES / "inspect"), "--system", "b",
                 "--kind", "cascade", *common]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["compare", store, "--tasks-file", str(INTENT3)]) == 0
    out = capsys.readouterr().out
    assert "my-cascade=speech_llm (declared)" in out and "b=cascade (declared)" in out
    assert main(["compare", store, "--tasks-file", str(INTENT3), "--kind", "my-cascade=cascade"]) == 0
    assert "my-cascade=cascade (declared)" in capsys.readouterr().out  # the command line still wins


def test_compare_of_a_run_folder_takes_its_kinds_and_skips_a_system_without_rows(tmp_path, capsys):
    """A run's text system was taken for a speech LLM by compare (report knew better); a system registered
    without predictions (it failed in the run) must not make compare refuse the folder."""
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"system": "Text", "task": "sst2", "example_id": f"e{i}", "prediction": p,
                            "gold": "positive"}) + "\n" for i, p in enumerate(["positive", "negative"])),
        encoding="utf-8",
    )  # fmt: skip
    store = str(tmp_path / "s.sqlite")
    assert main(["import", str(tmp_path / "a.jsonl"), "--store", store]) == 0
    with Store(store) as s:
        s.register_system("imported", "Text", kind="text")
        s.register_system("imported", "Failed", kind="speech_llm")
    capsys.readouterr()
    assert main(["compare", store, "--bootstrap", "0"]) == 0
    assert "Text=text (declared)" in capsys.readouterr().out
