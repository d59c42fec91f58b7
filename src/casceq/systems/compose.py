"""The three kinds of system, composed from back ends: cascade, speech LLM, text ceiling.

Back ends are built lazily by factories, so a resumed run with nothing left to do never loads a model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from casceq.systems.answer import answer_batch, to_predictions
from casceq.systems.base import AnswerMode, ASRBackend, LLMBackend, SpeechLLMBackend, SystemKind
from casceq.systems.speech_llm._hf import AUDIO_SLOT
from casceq.systems.speech_llm.shipped import checkpoint_folder
from casceq.tasks.base import Task
from casceq.types import Example, Prediction


def user_message(task: Task, example: Example, slot: str) -> str:
    """The one prompt builder of both sides of a matched pair: ``Task.prompt`` with ``slot`` as the input.

    A cascade passes the transcript, a speech LLM ``AUDIO_SLOT`` (each adapter puts the audio there, in its
    chat template's rendering of an audio item). Instruction, choices and ``Answer:`` are the same text in the
    same places; shots are drawn by the same ``AutoShots`` settings on both sides and shown as earlier text
    turns; answers go through the same ``answer.first_line``.
    """
    return task.prompt(slot, example)


def cascade_prompt(task: Task, example: Example, transcript: str) -> str:
    """The user message of a cascade (or text ceiling) for one input text."""
    return user_message(task, example, transcript)


def speech_prompt(task: Task, example: Example) -> str:
    """The user message of a speech LLM: the cascade's, with ``AUDIO_SLOT`` where the transcript goes."""
    return user_message(task, example, AUDIO_SLOT)


ShotSetting = int | Mapping[str, int]


def speech_shots(model_spec: str, settings: Mapping[str, Any]) -> ShotSetting:
    """The shots a speech LLM will show: its ``few_shot`` setting, else a native checkpoint's recorded ones."""
    if "few_shot" in settings:
        return settings["few_shot"]  # type: ignore[no-any-return]
    family, _, model = model_spec.partition(":")
    if family != "ultravox-native":
        return 0
    record = checkpoint_folder(model) / "projector.json"  # a shipped name or a folder
    if not record.is_file():
        return 0
    return dict(json.loads(record.read_text()).get("model", {}).get("few_shot") or {})


def shots_of(setting: ShotSetting, task: str) -> int:
    """The number of shots for one task under a ``few_shot`` setting (an int for all tasks, or task -> k)."""
    return int(setting.get(task, 0)) if isinstance(setting, Mapping) else int(setting)


def shot_mismatch(
    speech: tuple[str, ShotSetting], other: tuple[str, ShotSetting], tasks: Sequence[str]
) -> str | None:
    """Why a speech LLM and a system on its backbone would see different shots on some task (None: they match).

    ``speech`` and ``other`` are (system name, ``few_shot`` setting).
    """
    for task in tasks:
        k_speech, k_other = shots_of(speech[1], task), shots_of(other[1], task)
        if k_speech != k_other:
            return (
                f"{speech[0]!r} shows {k_speech} shots on {task} but {other[0]!r}, on the same backbone, shows "
                f"{k_other}: give both the same few_shot setting (a matched pair must be asked the same way)"
            )
    return None


class _Lazy:
    """Builds a back end on first use and keeps it."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._obj: Any = None

    @property
    def loaded(self) -> Any:
        """The back end if it was built, else None (never builds it)."""
        return self._obj

    def get(self) -> Any:
        if self._obj is None:
            self._obj = self._factory()
        return self._obj


def _hash(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class ComposedSystem:
    """A system of one of the three kinds (see ``casceq.systems.base``).

    Attributes:
        name: System name (unique in a run).
        backbone: LLM backbone id (matched pairs share it).
        kind: ``"cascade"``, ``"speech_llm"`` or ``"text"``.
        spec: Everything that identifies the system's behaviour (model specs, prompt settings); hashed into
            the cache key of every prediction.
        mode: Answer mode.
        asr: Factory of the ASR back end (cascades).
        llm: Factory of the LLM back end (cascades and text systems).
        speech: Factory of the speech-LLM back end.
        offsets: Per-task calibration offsets [C], or None.
    """

    name: str
    backbone: str
    kind: SystemKind
    spec: dict[str, Any]
    mode: AnswerMode = "score"
    asr: Callable[[], ASRBackend] | None = None
    llm: Callable[[], LLMBackend] | None = None
    speech: Callable[[], SpeechLLMBackend] | None = None
    offsets: dict[str, np.ndarray] = field(default_factory=dict)
    _lazy: dict[str, _Lazy] = field(default_factory=dict, repr=False)

    def _get(self, role: str) -> Any:
        if role not in self._lazy:
            factory = getattr(self, role)
            if factory is None:
                raise ValueError(f"system {self.name!r} ({self.kind}) has no {role} back end")
            self._lazy[role] = _Lazy(factory)
        return self._lazy[role].get()

    def backend(self, role: str) -> Any:
        """The back end of ``role`` (``"asr"``, ``"llm"`` or ``"speech"``), built on first use and then kept.

        Raises:
            ValueError: The system has no back end of that role.
        """
        return self._get(role)

    def cache_key(self) -> str:
        """Hash of the spec and answer mode (the runner adds the audio's hash per example)."""
        return _hash({"spec": self.spec, "mode": self.mode, "kind": self.kind})

    def transcribe(self, audios: Sequence[np.ndarray]) -> tuple[list[str], float]:
        """ASR stage of a cascade: transcripts and wall seconds."""
        t0 = time.perf_counter()
        out = self._get("asr").transcribe(list(audios))
        return [t.text for t in out], time.perf_counter() - t0

    def predict(
        self,
        task: Task,
        condition: str,
        examples: Sequence[Example],
        audios: Sequence[np.ndarray | None],
        transcripts: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """Answer one batch. Cascades may be handed cached ``transcripts`` (then the ASR is skipped)."""
        t0 = time.perf_counter()
        offsets = self.offsets.get(task.name)
        trs: list[str | None]
        if self.kind == "speech_llm":
            backend: SpeechLLMBackend = self._get("speech")
            wavs = [a for a in audios if a is not None]
            if len(wavs) != len(examples):
                raise ValueError(f"{self.name}: a speech LLM needs audio for every example")
            prompts = [speech_prompt(task, ex) for ex in examples]
            answers = answer_batch(
                task=task,
                examples=examples,
                mode=self.mode,
                score=lambda opts: backend.score_options(wavs, prompts, opts),
                generate=lambda k: backend.generate(wavs, prompts, k),
                offsets=offsets,
            )
            trs = [None] * len(examples)
        else:
            if self.kind == "cascade":
                if transcripts is None:
                    texts, _ = self.transcribe([a for a in audios if a is not None])
                else:
                    texts = list(transcripts)
                trs = list(texts)
            else:
                texts = [ex.text for ex in examples]
                trs = [None] * len(examples)
            llm: LLMBackend = self._get("llm")
            prompts = [cascade_prompt(task, ex, t) for t, ex in zip(texts, examples, strict=True)]
            answers = answer_batch(
                task=task,
                examples=examples,
                mode=self.mode,
                score=lambda opts: llm.score_options(prompts, opts),
                generate=lambda k: llm.generate(prompts, k),
                offsets=offsets,
            )
        return to_predictions(
            system=self.name,
            backbone=self.backbone,
            task=task,
            condition=condition,
            examples=examples,
            answers=answers,
            transcripts=trs,
            seconds=time.perf_counter() - t0,
        )
