"""Core value types that cross module boundaries (frozen dataclasses, never dicts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

INVALID = "INVALID"
"""The label of an answer that parses to none of the task's labels. Stored, counted, never guessed."""

CLEAN = "clean"
"""The condition name of unmodified audio (and of text-only systems)."""


def _frozen(meta: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(meta or {}))


@dataclass(frozen=True)
class AudioRef:
    """A pointer to one audio file of an example.

    Attributes:
        path: Absolute or run-relative path of the audio file (FLAC/WAV, or a container ffmpeg can decode).
        sample_rate: Sample rate in Hz if known.
        duration: Duration in seconds if known.
        voice: TTS voice name, or ``"natural"`` for recorded speech.
        sha256: Hex digest of the file contents if known (part of cache keys).
    """

    path: str
    sample_rate: int | None = None
    duration: float | None = None
    voice: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Example:
    """One evaluation item of a task.

    Attributes:
        id: Stable identifier, unique within the task (derived from the source file, not from row order
            after subsampling).
        task: Task name, e.g. ``"sst2"``.
        text: The text a text-only system reads and a voice speaks.
        label: Gold label: one of the task's labels, or for open-answer tasks the canonical answer.
        choices: Answer options for multiple-choice tasks (CSQA: the five choice texts, in letter order).
        audio: The audio of this example, if any.
        meta: Extra fields (TriviaQA ``aliases``, speaker, RAVDESS actor, ...). Read-only.
    """

    id: str
    task: str
    text: str
    label: str
    choices: tuple[str, ...] = ()
    audio: AudioRef | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", _frozen(self.meta))


@dataclass(frozen=True)
class Prediction:
    """One system's answer to one example under one condition.

    Attributes:
        system: System name.
        task: Task name.
        condition: Audio condition (``"clean"``, ``"babble@10"``, ...).
        example_id: ``Example.id``.
        output: Raw model output (free text), or the chosen label in label-scoring mode.
        label: Parsed label (one of the task's labels or ``INVALID``; for open-answer tasks the answer).
        gold: Gold label of the example.
        transcript: ASR transcript (cascades) or decoded lens text; None for systems without one.
        label_scores: Per-label scores (log-likelihoods) in label-scoring mode.
        seconds: Wall time spent on this example (batch time divided by batch size).
        backbone: LLM backbone id of the system (for matched-pair detection).
        correct: Whether ``label`` is right; for open-answer tasks decided by alias matching.
        item: The underlying item this example was made from: rows that share it (the voices of one
            sentence, and in a run the same sentence under every condition) are one cluster for the
            statistics (``docs/statistics.md``). None: the example is an item of its own.
    """

    system: str
    task: str
    condition: str
    example_id: str
    output: str
    label: str
    gold: str
    transcript: str | None = None
    label_scores: Mapping[str, float] | None = field(default=None, compare=False, hash=False)
    seconds: float = 0.0
    backbone: str | None = None
    correct: bool | None = None
    item: str | None = None
