"""Gemini (Google's API) as a speech LLM, through the optional ``google-genai`` SDK (``casceq[gemini]``).

The API key is read from ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` when the client is made and handed to the
SDK only: it is never stored on this object, written to a config or logged. Calls are retried with exponential
backoff and jitter on 429 (rate limit) and 5xx; other errors surface at once.

The API returns no likelihood of arbitrary continuations, so ``score_options`` asks for an answer constrained
to the options (``response_mime_type="text/x.enum"``) and returns 0 for the chosen option and -inf for the
others: a one-hot score that still gives the predicted label and keeps the ``SpeechLLMBackend`` shape.
"""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from casceq.errors import CasceqError, require
from casceq.systems.speech_llm._hf import SAMPLE_RATE, check_audios

KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")


@dataclass(frozen=True)
class GeminiRequest:
    """One ``generate_content`` call, independent of the SDK.

    Attributes:
        model: Model name, e.g. ``"gemini-2.5-flash"``.
        audio_wav: The clip as 16-bit PCM WAV bytes (16 kHz mono).
        prompt: The instruction, sent after the audio part.
        config: ``GenerateContentConfig`` fields (greedy decoding, token limit, optional enum constraint).
    """

    model: str
    audio_wav: bytes
    prompt: str
    config: dict[str, Any] = field(default_factory=dict)


def wav_bytes(audio: np.ndarray) -> bytes:
    """16-bit PCM WAV of a float waveform in [-1, 1] at 16 kHz (clipped)."""
    import wave

    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def build_request(
    model: str, audio: np.ndarray, prompt: str, *, max_new_tokens: int, options: Sequence[str] | None = None
) -> GeminiRequest:
    """Build the request for one example: audio part, then instruction; greedy; enum-constrained if ``options``."""
    config: dict[str, Any] = {"temperature": 0.0, "max_output_tokens": max_new_tokens}
    if options is not None:
        config["response_mime_type"] = "text/x.enum"
        config["response_schema"] = {"type": "STRING", "enum": list(options)}
    return GeminiRequest(model, wav_bytes(audio), prompt, config)


def status_of(exc: BaseException) -> int | None:
    """Return the HTTP status an SDK error carries (``code`` or ``status_code``), if any."""
    for attr in ("code", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 6,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; on a 429/5xx error wait ``base_delay·2^i`` (±50% jitter, capped) and try again."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if status_of(exc) not in RETRY_STATUS or attempt == attempts - 1:
                raise
            delay = min(max_delay, base_delay * 2**attempt) * random.uniform(0.5, 1.5)
            sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


def api_key_from_env() -> str:
    """Return the API key from the environment, or a ``CasceqError`` naming the variables to set."""
    for name in KEY_VARIABLES:
        value = os.environ.get(name)
        if value:
            return value
    raise CasceqError(f"the Gemini back end needs an API key in ${KEY_VARIABLES[0]} or ${KEY_VARIABLES[1]}")


class GeminiBackend:
    """A Gemini model answering from audio (inline WAV) plus instruction."""

    family = "gemini"

    def __init__(self, client: Any, model: str, *, backbone: str | None = None) -> None:
        self._client = client
        self.model = model
        self.backbone = backbone or model

    def __repr__(self) -> str:
        return f"GeminiBackend(model={self.model!r})"

    @classmethod
    def from_env(cls, model: str, *, backbone: str | None = None) -> GeminiBackend:
        """Make a client with the key from the environment (needs ``google-genai``)."""
        genai = require("google.genai", "The Gemini back end", package="google-genai", extra="gemini")
        return cls(genai.Client(api_key=api_key_from_env()), model, backbone=backbone)

    def _send(self, request: GeminiRequest) -> str:
        from google.genai import types

        contents = [types.Part.from_bytes(data=request.audio_wav, mime_type="audio/wav"), request.prompt]
        config = types.GenerateContentConfig(**request.config)
        response = with_retries(
            lambda: self._client.models.generate_content(
                model=request.model, contents=contents, config=config
            )
        )
        return (response.text or "").strip()

    def generate(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], max_new_tokens: int
    ) -> list[str]:
        """Greedy answers, one request per example."""
        clips = check_audios(audios, prompts)
        return [
            self._send(build_request(self.model, a, p, max_new_tokens=max_new_tokens))
            for a, p in zip(clips, prompts, strict=True)
        ]

    def score_options(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], options: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """One-hot scores [N, C]: 0 for the option the model picks, -inf for the rest (all -inf if none)."""
        clips = check_audios(audios, prompts)
        scores = np.full((len(prompts), len(options[0]) if options else 0), -np.inf)
        for i, (a, p) in enumerate(zip(clips, prompts, strict=True)):
            answer = self._send(build_request(self.model, a, p, max_new_tokens=16, options=options[i]))
            if answer in options[i]:
                scores[i, list(options[i]).index(answer)] = 0.0
        return scores
