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

from casceq.errors import CasceqError, InputError, require
from casceq.systems.speech_llm._hf import AUDIO, AUDIO_SLOT, SAMPLE_RATE, check_audios

KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")


@dataclass(frozen=True)
class GeminiRequest:
    """One ``generate_content`` call, independent of the SDK.

    Attributes:
        model: Model name, e.g. ``"gemini-2.5-flash"``.
        audio_wav: The clip as 16-bit PCM WAV bytes (16 kHz mono).
        prompt: The user message; the audio part goes at its ``AUDIO_SLOT`` (the transcript's place in the
            cascade's prompt), or first when it has none.
        config: ``GenerateContentConfig`` fields (greedy decoding, token limit, optional enum constraint).
    """

    model: str
    audio_wav: bytes
    prompt: str
    config: dict[str, Any] = field(default_factory=dict)

    def contents(self) -> list[Any]:
        """The parts in order: text around ``AUDIO`` at the prompt's ``AUDIO_SLOT`` (audio first without one)."""
        before, slot, after = self.prompt.partition(AUDIO_SLOT)
        if not slot:
            return [AUDIO, self.prompt]
        return [p for p in (before, AUDIO, after) if p is AUDIO or str(p).strip()]


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


PRO_MIN_THINKING = 128
"""Gemini 2.5 Pro cannot turn thinking off; 128 tokens is the smallest budget it accepts."""


def thinking_settings(model: str, max_new_tokens: int) -> dict[str, Any]:
    """Token limit and thinking budget of a request, so that thinking never eats the answer.

    On Gemini 2.5 models thinking tokens count against ``max_output_tokens`` (python-genai#811): with the
    8-24 tokens a label needs, the answer came back empty. Flash and Flash-Lite get ``thinking_budget=0``
    (thinking off); Pro, which cannot turn it off, gets the smallest budget plus room for the answer. Other
    models get the plain limit.
    """
    name = model.lower().removeprefix("models/")
    if not name.startswith("gemini-2.5"):
        return {"max_output_tokens": max_new_tokens}
    if "flash" in name:
        return {"max_output_tokens": max_new_tokens, "thinking_config": {"thinking_budget": 0}}
    return {
        "max_output_tokens": max_new_tokens + PRO_MIN_THINKING,
        "thinking_config": {"thinking_budget": PRO_MIN_THINKING},
    }


def build_request(
    model: str, audio: np.ndarray, prompt: str, *, max_new_tokens: int, options: Sequence[str] | None = None
) -> GeminiRequest:
    """Build the request for one example: audio part, then instruction; greedy; enum-constrained if ``options``."""
    config: dict[str, Any] = {"temperature": 0.0, **thinking_settings(model, max_new_tokens)}
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

    def __init__(self, client: Any, model: str, *, backbone: str | None = None, few_shot: Any = 0) -> None:
        if few_shot:
            raise InputError(
                f"gemini:{model}: this adapter sends no few-shot examples; run its cascade zero-shot too "
                "(a k-shot cascade against a 0-shot speech LLM is not a matched pair)"
            )
        self._client = client
        self.model = model
        self.backbone = backbone or model
        self.last_finish_reason: str | None = None
        # What every request sets beyond the prompt (recorded with the system; a 2.5 model's thinking budget)
        self.settings = {"model": model, **thinking_settings(model, 0)}
        self.settings.pop("max_output_tokens")

    def __repr__(self) -> str:
        return f"GeminiBackend(model={self.model!r})"

    @classmethod
    def from_env(cls, model: str, *, backbone: str | None = None, few_shot: Any = 0) -> GeminiBackend:
        """Make a client with the key from the environment (needs ``google-genai``)."""
        if few_shot:
            cls(None, model, few_shot=few_shot)  # refuses, before any SDK or key is needed
        genai = require("google.genai", "The Gemini back end", package="google-genai", extra="gemini")
        return cls(genai.Client(api_key=api_key_from_env()), model, backbone=backbone)

    def _send(self, request: GeminiRequest) -> str:
        from google.genai import types

        audio = types.Part.from_bytes(data=request.audio_wav, mime_type="audio/wav")
        contents = [audio if part is AUDIO else part for part in request.contents()]
        config = types.GenerateContentConfig(**request.config)
        response = with_retries(
            lambda: self._client.models.generate_content(
                model=request.model, contents=contents, config=config
            )
        )
        candidates = getattr(response, "candidates", None) or []
        reason = getattr(candidates[0], "finish_reason", None) if candidates else None
        self.last_finish_reason = None if reason is None else str(getattr(reason, "name", reason))
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
