"""Voxtral (``VoxtralForConditionalGeneration``): Whisper-large-v3 encoder, Ministral-3B language model (Mini).

Prompt (mistral-common's Tekken instruct format with an audio chunk first)::

    <s>[INST][BEGIN_AUDIO][AUDIO]×n{instruction}[/INST]

With a task prompt the audio chunk sits where the matched cascade has its transcript and the cascade's shots
come first as ``[INST]{q}[/INST]{a}</s>`` turns (``HFSpeechLLM._pieces``).

Special tokens are inserted by id, never parsed from text: Voxtral's real tokenizer (``MistralCommonBackend``,
needs the ``mistral-common`` package) does not parse them inside text, and its ``convert_tokens_to_ids`` looks
in the regular Tekken vocabulary first, so control tokens go through ``get_control_token`` and every id must be
one of the tokenizer's special ids.

Audio: the clip is cut into 30 s chunks, each padded to one Whisper window (128-bin log-mel, 3000 frames);
every chunk gives 1500 encoder frames, stacked by 4 into 375 embeddings, padding included (as the reference
processor does), so n = 375 × chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from casceq.systems.speech_llm._hf import AUDIO, SAMPLE_RATE, Anatomy, HFSpeechLLM, Piece, Special, load_parts

BOS, EOS = "<s>", "</s>"
"""Looked up as the tokenizer's own bos/eos ids (Tekken: 1 and 2)."""
CHUNK_SECONDS = 30
CHUNK_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE
TOKENS_PER_CHUNK = 375  # 3000 mel frames -> 1500 encoder frames (stride 2) -> 375 after stacking by 4


class VoxtralBackend(HFSpeechLLM):
    """Voxtral Mini/Small from a hub id or a local folder."""

    family = "voxtral"

    @classmethod
    def from_pretrained(
        cls, path: str, *, backbone: str, dtype: str = "auto", device: str = "auto", **kwargs: Any
    ) -> VoxtralBackend:
        """Load model, tokenizer and Whisper feature extractor from ``path``."""
        from transformers import VoxtralForConditionalGeneration, WhisperFeatureExtractor

        model, tok = load_parts(
            path, VoxtralForConditionalGeneration.from_pretrained, dtype=dtype, device=device
        )
        fe = WhisperFeatureExtractor.from_pretrained(path)
        return cls(model, tok, fe, backbone=backbone, **kwargs)

    @property
    def audio_token_id(self) -> int:
        """``config.audio_token_id`` (``[AUDIO]``)."""
        return int(self.model.config.audio_token_id)

    def _audio_item(self) -> list[Piece]:
        return [Special("[BEGIN_AUDIO]"), AUDIO]

    def _chat(self, shots: Sequence[tuple[str, str]], user: list[Piece]) -> list[Piece]:
        inst, end_inst = Special("[INST]"), Special("[/INST]")
        out: list[Piece] = [Special(BOS)]
        for question, answer in shots:
            out += [inst, question, end_inst, answer, Special(EOS)]
        return [*out, inst, *user, end_inst]

    def _lookup_special(self, name: str) -> int | None:
        """Control tokens through mistral-common's Tekken path when present, else the tokenizer's vocabulary.

        ``MistralCommonBackend.convert_tokens_to_ids`` looks in the regular Tekken vocabulary first, where
        ``[INST]`` could be plain text; ``get_control_token`` only returns control (special) tokens.
        """
        if name == BOS and self.tokenizer.bos_token_id is not None:
            return int(self.tokenizer.bos_token_id)
        if name == EOS and self.tokenizer.eos_token_id is not None:
            return int(self.tokenizer.eos_token_id)
        tekken = getattr(
            getattr(getattr(self.tokenizer, "tokenizer", None), "instruct_tokenizer", None), "tokenizer", None
        )
        if tekken is not None and hasattr(tekken, "get_control_token"):
            return int(tekken.get_control_token(name))
        return super()._lookup_special(name)

    def _audio_inputs(self, audios: list[np.ndarray]) -> tuple[dict[str, Any], list[int]]:
        pieces = [a[s : s + CHUNK_SAMPLES] for a in audios for s in range(0, len(a), CHUNK_SAMPLES)]
        feats = self.feature_extractor(
            pieces, sampling_rate=SAMPLE_RATE, padding="max_length", return_tensors="pt"
        )
        n_chunks = [-(-len(a) // CHUNK_SAMPLES) for a in audios]
        return {"input_features": feats["input_features"]}, [TOKENS_PER_CHUNK * c for c in n_chunks]

    def describe(self) -> Anatomy:
        """Locate the decoder layers/norm of ``model.model.language_model``, ``model.lm_head``, ``[AUDIO]``."""
        lm = self.model.model.language_model
        return Anatomy(lm.layers, lm.norm, self.model.lm_head, self.audio_token_id)
