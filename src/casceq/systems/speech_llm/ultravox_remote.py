r"""Released Ultravox checkpoints (fixie-ai/ultravox-*) through their own hub code (``trust_remote_code``).

Ultravox is not part of transformers: its checkpoints ship Python modelling code that ``AutoModel`` runs only
when the user opts in with ``trust_remote_code=True`` (that code was written for transformers 4.x and may not
run under 5.x). Without the opt-in this adapter refuses to load. For an Ultravox-shaped model built from
native parts, see ``ultravox_native``.

Examples run one at a time through the checkpoint's own processor (its batching rules changed between
releases). Prompt: the backbone's chat template with the user turn ``"<|audio|>\n{instruction}"``, as in the
model card. This path cannot be exercised offline (no weights); it is kept small for that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from casceq.errors import CasceqError, InputError
from casceq.systems.speech_llm._hf import SAMPLE_RATE, check_audios


class UltravoxRemoteBackend:
    """A fixie-ai Ultravox checkpoint run by its hub code (opt-in)."""

    family = "ultravox"

    def __init__(self, model: Any, processor: Any, *, backbone: str) -> None:
        self.model = model.eval()
        self.processor = processor
        self.backbone = backbone

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        backbone: str,
        trust_remote_code: bool = False,
        dtype: str = "float32",
        device: str = "cpu",
    ) -> UltravoxRemoteBackend:
        """Load with ``AutoModel``/``AutoProcessor``; refuses unless ``trust_remote_code=True``."""
        if not trust_remote_code:
            raise CasceqError(
                f"{path}: Ultravox checkpoints run Python code from the model repository; pass "
                "trust_remote_code=True (options={'trust_remote_code': True}) if you trust it, or use the "
                "'ultravox-native' family"
            )
        import torch
        from transformers import AutoModel, AutoProcessor

        model = AutoModel.from_pretrained(path, trust_remote_code=True, dtype=getattr(torch, dtype)).to(
            device
        )
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
        return cls(model, processor, backbone=backbone)

    def _text(self, prompt: str) -> str:
        return str(
            self.processor.tokenizer.apply_chat_template(
                [{"role": "user", "content": f"<|audio|>\n{prompt}"}],
                tokenize=False,
                add_generation_prompt=True,
            )
        )

    def _inputs(self, audio: np.ndarray, text: str) -> dict[str, Any]:
        inputs = self.processor(text=text, audio=audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        return {k: v.to(self.model.device) if hasattr(v, "to") else v for k, v in inputs.items()}

    def generate(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], max_new_tokens: int
    ) -> list[str]:
        """Greedy answers, one example at a time."""
        import torch

        out = []
        for audio, prompt in zip(check_audios(audios, prompts), prompts, strict=True):
            inputs = self._inputs(audio, self._text(prompt))
            with torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            new = ids[0, inputs["input_ids"].shape[1] :]
            out.append(self.processor.tokenizer.decode(new, skip_special_tokens=True).strip())
        return out

    def score_options(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], options: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Score options: summed log-probability [N, C] of each option after the prompt (one forward per option)."""
        import torch

        clips = check_audios(audios, prompts)
        if len({len(o) for o in options}) != 1:
            raise InputError("every example needs the same number of options")
        scores = np.zeros((len(prompts), len(options[0])))
        for i, (audio, prompt) in enumerate(zip(clips, prompts, strict=True)):
            text = self._text(prompt)
            n_prompt = self._inputs(audio, text)["input_ids"].shape[1]
            for c, option in enumerate(options[i]):
                inputs = self._inputs(audio, text + option)
                ids = inputs["input_ids"][0]
                with torch.inference_mode():
                    logp = self.model(**inputs).logits[0].float().log_softmax(-1)
                targets = ids[n_prompt:]
                scores[i, c] = float(logp[n_prompt - 1 : -1].gather(-1, targets[:, None]).sum())
        return scores
