"""``casceq reproduce`` end to end on tiny stand-ins: random-weight Llama backbones and a random-weight native
Ultravox (saved and loaded back through the real loaders), real Whisper tiny.en as ASR, real espeak-ng speech and
real RAVDESS clips. Every stage runs, the findings page judges every claim, and a resumed call redoes nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from casceq.paths import datasets_dir

pytestmark = pytest.mark.slow

if datasets_dir() is None:  # pragma: no cover - a user's clone
    pytest.skip("../shared/datasets not found", allow_module_level=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from casceq.reproduce.plan import Models
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig
    from tests import tiny_models as tm

    root = tmp_path_factory.mktemp("repro-models")
    whisper = tm.tiny_whisper(root / "whisper")
    lm = tm.tiny_causal_lm(root / "tiny-lm-a")
    other = tm.tiny_causal_lm(root / "tiny-lm-b", seed=tm.SEED + 1)
    # Asked as the shipped model is: the matched cascade's prompt and its shots (a pair must show the same shots).
    cfg = UltravoxNativeConfig(
        encoder=str(whisper),
        backbone=str(lm),
        hidden_dim=64,
        encoder_mode="unpadded",
        prompt="matched",
        few_shot={"sst2": 4, "ag_news": 4},
    )
    ckpt = UltravoxNativeBackend.create(cfg, seed=7).save(root / "speech-llm")
    return Models(
        asr_strong="faster-whisper:tiny.en",
        asr_weak="faster-whisper:tiny.en",
        llm=f"hf:{lm}",
        llm_other=f"hf:{other}",
        speech_llm=f"ultravox-native:{ckpt}",
        whisper_control=f"whisper:{whisper}",
    )


def test_pipeline_end_to_end_and_resume(models: Any, tmp_path: Path) -> None:
    from casceq.mech.shards import CaptureReader
    from casceq.reproduce.pipeline import run_pipeline
    from casceq.reproduce.plan import check_offline, default_plan
    from casceq.reproduce.rules import VERDICTS

    check_offline(models)  # local folders are offline specs
    plan = default_plan(
        2,
        5,
        conditions=["clean", "babble@0"],
        tasks=["sst2", "ravdess"],
        mech_n=5,
        models=models,
        voices=["espeak-us"],
    )
    out = tmp_path / "repro"
    logs: list[str] = []
    result = run_pipeline(plan, out, show_progress=False, log=logs.append)
    assert result.failed == [], "\n".join(logs)
    stages = json.loads((out / "timings.json").read_text())
    expected = {
        "behavioural",
        *(
            f"{k}-{m}-{t}"
            for k in ("capture", "probes")
            for m in ("speech", "whisper")
            for t in ("sst2", "ravdess")
        ),
        "lens",
        "implicit",
        "erasure",
        "lens-all",
        "diagnostic",
        "report",
        "findings",
    }
    assert set(stages) == expected
    assert all(v["status"] == "done" for k, v in stages.items() if k != "diagnostic")
    # 5 utterances cannot hold 30% of the items out with >= 4 on each side: skipped, saying why
    assert stages["diagnostic"]["status"] == "skipped" and "mechanistic n 5" in stages["diagnostic"]["detail"]
    findings = json.loads((out / "findings.json").read_text())
    assert [c["key"] for c in findings["claims"]] == list("abcdefgh")
    assert all(c["verdict"] in VERDICTS and c["reason"] for c in findings["claims"])
    page = (out / "findings.md").read_text()
    assert "sst2 2 items × 1 voices" in page and "| behavioural | done |" in page
    # the run holds every planned row: 5 systems x (2 sst2 clips + 5 RAVDESS clips) x 2 conditions
    rows = [json.loads(line) for line in (out / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 5 * 7 * 2
    # captures hold the planned utterances; the lens control reads the next utterance's transcript
    for name in ("speech-sst2", "speech-ravdess", "whisper-sst2", "whisper-ravdess"):
        assert len(CaptureReader(out / "mech" / "captures" / name).utterances) == 5
    real = CaptureReader(out / "mech" / "captures" / "speech-sst2").utterances
    shadow = CaptureReader(out / "mech" / "lens" / "control-capture").utterances
    assert [r.transcript for r in shadow] == [r.transcript for r in real[1:] + real[:1]]
    # its states are links relative to it (no machine path), so the view survives moving the run folder ...
    links = [p for p in (out / "mech" / "lens" / "control-capture").iterdir() if p.is_symlink()]
    assert links and not any(os.path.isabs(os.readlink(p)) for p in links)
    moved = tmp_path / "moved"
    shutil.copytree(out / "mech", moved / "mech", symlinks=True)
    assert len(CaptureReader(moved / "mech" / "lens" / "control-capture").utterances) == 5
    # ... and a packed state holds no link: it unpacks (unpack refuses links)
    from casceq.reproduce.state import pack, unpack

    packed = pack(out, tmp_path / "state.tar.gz")["files"]
    assert unpack(tmp_path / "state.tar.gz", tmp_path / "unpacked") == packed
    assert (out / "report" / "report.md").is_file()
    report = (out / "report" / "report.md").read_text()
    for result_file in ("lens/mech/lens.json", "implicit/mech/implicit.json", "erasure/mech/erasure.json"):
        assert result_file in report  # the full report read every mechanistic result
    assert "probes/speech-ravdess/probes.json" in report
    # the implicit and erasure stages answer with the behavioural run's calibration (its decision rule)
    from casceq.run.calibrate import run_offsets

    offsets = run_offsets(out / "run")
    impl = json.loads((out / "mech" / "implicit" / "mech" / "implicit.json").read_text())["results"]
    assert [r["task"] for r in impl] == ["sst2"]
    assert impl[0]["offsets_speech"] == offsets["Speech-LLM"]["sst2"].tolist()
    assert impl[0]["offsets_text"] == offsets["Cascade-S"]["sst2"].tolist()
    erasure = json.loads((out / "mech" / "erasure" / "mech" / "erasure.json").read_text())
    assert erasure["calibration"] == {"sst2": offsets["Speech-LLM"]["sst2"].tolist()}
    # the same from the CLI on the same clips: `casceq implicit --calibration RUN --cascade Cascade-S`
    from casceq.cli import main

    cli_out = tmp_path / "cli"
    argv = ["implicit", "--model", models.speech_llm, "--task", "sst2", "--voice", "espeak-us", "--n", "5"]
    argv += ["--audio-dir", str(out / "mech" / "audio" / "sst2"), "--asr", models.asr_strong]
    argv += ["--calibration", str(out / "run"), "--cascade", "Cascade-S", "--out", str(cli_out)]
    assert main(argv) == 0
    (cli,) = json.loads((cli_out / "mech" / "implicit.json").read_text())["results"]
    for key in ("offsets_speech", "offsets_text", "accuracy_speech", "accuracy_cascade", "accuracy_implicit"):
        assert cli[key] == impl[0][key], key
    assert [(r["speech"], r["cascade"], r["implicit"]) for r in cli["rows"]] == [
        (r["speech"], r["cascade"], r["implicit"]) for r in impl[0]["rows"]
    ]
    bad = [*argv[:-2], "--speech-system", "Cascade-S", "--out", str(cli_out)]
    assert main(bad) == 2  # not a speech-LLM system of the run: a clear error, no crash
    assert main([*argv, "--seed", "3"]) == 2  # another seed than the run's: its calibration items could leak
    # erasure: the stage evaluated items disjoint from the erasers' fitting utterances (the sst2 capture)
    from casceq.reproduce.mech import MechContext

    fit_ids = {
        r.id.split("@")[0] for r in CaptureReader(out / "mech" / "captures" / "speech-sst2").utterances
    }
    evaluated, _ = MechContext(plan, out, out / "run").items("sst2", frozenset(fit_ids))
    assert len(evaluated) == 5 and not {e.id.split("@")[0] for e in evaluated} & fit_ids
    assert erasure["gold"]["sst2"] == [e.label for e in evaluated]
    random_draws = [a["condition"] for a in erasure["accuracy"] if a["condition"].startswith("random")]
    assert random_draws == ["random", *(f"random-{j}" for j in range(2, 6))]
    # `casceq erase --calibration RUN` on those items, with the same fit and seed, gives the stage's accuracies
    items = cli_out / "items.jsonl"
    items.parent.mkdir(parents=True, exist_ok=True)
    items.write_text(
        "".join(
            json.dumps({"id": e.id, "audio": e.audio.path, "label": e.label, "text": e.text}) + "\n"
            for e in evaluated
        )
    )
    erase = ["erase", "--model", models.speech_llm, "--task", "sst2", "--items", str(items)]
    erase += [
        "--fit",
        str(out / "mech" / "captures" / "speech-sst2"),
        "--concepts",
        "text",
        "acoustic",
        "random",
    ]
    erase += ["--calibration", str(out / "run"), "--out", str(cli_out)]
    assert main(erase) == 0
    cli_erase = json.loads((cli_out / "mech" / "erasure.json").read_text())
    assert cli_erase["calibration"] == erasure["calibration"]
    assert cli_erase["accuracy"] == erasure["accuracy"]
    # evaluating the fitting utterances themselves is refused (LEACE would be judged on its own fit)
    leak = ["erase", "--model", models.speech_llm, "--task", "sst2", "--voice", "espeak-us", "--n", "5"]
    leak += [
        "--audio-dir",
        str(out / "mech" / "audio" / "sst2"),
        "--fit",
        str(out / "mech" / "captures" / "speech-sst2"),
    ]
    leak += ["--concepts", "text", "--out", str(cli_out / "x")]
    assert main(leak) == 2

    # costs read from this real run's timings.json give back its measured stage seconds
    from casceq.reproduce.plan import estimate_minutes, measured_costs

    est = estimate_minutes(plan, measured_costs(out))
    assert est["behavioural"] * 60 == pytest.approx(stages["behavioural"]["seconds"], rel=1e-6)
    # findings are re-judged from the stored results alone: same verdicts, no model output recomputed
    predictions = (out / "run" / "predictions.jsonl").stat().st_mtime_ns
    assert main(["reproduce", "--offline", "--out", str(out), "--rejudge"]) == 0
    again_claims = json.loads((out / "findings.json").read_text())["claims"]
    assert [c["verdict"] for c in again_claims] == [c["verdict"] for c in findings["claims"]]
    assert (out / "run" / "predictions.jsonl").stat().st_mtime_ns == predictions
    assert "re-judged by" in (out / "findings.md").read_text()

    shard = next((out / "mech" / "captures" / "speech-sst2").glob("shard-*.states.npy"))
    before = shard.stat().st_mtime_ns
    again = run_pipeline(plan, out, resume=True, show_progress=False, log=logs.append)
    redo = {k: v["status"] for k, v in again.timings.items()}
    assert all(
        v == "complete (resumed)"
        for k, v in redo.items()
        if k not in ("behavioural", "report", "findings", "diagnostic")
    )
    assert redo["diagnostic"] == "skipped"  # still too small: skipped again, never half-run
    assert again.timings["behavioural"]["detail"].startswith("0 rows written")
    # the counts say the first start wrote every row and the second none, so only the first timed the plan
    rows = sum(1 for _ in (out / "run" / "predictions.jsonl").open())
    assert (stages["behavioural"]["rows_written"], stages["behavioural"]["rows_done"]) == (rows, 0)
    assert (again.timings["behavioural"]["rows_written"], again.timings["behavioural"]["rows_done"]) == (
        0,
        rows,
    )
    assert shard.stat().st_mtime_ns == before


def test_skip_mech_and_time_limit_are_recorded(models: Any, tmp_path: Path) -> None:
    from casceq.reproduce.pipeline import run_pipeline
    from casceq.reproduce.plan import default_plan

    plan = default_plan(
        2, 5, conditions=["clean"], tasks=["sst2", "ravdess"], mech=False, models=models, voices=["espeak-us"]
    )
    result = run_pipeline(plan, tmp_path / "r", show_progress=False, limit_minutes=0.0, log=lambda _m: None)
    assert result.timings["behavioural"]["status"] == "skipped"  # the limit was reached before it started
    report = result.timings["report"]
    assert (report["status"], report["detail"]) == ("skipped", "no predictions to report on")
    assert result.failed == []
    claims = json.loads((tmp_path / "r" / "findings.json").read_text())["claims"]
    assert all(c["verdict"] == "inconclusive" for c in claims)
    assert "limit-minutes" in claims[0]["reason"] and "skip-mech" in claims[-1]["reason"]


def test_capture_stage_resumes_and_redoes_a_float16_start(models: Any, tmp_path: Path) -> None:
    from casceq.mech.capture import Utterance, capture
    from casceq.mech.shards import CaptureReader
    from casceq.reproduce.mech import MechContext, capture_complete, capture_stage
    from casceq.reproduce.plan import default_plan

    plan = default_plan(2, 5, tasks=["ravdess"], mech_n=5, models=models)
    ctx = MechContext(plan, tmp_path, tmp_path / "run")
    examples, _ = ctx.items("ravdess")
    loaded = ctx.model(models.whisper_control)
    obj, fe = loaded.obj, loaded.feature_extractor

    def start(folder: Path, dtype: str) -> None:  # an interrupted earlier capture of the first 2 clips
        utts = [Utterance(e.id, e.audio.path, e.text, {"actor": e.meta["actor"]}) for e in examples[:2]]
        capture(
            obj,
            utts,
            str(folder),
            model=models.whisper_control,
            dtype=dtype,
            pitch=False,
            feature_extractor=fe,
        )

    for dtype, shards in (("float32", 2), ("float16", 1)):
        folder = tmp_path / dtype
        start(folder, dtype)
        assert not capture_complete(ctx, folder, "ravdess")
        capture_stage(ctx, models.whisper_control, "ravdess", folder)
        reader = CaptureReader(folder)
        ids = [r.id for r in reader.utterances]
        assert sorted(ids) == sorted(e.id for e in examples) and len(set(ids)) == 5
        assert reader.meta.dtype == "float32" and len(reader.shards) == shards  # float16 start: redone in one
        assert capture_complete(ctx, folder, "ravdess")


def test_one_comparison_and_one_report_per_call(
    models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's statistics go on to the report and the findings: compare() once per run folder and call, and
    # one report (DIR/report, none inside the run folder). A resumed call with nothing new computes them once,
    # for its report, and the findings read that. Counted where every compare() and every report passes.
    import importlib

    import casceq.report.build as build

    stats = importlib.import_module("casceq.stats.compare")  # the module (casceq.stats exports the function)
    from casceq.reproduce.pipeline import run_pipeline
    from casceq.reproduce.plan import default_plan

    counts = {"compare": 0, "report": 0}

    def counting(name: str, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(stats, "align", counting("compare", stats.align))  # compare() aligns exactly once
    monkeypatch.setattr(build, "sections_of", counting("report", build.sections_of))  # once per report
    plan = default_plan(
        2,
        5,
        conditions=["clean", "babble@0"],
        tasks=["sst2"],
        mech=False,
        models=models,
        voices=["espeak-us"],
    )
    out = tmp_path / "r"
    result = run_pipeline(plan, out, show_progress=False, log=lambda _m: None)
    assert result.failed == []
    assert counts == {"compare": 1, "report": 1}
    assert (out / "report" / "report.md").is_file() and not (out / "run" / "report").exists()
    findings = json.loads((out / "findings.json").read_text())
    counts.update(compare=0, report=0)
    again = run_pipeline(plan, out, resume=True, show_progress=False, log=lambda _m: None)
    assert again.timings["behavioural"]["detail"].startswith("0 rows written")
    assert counts == {"compare": 1, "report": 1}
    # the shared statistics give the verdicts a separate computation gives (``--rejudge`` computes its own)
    assert json.loads((out / "findings.json").read_text())["claims"] == findings["claims"]
    from casceq.reproduce.pipeline import rejudge

    _, claims = rejudge(out, ["casceq", "reproduce", "--rejudge"])
    assert [(c.key, c.verdict, c.reason) for c in claims] == [
        (c["key"], c["verdict"], c["reason"]) for c in findings["claims"]
    ]


def test_every_subject_gets_its_stages_and_its_row(models: Any, tmp_path: Path) -> None:
    """Two speech-LLM subjects and a cascade stand-in: one behavioural run holds both speech LLMs, each gets its
    own mechanistic stages and folder, the findings hold a row per subject, and a resumed call redoes nothing."""
    from dataclasses import replace

    from casceq.reproduce.findings import NOT_APPLICABLE
    from casceq.reproduce.pipeline import run_pipeline
    from casceq.reproduce.plan import PRIMARY, REPRODUCED, Subject, default_plan

    second = replace(
        Subject("Speech-LLM-X", models.speech_llm, "a second copy"), expected=(("d", REPRODUCED, "t"),)
    )
    subjects = (
        Subject(PRIMARY, models.speech_llm, "tiny"),
        second,
        Subject("Cascade-W", None, "a cascade", stand_in="Cascade-W"),
    )
    plan = default_plan(
        2,
        5,
        conditions=["clean"],
        tasks=["sst2", "ravdess"],
        mech_n=14,  # the diagnostic holds 4 of 14 items out
        models=models,
        voices=["espeak-us"],
        subjects=subjects,
    )
    out = tmp_path / "repro"
    logs: list[str] = []
    result = run_pipeline(plan, out, show_progress=False, log=logs.append)
    assert result.failed == [], "\n".join(logs)
    stages = json.loads((out / "timings.json").read_text())
    for name in (
        "capture-speech-llm-x-sst2",
        "probes-speech-llm-x-ravdess",
        "lens-speech-llm-x",
        "implicit-speech-llm-x",
        "erasure-speech-llm-x",
        "lens-all-speech-llm-x",
        "diagnostic-speech-llm-x",
        "lens",
        "erasure",
    ):
        assert stages[name]["status"] == "done", name
    assert not any("cascade-w" in k for k in stages)  # a stand-in has no states
    assert (out / "mech-speech-llm-x" / "lens" / "mech" / "lens.json").is_file()
    rows = [json.loads(line) for line in (out / "run" / "predictions.jsonl").read_text().splitlines()]
    assert {r["system"] for r in rows} >= {PRIMARY, "Speech-LLM-X", "Cascade-W"}
    # the second subject's implicit stage answered with its own calibration offsets
    from casceq.run.calibrate import run_offsets

    impl = json.loads((out / "mech-speech-llm-x" / "implicit" / "mech" / "implicit.json").read_text())
    assert impl["results"][0]["offsets_speech"] == run_offsets(out / "run")["Speech-LLM-X"]["sst2"].tolist()
    findings = json.loads((out / "findings.json").read_text())
    assert [r["name"] for r in findings["subjects"]] == [PRIMARY, "Speech-LLM-X", "Cascade-W"]
    cells = {r["name"]: r["claims"] for r in findings["subjects"]}
    assert {cells["Cascade-W"][k]["verdict"] for k in "fgh"} == {NOT_APPLICABLE}
    assert cells["Speech-LLM-X"]["d"]["expected"] == REPRODUCED and cells["Speech-LLM-X"]["d"]["agreement"]
    page = (out / "findings.md").read_text()
    assert "## Subjects x claims" in page
    # the section 5.4 diagnostic and the all-position lens of each speech-LLM subject, on held-out utterances
    from casceq.mech.lens import LENS_ALL_FILE
    from casceq.stages.erase import read_erasure
    from casceq.stages.lens import read_lens

    for mech in ("mech", "mech-speech-llm-x"):
        diag = read_erasure(out / mech / "diagnostic" / "mech" / "erasure.json")
        assert diag.diagnostic is not None and {r.concept for r in diag.diagnostic.rows} == {
            "acoustic2d",
            "acoustic",
        }
        assert {r.region for r in read_lens(out / mech / "lens" / LENS_ALL_FILE).regions} >= {"audio", "text"}
    assert page.count("reduce text decodability? (section 5.4)") == 2
    assert page.count("Logit lens over every position of the prompt") == 2
    again = run_pipeline(plan, out, resume=True, show_progress=False, log=logs.append)
    assert all(
        v["status"] == "complete (resumed)"
        for k, v in again.timings.items()
        if k not in ("behavioural", "report", "findings")
    )


def test_a_packed_reproduction_resumes_elsewhere_without_recomputing(models: Any, tmp_path: Path) -> None:
    from casceq.cli import main
    from casceq.reproduce.pipeline import run_pipeline
    from casceq.reproduce.plan import default_plan

    plan = default_plan(
        2, 4, conditions=["clean"], tasks=["sst2", "ravdess"], mech=False, models=models, voices=["espeak-us"]
    )
    out, back = tmp_path / "here", tmp_path / "there"
    first = run_pipeline(plan, out, show_progress=False, log=lambda _m: None)
    written = first.timings["behavioural"]["detail"]
    assert not written.startswith("0 rows")
    archive = tmp_path / "state.tar.gz"
    assert main(["reproduce", "--out", str(out), "--pack", str(archive)]) == 0
    assert main(["reproduce", "--out", str(back), "--unpack", str(archive)]) == 0
    assert not (back / "run" / "audio").exists()  # the audio is made again, and found to be the same
    again = run_pipeline(plan, back, resume=True, show_progress=False, log=lambda _m: None)
    assert again.timings["behavioural"]["detail"].startswith("0 rows written")
    page = (back / "findings.md").read_text()
    assert "- starts: 2 (1 wrote prediction rows; inference code identical in all of them); " in page
    a, b = (json.loads((d / "findings.json").read_text())["claims"] for d in (out, back))
    assert [c["verdict"] for c in a] == [c["verdict"] for c in b]
