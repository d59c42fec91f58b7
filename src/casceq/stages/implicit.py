"""Implicit-cascade stage (Table 6): the speech LLM's lens text at one layer, read by a text copy of its backbone.

For each task's items the speech LLM answers from audio; the lens text of a layer at the audio positions is given
as the transcript to the backbone (the speech LLM's own language model on text, a text LLM spec, or a run
system's LLM); the explicit cascade gives the backbone the context's transcripts. Writes
``OUT/mech/implicit.json`` (:class:`ImplicitResults`) and ``OUT/mech/implicit.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.mech.implicit import (
    ImplicitResult,
    SpeechBackboneLLM,
    implicit_cascade,
    table_markdown,
    write_results,
)
from casceq.stages.context import StageContext, provenance
from casceq.tasks import get_task

SAME = "same"
"""``backbone`` value: the speech LLM's own language model fed text."""


@dataclass(frozen=True)
class ImplicitConfig:
    """One implicit-cascade run (the options of ``casceq implicit`` beyond the context's).

    Attributes:
        tasks: Tasks answered.
        out: Output folder.
        layer: Lens layer (None: the last).
        mode: Answer mode (``score`` or ``generate``).
        backbone: ``"same"`` or a text LLM spec.
        backbone_settings: Settings of that text LLM (e.g. the run's few-shot prompt).
        cascade: The calibration run's cascade or text system whose LLM (and offsets) the text copy is.
        text_offsets_system: Without ``cascade``: the run system whose offsets the text copy takes, if any.
        argv: The command line recorded in the results' provenance (without ``provenance``).
        provenance: The provenance to record (None: collected from ``argv`` at the start).
    """

    tasks: tuple[str, ...]
    out: str
    layer: int | None = None
    mode: str = "score"
    backbone: str = SAME
    backbone_settings: Mapping[str, Any] = field(default_factory=dict)
    cascade: str | None = None
    text_offsets_system: str | None = None
    argv: tuple[str, ...] = ()
    provenance: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ImplicitResults:
    """Every task's Table 6 row and the provenance (the content of ``mech/implicit.json``)."""

    results: tuple[ImplicitResult, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-ready dict written to ``mech/implicit.json``."""
        return {
            "kind": "implicit",
            "version": 1,
            "extra": self.extra,
            "results": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImplicitResults:
        """Inverse of :meth:`to_json`."""
        return cls(
            tuple(ImplicitResult.from_json(r) for r in data.get("results", ())), dict(data.get("extra") or {})
        )

    def markdown(self) -> str:
        """Table 6 (``mech/implicit.md``)."""
        return table_markdown(self.results)


def read_implicit(path: str | Path) -> ImplicitResults:
    """Read a ``mech/implicit.json`` file."""
    return ImplicitResults.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def run_implicit(config: ImplicitConfig, ctx: StageContext) -> ImplicitResults:
    """Answer every task with the speech LLM, the implicit and the explicit cascade; write and return the results.

    Configuration errors (calibration, cascade) are raised before any model is loaded.

    Raises:
        InputError: ``cascade`` without a run or with another ``backbone``; see also the context's errors.
    """
    prov = dict(config.provenance) if config.provenance is not None else provenance(config.argv)
    speech_off = ctx.speech_offsets()
    llm: Any = None
    text_off: dict[str, Any] = {}
    if config.cascade:
        if ctx.run_dir is None:
            raise InputError("--cascade names a system of --calibration RUN_DIR: give both")
        if config.backbone != SAME:
            raise InputError("give --backbone or --cascade, not both")
        llm, text_off = ctx.cascade(config.cascade)
    elif config.text_offsets_system:
        text_off = ctx.offsets(config.text_offsets_system)
    if ctx.config.items.file and len(config.tasks) > 1:
        raise InputError("--items holds one task's items: give one --task")
    backend = ctx.speech_llm()
    if llm is None and config.backbone == SAME:
        llm = SpeechBackboneLLM(backend)
    elif llm is None:
        llm = ctx.text_llm(config.backbone, config.backbone_settings)
    results = []
    for name in config.tasks:
        examples, audios = ctx.items(name)
        transcripts = ctx.transcripts(name, examples, audios)
        results.append(
            implicit_cascade(
                backend,
                llm,
                get_task(name),
                examples,
                audios,
                transcripts,
                layer=config.layer,
                mode=config.mode,
                model=ctx.config.model,
                asr=ctx.config.asr,
                speech_offsets=speech_off.get(name),
                text_offsets=text_off.get(name),
            )
        )
    write_results(config.out, results, prov)
    return ImplicitResults(tuple(results), prov)
