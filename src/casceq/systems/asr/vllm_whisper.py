"""Whisper through vLLM's offline ``LLM`` engine: high-throughput ASR for GPU users.

Written against vLLM's documented offline encoder-decoder API (``examples/offline_inference/
encoder_decoder_multimodal.py``, ``run_whisper``): one request per clip, the audio as the encoder prompt's
``multi_modal_data`` (``(waveform, sample_rate)``), the Whisper task tokens as the decoder prompt, greedy
``SamplingParams(temperature=0)``. vLLM decodes one 30 s window per request, so longer clips are cut into 30 s
pieces whose transcripts are joined (a word cut at a boundary may be garbled; the other back ends decode long
clips properly). vLLM does not run on this project's CPU-only CI; the request construction is tested alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from casceq.errors import require
from casceq.systems.asr.common import N_SAMPLES, SAMPLE_RATE, check_waveforms, is_silent
from casceq.systems.base import Transcript


def decoder_prompt(model: str, language: str = "en") -> str:
    """Whisper's decoder prompt for transcription without timestamps.

    English-only checkpoints (ids ending in ``.en``) take no language or task token.
    """
    if model.rstrip("/").endswith(".en"):
        return "<|startoftranscript|><|notimestamps|>"
    return f"<|startoftranscript|><|{language}|><|transcribe|><|notimestamps|>"


def build_requests(audios: Sequence[np.ndarray], prompt: str) -> tuple[list[dict[str, Any]], list[int]]:
    """VLLM prompts for N clips: explicit encoder (audio) / decoder (task tokens) prompts.

    Args:
        audios: N validated 1-D float32 waveforms at 16 kHz, none silent.
        prompt: The decoder prompt (``decoder_prompt``).

    Returns:
        The request dicts (one per 30 s piece) and, for each, the index of the clip it belongs to.
    """
    requests: list[dict[str, Any]] = []
    owner: list[int] = []
    for i, audio in enumerate(audios):
        for start in range(0, max(len(audio), 1), N_SAMPLES):
            piece = audio[start : start + N_SAMPLES]
            requests.append(
                {
                    "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (piece, SAMPLE_RATE)}},
                    "decoder_prompt": prompt,
                }
            )
            owner.append(i)
    return requests, owner


class VLLMWhisperASR:
    """``ASRBackend`` on vLLM (needs ``pip install 'casceq[vllm]'`` and, in practice, a GPU).

    Args:
        model: Hub id or local transformers folder (e.g. ``"openai/whisper-large-v3-turbo"``).
        language: Language token for multilingual models.
        max_new_tokens: Decoding budget per 30 s window.
        dtype: vLLM dtype (``"half"``, ``"bfloat16"``, ``"float32"``, ``"auto"``).
        engine_kwargs: Extra ``vllm.LLM`` arguments (``gpu_memory_utilization``, ``max_num_seqs``, ...).
    """

    def __init__(
        self,
        model: str,
        language: str = "en",
        max_new_tokens: int = 200,
        dtype: str = "auto",
        **engine_kwargs: Any,
    ) -> None:
        vllm = require("vllm", "the vLLM Whisper ASR back end", extra="vllm")
        self.name = f"vllm-whisper:{model}"
        self.model_spec, self.language = model, language
        self.prompt = decoder_prompt(model, language)
        self.sampling = vllm.SamplingParams(temperature=0.0, top_p=1.0, max_tokens=max_new_tokens)
        engine_kwargs.setdefault("max_model_len", 448)  # Whisper's decoder context
        engine_kwargs.setdefault("limit_mm_per_prompt", {"audio": 1})
        self.llm = vllm.LLM(model=model, dtype=dtype, **engine_kwargs)

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        """Transcribe N waveforms (1-D float32, 16 kHz) in one vLLM call."""
        waves = check_waveforms(audios)
        live = [i for i, w in enumerate(waves) if not is_silent(w)]
        requests, owner = build_requests([waves[i] for i in live], self.prompt)
        t0 = time.perf_counter()
        outputs = self.llm.generate(requests, self.sampling, use_tqdm=False) if requests else []
        share = (time.perf_counter() - t0) / max(len(live), 1)
        pieces: dict[int, list[str]] = {}
        for j, out in zip(owner, outputs, strict=True):
            pieces.setdefault(live[j], []).append(out.outputs[0].text.strip())
        return [
            Transcript(" ".join(p for p in pieces.get(i, []) if p), share if i in pieces else 0.0)
            for i in range(len(waves))
        ]

    def describe(self) -> dict[str, Any]:
        """Everything that changes this back end's transcripts (for system cache keys)."""
        return {"backend": "vllm-whisper", "model": self.model_spec, "prompt": self.prompt}
