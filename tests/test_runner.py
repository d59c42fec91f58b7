"""End-to-end runs through the real runner: real TTS (espeak-ng), real Whisper tiny.en (faster-whisper), and a
tiny random-weight Llama saved and reloaded through the real loader as the backbone."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casceq.errors import CasceqError
from casceq.io.store import Store
from casceq.run.config import load_config
from casceq.run.runner import run_experiment
from casceq.stages.run import RunConfig
from casceq.stages.run import run as run_stage
from casceq.types import INVALID
from tests.tiny_models import tiny_causal_lm

pytestmark = pytest.mark.slow

if (
    __import__("casceq.paths", fromlist=["datasets_dir"]).datasets_dir() is None
):  # pragma: no cover - a user's clone
    pytest.skip("../shared/datasets not found", allow_module_level=True)


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory) -> Path:
    return tiny_causal_lm(tmp_path_factory.mktemp("llm") / "tiny-llama")


def _config(
    tmp: Path, llm: Path, *, n: int = 6, batch: int = 4, conditions=("clean", "babble@5"), extra=""
) -> Path:
    conds = ", ".join(f'"{c}"' for c in conditions)
    text = f"""
name = "t"
seed = 0
batch_size = {batch}
voices = ["espeak-us"]
conditions = [{conds}]
calibration = "none"
bootstrap = 200
[tasks.sst2]
n = {n}
[[systems]]
name = "Cascade"
kind = "cascade"
asr = "faster-whisper:tiny.en"
llm = "hf:{llm}"
[[systems]]
name = "Text"
kind = "text"
llm = "hf:{llm}"
{extra}
"""
    p = tmp / f"exp-{batch}-{n}.toml"
    p.write_text(text)
    return p


def _rows(run_dir: Path):
    with Store(run_dir / "store.sqlite") as s:
        return s.predictions(run="t")


def test_run_writes_every_row_once_and_outputs(tmp_path, llm_dir):
    cfg = load_config(_config(tmp_path, llm_dir))
    out = tmp_path / "run"
    summary = run_experiment(cfg, out, show_progress=False)
    assert not summary.failed
    rows = _rows(out)
    keys = [(p.system, p.condition, p.example_id) for p in rows]
    assert len(keys) == len(set(keys)) == 2 * 2 * 6  # systems x conditions x (6 items x 1 voice)
    # Every row names its item, the example a voice spoke (the text ceiling's copies included).
    assert all(p.item is not None and p.item == p.example_id.split("@")[0] for p in rows)
    casc = [p for p in rows if p.system == "Cascade"]
    assert all(p.transcript is not None for p in casc)
    assert sum(bool(p.transcript.strip()) for p in casc) >= 10  # real Whisper hears espeak speech
    # the text ceiling answers once per example: identical across conditions
    text = {(p.example_id, p.condition): p.label for p in rows if p.system == "Text"}
    assert all(text[(e, "clean")] == text[(e, "babble@5")] for e, _ in text)
    assert all(p.label in ("negative", "positive") for p in rows)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == len(rows)
    data = json.loads((out / "compare.json").read_text())
    assert {p["condition"] for p in data["pairs"]} == {"clean", "babble@5"}
    assert (out / "report.md").read_text().startswith("# casceq run")

    # A second start finds everything done: nothing written and no model built.
    import casceq.systems.llm as llm_pkg

    def boom(*a, **k):
        raise AssertionError("a model was loaded on a finished run")

    from casceq.run.build import clear_shared

    clear_shared()  # a fresh process: no back end in memory
    orig = llm_pkg.make_llm
    llm_pkg.make_llm = boom
    try:
        again = run_experiment(cfg, out, show_progress=False)
    finally:
        llm_pkg.make_llm = orig
    assert sum(again.written.values()) == 0 and not again.failed
    assert len(_rows(out)) == len(rows)


def test_batch_size_does_not_change_predictions(tmp_path, llm_dir):
    got = {}
    for bs in (1, 8):
        cfg = load_config(_config(tmp_path, llm_dir, batch=bs, conditions=("clean",)))
        out = tmp_path / f"bs{bs}"
        run_experiment(cfg, out, show_progress=False)
        got[bs] = {(p.system, p.example_id): (p.label, p.transcript, p.label_scores) for p in _rows(out)}
    assert got[1].keys() == got[8].keys()
    for k in got[1]:
        l1, t1, s1 = got[1][k]
        l8, t8, s8 = got[8][k]
        assert (l1, t1) == (l8, t8)
        assert all(abs(s1[x] - s8[x]) < 1e-4 for x in s1)


def test_other_config_in_same_folder_is_refused(tmp_path, llm_dir):
    out = tmp_path / "run"
    run_experiment(
        load_config(_config(tmp_path, llm_dir, n=2, conditions=("clean",))), out, show_progress=False
    )
    with pytest.raises(CasceqError, match="different config"):
        run_experiment(
            load_config(_config(tmp_path, llm_dir, n=3, conditions=("clean",))), out, show_progress=False
        )


def test_a_system_that_fails_to_load_is_named_and_others_finish(tmp_path, llm_dir):
    extra = '[[systems]]\nname = "Broken"\nkind = "text"\nllm = "hf:/nonexistent/model-folder"\n'
    cfg = load_config(_config(tmp_path, llm_dir, n=2, conditions=("clean",), extra=extra))
    summary = run_experiment(cfg, tmp_path / "run", show_progress=False)
    assert set(summary.failed) == {"Broken"}
    (failure,) = [json.loads(line) for line in (tmp_path / "run" / "failures.jsonl").read_text().splitlines()]
    assert failure["system"] == "Broken" and "nonexistent" in failure["error"]
    rows = _rows(tmp_path / "run")
    assert {p.system for p in rows} == {"Cascade", "Text"} and len(rows) == 4


def test_unreadable_audio_is_an_input_failure_and_the_batch_continues(tmp_path, llm_dir):
    from casceq.paths import datasets_dir

    src = datasets_dir() / "ravdess" / "Actor_01"
    data = tmp_path / "ravdess" / "Actor_01"
    data.mkdir(parents=True)
    files = sorted(src.iterdir())[:4]
    for f in files:
        (data / f.name).write_bytes(f.read_bytes())
    bad = data / files[1].name
    bad.write_bytes(bad.read_bytes()[:200])  # truncated FLAC
    text = _config(tmp_path, llm_dir, conditions=("clean",)).read_text()
    text = text.replace("[tasks.sst2]\nn = 6", f'[tasks.ravdess]\ndata_dir = "{tmp_path / "ravdess"}"')
    p = tmp_path / "rav.toml"
    p.write_text(text)
    summary = run_experiment(load_config(p), tmp_path / "run", show_progress=False)
    assert not summary.failed
    rows = [r for r in _rows(tmp_path / "run") if r.system == "Cascade"]
    assert len(rows) == 3 and bad.stem not in {r.example_id for r in rows}  # not scored as a wrong answer
    assert sum(r.label != INVALID for r in rows) == 3
    (group,) = summary.input_failures
    assert (group.system, group.failed, group.total) == ("Cascade", 1, 4) and bad.name in group.errors[0]


def test_sigkill_then_resume_gives_every_prediction_exactly_once(tmp_path, llm_dir):
    cfg_path = _config(tmp_path, llm_dir, n=16, batch=2, conditions=("clean",))
    ref = tmp_path / "ref"
    run_experiment(load_config(cfg_path), ref, show_progress=False)
    expected = {(p.system, p.example_id): p.label for p in _rows(ref)}

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "casceq.cli", "run", str(cfg_path), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "store.sqlite"
    deadline = time.time() + 240
    n = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as c:
                    n = c.execute("SELECT count(*) FROM predictions").fetchone()[0]
            except sqlite3.Error:
                n = 0
            if n >= 4:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(_rows(out)) < len(expected)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = _rows(out)
    got = [(p.system, p.example_id) for p in rows]
    assert len(got) == len(set(got))
    assert {(p.system, p.example_id): p.label for p in rows} == expected


def test_full_report_is_written_with_the_run(tmp_path, llm_dir):
    cfg = load_config(_config(tmp_path, llm_dir, n=3, conditions=("clean",)))
    out = tmp_path / "run"
    run_stage(RunConfig(cfg, out, show_progress=False))  # the run stage builds the full report
    html = (out / "report" / "report.html").read_text()
    assert "Cascade" in html and "Text" in html
    assert (out / "report" / "report.md").exists()


def test_heldout_calibration_is_disjoint_and_applied(tmp_path, llm_dir):
    # What the offsets were FITTED on: the run records the fitting ids; an independent refit on exactly those
    # items reproduces the saved offsets, and those ids are neither evaluated items nor few-shot examples.
    import numpy as np

    from casceq.run.build import build_system
    from casceq.run.calibrate import ITEMS_FILE
    from casceq.systems.llm.calibration import fit_calibrator
    from casceq.tasks import get_task, load_examples

    p = tmp_path / "cal.toml"
    p.write_text(
        f"""
name = "t"
calibration = "heldout"
calibration_n = 8
bootstrap = 50
[tasks.sst2]
n = 12
[[systems]]
name = "Text"
kind = "text"
llm = "hf:{llm_dir}"
settings = {{ few_shot = {{ sst2 = 2 }} }}
"""
    )
    out = tmp_path / "run"
    cfg = load_config(p)
    run_experiment(cfg, out, show_progress=False)
    (fits,) = json.loads((out / ITEMS_FILE).read_text()).values()
    fitted = fits["sst2"]
    assert len(fitted) == 8 == len(set(fitted))
    evaluated = {r.example_id.split("@")[0] for r in _rows(out)}
    assert len(evaluated) == 12 and not set(fitted) & evaluated
    task = get_task("sst2")
    llm = build_system(cfg.systems[0], cfg)._get("llm")
    shots = {prompt for prompt, _ in llm.shots_for(task.prompt("x"))}
    by_id = {ex.id: ex for ex in load_examples("sst2")}
    assert len(shots) == 2 and not {task.prompt(by_id[i].text, by_id[i]) for i in fitted} & shots
    refit = fit_calibrator(llm, task, "heldout", heldout=[by_id[i] for i in fitted]).offsets
    (offsets,) = [v["sst2"] for v in json.loads((out / "calibration.json").read_text()).values()]
    np.testing.assert_allclose(refit, offsets, atol=1e-9)
    assert abs(sum(offsets)) < 1e-9 and max(map(abs, offsets)) > 0  # centred, and not a no-op
    for r in _rows(out):
        scores = np.array([r.label_scores[lab] for lab in ("negative", "positive")])
        assert r.label == ("negative", "positive")[int(np.argmax(scores - np.array(offsets)))]


def test_heldout_pick_refuses_leaks_at_run_time(monkeypatch):
    # positive control of the run-time check: a picker that returned an evaluated item or a shot is an error
    import casceq.systems.llm.calibration as cal
    from casceq.errors import LeakageError
    from casceq.run.calibrate import heldout_examples
    from casceq.tasks import get_task, load_examples

    evaluated = load_examples("sst2", n=5, seed=0)
    task = get_task("sst2")

    class Shots:
        def shots_for(self, prompt):
            return ((task.prompt(evaluated[4].text, evaluated[4]), "positive"),)

    monkeypatch.setattr(cal, "heldout_examples", lambda *a, **k: evaluated[:2])
    with pytest.raises(LeakageError, match="2 evaluated items and 0 few-shot"):
        heldout_examples("sst2", evaluated[:3], 2, 0)
    monkeypatch.setattr(cal, "heldout_examples", lambda *a, **k: evaluated[3:])
    with pytest.raises(LeakageError, match="0 evaluated items and 1 few-shot"):
        heldout_examples("sst2", evaluated[:3], 2, 0, Shots())


def test_speech_llm_is_calibrated_on_heldout_audio(tmp_path, llm_dir):
    # The speech LLM gets the cascades' treatment: offsets fitted on held-out items (spoken, clean), applied to
    # every row. Checked against an independent fit on the same clips through the backend directly.
    import numpy as np

    from casceq.audio.io import load_audio
    from casceq.run.calibrate import heldout_examples
    from casceq.systems.compose import speech_prompt
    from casceq.systems.speech_llm import make_speech_llm
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig
    from casceq.tasks import get_task, load_examples
    from tests.tiny_models import tiny_whisper

    whisper = tiny_whisper(tmp_path / "whisper")
    ucfg = UltravoxNativeConfig(
        encoder=str(whisper),
        backbone=str(llm_dir),
        hidden_dim=64,
        encoder_mode="unpadded",
        prompt="matched",
        few_shot={"sst2": 2},
    )
    ckpt = UltravoxNativeBackend.create(ucfg, seed=3).save(tmp_path / "speech-llm")
    p = tmp_path / "cal.toml"
    p.write_text(
        f"""
name = "t"
calibration = "heldout"
calibration_n = 6
bootstrap = 50
voices = ["espeak-us", "espeak-gb-f4"]
conditions = ["clean"]
[tasks.sst2]
n = 3
[[systems]]
name = "Speech"
kind = "speech_llm"
model = "ultravox-native:{ckpt}"
backbone = "tiny"
"""
    )
    out = tmp_path / "run"
    run_experiment(load_config(p), out, show_progress=False)
    saved = json.loads((out / "calibration.json").read_text())
    ((group, fits),) = saved.items()
    assert json.loads(group)["speech"] == f"ultravox-native:{ckpt}"
    offsets = np.array(fits["sst2"])
    assert abs(offsets.sum()) < 1e-9 and np.abs(offsets).max() > 0
    rows = _rows(out)
    assert len(rows) == 6
    for r in rows:
        scores = np.array([r.label_scores[lab] for lab in ("negative", "positive")])
        assert r.label == ("negative", "positive")[int(np.argmax(scores - offsets))]
    # independent fit: the held-out items, voice i mod 2, raw scores from the backend itself
    task = get_task("sst2")
    from casceq.run.calibrate import ITEMS_FILE

    (recorded,) = json.loads((out / ITEMS_FILE).read_text()).values()
    by_id = {ex.id: ex for ex in load_examples("sst2")}
    held = [by_id[i] for i in recorded["sst2"]]  # what the offsets were fitted on (refit below)
    assert not {e.id for e in held} & {r.example_id.split("@")[0] for r in rows}
    # the speech LLM's few-shot examples are not among them (they were before: both come from the far end)
    backend = make_speech_llm(f"ultravox-native:{ckpt}")
    shots = {prompt for prompt, _ in backend.shots_for(task.prompt("x"))}
    assert len(shots) == 2 and not {task.prompt(e.text, e) for e in held} & shots
    without = heldout_examples("sst2", load_examples("sst2", n=3, seed=0), 6, 0)
    assert {task.prompt(e.text, e) for e in without} & shots  # positive control: the old pick held shots
    clips = sorted((out / "audio" / "sst2-calibration").rglob("*.flac"))
    assert len(clips) == 6  # one clip per held-out item
    by_voice = {"espeak-us": held[0::2], "espeak-gb-f4": held[1::2]}
    wavs, prompts = [], []
    for voice, exs in by_voice.items():
        for ex in exs:
            (clip,) = [c for c in clips if voice in c.parts[-2] + c.name and ex.id in c.name] or [None]
            assert clip is not None, (voice, ex.id, [c.name for c in clips])
            wavs.append(load_audio(clip, sr=16000))
            prompts.append(speech_prompt(task, ex))
    raw = np.asarray(backend.score_options(wavs, prompts, [list(task.labels)] * len(wavs)))
    logp = raw - np.logaddexp.reduce(raw, axis=1, keepdims=True)
    ref = np.log(np.exp(logp).mean(0))
    np.testing.assert_allclose(offsets, ref - ref.mean(), atol=1e-4)
    # run_offsets reads the same fit back for the mechanistic stages
    from casceq.run.calibrate import run_offsets

    (found,) = run_offsets(out).values()
    np.testing.assert_array_equal(found["sst2"], offsets)
    # retrained weights under the same spec: the old fit is not reused, a new one is made and read back
    UltravoxNativeBackend.create(ucfg, seed=4).save(tmp_path / "speech-llm")
    run_experiment(load_config(p), out, show_progress=False)
    saved = json.loads((out / "calibration.json").read_text())
    assert len(saved) == 2 and group in saved
    (new_group,) = set(saved) - {group}
    assert json.loads(new_group)["weights"] != json.loads(group)["weights"]
    (refit,) = run_offsets(out).values()
    np.testing.assert_array_equal(refit["sst2"], saved[new_group]["sst2"])
    assert np.abs(refit["sst2"] - offsets).max() > 1e-6


def test_a_run_killed_in_calibration_keeps_the_fits_it_finished(tmp_path, llm_dir, monkeypatch):
    # Two tasks, two fits. The second fit is interrupted (as a killed session would be): the first is on disk,
    # and the next start fits only the second.
    from casceq.run import calibrate

    p = tmp_path / "cal2.toml"
    p.write_text(
        f"""
name = "t"
calibration = "heldout"
calibration_n = 6
bootstrap = 50
[tasks.sst2]
n = 4
[tasks.ag_news]
n = 4
[[systems]]
name = "Text"
kind = "text"
llm = "hf:{llm_dir}"
settings = {{ few_shot = {{ sst2 = 1, ag_news = 1 }} }}
"""
    )
    out = tmp_path / "run"
    real, calls = calibrate.fit_calibrator, []

    def interrupted(llm, task, *a, **kw):
        calls.append(task.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the machine goes away
        return real(llm, task, *a, **kw)

    monkeypatch.setattr(calibrate, "fit_calibrator", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_config(p), out, show_progress=False)
    (first,) = json.loads((out / "calibration.json").read_text()).values()
    assert list(first) == [calls[0]]  # the finished fit survived
    monkeypatch.setattr(
        calibrate,
        "fit_calibrator",
        lambda llm, task, *a, **kw: calls.append(task.name) or real(llm, task, *a, **kw),
    )
    run_experiment(load_config(p), out, show_progress=False)
    assert calls[2:] == [calls[1]]  # only the unfinished fit is made again
    (both,) = json.loads((out / "calibration.json").read_text()).values()
    assert both[calls[0]] == first[calls[0]] and set(both) == {"sst2", "ag_news"}
