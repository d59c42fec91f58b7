r"""Qwen2-Audio (``Qwen2AudioForConditionalGeneration``): Whisper-large-v3-style encoder, Qwen-7B language model.

Prompt: the ChatML format of the model's own chat template (``Qwen2AudioProcessor.default_chat_template``)::

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n
    Audio 1: <|audio_bos|><|AUDIO|>×n<|audio_eos|>\n{instruction}<|im_end|>\n<|im_start|>assistant\n

With a task prompt the audio item sits where the matched cascade has its transcript (the template's rendering of
an interleaved ``[text, audio, text]`` message) after the cascade's shots as user/assistant turns.

Audio: 128-bin Whisper log-mel padded to one 30 s window (the processor's ``padding="max_length"``), with a
feature mask; n = the encoder's output length for the clip's unpadded frames (≈ 25 per second). Clips longer
than 30 s are truncated by the feature extractor, as in the reference processor.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from casceq.systems.speech_llm._hf import AUDIO, SAMPLE_RATE, Anatomy, HFSpeechLLM, Piece, Special, load_parts

WINDOW_SAMPLES = 30 * SAMPLE_RATE  # one Whisper window; the feature extractor truncates the rest
SYSTEM_PROMPT = "You are a helpful assistant."


def chatml(system: str, shots: Sequence[tuple[str, str]], user: list[Piece]) -> list[Piece]:
    """ChatML turns: system, the shots as user/assistant turns, the user turn, the assistant prefix."""
    start, end = Special("<|im_start|>"), Special("<|im_end|>")
    out: list[Piece] = [start, f"system\n{system}", end, "\n"]
    for question, answer in shots:
        out += [start, f"user\n{question}", end, "\n", start, f"assistant\n{answer}", end, "\n"]
    return [*out, start, "user\n", *user, end, "\n", start, "assistant\n"]


class Qwen2AudioBackend(HFSpeechLLM):
    """Qwen2-Audio(-Instruct) from a hub id or a local folder."""

    family = "qwen2-audio"

    @classmethod
    def from_pretrained(
        cls, path: str, *, backbone: str, dtype: str = "auto", device: str = "auto", **kwargs: Any
    ) -> Qwen2AudioBackend:
        """Load model, tokenizer and Whisper feature extractor from ``path``."""
        from transformers import Qwen2AudioForConditionalGeneration, WhisperFeatureExtractor

        model, tok = load_parts(
            path, Qwen2AudioForConditionalGeneration.from_pretrained, dtype=dtype, device=device
        )
        fe = WhisperFeatureExtractor.from_pretrained(path)
        return cls(model, tok, fe, backbone=backbone, **kwargs)

    @property
    def audio_token_id(self) -> int:
        """``config.audio_token_id`` (``<|AUDIO|>``)."""
        return int(self.model.config.audio_token_id)

    def _audio_item(self) -> list[Piece]:
        # The chat template's rendering of an audio content item (one clip per prompt: always "Audio 1")
        return ["Audio 1: ", Special("<|audio_bos|>"), AUDIO, Special("<|audio_eos|>"), "\n"]

    def _chat(self, shots: Sequence[tuple[str, str]], user: list[Piece]) -> list[Piece]:
        return chatml(SYSTEM_PROMPT, shots, user)

    def _audio_inputs(self, audios: list[np.ndarray]) -> tuple[dict[str, Any], list[int]]:
        if any(len(a) > WINDOW_SAMPLES for a in audios):
            warnings.warn(f"{self.family} hears only the first 30 s of each clip", stacklevel=3)
        feats = self.feature_extractor(
            audios,
            sampling_rate=SAMPLE_RATE,
            padding="max_length",
            return_attention_mask=True,
            return_tensors="pt",
        )
        lengths = feats["attention_mask"].sum(-1).tolist()
        # The encoder's two stride-2 reductions (conv2, then average pooling), as in Qwen2AudioProcessor.
        n_tokens = [(((n - 1) // 2 + 1) - 2) // 2 + 1 for n in lengths]
        kwargs = {
            "input_features": feats["input_features"],
            "feature_attention_mask": feats["attention_mask"],
        }
        return kwargs, n_tokens

    def describe(self) -> Anatomy:
        """Locate the decoder layers/norm of ``model.model.language_model``, ``model.lm_head``, ``<|AUDIO|>``."""
        lm = self.model.model.language_model
        return Anatomy(lm.layers, lm.norm, self.model.lm_head, self.audio_token_id)
