r"""Released Ultravox checkpoints (fixie-ai/ultravox-*) through their own hub code (``trust_remote_code``).

Ultravox is not part of transformers: its checkpoints ship Python modelling code that ``AutoModel`` runs only
when the user opts in with ``trust_remote_code=True`` (that code was written for transformers 4.x and may not
run under 5.x). Without the opt-in this adapter refuses to load. For an Ultravox-shaped model built from
native parts, see ``ultravox_native``.

Examples run one at a time through the checkpoint's own processor (its batching rules changed between
releases). Prompt: the backbone's chat template with the user turn ``"<|audio|>\n{instruction}"``, as in the
model card. Generation follows the checkpoint's ``ultravox_pipeline.py``: audio tensors cast to the model's
dtype, greedy, stop on ``<|eot_id|>`` as well as EOS, ``repetition_penalty=1.1``. Newer hub code returns only
the new tokens from ``generate``; both shapes are handled. The hub code itself cannot run offline (no weights):
the request this adapter builds is tested with stand-ins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from casceq.errors import CasceqError, InputError
from casceq.systems.llm.prompting import AutoShots
from casceq.systems.loading import checked_load
from casceq.systems.speech_llm._hf import AUDIO_SLOT, SAMPLE_RATE, check_audios

REPETITION_PENALTY = 1.1
"""The official pipeline's value ("without this penalty, the model tends to repeat itself")."""
STOP_TOKENS = ("<|eot_id|>",)
"""Llama 3's end of turn: the pipeline stops on it as well as on the tokenizer's EOS."""


class UltravoxRemoteBackend:
    """A fixie-ai Ultravox checkpoint run by its hub code (opt-in)."""

    family = "ultravox"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        backbone: str,
        few_shot: int | Mapping[str, int] = 0,
        few_shot_seed: int = 0,
        exclude_ids: Sequence[str] = (),
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.backbone = backbone
        self.shots_for = AutoShots(few_shot, few_shot_seed, exclude_ids)

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        backbone: str,
        trust_remote_code: bool = False,
        dtype: str = "auto",
        device: str = "auto",
        **kwargs: Any,
    ) -> UltravoxRemoteBackend:
        """Load with ``AutoModel``/``AutoProcessor``; refuses unless ``trust_remote_code=True``."""
        if not trust_remote_code:
            raise CasceqError(
                f"{path}: Ultravox checkpoints run Python code from the model repository; pass "
                "trust_remote_code=True (options={'trust_remote_code': True}) if you trust it, or use the "
                "'ultravox-native' family"
            )
        from transformers import AutoModel, AutoProcessor

        model, _ = checked_load(
            AutoModel.from_pretrained, path, dtype=dtype, device=device, trust_remote_code=True
        )
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
        return cls(model, processor, backbone=backbone, **kwargs)

    def _text(self, prompt: str) -> str:
        """The chat-templated text: the shots as earlier turns, the user turn with ``<|audio|>`` at the slot."""
        messages: list[dict[str, str]] = []
        for question, answer in self.shots_for(prompt):
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        user = (
            prompt if AUDIO_SLOT in prompt else f"{AUDIO_SLOT}\n{prompt}"
        )  # Ultravox's placeholder is the slot
        messages.append({"role": "user", "content": user})
        return str(
            self.processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )

    def _inputs(self, audio: np.ndarray, text: str) -> dict[str, Any]:
        inputs = self.processor(text=text, audio=audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        out = {}
        for k, v in inputs.items():
            if hasattr(v, "to") and getattr(v, "is_floating_point", lambda: False)():
                v = v.to(
                    self.model.device, self.model.dtype
                )  # audio_values in the model's dtype, as the pipeline
            elif hasattr(v, "to"):
                v = v.to(self.model.device)
            out[k] = v
        return out

    def stop_ids(self) -> list[int]:
        """EOS and ``<|eot_id|>`` ids (those the tokenizer has as special tokens)."""
        tok = self.processor.tokenizer
        ids = [] if tok.eos_token_id is None else [int(tok.eos_token_id)]
        for name in STOP_TOKENS:
            tid = tok.convert_tokens_to_ids(name)
            if isinstance(tid, int) and tid != tok.unk_token_id and tid not in ids:
                ids.append(tid)
        return ids

    def generation_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        """The ``generate`` settings of the official pipeline (greedy)."""
        return {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "repetition_penalty": REPETITION_PENALTY,
            "eos_token_id": self.stop_ids(),
        }

    def generate(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], max_new_tokens: int
    ) -> list[str]:
        """Greedy answers, one example at a time."""
        import torch

        out = []
        for audio, prompt in zip(check_audios(audios, prompts), prompts, strict=True):
            inputs = self._inputs(audio, self._text(prompt))
            with torch.inference_mode():
                ids = self.model.generate(**inputs, **self.generation_kwargs(max_new_tokens))
            new = new_tokens(ids[0], inputs["input_ids"][0])
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


def new_tokens(output: Any, prompt: Any) -> Any:
    """The generated part of ``output`` [T]: after the prompt when ``generate`` echoed it, else all of it."""
    n = prompt.shape[0]
    if output.shape[0] >= n and bool((output[:n].cpu() == prompt.cpu()).all()):
        return output[n:]
    return output
