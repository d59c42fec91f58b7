"""The mechanistic stages of ``casceq reproduce``: captures, probes, logit lens (+ control), implicit cascade, erasure.

Each stage calls the stages the ``casceq capture|probe|lens|implicit|erase`` commands call (``casceq.stages``), on
one speech-LLM backend loaded once by the shared context (``MechContext``, a ``StageContext``), and writes where
those commands write, under
``DIR/mech/`` (the report reads every result JSON found there). Every stage is complete when its output file
exists; captures resume utterance by utterance.

Items: text tasks use the first ``mech_n`` examples of the run's own seeded ranking (a prefix of the run's items)
spoken by the first voice, synthesised into ``DIR/mech/audio/<task>``; RAVDESS uses the first ``mech_n``
examples of its ranking. Transcripts of the implicit stage's explicit cascade are the behavioural run's
Cascade-S transcripts of the same clips (clean), recomputed with the strong ASR when missing; its text LLM is
loaded as Cascade-S is (same shots). The implicit and erasure stages answer with the behavioural run's decision
rule: its held-out calibration offsets of the speech LLM and of Cascade-S (``casceq.run.calibrate.run_offsets``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.mech.capture import Utterance, capture
from casceq.mech.erasure_diagnostic import split_heldout
from casceq.mech.lens import LENS_ALL_FILE
from casceq.mech.shards import META_FILE, PARTIAL_META_FILE, CaptureReader
from casceq.reproduce.plan import Plan, Subject
from casceq.run.build import run_settings
from casceq.stages.context import ContextConfig, ItemsConfig, StageContext
from casceq.stages.erase import EraseConfig, run_erase
from casceq.stages.implicit import ImplicitConfig, run_implicit
from casceq.stages.lens import LENS_CONTROL_FILE, lens_all_positions, run_lens_control
from casceq.stages.probe import ProbeConfig, run_probe

__all__ = [
    "LENS_CONTROL_FILE",
    "MechContext",
    "capture_complete",
    "capture_stage",
    "diagnostic_stage",
    "diagnostic_unavailable",
    "erasure_stage",
    "implicit_stage",
    "lens_all_stage",
    "lens_stage",
    "plan_context",
    "probe_stage",
    "subject_mech_dir",
]

ERASE_CONCEPTS = ("text", "acoustic", "random")
"""Erasure conditions: the text concept and its two controls."""

CAPTURE_DTYPE = "float32"
"""Storage dtype of captures: Gemma 3's residual stream exceeds the float16 range on real clips (seen here)."""

IMPLICIT_TASKS = ("sst2", "ag_news")
ERASE_TASKS = ("sst2", "ag_news")
DIAGNOSTIC_CONCEPTS = ("acoustic2d", "acoustic")
"""Acoustic concepts of the section 5.4 diagnostic: the paper's continuous 2-d one (energy, pitch) and the
9-class one the erasure claim uses as a control."""
ERASE_RANDOM_DRAWS = 5
"""Draws of the random-subspace control of the erasure stage (their spread is on the findings page)."""


CASCADE_SYSTEM = "Cascade-S"
"""The behavioural run's system whose offsets and transcripts the implicit stage's explicit cascade takes (the
speech LLM's offsets are those of the subject's own system)."""


def plan_context(plan: Plan, out: Path, run_dir: Path, subject: Subject | None = None) -> ContextConfig:
    """The stage context of a reproduction: a subject's speech LLM (same shots), its items and decision rule.

    ``subject``: a speech-LLM subject of the plan (default its first, the run's ``Speech-LLM``); its offsets are
    the run's calibration of the system of that name.
    """
    m = plan.models
    subject = subject or plan.all_subjects[0]
    if subject.spec is None:
        raise InputError(f"{subject.name} is a stand-in for {subject.stand_in}: it has no states to analyse")
    items = ItemsConfig(
        voices=tuple(plan.voices[:1]),
        audio_dir=str(out / "mech" / "audio"),
        n=plan.mech_n,
        seed=plan.seed,
        per_task_audio=True,
        natural_audio=True,
        splits=tuple(sorted(plan.splits.items())),
    )
    return ContextConfig(
        model=subject.spec,
        backbone=m.backbone(),
        speech_options=run_settings(subject.spec, {}, plan.seed),  # the run's system: same shots
        run_dir=str(run_dir),
        run_required=False,  # made by the behavioural stage; before it exists there are no offsets
        speech_system=subject.name,
        items=items,
        asr=m.asr_strong,
        transcript_system=CASCADE_SYSTEM,
    )


class MechContext(StageContext):
    """The shared context of the mechanistic stages of one subject of a reproduction (its plan and folders)."""

    def __init__(self, plan: Plan, out: Path, run_dir: Path, subject: Subject | None = None) -> None:
        """A context over ``plan``'s models and items for ``subject`` (default the first), run in ``run_dir``."""
        super().__init__(plan_context(plan, out, run_dir, subject))
        self.plan, self.out = plan, out
        self.subject = subject or plan.all_subjects[0]

    @property
    def mech_dir(self) -> Path:
        """``DIR/mech`` for the first subject, ``DIR/mech-<slug>`` for the others (``subject_mech_dir``)."""
        return subject_mech_dir(self.plan, self.out, self.subject)


def subject_mech_dir(plan: Plan, out: Path, subject: Subject) -> Path:
    """Where a subject's mechanistic results go.

    ``DIR/mech`` for the first subject (as before subjects existed), else ``DIR/mech-<slug>``.
    """
    return out / f"mech{plan.suffix(subject)}"


def capture_stage(ctx: MechContext, model: str, task: str, out: Path) -> None:
    """Capture ``model`` (the speech LLM spec or ``whisper:...``) on a task's items into ``out``; resumable."""
    examples, _ = ctx.items(task)
    utts = [
        Utterance(
            ex.id,
            str(ex.audio.path if ex.audio else ""),
            ex.text,
            {k: v for k, v in {**ex.meta, "example": ex.id.split("@")[0]}.items() if _scalar(v)},
        )
        for ex in examples
    ]
    skip: frozenset[str] = frozenset()
    first = 0
    # a finished capture, or the capture.partial.json of an interrupted start
    if (out / META_FILE).is_file() or (out / PARTIAL_META_FILE).is_file():
        reader = CaptureReader(out, partial_ok=True)
        if reader.meta.model != model:
            raise InputError(f"holds a capture of {reader.meta.model!r}, not {model!r}", path=str(out))
        if reader.meta.dtype != CAPTURE_DTYPE or not reader.utterances:  # an older or empty start: redo it
            for p in [*out.glob("shard-*"), out / META_FILE, out / PARTIAL_META_FILE]:
                p.unlink(missing_ok=True)
        else:
            skip = frozenset(r.id for r in reader.utterances)
            first = max((n for n, _ in reader.shards), default=-1) + 1
    todo = [u for u in utts if u.id not in skip]
    if not todo:
        return
    loaded = ctx.model(model, text_llm_ok=False)
    capture(
        loaded.obj,
        todo,
        str(out),
        model=model,
        dtype=CAPTURE_DTYPE,
        pitch=importlib.util.find_spec("parselmouth") is not None,
        feature_extractor=loaded.feature_extractor,
        extra={"command": f"casceq reproduce (capture {model} on {task})", "seed": ctx.plan.seed},
        first_shard=first,
    )


def capture_complete(ctx: MechContext, out: Path, task: str) -> bool:
    """Whether a capture folder holds every planned utterance of the task."""
    if not (out / META_FILE).is_file():
        return False
    return len(CaptureReader(out).utterances) >= len(ctx.items(task)[0])


def _scalar(v: Any) -> bool:
    return isinstance(v, str | int | float) and not isinstance(v, bool)


def probe_stage(capture_dir: Path, out: Path, split_by: str, seed: int) -> None:
    """Run every probe on a capture; writes ``probes.json``, ``table.md`` (and the figure when possible)."""
    run_probe(ProbeConfig(str(capture_dir), str(out), seed=seed, split_by=split_by, figure_optional=True))


def lens_stage(ctx: MechContext, capture_dir: Path, out: Path) -> None:
    """Logit lens over the speech LLM's capture, and the same lens scored against deranged transcripts."""
    run_lens_control(ctx, capture_dir, out)


def implicit_stage(ctx: MechContext, out: Path, provenance: dict[str, Any]) -> None:
    """The implicit cascade on the text tasks of ``IMPLICIT_TASKS`` present in the plan.

    The text copy of the backbone is the same weights loaded as a text LLM, as Cascade-S loads them (its
    few-shot prompt), so the explicit cascade here is Cascade-S. SpeechBackboneLLM computes full-vocabulary
    logits at every position (Gemma: 262k), which measured ~24 s per item here; HFCausalLM unembeds only the
    labels. Answers take the run's decision rule: its held-out calibration of the speech LLM and of Cascade-S
    (raw argmax of a tiny backbone is one label for nearly everything, which leaves kappa undefined).
    """
    few_shot = {"few_shot": dict(ctx.plan.few_shot)} if ctx.plan.few_shot else {}
    config = ImplicitConfig(
        tasks=tuple(t for t in IMPLICIT_TASKS if t in ctx.plan.n),
        out=str(out),
        backbone=ctx.plan.models.llm,
        backbone_settings=run_settings(None, few_shot, ctx.plan.seed),
        text_offsets_system=CASCADE_SYSTEM,
        provenance=provenance,
    )
    run_implicit(config, ctx)


def erasure_stage(ctx: MechContext, fit_capture: Path, out: Path, provenance: dict[str, Any]) -> None:
    """LEACE erasure fitted on the speech LLM's SST-2 capture; answered on ``ERASE_TASKS`` of the plan."""
    config = EraseConfig(
        tasks=tuple(t for t in ERASE_TASKS if t in ctx.plan.n),
        out=str(out),
        fit=str(fit_capture),
        exclude_fitted=True,  # never the utterances the erasers were fitted on
        concepts=ERASE_CONCEPTS,
        n_random=ERASE_RANDOM_DRAWS,
        provenance=provenance,
    )
    run_erase(config, ctx)


def lens_all_stage(ctx: MechContext, capture_dir: Path, out: Path) -> None:
    """Logit lens over every position of the full prompt of the capture's utterances.

    Audio, text before and text after it (``casceq lens --all-positions``): where in the sequence the transcript
    becomes decodable.
    """
    lens_all_positions(ctx.speech_llm(), capture_dir).write(out, LENS_ALL_FILE)


DIAGNOSTIC_FRACTION = 0.3
"""Share of the fitting items the diagnostic holds out (``casceq erase --diagnostic-fraction``)."""


def diagnostic_unavailable(plan: Plan) -> str | None:
    """Why the plan's captures are too small for the diagnostic's held-out split (None: large enough)."""
    try:
        split_heldout([f"item-{k}" for k in range(plan.mech_n)], DIAGNOSTIC_FRACTION, plan.seed)
    except InputError as exc:
        return f"mechanistic n {plan.mech_n}: {exc.args[0] if exc.args else exc}"
    return None


def diagnostic_stage(ctx: MechContext, fit_capture: Path, out: Path, provenance: dict[str, Any]) -> None:
    """The section 5.4 diagnostic (does erasing the acoustic concept reduce text decodability?).

    Erasers of ``DIAGNOSTIC_CONCEPTS`` are fitted on the SST-2 capture's utterances less a held-out 30% of its
    items (by item, seeded); the bag-of-characters readout is trained on the erased fitting utterances and scored
    on the erased held-out ones, against a random subspace of the same rank (``casceq erase --diagnostic``). No
    task is answered here (the erasure stage does that).
    """
    config = EraseConfig(
        tasks=(),
        out=str(out),
        fit=str(fit_capture),
        exclude_fitted=True,
        concepts=DIAGNOSTIC_CONCEPTS,
        n_random=1,
        diagnostic=True,
        diagnostic_fraction=DIAGNOSTIC_FRACTION,
        provenance=provenance,
    )
    run_erase(config, ctx)
