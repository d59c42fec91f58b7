"""``casceq doctor``: passes on the offline models, fails with the reason on the broken cases of issue 20."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from casceq.systems.speech_llm import SpeechLLMSpec
from casceq.systems.speech_llm.doctor import Check, Clips, diagnose, run_checks
from tests import tiny_models as tm
from tests.test_speech_llm_usage import FakeGemini, _fake_genai_types


def _noise() -> Clips:
    rng = np.random.default_rng(3)
    audios = tuple((0.05 * rng.standard_normal(16_000 + 3_000 * i)).astype(np.float32) for i in range(3))
    return Clips(audios, ("one two", "three four", "five six"), "test noise")


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


TINY = {
    "qwen2-audio": tm.tiny_qwen2_audio,
    "phi4-mm": tm.tiny_phi4_multimodal,
    "voxtral": tm.tiny_voxtral,
    "qwen2.5-omni": tm.tiny_qwen_omni_thinker,
}


@pytest.mark.parametrize(
    "family",
    [
        "qwen2-audio",
        "phi4-mm",
        pytest.param("voxtral", marks=pytest.mark.slow),
        pytest.param("qwen2.5-omni", marks=pytest.mark.slow),
    ],
)
def test_doctor_passes_on_tiny_real_class_models(tmp_path: Path, family: str) -> None:
    folder = TINY[family](tmp_path / "m")
    options = {"speech_lora": None} if family == "phi4-mm" else {}
    checks, _ = diagnose(SpeechLLMSpec(family, str(folder), backbone="tiny", options=options), clips=_noise())
    by = _by_name(checks)
    assert [c for c in checks if c.status == "fail"] == []
    for name in ("weights", "label scores", "batch 1 = batch 4", "answers"):
        assert by[name].status == "pass", by[name]
    assert by["transcribe"].status == "skip" and "toy model" in by["transcribe"].detail
    if family == "qwen2-audio":  # its processor can be built offline: ids and features are compared
        assert by["processor ids"].status == by["audio features"].status == "pass"


def test_doctor_fails_on_the_old_layout_phi4_naming_the_weights(tmp_path: Path) -> None:
    folder = tm.tiny_phi4_old_layout(tmp_path / "old")
    spec = SpeechLLMSpec("phi4-mm", str(folder), backbone="t", options={"speech_lora": None})
    checks, _ = diagnose(spec, clips=_noise())
    weights = _by_name(checks)["weights"]
    assert weights.status == "fail" and "qkv_proj.weight" in weights.detail


def test_doctor_fails_on_empty_gemini_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    from casceq.systems.speech_llm.gemini import GeminiBackend

    _fake_genai_types(monkeypatch)
    backend = GeminiBackend(FakeGemini(["", ""] + ["x"] * 10, reason="MAX_TOKENS"), "gemini-2.5-flash")
    by = _by_name(run_checks(backend, model="gemini-2.5-flash", clips=_noise()))
    assert by["answers"].status == "fail" and "INVALID" in by["answers"].detail
    assert "MAX_TOKENS" in by["answers"].detail
    assert by["weights"].status == by["label scores"].status == "skip"


def test_doctor_passes_gemini_answers_that_are_there(monkeypatch: pytest.MonkeyPatch) -> None:
    from casceq.systems.speech_llm.gemini import GeminiBackend

    _fake_genai_types(monkeypatch)
    backend = GeminiBackend(FakeGemini(["yes", "no"] + ["x"] * 10), "gemini-2.5-flash")
    by = _by_name(run_checks(backend, model="gemini-2.5-flash", clips=_noise()))
    assert by["answers"].status == "pass"
    assert "API" in by["label scores"].detail and "API" in by["batch 1 = batch 4"].detail


def test_doctor_fails_on_a_mismatched_backbone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from casceq.systems.speech_llm import doctor

    # The registry's cascade LLM (Qwen-7B-Chat) is not on this machine: that check is not under test here.
    monkeypatch.setattr(doctor, "check_cascade", lambda *a: Check("cascade backbone", "skip", "offline"))
    folder = tm.tiny_qwen2_audio(
        tmp_path / "Qwen2-Audio-7B-Instruct"
    )  # a release name: the registry knows it
    spec = SpeechLLMSpec("qwen2-audio", str(folder), backbone="llama-3-8b")
    with pytest.warns(UserWarning, match="differs from the registry"):
        checks, _ = diagnose(spec, clips=_noise())
    backbone = _by_name(checks)["backbone"]
    assert backbone.status == "fail" and "'llama-3-8b'" in backbone.detail and "'Qwen-7B'" in backbone.detail


def test_doctor_fails_when_the_cascade_llm_is_another_backbone(tmp_path: Path) -> None:
    speech = tm.tiny_qwen2_audio(tmp_path / "q")
    llm = tm.tiny_causal_lm(tmp_path / "other-lm")
    spec = SpeechLLMSpec("qwen2-audio", str(speech), backbone="tiny-lm")
    by = _by_name(diagnose(spec, clips=_noise(), cascade_llm=f"hf:{llm}")[0])
    assert by["cascade backbone"].status == "fail" and "'other-lm'" in by["cascade backbone"].detail
    ok = _by_name(
        diagnose(
            SpeechLLMSpec("qwen2-audio", str(speech), backbone="other-lm"),
            clips=_noise(),
            cascade_llm=f"hf:{llm}",
        )[0]
    )
    assert ok["cascade backbone"].status == "pass"


def test_cli_prints_the_table_and_exits_non_zero_on_a_failure(tmp_path: Path, capsys: Any) -> None:
    from casceq.cli import main

    folder = tm.tiny_phi4_old_layout(tmp_path / "old")
    code = main(["doctor", f"phi4-mm:{folder}", "--backbone", "t", "--option", "speech_lora=null"])
    out = capsys.readouterr().out
    assert code == 1
    assert "weights" in out and "FAIL" in out and "qkv_proj.weight" in out and "FAILED weights" in out


@pytest.mark.slow
def test_doctor_passes_on_the_bundled_speech_llm() -> None:
    """The shipped model on 4 clips of a bundled voice: every check passes or is skipped with its reason."""
    checks, _ = diagnose(SpeechLLMSpec.parse("ultravox-native:bundled"))
    by = _by_name(checks)
    assert [c for c in checks if c.status == "fail"] == [], checks
    assert by["transcribe"].status == "skip" and "WER" in by["transcribe"].detail  # measured, not held to 0.2
    assert by["label scores"].status == "pass" and by["batch 1 = batch 4"].status == "pass"
    assert by["cascade backbone"].status == "pass" and by["weights"].status == "pass"


def test_doctor_reports_a_model_that_does_not_load_as_a_load_failure(tmp_path: Path) -> None:
    checks, _ = diagnose(SpeechLLMSpec("qwen2-audio", str(tmp_path / "absent"), backbone="t"), clips=_noise())
    assert [c.name for c in checks] == ["load", "other checks"]
    assert checks[0].status == "fail" and checks[1].status == "skip"


def test_the_registered_cascade_llm_passes_as_the_docs_example_gives_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--backbone qwen-7b --cascade-llm hf:Qwen/Qwen-7B-Chat`` (docs/speech_llms.md): Qwen-7B-Chat's own name
    is 'qwen-7b-chat', but the registry makes it Qwen2-Audio's matched cascade; another LLM still fails."""
    import casceq.systems.llm as llm_pkg
    from casceq.run.build import backbone_of
    from casceq.systems.speech_llm.doctor import check_cascade

    class Loaded:
        def __init__(self, spec: str) -> None:
            self.backbone = backbone_of(spec)  # what HFCausalLM names a hub id: 'qwen-7b-chat'

    monkeypatch.setattr(llm_pkg, "make_llm", lambda spec, **settings: Loaded(spec))
    speech = type("Speech", (), {"backbone": "qwen-7b"})()
    ok = check_cascade(speech, "./my-finetune", "hf:Qwen/Qwen-7B-Chat", {})
    assert ok.status == "pass", ok
    other = check_cascade(speech, "./my-finetune", "hf:meta-llama/Llama-3.1-8B-Instruct", {})
    assert other.status == "fail" and "'llama-3.1-8b-instruct'" in other.detail


def test_a_backbone_read_from_a_checkpoint_is_not_called_declared() -> None:
    from casceq.systems.speech_llm.doctor import check_backbone

    assert "from the checkpoint" in check_backbone("runs/projector", None, "gemma-3-270m").detail
    assert "as declared" in check_backbone("runs/projector", "gemma-3-270m", "gemma-3-270m").detail


def test_ultravox_hub_code_is_not_called_an_api_model() -> None:
    """A local model outside ``HFSpeechLLM`` (Ultravox through its hub code) skips for its own reason."""
    from casceq.systems.speech_llm import doctor
    from casceq.systems.speech_llm.ultravox_remote import UltravoxRemoteBackend

    backend = UltravoxRemoteBackend.__new__(UltravoxRemoteBackend)  # loaded weights are not needed to skip
    clips = _noise()
    skipped = [
        *doctor.check_processor(backend, clips, None),
        doctor.check_scores(backend, clips),
        doctor.check_batches(backend, clips),
    ]
    assert all(c.status == "skip" for c in skipped)
    assert not any("API" in c.detail for c in skipped), skipped
    assert all("hub code" in c.detail for c in skipped)
