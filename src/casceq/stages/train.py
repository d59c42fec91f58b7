"""The train stage: train the offline speech LLM, and evaluate one against its matched cascade.

``train(TrainStageConfig(...))`` runs every training stage (``casceq.train.pipeline``) into a folder and returns
the exported model; ``evaluate(EvaluateConfig(...))`` runs the evaluation experiment (``eval_config``) through
the run stage and returns the accuracy table and the speech LLM's paired accuracy gaps to its cascade.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from casceq.stages.run import RunConfig, RunResult, run
from casceq.train import pipeline
from casceq.train.config import TrainConfig
from casceq.train.emotion import EmotionConfig, train_acoustic_control
from casceq.train.evaluate import (
    EVAL_COMMENT,
    AccuracyGap,
    AccuracyRow,
    accuracy_gaps,
    accuracy_table,
    eval_config,
)

EVAL_TOML = "evaluation.toml"
"""The evaluation experiment as a TOML file, written into its run folder (``casceq run`` can re-run it)."""


@dataclass(frozen=True)
class TrainStageConfig:
    """A training: the recipe, its folder, and whether to continue from the last checkpoint."""

    recipe: TrainConfig
    out: Path
    resume: bool = False


@dataclass(frozen=True)
class TrainResult:
    """The exported model folder (loads with ``make_speech_llm("ultravox-native:<model>")``)."""

    model: Path

    def to_json(self) -> str:
        """JSON form."""
        return json.dumps({"model": str(self.model)})

    @classmethod
    def from_json(cls, text: str) -> TrainResult:
        """Inverse of :meth:`to_json`."""
        return cls(Path(json.loads(text)["model"]))


def train(config: TrainStageConfig, progress: Callable[[str], None] = print) -> TrainResult:
    """Train and export the speech LLM of ``config.recipe`` into ``config.out``."""
    return TrainResult(
        pipeline.train_speech_llm(config.recipe, config.out, resume=config.resume, progress=progress)
    )


@dataclass(frozen=True)
class EvaluateConfig:
    """An evaluation: the speech LLM spec, items per task (None: ``EVAL_N``), the run folder."""

    model: str
    out: Path
    n: int | None = None
    show_progress: bool = True


@dataclass(frozen=True)
class EvaluateResult:
    """The evaluation run, accuracy per system and task, and the speech LLM's gap to Cascade-S per task."""

    run: RunResult
    accuracy: tuple[AccuracyRow, ...] = ()
    gaps: tuple[AccuracyGap, ...] = field(default=())

    def to_json(self) -> str:
        """JSON form."""
        return json.dumps(
            {
                "run": json.loads(self.run.to_json()),
                "accuracy": [asdict(r) for r in self.accuracy],
                "gaps": [asdict(g) for g in self.gaps],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> EvaluateResult:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls(
            RunResult.from_json(json.dumps(d["run"])),
            tuple(AccuracyRow(**r) for r in d["accuracy"]),
            tuple(AccuracyGap(**g) for g in d["gaps"]),
        )


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Run (or resume) the evaluation experiment into ``config.out`` and read its tables back."""
    experiment = eval_config(config.model, config.n)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / EVAL_TOML).write_text(experiment.to_toml(EVAL_COMMENT))
    result = run(RunConfig(experiment, config.out, show_progress=config.show_progress))
    return EvaluateResult(
        result,
        tuple(accuracy_table([config.out])),
        tuple(accuracy_gaps([config.out], "Speech-LLM", "Cascade-S")),
    )


@dataclass(frozen=True)
class ControlStageConfig:
    """The acoustic control: fine-tune the continuous checkpoint ``model`` on RAVDESS training actors.

    ``general`` is the continuous model's training folder (its cached frames feed the imitation term).
    """

    model: Path
    out: Path
    recipe: EmotionConfig = field(default_factory=EmotionConfig)
    general: Path | None = None
    resume: bool = False


def train_control(config: ControlStageConfig, progress: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune and export the acoustic control into ``config.out/model``."""
    return TrainResult(
        train_acoustic_control(
            config.model,
            config.out,
            config.recipe,
            general=config.general,
            resume=config.resume,
            progress=progress,
        )
    )
