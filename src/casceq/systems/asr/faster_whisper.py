"""Whisper through faster-whisper (CTranslate2): the default CPU ASR of a cascade.

Clips of up to 30 s (one Whisper window, the usual case for spoken test items) are decoded exactly as
``WhisperModel.transcribe`` would decode them with ``beam_size``, ``temperature=0`` (no fallback, so the result is
deterministic), ``without_timestamps=True`` and ``condition_on_previous_text=False``: the same feature
extraction, prompt, suppressed tokens and no-speech rule (a window whose no-speech probability exceeds
``no_speech_threshold`` while its mean log-probability is below ``log_prob_threshold`` yields an empty
transcript, as silence does). The difference is that ``batch_size`` windows go through the encoder and decoder
together. Longer clips go through faster-whisper's own sequential long-form ``transcribe`` (with timestamps,
which it needs to move from window to window).

Packing several short clips into one 30 s window (≈3x fewer windows) is deliberately not offered: a packed clip's
transcript depends on which clips share its window (the decoder conditions on the neighbours' words), so the
same audio would get different transcripts in different batches or after a resumed run, which breaks the
transcript cache keyed by (ASR spec, audio) and the batch-invariance guarantee tested here; splitting the text
back per clip by timestamps also fails silently when Whisper merges or drops words across a gap. On CPU,
batching windows gave no speed-up (benchmarks/bench_asr.py), so ``batch_size`` defaults to 1; raise it on GPU.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from casceq.errors import require
from casceq.systems.asr.bundled import resolve_whisper
from casceq.systems.asr.common import N_SAMPLES, batches, check_waveforms, is_silent
from casceq.systems.base import Transcript


class FasterWhisperASR:
    """``ASRBackend`` on faster-whisper.

    Args:
        model: Bundled name (``"tiny.en"``, ``"base"``), CTranslate2 folder, or hub id
            (``"Systran/faster-whisper-small"``).
        compute_type: CTranslate2 compute type (``"int8"``, ``"float32"``, ``"float16"`` on GPU).
        cpu_threads: Intra-op threads.
        beam_size: Beam width (1 = greedy).
        language: Language code for multilingual models (English-only ``.en`` models take no language or task
            token, whatever this says).
        batch_size: Clips decoded together (each still in its own 30 s window).
        no_speech_threshold: faster-whisper's silence rule (None disables it).
        log_prob_threshold: Mean log-probability below which a likely-silent window is dropped.
        device: ``"cpu"`` or ``"cuda"``.
    """

    def __init__(
        self,
        model: str = "base",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        beam_size: int = 1,
        language: str = "en",
        batch_size: int = 1,
        no_speech_threshold: float | None = 0.6,
        log_prob_threshold: float | None = -1.0,
        device: str = "cpu",
    ) -> None:
        fw = require(
            "faster_whisper", "the faster-whisper ASR back end", package="faster-whisper", extra="models"
        )
        from faster_whisper.tokenizer import Tokenizer

        self.name = f"faster-whisper:{model}"
        self.model_spec = model
        self.beam_size = beam_size
        self.compute_type = compute_type
        self.batch_size = batch_size
        self.language = language
        self.no_speech_threshold = no_speech_threshold
        self.log_prob_threshold = log_prob_threshold
        self.whisper = fw.WhisperModel(
            resolve_whisper(model), device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )
        multilingual = bool(self.whisper.model.is_multilingual)
        # .en models: Tokenizer ignores task/language, so the prompt is <|startoftranscript|><|notimestamps|>.
        self.tokenizer = Tokenizer(
            self.whisper.hf_tokenizer,
            multilingual,
            task="transcribe",
            language=language if multilingual else "en",
        )
        self.prompt: list[int] = self.whisper.get_prompt(self.tokenizer, [], without_timestamps=True)
        from faster_whisper.transcribe import get_suppressed_tokens

        self._suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))

    def _features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel features of one clip padded to one window, as faster-whisper computes them: [n_mels, 3000]."""
        from faster_whisper.audio import pad_or_trim

        feats = self.whisper.feature_extractor(audio)
        return pad_or_trim(feats[:, : feats.shape[-1] - 1])  # the last frame is the STFT's padding frame

    def _decode_windows(self, audios: list[np.ndarray]) -> list[str]:
        """Greedy/beam decoding of clips of at most 30 s, all windows in one CTranslate2 batch."""
        from faster_whisper.transcribe import get_ctranslate2_storage

        feats = np.stack([self._features(a) for a in audios])  # [B, n_mels, 3000]
        encoded = self.whisper.model.encode(get_ctranslate2_storage(feats), to_cpu=False)
        results = self.whisper.model.generate(
            encoded,
            [self.prompt] * len(audios),
            beam_size=self.beam_size,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            max_length=self.whisper.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=50,
        )
        texts = []
        for res in results:
            tokens = res.sequences_ids[0]
            # faster-whisper's recovery of the mean log-probability from CTranslate2's length-normalised score.
            avg_logprob = res.scores[0] * len(tokens) / (len(tokens) + 1)
            silent = (
                self.no_speech_threshold is not None
                and res.no_speech_prob > self.no_speech_threshold
                and not (self.log_prob_threshold is not None and avg_logprob > self.log_prob_threshold)
            )
            texts.append("" if silent else self.tokenizer.decode(tokens).strip())
        return texts

    def _long_form(self, audio: np.ndarray) -> str:
        segments, _ = self.whisper.transcribe(
            audio,
            language=self.language if self.whisper.model.is_multilingual else "en",
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=False,  # without them Whisper tends to stop after the first sentence of a window
            vad_filter=False,
            no_speech_threshold=self.no_speech_threshold,
            log_prob_threshold=self.log_prob_threshold,
        )
        return "".join(s.text for s in segments).strip()

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        """Transcribe N waveforms (1-D float32, 16 kHz). Empty and digitally silent clips give an empty transcript.

        Returns:
            N transcripts; ``seconds`` is each batch's wall time divided by its size.
        """
        waves = check_waveforms(audios)
        out: list[Transcript | None] = [None] * len(waves)
        short = [i for i, w in enumerate(waves) if not is_silent(w) and len(w) <= N_SAMPLES]
        for i, w in enumerate(waves):
            if is_silent(w):
                out[i] = Transcript("", 0.0)
            elif len(w) > N_SAMPLES:
                t0 = time.perf_counter()
                text = self._long_form(w)
                out[i] = Transcript(text, time.perf_counter() - t0)
        for idx in batches(len(short), self.batch_size):
            chunk = [short[j] for j in idx]
            t0 = time.perf_counter()
            texts = self._decode_windows([waves[i] for i in chunk])
            share = (time.perf_counter() - t0) / len(chunk)
            for i, text in zip(chunk, texts, strict=True):
                out[i] = Transcript(text, share)
        return [t if t is not None else Transcript("", 0.0) for t in out]

    def describe(self) -> dict[str, Any]:
        """Everything that changes this back end's transcripts (for system cache keys)."""
        return {
            "backend": "faster-whisper",
            "model": self.model_spec,
            "compute_type": self.compute_type,
            "beam_size": self.beam_size,
            "language": self.language,
            "no_speech_threshold": self.no_speech_threshold,
            "log_prob_threshold": self.log_prob_threshold,
        }
