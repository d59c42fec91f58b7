r"""Qwen2.5-Omni thinker (``Qwen2_5OmniThinkerForConditionalGeneration``): the text-output half of Qwen2.5-Omni.

Only the thinker is loaded (the talker makes speech, which no task here needs). Prompt: ChatML with the
model's default system prompt (the one its processor uses; the model card warns that another one may change
behaviour)::

    <|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n
    <|audio_bos|><|AUDIO|>×n<|audio_eos|>{instruction}<|im_end|>\n<|im_start|>assistant\n

Audio: 128-bin Whisper log-mel padded to a 30 s window with a feature mask (the processor's
``padding="max_length"``); n from the encoder's output length, as ``Qwen2_5OmniProcessor`` computes it.
Position ids are the model's own 3-D (M-RoPE) ones, computed inside its forward from the mask.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from casceq.systems.speech_llm._hf import AUDIO, SAMPLE_RATE, Anatomy, HFSpeechLLM, Piece, Special, load_parts
from casceq.systems.speech_llm.qwen2_audio import chatml

WINDOW_SAMPLES = 30 * SAMPLE_RATE  # one Whisper window; the feature extractor truncates the rest
SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory "
    "and visual inputs, as well as generating text and speech."
)


class QwenOmniBackend(HFSpeechLLM):
    """Qwen2.5-Omni (thinker only) from a hub id or a local folder."""

    family = "qwen2.5-omni"
    pass_position_ids = False  # M-RoPE positions are derived by the model itself

    @classmethod
    def from_pretrained(
        cls, path: str, *, backbone: str, dtype: str = "auto", device: str = "auto", **kwargs: Any
    ) -> QwenOmniBackend:
        """Load the thinker, tokenizer and Whisper feature extractor from ``path``."""
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration, WhisperFeatureExtractor

        model, tok = load_parts(
            path, Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained, dtype=dtype, device=device
        )
        fe = WhisperFeatureExtractor.from_pretrained(path)
        return cls(model, tok, fe, backbone=backbone, **kwargs)

    @property
    def audio_token_id(self) -> int:
        """``config.audio_token_id`` (``<|AUDIO|>``)."""
        return int(self.model.config.audio_token_id)

    def _audio_item(self) -> list[Piece]:
        return [Special("<|audio_bos|>"), AUDIO, Special("<|audio_eos|>")]

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
        n_tokens = [(((n - 1) // 2 + 1) - 2) // 2 + 1 for n in lengths]  # Qwen2_5OmniProcessor's formula
        kwargs = {
            "input_features": feats["input_features"],
            "feature_attention_mask": feats["attention_mask"],
        }
        return kwargs, n_tokens

    def continue_pass(self, input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any) -> Any:
        """Continue a cached prompt with text tokens at M-RoPE positions (text position + the prompt's delta).

        The model's own fallback builds positions from the whole mask and fails on a multi-token continuation;
        for text after the prompt all three M-RoPE axes are the text position shifted by the prompt's
        ``rope_deltas`` (as the thinker's ``prepare_inputs_for_generation`` does while decoding).
        """
        deltas = self.model.model.rope_deltas  # [prompts, 1], set by the prompt pass
        device = self.model.device
        delta = deltas.repeat_interleave(input_ids.shape[0] // deltas.shape[0], dim=0).to(device)
        positions = (position_ids.to(device) + delta)[None].expand(3, -1, -1)
        return self.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        ).logits

    def describe(self) -> Anatomy:
        """Locate the decoder layers/norm of ``model.model.language_model``, ``model.lm_head``, ``<|AUDIO|>``."""
        lm = self.model.model.language_model
        return Anatomy(lm.layers, lm.norm, self.model.lm_head, self.audio_token_id)
