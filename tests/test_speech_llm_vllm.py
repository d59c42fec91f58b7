"""The vLLM speech back end on the requests it builds (vLLM itself cannot run on this CPU machine)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")
from casceq.errors import InputError
from casceq.systems.speech_llm.vllm_speech import (
    VLLMSpeechLLM,
    engine_settings,
    render_prompt,
)

SLOT_PROMPT = "Classify.\n\nText: <|audio|>\nAnswer:"
SHOTS = (("Classify.\n\nText: fine\nAnswer:", "positive"),)


def test_qwen2_audio_prompt_matches_vllms_example_with_the_audio_at_the_slot() -> None:
    text = render_prompt(
        "qwen2-audio", "What is recited in the audio?"
    )  # no slot: audio first, as vLLM's example
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nWhat is recited in the audio?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    slotted = render_prompt("qwen2-audio", SLOT_PROMPT, SHOTS)
    assert (
        "user\nClassify.\n\nText: fine\nAnswer:<|im_end|>\n<|im_start|>assistant\npositive<|im_end|>"
        in slotted
    )
    assert slotted.endswith(
        "Text: Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n\nAnswer:<|im_end|>\n<|im_start|>assistant\n"
    )


def test_phi4_prompt_and_engine_settings() -> None:
    assert (
        render_prompt("phi4-mm", "What is happening?")
        == "<|user|><|audio_1|>What is happening?<|end|><|assistant|>"
    )
    with pytest.raises(InputError, match="trust_remote_code=True"):  # remote code only on opt-in
        engine_settings("phi4-mm", max_model_len=4096)
    settings = engine_settings("phi4-mm", max_model_len=4096, trust_remote_code=True)
    assert settings["trust_remote_code"] is True and settings["enable_lora"] is True
    assert settings["max_lora_rank"] == 320 and settings["limit_mm_per_prompt"] == {"audio": 1}
    assert "trust_remote_code" not in engine_settings("qwen2-audio")


def test_ultravox_prompt_uses_the_chat_template(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tests import tiny_models as tm

    tok = AutoTokenizer.from_pretrained(tm.tiny_causal_lm(tmp_path / "lm"))
    text = render_prompt("ultravox", SLOT_PROMPT, (), tok)
    assert (
        text == "<|im_start|>user\nClassify.\n\nText: <|audio|>\nAnswer:<|im_end|>\n<|im_start|>assistant\n"
    )


class _Out:
    def __init__(self, text: str, ids: list[int], logprobs: list[Any]) -> None:
        self.outputs = [types.SimpleNamespace(text=text)]
        self.prompt_token_ids = ids
        self.prompt_logprobs = logprobs


class FakeEngine:
    """vLLM's ``LLM`` interface: records inputs; each prompt token gets log-prob -0.5 except the last (-2)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.calls = tokenizer, []

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, inputs: list[dict[str, Any]], params: Any, **kw: Any) -> list[_Out]:
        self.calls.append((inputs, params, kw))
        outs = []
        for inp in inputs:
            ids = [7] * 5 + self.tokenizer(inp["prompt"], add_special_tokens=False)["input_ids"]  # 5: audio
            lp = [None] + [{t: -0.5} for t in ids[1:-1]] + [{ids[-1]: -2.0}]
            outs.append(_Out(" positive\nmore", ids, lp))
        return outs


def _fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)


def test_backend_sends_the_clip_and_scores_the_option_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer

    from tests import tiny_models as tm

    _fake_vllm(monkeypatch)
    tok = AutoTokenizer.from_pretrained(tm.tiny_causal_lm(tmp_path / "lm"))
    engine = FakeEngine(tok)
    backend = VLLMSpeechLLM("qwen2-audio", "Qwen/Qwen2-Audio-7B-Instruct", backbone="Qwen-7B", engine=engine)
    clip = np.zeros(16_000, np.float32)
    assert backend.generate([clip], [SLOT_PROMPT], 8) == ["positive\nmore"]
    inputs, params, _ = engine.calls[0]
    assert params == {"temperature": 0.0, "max_tokens": 8}
    audio, rate = inputs[0]["multi_modal_data"]["audio"][0]
    assert rate == 16_000 and audio is not None and len(audio) == 16_000
    scores = backend.score_options([clip], [SLOT_PROMPT], [["ab", "c"]])
    # "ab" is 2 byte tokens (-0.5 - 2.0), "c" is 1 token (-2.0): only the option's own positions are summed
    np.testing.assert_allclose(scores, [[-2.5, -2.0]])
    assert engine.calls[-1][1]["prompt_logprobs"] == 0
