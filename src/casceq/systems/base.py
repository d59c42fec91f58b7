"""The interfaces every system and back end implements.

A *system* answers examples of a task under a condition and returns ``Prediction`` rows. Three kinds:

- ``cascade``: an ``ASRBackend`` then an ``LLMBackend`` (the transcript is stored with each prediction);
- ``speech_llm``: a ``SpeechLLMBackend`` (audio in, text out);
- ``text``: an ``LLMBackend`` on the gold text (the text ceiling).

Back ends are small: an ASR back end transcribes files, an LLM back end scores label continuations or
generates, a speech-LLM back end does either from audio. ``casceq.systems.answer`` turns back-end outputs into
``Prediction`` rows for a task, so parsing and scoring are written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from casceq.tasks.base import Task
from casceq.types import Example, Prediction

SystemKind = Literal["cascade", "speech_llm", "text"]
AnswerMode = Literal["score", "generate"]


@dataclass(frozen=True)
class Transcript:
    """One ASR result: text and the seconds it took (batch time shared out)."""

    text: str
    seconds: float


@runtime_checkable
class ASRBackend(Protocol):
    """Speech recognition over 16 kHz mono float32 waveforms."""

    name: str

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        """Transcribe a batch of waveforms (each 1-D float32 at 16 kHz)."""
        ...


@runtime_checkable
class LLMBackend(Protocol):
    """A text LLM. ``backbone`` is the id used to find matched pairs (e.g. ``"SmolLM2-135M-Instruct"``)."""

    backbone: str

    def score_options(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> np.ndarray:
        """Log-likelihood of each option continuation after each prompt.

        Args:
            prompts: N user messages (the backend applies its chat template / few-shot format).
            options: N lists of C option strings (same C for a classification task).

        Returns:
            float array [N, C] of summed continuation log-probabilities.
        """
        ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy answers to N user messages."""
        ...


@runtime_checkable
class SpeechLLMBackend(Protocol):
    """An end-to-end speech LLM: the instruction is text, the input is audio."""

    backbone: str

    def score_options(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], options: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Like ``LLMBackend.score_options`` with each prompt's input given as audio. Returns [N, C]."""
        ...

    def generate(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], max_new_tokens: int
    ) -> list[str]:
        """Greedy answers from audio plus instruction."""
        ...


@runtime_checkable
class System(Protocol):
    """What the runner calls. ``predict`` answers one batch of one task under one condition."""

    name: str
    backbone: str
    kind: SystemKind

    def predict(
        self, task: Task, condition: str, examples: Sequence[Example], audios: Sequence[np.ndarray | None]
    ) -> list[Prediction]:
        """Answer ``examples``; ``audios[i]`` is example i's waveform under ``condition`` (None for text)."""
        ...

    def cache_key(self) -> str:
        """A hash of everything about this system that changes its predictions (weights, prompt, mode)."""
        ...
