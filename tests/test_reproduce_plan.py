"""The reproduction plan: its experiment TOML parses into the asked-for systems, tasks, conditions and sizes; the
speech LLM is matched with Cascade-S and not with the mismatched cascade; --offline refuses hub ids; a folder
holding another plan is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casceq.errors import InputError
from casceq.reproduce.plan import (
    CONDITIONS,
    DEFAULT_N,
    DEFAULT_N_RAVDESS,
    Models,
    check_offline,
    default_plan,
    estimate_minutes,
    experiment_toml,
)
from casceq.run.config import load_config


def _config(tmp_path: Path, plan):  # type: ignore[no-untyped-def]
    path = tmp_path / "experiment.toml"
    path.write_text(experiment_toml(plan))
    return load_config(path)


def test_default_toml_has_the_systems_tasks_conditions_and_sizes(tmp_path: Path) -> None:
    from casceq.audio.conditions import PAPER_CONDITIONS
    from casceq.audio.tts import DEFAULT_VOICES
    from casceq.systems.llm.bundled import DEFAULT_BACKBONE, DEFAULT_LLM_SETTINGS

    cfg = _config(tmp_path, default_plan())
    systems = {s.name: s for s in cfg.systems}
    assert {n: (s.kind, s.asr, s.llm, s.model) for n, s in systems.items()} == {
        "Cascade-S": ("cascade", "faster-whisper:base", DEFAULT_BACKBONE, None),
        "Cascade-W": ("cascade", "faster-whisper:tiny.en", DEFAULT_BACKBONE, None),
        "Cascade-M": ("cascade", "faster-whisper:base", "smollm2-135m-instruct", None),
        "Speech-LLM": ("speech_llm", None, None, "ultravox-native:bundled"),
        "Speech-LLM-C": ("speech_llm", None, None, "ultravox-native:continuous"),
        "Speech-LLM-A": ("speech_llm", None, None, "ultravox-native:acoustic-control"),
        "Text": ("text", None, DEFAULT_BACKBONE, None),
    }
    assert {t.name: t.split for t in cfg.tasks}["ravdess"] == "test"  # no subject's training actors
    assert {t.name: t.n for t in cfg.tasks} == {
        "ag_news": DEFAULT_N,
        "sst2": DEFAULT_N,
        "csqa": DEFAULT_N,
        "ravdess": DEFAULT_N_RAVDESS,
    }
    assert cfg.conditions == PAPER_CONDITIONS == CONDITIONS
    assert cfg.voices == DEFAULT_VOICES[:2]
    assert (cfg.answer_mode, cfg.calibration) == ("score", "heldout")
    shots = systems["Cascade-S"].settings["few_shot"]
    for task in ("sst2", "ag_news", "csqa"):  # the measured settings, the same on every LLM system
        assert shots[task] == DEFAULT_LLM_SETTINGS[task].few_shot
    assert shots["ravdess"] == 0
    assert all(
        systems[n].settings == systems["Cascade-S"].settings for n in ("Cascade-W", "Cascade-M", "Text")
    )


def test_matched_and_mismatched_pairing(tmp_path: Path) -> None:
    from casceq.run.build import backbone_of, build_system

    cfg = _config(tmp_path, default_plan())
    built = {s.name: build_system(s, cfg) for s in cfg.systems}  # lazy: loads no model
    speech = built["Speech-LLM"].backbone
    assert speech == backbone_of(built["Cascade-S"].spec["llm"]) == built["Cascade-S"].backbone
    assert built["Cascade-W"].backbone == speech
    assert built["Cascade-M"].backbone != speech


def test_sizes_conditions_and_tasks_follow_the_flags(tmp_path: Path) -> None:
    plan = default_plan(7, 9, conditions=["clean", "babble@0"], tasks=["sst2", "ravdess"], mech_n=6)
    cfg = _config(tmp_path, plan)
    assert {t.name: t.n for t in cfg.tasks} == {"sst2": 7, "ravdess": 9}
    assert cfg.conditions == ("clean", "babble@0")
    assert plan.clips("sst2") == 14 and plan.clips("ravdess") == 9
    with pytest.raises(InputError):
        default_plan(0)
    with pytest.raises(InputError):
        default_plan(tasks=["meld"])
    with pytest.raises(InputError):
        default_plan(mech_n=3)  # probes need at least 5 groups


MEASURED = Path(__file__).parent / "data" / "reproduce_n20"
"""plan.json + timings.json of the real 5 Dec 2026 full run (see the README there)."""


def test_estimate_against_a_measured_timings_json() -> None:
    import json

    from casceq.reproduce.plan import Costs, measured_costs, plan_from_dict

    data = json.loads((MEASURED / "plan.json").read_text())
    plan = plan_from_dict(data["plan"])
    assert plan.hash() == data["hash"]  # the plan read back is the plan that ran
    timings = json.loads((MEASURED / "timings.json").read_text())
    behaviour = timings["behavioural"]["seconds"]
    mech = sum(v["seconds"] for k, v in timings.items() if k not in ("behavioural", "report"))
    assert (behaviour, mech) == (2522.0, 1739.0)
    # November's constants missed this run (53 min of stages against 71 measured); those measured on 7 Dec, with
    # the all-position lens and the diagnostic this run did not have yet, do not underestimate it: 81 min
    const = estimate_minutes(plan, Costs())
    assert (
        (behaviour + mech) / 60 < const["behavioural"] + const["mechanistic"] < 1.3 * (behaviour + mech) / 60
    )
    # costs read from the measured timings reproduce its stage times (behavioural and mechanistic)
    costs = measured_costs(MEASURED)
    est = estimate_minutes(plan, costs)
    assert est["behavioural"] * 60 == pytest.approx(behaviour, rel=1e-9)
    assert est["mechanistic"] * 60 == pytest.approx(mech, rel=1e-9)
    assert est["total"] * 60 == pytest.approx(behaviour + mech + 5.0, rel=1e-9)  # + the report stage: 71 min
    # ... and scale linearly with the clips: twice the items per text task, by hand
    text_share = sum(plan.clips(t) * costs.per_clip[t] for t in ("ag_news", "sst2", "csqa")) * 5
    double = default_plan(40, 40, voices=list(plan.voices), subjects=())  # the measured plan: one subject
    assert estimate_minutes(double, costs)["behavioural"] * 60 == pytest.approx(
        behaviour + text_share, rel=1e-9
    )
    assert estimate_minutes(default_plan(mech=False), costs)["mechanistic"] == 0


def test_every_mechanistic_stage_counts_in_the_measured_cost(tmp_path: Path) -> None:
    import json
    import shutil

    from casceq.reproduce.plan import measured_costs, plan_from_dict

    folder = tmp_path / "run"
    shutil.copytree(MEASURED, folder)
    plan = plan_from_dict(json.loads((folder / "plan.json").read_text())["plan"])
    timings = json.loads((folder / "timings.json").read_text())
    before = estimate_minutes(plan, measured_costs(folder))["mechanistic"] * 60
    assert before == pytest.approx(1739.0, rel=1e-9)
    # the stages this 5 Dec folder predates (names as tests/test_reproduce_pipeline.py expects them), at the
    # powered run's seconds: the section 5.4 diagnostic was once left out of the sum (65 s per utterance, not 81)
    timings["lens-all"] = {"status": "done", "seconds": 93.0, "detail": ""}
    timings["diagnostic"] = {"status": "done", "seconds": 437.1, "detail": ""}
    (folder / "timings.json").write_text(json.dumps(timings))
    after = estimate_minutes(plan, measured_costs(folder))["mechanistic"] * 60
    assert after == pytest.approx(1739.0 + 93.0 + 437.1, rel=1e-9)


@pytest.mark.parametrize("counts", ["detail", "numbers"])
def test_a_resumed_behavioural_stage_is_no_cost_measurement(tmp_path: Path, counts: str) -> None:
    import json
    import shutil

    from casceq.reproduce.plan import COSTS, FIXED_SECONDS, measured_costs

    folder = tmp_path / "run"
    shutil.copytree(MEASURED, folder)
    timings = json.loads((folder / "timings.json").read_text())
    # positive control: the fresh run's stage (nothing resumed) is a measurement, unlike the constants
    assert measured_costs(folder).per_clip["sst2"] != pytest.approx(COSTS["sst2"])
    # the last start of a run carried over sessions: 419 s for its last 1,136 rows of 21,056
    stage = timings["behavioural"]
    stage["seconds"] = 418.9
    if counts == "detail":  # a folder written before the counts were recorded
        stage["detail"] = "1136 rows written, 19920 already done"
    else:
        stage.update(detail="", rows_written=1136, rows_done=19920)
    (folder / "timings.json").write_text(json.dumps(timings))
    costs = measured_costs(folder)
    assert dict(costs.per_clip) == dict(COSTS)
    assert costs.fixed == FIXED_SECONDS  # loading and calibration are not inside a measured stage either
    # ... and a fresh start's counts (nothing done before) are a measurement again
    stage.update(rows_written=21056, rows_done=0)
    (folder / "timings.json").write_text(json.dumps(timings))
    assert measured_costs(folder).per_clip["sst2"] != pytest.approx(COSTS["sst2"])


def test_power_table_uses_the_measured_costs_and_the_power_functions() -> None:
    import json

    from casceq.reproduce.plan import measured_costs, plan_from_dict
    from casceq.reproduce.powerplan import PLANNING_SD, format_table, power_table
    from casceq.reproduce.rules import REFERENCE

    plan = plan_from_dict(json.loads((MEASURED / "plan.json").read_text())["plan"])
    costs = measured_costs(MEASURED)
    rows = {r.key: r for r in power_table(plan, costs)}
    # (b): directional at 0.025 one-sided, 80% power: n = ((1.959964 + 0.841621) sd / 0.10)^2, by hand
    sd = PLANNING_SD["b"][0]
    assert rows["b"].items == int(np.ceil((2.801585 * sd / REFERENCE["b"]) ** 2))
    sized = default_plan(rows["b"].items, 40, voices=list(plan.voices), subjects=())
    assert rows["b"].minutes == pytest.approx(estimate_minutes(sized, costs)["total"])
    # (h): equivalence by TOST at 0.05 with margin 0.10: n = ((1.644854 + 1.281552) sd / 0.10)^2
    assert rows["h"].items == int(np.ceil((2.926405 * PLANNING_SD["h"][0] / REFERENCE["h"]) ** 2))
    assert rows["f"].items is None  # no interval: no power
    # the committed run's Δκ CI [0.150, 0.616] resampled clips of 2 voices: its SE x √2 (largest design
    # effect) x √20 items, by hand: n = 445 (the clip-level SE alone would say 223)
    assert PLANNING_SD["b"][0] == pytest.approx((0.616 - 0.150) / 3.92 * np.sqrt(2) * np.sqrt(20), rel=2e-3)
    assert rows["b"].items == 445
    page = format_table(list(rows.values()), plan, costs)
    assert "timings.json" in page and "| (b) |" in page


def test_offline_accepts_bundled_and_local_and_refuses_hub_ids(tmp_path: Path) -> None:
    check_offline(Models())
    local = tmp_path / "my-llm"
    local.mkdir()
    check_offline(Models(llm=f"hf:{local}", llm_other=str(local), speech_llm=f"ultravox-native:{local}"))
    for bad in (
        Models(llm="hf:google/gemma-3-270m"),
        Models(llm_other="HuggingFaceTB/SmolLM2-135M-Instruct"),
        Models(asr_strong="faster-whisper:Systran/faster-whisper-small"),
        Models(speech_llm="qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"),
        Models(whisper_control="whisper:openai/whisper-base"),
    ):
        with pytest.raises(InputError, match="--offline"):
            check_offline(bad)


def test_a_folder_with_another_plan_is_refused(tmp_path: Path) -> None:
    from casceq.reproduce.pipeline import open_out

    plan = default_plan(4, 4)
    open_out(tmp_path, plan, resume=False)
    with pytest.raises(InputError, match="--resume"):
        open_out(tmp_path, plan, resume=False)
    open_out(tmp_path, plan, resume=True)  # same plan: fine
    with pytest.raises(InputError, match="another plan"):
        open_out(tmp_path, default_plan(5, 4), resume=True)


def test_cli_requires_offline_and_dry_run_writes_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from casceq.cli import main

    assert main(["reproduce", "--out", str(tmp_path / "a")]) == 2
    assert "--offline" in capsys.readouterr().err
    assert main(["reproduce", "--offline", "--dry-run", "--n", "6", "--out", str(tmp_path / "b")]) == 0
    assert "estimated" in capsys.readouterr().out
    cfg = load_config(tmp_path / "b" / "experiment.toml")
    assert {t.name: t.n for t in cfg.tasks}["sst2"] == 6


def test_single_task_sizes(tmp_path, capsys) -> None:
    from casceq.cli import main
    from casceq.errors import InputError

    plan = default_plan(453, 200, tasks=["ag_news", "sst2", "ravdess"], n_task={"ag_news": 200})
    assert plan.n == {"ag_news": 200, "sst2": 453, "ravdess": 200}
    assert plan.hash() != default_plan(453, 200, tasks=["ag_news", "sst2", "ravdess"]).hash()
    with pytest.raises(InputError, match="not in the plan"):
        default_plan(10, 10, tasks=["sst2"], n_task={"ag_news": 5})
    with pytest.raises(InputError, match="must be positive"):
        default_plan(10, 10, tasks=["sst2"], n_task={"sst2": 0})
    out = tmp_path / "dry"
    argv = ["reproduce", "--offline", "--out", str(out), "--tasks", "ag_news", "sst2", "--dry-run"]
    assert main([*argv, "--n", "30", "--n-task", "ag_news=12"]) == 0
    assert "ag_news 24 clips, sst2 60 clips" in capsys.readouterr().out
    for bad in (["ag_news"], ["ag_news=x"], ["ag_news=-3"], ["ag_news=3", "ag_news=4"]):
        assert main([*argv, "--n-task", *bad]) == 2
        assert "--n-task" in capsys.readouterr().err
