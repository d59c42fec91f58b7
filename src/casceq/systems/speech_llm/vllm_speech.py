r"""Speech LLMs served by vLLM's offline engine (audio through ``multi_modal_data``): paper-scale runs on one GPU.

vLLM cannot run on a CPU-only machine; what this module builds (the prompt text with vLLM's audio placeholder
where the matched cascade has its transcript, the audio data and the sampling settings) is tested here, the
engine only on a GPU. Placeholders and engine settings follow vLLM's ``examples/offline_inference/
audio_language.py``:

- ``qwen2-audio``: ChatML, ``Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n`` (one placeholder; vLLM expands it);
- ``qwen2.5-omni``: ChatML with Omni's system prompt, ``<|audio_bos|><|AUDIO|><|audio_eos|>``;
- ``phi4-mm``: ``<|user|><|audio_1|>...<|end|><|assistant|>``, remote code, the ``speech-lora`` as a LoRA request;
- ``ultravox``: the backbone's chat template with ``<|audio|>``, remote code.

Usage: ``VLLMSpeechLLM("qwen2-audio", "Qwen/Qwen2-Audio-7B-Instruct", backbone="Qwen-7B", few_shot=4)``.
Answers are greedy (temperature 0); options are scored with ``prompt_logprobs`` on the prompt + option text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from casceq.errors import InputError, MissingDependency
from casceq.systems.llm.prompting import AutoShots
from casceq.systems.llm.vllm_llm import sum_prompt_logprobs
from casceq.systems.speech_llm._hf import AUDIO, AUDIO_SLOT, SAMPLE_RATE, Piece, check_audios
from casceq.systems.speech_llm.phi4_mm import phi4_chat
from casceq.systems.speech_llm.qwen2_audio import SYSTEM_PROMPT, chatml
from casceq.systems.speech_llm.qwen_omni import SYSTEM_PROMPT as OMNI_SYSTEM_PROMPT

PLACEHOLDERS: Mapping[str, str] = {
    "qwen2-audio": "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n",
    "qwen2.5-omni": "<|audio_bos|><|AUDIO|><|audio_eos|>",
    "phi4-mm": "<|audio_1|>",
    "ultravox": "<|audio|>",
}
"""The text vLLM replaces with a clip's audio embeddings, per family."""
REMOTE_CODE = frozenset({"phi4-mm", "ultravox"})
PHI4_LORA_RANK = 320
"""``max_lora_rank`` vLLM's example sets for Phi-4-multimodal's speech LoRA."""


@dataclass(frozen=True)
class VLLMSpeechRequest:
    """One vLLM prompt: the text (audio placeholder at the slot) and the clip."""

    prompt: str
    audio: np.ndarray

    def as_input(self) -> dict[str, Any]:
        """The ``LLM.generate`` input: ``{"prompt", "multi_modal_data": {"audio": [(waveform, rate)]}}``."""
        return {"prompt": self.prompt, "multi_modal_data": {"audio": [(self.audio, SAMPLE_RATE)]}}


def _text(pieces: Sequence[Piece], placeholder: str) -> str:
    return "".join(placeholder if p is AUDIO else str(p) for p in pieces)


def render_prompt(
    family: str, prompt: str, shots: Sequence[tuple[str, str]] = (), tokenizer: Any = None
) -> str:
    """The prompt text of ``family`` for vLLM: shots as turns, the audio placeholder at ``AUDIO_SLOT``.

    Raises:
        InputError: A family vLLM does not serve here, or ``ultravox`` without its tokenizer (chat template).
    """
    if family not in PLACEHOLDERS:
        raise InputError(f"no vLLM prompt format for {family!r}; served: {', '.join(PLACEHOLDERS)}")
    before, slot, after = prompt.partition(AUDIO_SLOT)
    user: list[Piece] = [before, AUDIO, after] if slot else [AUDIO, prompt]
    if family == "ultravox":
        if tokenizer is None:
            raise InputError("ultravox: rendering needs the tokenizer's chat template")
        messages: list[dict[str, str]] = []
        for question, answer in shots:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": _text(user, PLACEHOLDERS[family])})
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    if family == "phi4-mm":
        return _text(phi4_chat(shots, user), PLACEHOLDERS[family])
    system = OMNI_SYSTEM_PROMPT if family == "qwen2.5-omni" else SYSTEM_PROMPT
    # The placeholder is the whole audio item (Qwen2-Audio's "Audio 1: <|audio_bos|>...<|audio_eos|>\n")
    return _text(chatml(system, shots, user), PLACEHOLDERS[family])


def engine_settings(family: str, **engine_kwargs: Any) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments for a family (LoRA) on top of the caller's.

    Raises:
        InputError: The family runs the repository's own code and the caller did not opt in with
            ``trust_remote_code=True`` (remote code is never switched on for the user).
    """
    out: dict[str, Any] = {"limit_mm_per_prompt": {"audio": 1}, **engine_kwargs}
    if family in REMOTE_CODE and out.get("trust_remote_code") is not True:
        raise InputError(
            f"vLLM serves {family} with the repository's own code: pass trust_remote_code=True to opt in"
        )
    if family == "phi4-mm":
        out.setdefault("enable_lora", True)
        out.setdefault("max_lora_rank", PHI4_LORA_RANK)
    return out


def greedy(max_tokens: int, **extra: Any) -> dict[str, Any]:
    """``SamplingParams`` settings of greedy decoding."""
    return {"temperature": 0.0, "max_tokens": max_tokens, **extra}


@dataclass
class VLLMSpeechLLM:
    """A ``SpeechLLMBackend`` over ``vllm.LLM`` (needs ``pip install 'casceq[vllm]'`` and a GPU)."""

    family: str
    model: str
    backbone: str
    few_shot: int | Mapping[str, int] = 0
    few_shot_seed: int = 0
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    engine: Any = None

    def __post_init__(self) -> None:
        self.shots_for = AutoShots(self.few_shot, self.few_shot_seed)
        if self.engine is None:
            try:
                import vllm
            except ImportError as exc:
                raise MissingDependency("vllm", "the vLLM speech back end", extra="vllm") from exc
            self.engine = vllm.LLM(model=self.model, **engine_settings(self.family, **self.engine_kwargs))
        self._lora = self._lora_request()

    def _lora_request(self) -> Any:
        if self.family != "phi4-mm":
            return None
        import os

        from huggingface_hub import snapshot_download
        from vllm.lora.request import LoRARequest

        folder = self.model if os.path.isdir(self.model) else snapshot_download(self.model)
        return LoRARequest("speech", 1, os.path.join(folder, "speech-lora"))

    def requests(self, audios: Sequence[np.ndarray], prompts: Sequence[str]) -> list[VLLMSpeechRequest]:
        """One request per example, in order."""
        tokenizer = self.engine.get_tokenizer() if self.family == "ultravox" else None
        clips = check_audios(audios, prompts)
        return [
            VLLMSpeechRequest(render_prompt(self.family, p, self.shots_for(p), tokenizer), a)
            for a, p in zip(clips, prompts, strict=True)
        ]

    def _run(self, inputs: list[dict[str, Any]], settings: dict[str, Any]) -> Any:
        from vllm import SamplingParams

        kw = {"lora_request": [self._lora] * len(inputs)} if self._lora is not None else {}
        return self.engine.generate(inputs, SamplingParams(**settings), use_tqdm=False, **kw)

    def generate(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], max_new_tokens: int
    ) -> list[str]:
        """Greedy answers."""
        outputs = self._run([r.as_input() for r in self.requests(audios, prompts)], greedy(max_new_tokens))
        return [str(o.outputs[0].text).strip() for o in outputs]

    def score_options(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], options: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Summed log-probability [N, C] of each option's tokens after the prompt (``prompt_logprobs``)."""
        tokenizer = self.engine.get_tokenizer()
        inputs, lengths = [], []
        for req, opts in zip(self.requests(audios, prompts), options, strict=True):
            base = len(tokenizer(req.prompt, add_special_tokens=False)["input_ids"])
            for opt in opts:
                text = req.prompt + opt
                n = len(tokenizer(text, add_special_tokens=False)["input_ids"]) - base
                if n <= 0:
                    raise InputError(f"option {opt!r} tokenises to nothing after the prompt")
                inputs.append({**req.as_input(), "prompt": text})
                lengths.append(n)
        outputs = self._run(inputs, greedy(1, prompt_logprobs=0))
        flat = []
        for out, n in zip(outputs, lengths, strict=True):
            ids = list(out.prompt_token_ids)  # after vLLM expanded the audio placeholder: the option is last
            flat.append(sum_prompt_logprobs(out.prompt_logprobs, ids, (len(ids) - n, len(ids))))
        width = len(options[0]) if options else 0
        return np.asarray(flat, dtype=np.float64).reshape(len(prompts), width)


__all__ = ["PLACEHOLDERS", "VLLMSpeechLLM", "VLLMSpeechRequest", "engine_settings", "render_prompt"]
