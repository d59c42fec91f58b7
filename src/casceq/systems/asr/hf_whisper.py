"""Whisper through transformers (``WhisperForConditionalGeneration``): batched greedy decoding in PyTorch.

Use it when the ASR has to be the same PyTorch model whose hidden states are probed, on a GPU, or for hub
checkpoints that have no CTranslate2 version. Bundled names (``"tiny.en"``, ``"base"``) and CTranslate2 folders
are converted once (``casceq.systems.asr.convert.converted_whisper``).

Clips of up to 30 s are decoded in one padded window each, ``batch_size`` windows at a time, with the prompt
``<|startoftranscript|>[<|en|><|transcribe|>]<|notimestamps|>`` (language and task tokens for multilingual
models only). The same silence rule as faster-whisper's is applied, so silent windows give an empty transcript
instead of Whisper's hallucinated "you": the probability of ``<|nocaptions|>`` at the start-of-transcript
position above ``no_speech_threshold`` while the mean log-probability of the decoded tokens is below
``log_prob_threshold``. Longer clips use transformers' sequential long-form generation, one clip at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import require
from casceq.systems.asr.bundled import BUNDLED
from casceq.systems.asr.common import N_SAMPLES, SAMPLE_RATE, batches, check_waveforms, is_silent
from casceq.systems.asr.convert import converted_whisper
from casceq.systems.base import Transcript


def resolve_hf_whisper(spec: str) -> str:
    """Bundled name or CTranslate2 folder -> converted transformers folder; transformers folder or hub id as is."""
    if spec in BUNDLED:
        return str(converted_whisper(spec))
    path = Path(spec).expanduser()
    if (path / "model.bin").is_file():  # a CTranslate2 folder (transformers folders hold safetensors)
        return str(converted_whisper(str(path)))
    return str(path) if path.is_dir() else spec


class HFWhisperASR:
    """``ASRBackend`` on transformers' Whisper.

    Args:
        model: Hub id, transformers folder, CTranslate2 folder, or bundled name (``"tiny.en"``, ``"base"``).
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        device: torch device string.
        batch_size: Windows decoded together.
        language: Language of multilingual models (ignored by English-only models).
        num_beams: Beam width (1 = greedy).
        no_speech_threshold: Silence rule threshold (None disables the rule).
        log_prob_threshold: Mean log-probability below which a likely-silent window is dropped.
    """

    def __init__(
        self,
        model: str = "base",
        dtype: str = "float32",
        device: str = "cpu",
        batch_size: int = 8,
        language: str = "en",
        num_beams: int = 1,
        no_speech_threshold: float | None = 0.6,
        log_prob_threshold: float | None = -1.0,
    ) -> None:
        torch = require("torch", "the transformers Whisper ASR back end", extra="models")
        transformers = require("transformers", "the transformers Whisper ASR back end", extra="models")
        self.name = f"hf-whisper:{model}"
        self.model_spec, self.dtype, self.device = model, dtype, device
        self.batch_size, self.language, self.num_beams = batch_size, language, num_beams
        self.no_speech_threshold, self.log_prob_threshold = no_speech_threshold, log_prob_threshold
        path = resolve_hf_whisper(model)
        self.model = transformers.WhisperForConditionalGeneration.from_pretrained(
            path, dtype=getattr(torch, dtype)
        ).to(device)
        self.model.eval()
        self.processor = transformers.WhisperProcessor.from_pretrained(path)
        gen = self.model.generation_config
        self.multilingual = bool(getattr(gen, "is_multilingual", False))
        self._lang_task = {"language": language, "task": "transcribe"} if self.multilingual else {}
        self._no_speech_id = int(gen.no_timestamps_token_id) - 1  # <|nocaptions|> precedes <|notimestamps|>
        self._eos = int(gen.eos_token_id)

    def _decode_windows(self, audios: list[np.ndarray]) -> list[str]:
        """Decode clips of at most 30 s in one batch: features [B, n_mels, 3000] -> texts."""
        import torch

        inputs = self.processor.feature_extractor(
            audios, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
        )
        feats = inputs.input_features.to(self.device, self.model.dtype)
        with torch.inference_mode():
            encoder_outputs = self.model.model.encoder(feats)  # last_hidden_state [B, 1500, d]
            out = self.model.generate(
                encoder_outputs=encoder_outputs,
                attention_mask=inputs.attention_mask.to(self.device),
                num_beams=self.num_beams,
                do_sample=False,
                **self._lang_task,
            )
            keep = [True] * len(audios)
            if self.no_speech_threshold is not None:
                keep = self._not_silent(encoder_outputs, out)
        texts = self.processor.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [t.strip() if k else "" for t, k in zip(texts, keep, strict=True)]

    def _prompt(self) -> list[int]:
        gen = self.model.generation_config
        ids = [int(gen.decoder_start_token_id)]
        if self.multilingual:
            ids += [int(gen.lang_to_id[f"<|{self.language}|>"]), int(gen.task_to_id["transcribe"])]
        return [*ids, int(gen.no_timestamps_token_id)]

    def _not_silent(self, encoder_outputs: Any, sequences: Any) -> list[bool]:
        """Faster-whisper's silence rule per window (see the module docstring).

        One teacher-forced decoder pass over prompt + decoded tokens gives both the no-speech probability (at
        the start-of-transcript position) and the log-probability of every decoded token, whatever the beam size.
        """
        import torch

        assert self.no_speech_threshold is not None
        prompt = torch.tensor(self._prompt(), device=sequences.device)
        p = len(prompt)
        if sequences.shape[1] < p or not bool((sequences[:, :p] == prompt).all()):
            sequences = torch.cat([prompt.expand(sequences.shape[0], -1), sequences], dim=1)
        logits = self.model(
            encoder_outputs=encoder_outputs, decoder_input_ids=sequences
        ).logits.float()  # [B, T, V]
        no_speech = logits[:, 0].softmax(-1)[:, self._no_speech_id]
        logp = (
            logits[:, p - 1 : -1].log_softmax(-1).gather(-1, sequences[:, p:, None]).squeeze(-1)
        )  # [B, T-p]
        keep = []
        for b in range(sequences.shape[0]):
            ends = (sequences[b, p:] == self._eos).nonzero()
            n = int(ends[0]) if len(ends) else logp.shape[1]  # text tokens before the first end token
            avg = float(logp[b, : n + 1].sum()) / (n + 1)
            silent = float(no_speech[b]) > self.no_speech_threshold and not (
                self.log_prob_threshold is not None and avg > self.log_prob_threshold
            )
            keep.append(not silent)
        return keep

    def _long_form(self, audio: np.ndarray) -> str:
        import torch

        inputs = self.processor.feature_extractor(
            audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False, padding="longest",
            return_attention_mask=True,
        )  # fmt: skip
        with torch.inference_mode():
            out = self.model.generate(
                inputs.input_features.to(self.device, self.model.dtype),
                attention_mask=inputs.attention_mask.to(self.device),
                num_beams=self.num_beams,
                do_sample=False,
                condition_on_prev_tokens=False,
                return_timestamps=True,  # transformers' long form seeks window to window by timestamp tokens
                **self._lang_task,
            )
        return str(self.processor.tokenizer.batch_decode(out, skip_special_tokens=True)[0]).strip()

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        """Transcribe N waveforms (1-D float32, 16 kHz). Empty and digitally silent clips give an empty transcript.

        Returns:
            N transcripts; ``seconds`` is each batch's wall time divided by its size.
        """
        waves = check_waveforms(audios)
        out: list[Transcript] = [Transcript("", 0.0)] * len(waves)
        short = [i for i, w in enumerate(waves) if not is_silent(w) and len(w) <= N_SAMPLES]
        for i, w in enumerate(waves):
            if not is_silent(w) and len(w) > N_SAMPLES:
                t0 = time.perf_counter()
                out[i] = Transcript(self._long_form(w), time.perf_counter() - t0)
        for idx in batches(len(short), self.batch_size):
            chunk = [short[j] for j in idx]
            t0 = time.perf_counter()
            texts = self._decode_windows([waves[i] for i in chunk])
            share = (time.perf_counter() - t0) / len(chunk)
            for i, text in zip(chunk, texts, strict=True):
                out[i] = Transcript(text, share)
        return out

    def describe(self) -> dict[str, Any]:
        """Everything that changes this back end's transcripts (for system cache keys)."""
        return {
            "backend": "hf-whisper",
            "model": self.model_spec,
            "dtype": self.dtype,
            "num_beams": self.num_beams,
            "language": self.language,
            "no_speech_threshold": self.no_speech_threshold,
            "log_prob_threshold": self.log_prob_threshold,
        }
