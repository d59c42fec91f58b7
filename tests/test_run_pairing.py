"""A run records its pairing (speech LLM -> registry backbone -> matched/mismatched systems) and the resolved
dtype/device of every model it loaded, without changing the config hash."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from casceq.run.config import ExperimentConfig, parse_config
from casceq.run.pairing import run_pairing

PAIR_CONFIG = """
name = "p"
[tasks.sst2]
n = 4
[[systems]]
name = "Speech"
kind = "speech_llm"
model = "qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"
settings = { dtype = "auto" }
[[systems]]
name = "Cascade-M"
kind = "cascade"
asr = "faster-whisper:large-v3"
llm = "hf:Qwen/Qwen-7B-Chat"
settings = { trust_remote_code = true, chat_template = "chatml" }
[[systems]]
name = "Cascade-X"
kind = "cascade"
asr = "faster-whisper:large-v3"
llm = "hf:meta-llama/Llama-3.1-8B-Instruct"
"""
FROZEN_HASH = "472d2b98d616340313cb9c8dd0471355a5d64cfb03e44797c1955d0f59a278c8"
"""``PAIR_CONFIG``'s hash computed by the code before the pairing and models records existed (main 07c3af6)."""


def _cfg(text: str = PAIR_CONFIG) -> ExperimentConfig:
    return parse_config(tomllib.loads(text))


def test_the_pairing_names_registry_backbone_matched_llm_and_the_runs_matched_and_mismatched_systems() -> (
    None
):
    pairing = run_pairing(_cfg())
    (speech,) = pairing.speech_llms
    assert (speech.system, speech.backbone, speech.source) == ("Speech", "qwen-7b", "registry")
    assert speech.registry is not None
    assert (speech.registry.release, speech.registry.backbone) == ("qwen2-audio-7b-instruct", "Qwen-7B")
    assert speech.registry.matched_llm == "hf:Qwen/Qwen-7B-Chat"
    assert speech.registry.llm_settings == {"trust_remote_code": True, "chat_template": "chatml"}
    # Qwen-7B-Chat's own name is not the backbone's: the registry pairs it without a declared backbone
    assert speech.matched == ("Cascade-M",) and speech.mismatched == ("Cascade-X",)
    assert pairing.warnings == ()
    line = pairing.lines()[0]
    assert "Speech" in line and "'qwen-7b'" in line and "matched: Cascade-M" in line
    assert "mismatched: Cascade-X" in line and "hf:Qwen/Qwen-7B-Chat" in line


def test_the_built_systems_carry_the_pairings_backbones_and_compare_matches_them() -> None:
    from casceq.run.build import build_system

    cfg = _cfg()
    built = {s.name: build_system(s, cfg).backbone for s in cfg.systems}  # lazy: nothing loads
    assert built == {"Speech": "qwen-7b", "Cascade-M": "qwen-7b", "Cascade-X": "llama-3.1-8b-instruct"}


def test_a_declared_backbone_is_compared_lower_cased_as_compare_matches_exactly() -> None:
    from casceq.run.build import build_system

    # the registry prints "Qwen-7B"; a cascade that declares it so was a mismatched pair for compare before
    cfg = _cfg(
        PAIR_CONFIG.replace(
            'llm = "hf:Qwen/Qwen-7B-Chat"', 'llm = "hf:Qwen/Qwen-7B-Chat"\nbackbone = "Qwen-7B"'
        )
    )
    assert build_system(cfg.systems[1], cfg).backbone == build_system(cfg.systems[0], cfg).backbone
    assert run_pairing(cfg).speech_llms[0].matched == ("Cascade-M",)


def test_a_declared_speech_backbone_that_contradicts_the_registry_warns_naming_both() -> None:
    text = PAIR_CONFIG.replace(
        'model = "qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"',
        'model = "qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"\nbackbone = "llama-3.1-8b-instruct"',
    )
    pairing = run_pairing(_cfg(text))
    (speech,) = pairing.speech_llms
    assert speech.source == "declared" and speech.backbone == "llama-3.1-8b-instruct"
    # matched on the declared id: the Llama cascade now counts as matched, which is why it must warn
    assert speech.matched == ("Cascade-X",) and speech.mismatched == ("Cascade-M",)
    differs = [w for w in pairing.warnings if "differs from the registry" in w]
    assert len(differs) == 1 and "'llama-3.1-8b-instruct'" in differs[0] and "'Qwen-7B'" in differs[0]
    registered = [w for w in pairing.warnings if "registry's matched-cascade LLM" in w]
    assert len(registered) == 1 and registered[0].startswith("Cascade-M runs hf:Qwen/Qwen-7B-Chat")
    assert any(line.startswith("warning: Speech:") for line in pairing.lines())


def test_a_speech_llm_without_a_system_on_its_backbone_warns() -> None:
    text = PAIR_CONFIG.split('[[systems]]\nname = "Cascade-M"')[0]
    (warning,) = run_pairing(_cfg(text)).warnings
    assert "no matched pair" in warning and "'qwen-7b'" in warning


def test_the_pairing_and_models_records_leave_the_config_hash_as_it_was() -> None:
    assert _cfg().hash() == FROZEN_HASH


def test_models_record_keeps_resolved_dtype_device_and_merges_starts(tmp_path: Path) -> None:
    from casceq.run.models import backend_record, read_models, write_models
    from casceq.systems.loading import LoadReport

    class Part:
        load_report = LoadReport("/w/llm", dtype="bfloat16", device="cuda:0")

    class Speech:
        model = Part()
        encoder = type("Enc", (), {"load_report": LoadReport("/w/enc", dtype="float32", device="cuda:0")})()

    class Api:
        def __init__(self) -> None:
            self.settings = {"model": "gemini-2.5-flash", "thinking_budget": 0, "api_key": "sk-secret"}

    rec = backend_record(Speech(), "speech")
    assert rec["weights"] == [
        {"path": "/w/llm", "dtype": "bfloat16", "device": "cuda:0", "unused_tensors": 0},
        {"path": "/w/enc", "dtype": "float32", "device": "cuda:0", "unused_tensors": 0},
    ]
    assert backend_record(Api(), "speech")["settings"] == {"model": "gemini-2.5-flash", "thinking_budget": 0}
    write_models(tmp_path, {"A": {"speech": rec}})
    write_models(tmp_path, {"B": {"llm": backend_record(Api())}})  # a later start that loaded only B
    systems = read_models(tmp_path)
    assert set(systems) == {"A", "B"} and systems["A"]["speech"]["weights"][0]["dtype"] == "bfloat16"


def test_a_run_records_its_pairing_and_the_models_it_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Tiny native speech LLM + a matched and a mismatched text system through the real runner."""
    pytest.importorskip("transformers")
    from casceq.paths import datasets_dir

    if datasets_dir() is None:  # pragma: no cover - a user's clone
        pytest.skip("../shared/datasets not found (the sst2 items)")
    from casceq.run.config import load_config
    from casceq.run.runner import CONFIG_JSON, run_experiment
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig
    from tests.tiny_models import tiny_causal_lm, tiny_whisper

    llm = tiny_causal_lm(tmp_path / "tiny-llama")
    ucfg = UltravoxNativeConfig(
        encoder=str(tiny_whisper(tmp_path / "whisper")),
        backbone=str(llm),
        hidden_dim=64,
        encoder_mode="unpadded",
        prompt="matched",
    )
    ckpt = UltravoxNativeBackend.create(ucfg, seed=0).save(tmp_path / "speech-llm")
    p = tmp_path / "exp.toml"
    p.write_text(
        f"""
name = "t"
calibration = "none"
bootstrap = 20
voices = ["espeak-us"]
conditions = ["clean"]
[tasks.sst2]
n = 2
[[systems]]
name = "Speech"
kind = "speech_llm"
model = "ultravox-native:{ckpt}"
backbone = "Tiny-Llama"
[[systems]]
name = "Text-M"
kind = "text"
llm = "hf:{llm}"
[[systems]]
name = "Text-X"
kind = "text"
llm = "hf:{llm}"
backbone = "other-lm"
"""
    )
    cfg = load_config(p)
    out = tmp_path / "run"
    summary = run_experiment(cfg, out, show_progress=False)
    assert not summary.failed
    printed = capsys.readouterr().out
    assert "pairing: Speech" in printed and "matched: Text-M; mismatched: Text-X" in printed
    saved = json.loads((out / "pairing.json").read_text())
    (speech,) = saved["speech_llms"]
    assert (speech["backbone"], speech["matched"], speech["mismatched"]) == (
        "tiny-llama",
        ["Text-M"],
        ["Text-X"],
    )
    assert json.loads((out / CONFIG_JSON).read_text())["hash"] == cfg.hash()
    models = json.loads((out / "models.json").read_text())["systems"]
    assert set(models) == {"Speech", "Text-M", "Text-X"}
    paths = {w["path"]: (w["dtype"], w["device"]) for w in models["Speech"]["speech"]["weights"]}
    assert paths == {
        str(llm.resolve()): ("float32", "cpu"),
        str((tmp_path / "whisper").resolve()): ("float32", "cpu"),
    }
    (text_weights,) = models["Text-M"]["llm"]["weights"]
    assert (text_weights["dtype"], text_weights["device"]) == ("float32", "cpu")
    report = (out / "report.md").read_text()
    assert "## Pairing" in report and "| Speech | tiny-llama | declared |" in report
    assert "## Models loaded" in report and "| Text-M | llm |" in report
    # a resumed start loads nothing and keeps the record of the start that did
    before = (out / "models.json").read_text()
    import sqlite3

    from casceq.io.store import Store
    from casceq.run.build import clear_shared

    with sqlite3.connect(out / "store.sqlite") as db:  # rows of a start that spelled the declared id as given
        db.execute("UPDATE predictions SET backbone = 'Tiny-Llama' WHERE system = 'Speech'")
    clear_shared()
    run_experiment(cfg, out, show_progress=False)
    assert (out / "models.json").read_text() == before
    with Store(out / "store.sqlite") as store:
        rows = store.predictions(run="t")
    assert {p.backbone for p in rows if p.system == "Speech"} == {"tiny-llama"}  # one id per system again


def test_a_run_start_prints_the_mismatch_warning_and_keeps_it_in_pairing_json(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from casceq.run.runner import start_pairing

    text = PAIR_CONFIG.replace(
        'model = "qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"',
        'model = "qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"\nbackbone = "llama-3.1-8b-instruct"',
    )
    start_pairing(_cfg(text), tmp_path)  # what run_experiment does first, before any model loads
    printed = capsys.readouterr().out
    assert (
        "warning: Speech: " in printed
        and "'llama-3.1-8b-instruct' differs from the registry's 'Qwen-7B'" in printed
    )
    saved = json.loads((tmp_path / "pairing.json").read_text())
    assert saved["speech_llms"][0]["registry"]["matched_llm"] == "hf:Qwen/Qwen-7B-Chat"
    assert any("'Qwen-7B'" in w and "'llama-3.1-8b-instruct'" in w for w in saved["warnings"])


def test_a_native_checkpoints_recorded_backbone_pairs_it_without_a_declaration(tmp_path: Path) -> None:
    """``projector.json`` names the backbone (``backbone_name``), as ``make_speech_llm`` reads it: a run does too."""
    from casceq.run.build import system_backbone
    from casceq.run.config import SystemSpec

    folder = tmp_path / "projector"
    folder.mkdir()
    (folder / "projector.json").write_text(json.dumps({"model": {"backbone_name": "SmolLM2-135M-Instruct"}}))
    spec = SystemSpec("Speech", "speech_llm", model=f"ultravox-native:{folder}")
    assert system_backbone(spec) == "smollm2-135m-instruct"
    cfg = _cfg(
        f'name = "n"\n[tasks.sst2]\n[[systems]]\nname = "Speech"\nkind = "speech_llm"\nmodel = "ultravox-native:{folder}"\n'
        '[[systems]]\nname = "Text"\nkind = "text"\nllm = "smollm2-135m-instruct"\n'
    )
    (speech,) = run_pairing(cfg).speech_llms
    assert (speech.source, speech.matched) == ("checkpoint", ("Text",))
    from dataclasses import replace

    from casceq.errors import InputError

    declared = replace(
        cfg, systems=(replace(cfg.systems[0], backbone="llama-3.1-8b-instruct"), *cfg.systems[1:])
    )
    (warning,) = [w for w in run_pairing(declared).warnings if "projector.json" in w]
    assert "'llama-3.1-8b-instruct'" in warning and "'SmolLM2-135M-Instruct'" in warning
    (folder / "projector.json").write_text(json.dumps({"model": {}}))  # nothing recorded: still asks for it
    with pytest.raises(InputError, match="set backbone"):
        system_backbone(spec)
