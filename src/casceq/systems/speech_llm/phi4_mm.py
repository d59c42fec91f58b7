"""Phi-4-multimodal (``Phi4MultimodalForCausalLM``): conformer audio encoder, Phi-4-mini-instruct language model.

Prompt (the model card's audio format; the native transformers tokenizer names the placeholder ``<|audio|>``)::

    <|user|><|audio|>×n{instruction}<|end|><|assistant|>

(with a task prompt the audio sits where the matched cascade has its transcript, after the cascade's shots as
``<|user|>q<|end|><|assistant|>a<|end|>`` turns)

Audio: 80-bin log-mel from ``Phi4MultimodalFeatureExtractor`` (``Phi4MultimodalProcessor`` would need
torchvision for its image half, so the adapter expands ``<|audio|>`` itself); n = the extractor's
``audio_embed_sizes`` (one embedding per 80 ms). The encoder runs one clip at a time: batched through the
model's own forward, a shorter clip sees its padded tail through the encoder's convolutions and normalisation
(on a tiny random model its logits moved by ~1e-3), so predictions would depend on batch-mates.

Speech needs the checkpoint's speech LoRA (subfolder ``speech-lora`` of the release): for a hub id, or a local
folder that has it, it is loaded with peft and activated, as the transformers model doc does; a local folder
without it (a merged fine-tune) runs as is, with a warning. ``speech_lora=None`` turns this off.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import require
from casceq.systems.speech_llm._hf import SAMPLE_RATE, Anatomy, HFSpeechLLM, Piece, Special, load_parts

OFFICIAL_ID = "microsoft/Phi-4-multimodal-instruct"
NATIVE_REVISION = "refs/pr/70"
"""The hub revision with transformers-native weights (transformers' integration test pins it)."""


def phi4_chat(shots: Sequence[tuple[str, str]], user: list[Piece]) -> list[Piece]:
    """Phi-4's chat format: shots as ``<|user|>q<|end|><|assistant|>a<|end|>``, the user turn, the assistant tag."""
    user_, end, assistant = Special("<|user|>"), Special("<|end|>"), Special("<|assistant|>")
    out: list[Piece] = []
    for question, answer in shots:
        out += [user_, question, end, assistant, answer, end]
    return [*out, user_, *user, end, assistant]


class Phi4MMBackend(HFSpeechLLM):
    """Phi-4-multimodal-instruct (transformers-native weights) from a hub id or a local folder."""

    family = "phi4-mm"

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        backbone: str,
        dtype: str = "auto",
        device: str = "auto",
        speech_lora: str | None = "speech-lora",
        revision: str | None = None,
        **kwargs: Any,
    ) -> Phi4MMBackend:
        """Load model, tokenizer, feature extractor and (if present) the speech LoRA from ``path``.

        ``revision`` defaults to ``refs/pr/70`` for the official hub id: its ``main`` holds the remote-code
        layout, which the native class would load with random ``qkv_proj``/``gate_up_proj`` (refused).
        """
        from transformers import Phi4MultimodalFeatureExtractor, Phi4MultimodalForCausalLM

        if revision is None and path.rstrip("/").lower() == OFFICIAL_ID.lower():
            revision = NATIVE_REVISION

        extra = {"revision": revision} if revision else {}
        model, tok = load_parts(
            path, Phi4MultimodalForCausalLM.from_pretrained, dtype=dtype, device=device, **extra
        )
        local = Path(path).is_dir()
        if speech_lora and (not local or (Path(path) / speech_lora).is_dir()):
            # As the transformers model doc does: speech needs this LoRA on the language model.
            require("peft", "Phi-4-multimodal's speech LoRA", package="peft")
            adapter_kwargs = {"subfolder": speech_lora, **extra}
            model.load_adapter(path, adapter_name="speech", adapter_kwargs=adapter_kwargs)
            model.set_adapter("speech")
        elif speech_lora:
            warnings.warn(
                f"{path} has no '{speech_lora}' folder: running without the speech LoRA (fine for a merged "
                "fine-tune; the released checkpoint needs it)",
                stacklevel=2,
            )
        fe = Phi4MultimodalFeatureExtractor.from_pretrained(path, revision=revision or "main")
        return cls(model, tok, fe, backbone=backbone, **kwargs)

    @property
    def audio_token_id(self) -> int:
        """``config.audio_config.audio_token_id`` (``<|audio|>``)."""
        return int(self.model.config.audio_config.audio_token_id)

    def _chat(self, shots: Sequence[tuple[str, str]], user: list[Piece]) -> list[Piece]:
        return phi4_chat(shots, user)

    def _audio_inputs(self, audios: list[np.ndarray]) -> tuple[dict[str, Any], list[int]]:
        feats = [self.feature_extractor([a], sampling_rate=SAMPLE_RATE, return_tensors="pt") for a in audios]
        sizes = [int(f["audio_embed_sizes"][0]) for f in feats]
        return {"clip_features": [f["audio_input_features"] for f in feats], "sizes": sizes}, sizes

    def _embeds(self, batch: Any) -> Any:
        """Input embeddings [B, L, D] with each clip's audio embeddings, computed clip by clip."""
        import torch

        inner = self.model.model
        embeds = inner.embed_tokens(batch.input_ids.to(self.model.device))
        ids = batch.input_ids.to(self.model.device)
        rows = []
        for j, feats in enumerate(batch.audio_kwargs["clip_features"]):
            rows.append(
                inner.embed_tokens_extend(
                    ids[j : j + 1],
                    embeds[j : j + 1],
                    audio_input_features=feats.to(self.model.device),
                    audio_embed_sizes=torch.tensor([batch.audio_kwargs["sizes"][j]]),
                )
            )
        return torch.cat(rows, 0)

    def _model_inputs(self, batch: Any) -> dict[str, Any]:
        return {
            "inputs_embeds": self._embeds(batch),
            "attention_mask": batch.attention_mask.to(self.model.device),
            "position_ids": batch.position_ids().to(self.model.device),
        }

    def _generate_ids(self, batch: Any, max_new_tokens: int) -> Any:
        kw = self._model_inputs(batch)
        kw.pop("position_ids")
        # With inputs_embeds and no input_ids, generate returns only the new tokens.
        return self.model.generate(
            **kw, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.pad_token_id
        )

    def describe(self) -> Anatomy:
        """Locate the decoder layers/norm of ``model.model``, ``model.lm_head``, ``<|audio|>``."""
        return Anatomy(
            self.model.model.layers, self.model.model.norm, self.model.lm_head, self.audio_token_id
        )
