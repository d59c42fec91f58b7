"""Speech-LLM registry, Gemini request/retry/key handling, and the opt-in of Ultravox hub code."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import wave

import numpy as np
import pytest

from casceq.errors import CasceqError, InputError, MissingDependency
from casceq.systems.speech_llm import SPEECH_LLM_FAMILIES, SpeechLLMSpec, default_backbone, make_speech_llm


def test_importing_the_registry_imports_no_heavy_package() -> None:
    code = (
        "import sys, casceq.systems.speech_llm as s; s.SpeechLLMSpec.parse('voxtral:x'); "
        "print(sorted(m for m in ('torch', 'transformers', 'google.genai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_spec_parsing_and_known_backbones() -> None:
    spec = SpeechLLMSpec.parse("qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct")
    assert (spec.family, spec.model) == ("qwen2-audio", "Qwen/Qwen2-Audio-7B-Instruct")
    assert default_backbone(spec.model) == "Qwen-7B"
    assert default_backbone("/models/Voxtral-Mini-3B-2507/") == "Ministral-3B"
    assert default_backbone("microsoft/Phi-4-multimodal-instruct") == "Phi-4-mini-instruct"
    assert default_backbone("fixie-ai/ultravox-v0_5-llama-3_1-8b") == "Llama-3.1-8B-Instruct"
    assert default_backbone("someone/my-finetune") is None
    with pytest.raises(InputError, match="family:model"):
        SpeechLLMSpec.parse("qwen2-audio")


def test_unknown_family_and_missing_backbone_are_refused() -> None:
    with pytest.raises(InputError, match="unknown speech LLM family"):
        make_speech_llm("whisper-llm:foo")
    with pytest.raises(InputError, match="no known backbone"):
        make_speech_llm("qwen2-audio:/nonexistent/my-finetune")
    assert set(SPEECH_LLM_FAMILIES) >= {
        "qwen2-audio",
        "phi4-mm",
        "voxtral",
        "qwen2.5-omni",
        "ultravox-native",
    }


def test_ultravox_hub_code_needs_explicit_opt_in() -> None:
    with pytest.raises(CasceqError, match="trust_remote_code=True"):
        make_speech_llm("ultravox:fixie-ai/ultravox-v0_5-llama-3_1-8b")


# ---- Gemini --------------------------------------------------------------------------------------------------
def test_gemini_names_the_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("google.genai") is not None:
        pytest.skip("google-genai is installed here")
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    with pytest.raises(MissingDependency, match=r"google-genai.*casceq\[gemini\]"):
        make_speech_llm("gemini:gemini-2.5-flash")


def test_gemini_key_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from casceq.systems.speech_llm.gemini import GeminiBackend, api_key_from_env

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(CasceqError, match="GEMINI_API_KEY or \\$GOOGLE_API_KEY"):
        api_key_from_env()
    monkeypatch.setenv("GOOGLE_API_KEY", "secret-2")
    assert api_key_from_env() == "secret-2"
    monkeypatch.setenv("GEMINI_API_KEY", "secret-1")
    assert api_key_from_env() == "secret-1"  # GEMINI_API_KEY wins
    backend = GeminiBackend(client=object(), model="gemini-2.5-flash")
    assert "secret" not in repr(backend) and "secret" not in str(vars(backend))
    assert backend.backbone == "gemini-2.5-flash"


def test_gemini_request_carries_the_audio_as_16k_wav_and_greedy_config() -> None:
    from casceq.systems.speech_llm.gemini import build_request

    audio = np.sin(np.linspace(0, 100, 8000)).astype(np.float32) * 0.5
    req = build_request(
        "gemini-2.5-flash", audio, "Sentiment?", max_new_tokens=8, options=["positive", "negative"]
    )
    with wave.open(io.BytesIO(req.audio_wav)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        decoded = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32767.0
    np.testing.assert_allclose(decoded, audio, atol=1 / 32767)
    assert req.prompt == "Sentiment?" and req.config["temperature"] == 0.0
    assert req.config["max_output_tokens"] == 8
    assert req.config["response_schema"] == {"type": "STRING", "enum": ["positive", "negative"]}
    assert "response_schema" not in build_request("m", audio, "p", max_new_tokens=8).config


class _HTTPError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.code = code


def test_retries_back_off_on_rate_limits_and_server_errors_only() -> None:
    from casceq.systems.speech_llm.gemini import with_retries

    outcomes: list[int | str] = [429, 503, "ok"]
    sleeps: list[float] = []

    def call() -> str:
        item = outcomes.pop(0)
        if isinstance(item, int):
            raise _HTTPError(item)
        return item

    assert with_retries(call, base_delay=1.0, sleep=sleeps.append) == "ok"
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.5 and 1.0 <= sleeps[1] <= 3.0
    outcomes[:] = [400, "ok"]
    with pytest.raises(_HTTPError):  # a client error is not retried
        with_retries(call, sleep=sleeps.append)
    assert outcomes == ["ok"]
    outcomes[:] = [500, 500, 500]
    with pytest.raises(_HTTPError):  # attempts exhausted: the last error surfaces
        with_retries(call, attempts=3, sleep=lambda _s: None)
    assert outcomes == []
