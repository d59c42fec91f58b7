"""What ``casceq reproduce`` runs: the models, the items per task, the conditions and the mechanistic sizes.

The plan is data (frozen dataclasses); ``experiment_config`` turns it into the behavioural experiment that
``casceq run`` executes (``experiment_toml``: the same as a TOML file), so the reproduction is an ordinary run folder anyone can re-run or extend.

Every clip is transcribed by two Whisper models and answered by the LLM systems and each speech-LLM subject
under each condition; ``COSTS`` and ``MECH_SECONDS_PER_UTTERANCE`` are the seconds this costs, measured on this
2-core machine (docs/reproduce.md, "Sizes and the time budget"), from which ``estimate_minutes`` predicts a
plan's wall time. At the defaults (``DEFAULT_N`` items per text task x 2 voices, ``DEFAULT_N_RAVDESS`` RAVDESS
clips, five conditions, four subjects) that is about five hours here; ``--limit-minutes`` caps a run and
``--resume`` continues it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from casceq.audio.tts import DEFAULT_VOICES
from casceq.errors import InputError
from casceq.run.build import backbone_of
from casceq.run.config import ExperimentConfig, SystemSpec, TaskSpec
from casceq.run.leakage import training_ids
from casceq.systems.asr.bundled import BUNDLED as ASR_BUNDLED
from casceq.systems.llm.bundled import BUNDLED as LLM_BUNDLED
from casceq.systems.llm.bundled import default_backend_kwargs
from casceq.systems.speech_llm.shipped import checkpoint_folder

TEXT_TASKS = ("ag_news", "sst2", "csqa")
"""Text-sufficient tasks: spoken by TTS voices, answerable from a transcript."""

SPEECH_TASKS = ("ravdess",)
"""Text-insufficient tasks with natural speech (the two RAVDESS sentences carry no emotion)."""

CONDITIONS = ("clean", "babble@15", "babble@10", "babble@5", "babble@0")
"""The paper's noise conditions (``casceq.audio.conditions.PAPER_CONDITIONS``)."""

N_VOICES = 2
"""Voices speaking each text-task item (the first two default voices)."""

DEFAULT_N = 50
"""Items per text-sufficient task (each spoken by ``N_VOICES`` voices: 100 clips per task)."""

DEFAULT_N_RAVDESS = 100
"""RAVDESS clips (natural speech, one clip per item)."""

DEFAULT_MECH_N = 40
"""Utterances per mechanistic capture and items per implicit/erasure task (probes need >= 5 groups)."""

SYSTEMS = ("Cascade-S", "Cascade-W", "Cascade-M", "Speech-LLM", "Text")
"""System names: strong-ASR cascade, weak-ASR cascade, mismatched-backbone cascade, speech LLM, text ceiling."""

PRIMARY = "Speech-LLM"
"""The run's system name of the first subject (the one whose mechanistic results sit in ``DIR/mech``)."""

REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
"""Expected outcomes of a subject on a claim: the claim holds for it, or it must not be judged to hold."""


@dataclass(frozen=True)
class Subject:
    """A model the findings judge every claim for, and what the verdicts should be where that is known.

    Attributes:
        name: Its system name in the run (``Speech-LLM``, ``Speech-LLM-C``, ...; a stand-in: the copied system).
        spec: A ``make_speech_llm`` spec; None for a stand-in that answers with another system's predictions.
        interface: What reaches its backbone (one line for the findings table).
        expected: ``((claim key, REPRODUCED | NOT_REPRODUCED, why), ...)`` where the answer is known by
            construction; other claims have no known answer.
        stand_in: The run's system whose answers the subject takes (``Cascade-W``: a cascade by definition);
            its claims are judged on a copy of those rows named as the speech LLM.
    """

    name: str
    spec: str | None
    interface: str
    expected: tuple[tuple[str, str, str], ...] = ()
    stand_in: str | None = None

    @property
    def slug(self) -> str:
        """Folder-safe name (``speech-llm-c``)."""
        return "".join(ch if ch.isalnum() else "-" for ch in self.name.lower())

    def expectation(self, key: str) -> tuple[str, str] | None:
        """(expected outcome, why) of claim ``key``; None when unknown."""
        for k, outcome, why in self.expected:
            if k == key:
                return outcome, why
        return None

    def to_dict(self) -> dict[str, object]:
        """Plain-data form."""
        return {
            "name": self.name,
            "spec": self.spec,
            "interface": self.interface,
            "expected": [list(e) for e in self.expected],
            "stand_in": self.stand_in,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Subject:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(d["name"]),
            None if d.get("spec") is None else str(d["spec"]),
            str(d.get("interface", "")),
            tuple((str(k), str(o), str(w)) for k, o, w in d.get("expected") or ()),  # type: ignore[attr-defined]
            None if d.get("stand_in") is None else str(d["stand_in"]),
        )


_TEXT_ONLY = (
    "d",
    NOT_REPRODUCED,
    "only words reach its backbone, so it cannot depart from a cascade by hearing emotion",
)
OFFLINE_SUBJECTS: tuple[Subject, ...] = (
    Subject(
        PRIMARY,
        "ultravox-native:bundled",
        "CTC: posterior-weighted embeddings of the tokens its CTC head reads (text by construction)",
        (_TEXT_ONLY,),
    ),
    Subject(
        "Speech-LLM-C",
        "ultravox-native:continuous",
        "continuous: stacked Whisper frames through a projector (the paper's Ultravox case; answer unknown)",
    ),
    Subject(
        "Speech-LLM-A",
        "ultravox-native:acoustic-control",
        "continuous, fine-tuned on the emotion labels of RAVDESS actors 1-16 (uses the voice by construction)",
        (("d", REPRODUCED, "trained to read emotion from the voice; evaluated on held-out actors 17-24"),),
    ),
    Subject(
        "Cascade-W",
        None,
        "a cascade (Whisper tiny.en -> the same backbone): text by definition",
        (
            ("b", REPRODUCED, "it shares Cascade-S's backbone and nothing with Cascade-M"),
            ("c", REPRODUCED, "same backbone as Cascade-S, so it shares its wrong answers"),
            _TEXT_ONLY,
        ),
        stand_in="Cascade-W",
    ),
)
"""The offline subjects judged by default: the CTC model, the continuous model, the acoustic control and a
cascade stand-in."""

EXTRA_SUBJECTS: tuple[Subject, ...] = (
    Subject(
        "Speech-LLM-L",
        "ultravox-native:listener",
        "CTC, unchanged, plus one soft word from a voice classifier fitted on the emotion labels of RAVDESS actors "
        "1-16 (hears the voice by construction; its words reach the backbone as in the CTC model)",
        (("d", REPRODUCED, "its voice classifier reads emotion; evaluated on held-out actors 17-24"),),
    ),
)
"""Offline subjects judged when named (``--subjects listener``): the listener built on the CTC model."""

SUBJECT_ALIASES = {
    "ctc": PRIMARY,
    "continuous": "Speech-LLM-C",
    "acoustic-control": "Speech-LLM-A",
    "listener": "Speech-LLM-L",
    "cascade-w": "Cascade-W",
}
"""Short names of ``OFFLINE_SUBJECTS`` and ``EXTRA_SUBJECTS`` (``casceq reproduce --subjects``)."""


def offline_subjects(names: Sequence[str]) -> tuple[Subject, ...]:
    """The offline subjects named (short names or system names), the CTC model always first.

    Raises:
        InputError: An unknown name.
    """
    everyone = (*OFFLINE_SUBJECTS[:-1], *EXTRA_SUBJECTS, OFFLINE_SUBJECTS[-1])  # the stand-in last
    by_name = {s.name: s for s in everyone}
    wanted = set()
    for name in names:
        full = SUBJECT_ALIASES.get(name.lower(), name)
        if full not in by_name:
            raise InputError(f"unknown subject {name!r}; subjects: {', '.join(SUBJECT_ALIASES)}")
        wanted.add(full)
    return tuple(s for s in everyone if s.name in wanted or s.name == PRIMARY)


def trained_on(task: str, subjects: Sequence[Subject]) -> bool:
    """Whether a native subject's weights list clips of ``task`` they were trained on (``training_ids.txt``).

    Such a plan evaluates only the task's held-out split (RAVDESS: actors 17-24); the run refuses trained-on
    clips in any case (``casceq.run.leakage``).
    """
    prefix = f"{task}:"
    for subject in subjects:
        if subject.spec and subject.spec.startswith("ultravox-native:"):
            folder = checkpoint_folder(subject.spec.split(":", 1)[1])
            if any(key.startswith(prefix) for key in training_ids(folder)):
                return True
    return False


COSTS: Mapping[str, float] = MappingProxyType(
    {
        # wall seconds per clip and condition of the five systems every plan runs (Cascade-S, Cascade-W, Cascade-M,
        # the CTC speech LLM, Text), measured alone with 2 torch threads on this 2-core machine (7 Dec 2026,
        # docs/results/powered: the gaps between the store's row times, mean of clean and babble at 0 dB; Text
        # answers once per clip, so its clean cost is spread over the two conditions). CommonsenseQA was not in
        # that run: SST-2's cost stands in for it (both are short prompts; November's constants had them equal).
        "ag_news": 1.445 + 1.072 + 0.443 + 1.289 + 0.087,
        "sst2": 0.972 + 0.637 + 0.181 + 0.447 + 0.032,
        "csqa": 0.972 + 0.637 + 0.181 + 0.447 + 0.032,
        "ravdess": 0.673 + 0.405 + 0.253 + 0.188 + 0.025,
    }
)
"""Measured behavioural cost per clip and condition, in seconds (used by ``estimate_minutes``)."""

SPEECH_COSTS: Mapping[str, float] = MappingProxyType(
    # each further speech-LLM subject (the continuous model, the acoustic control): the mean of the two, same run
    {"ag_news": 1.374, "sst2": 0.500, "csqa": 0.500, "ravdess": 0.244}
)
"""What each further speech-LLM subject adds per clip and condition (same measurement as ``COSTS``)."""

MECH_SECONDS_PER_UTTERANCE = 81.0
"""Mechanistic suite cost per ``mech_n`` utterance and speech-LLM subject, measured in the powered run (7 Dec 2026,
mech n 40, 2 threads): (273 s shared Whisper captures + 2,109 s CTC model + 3,816 s continuous model + 3,523 s
acoustic control) / (40 x 3) = 81 s, what ``measured_costs`` reads from that folder. The CTC model alone is
55 s per utterance, the continuous subjects about 90 (more audio positions; parts of them ran beside a
``make test``). Erasure is about half of it, the section 5.4 diagnostic a fifth."""

FIXED_SECONDS = 600.0
"""Model loading, synthesis, held-out calibration (the speech LLM's on 64 spoken clips per task) and the report
(estimated)."""


@dataclass(frozen=True)
class Models:
    """The model specs of the reproduction (defaults: the bundled offline weights).

    Attributes:
        asr_strong: ASR of Cascade-S (and Cascade-M) and of the implicit stage's explicit cascade.
        asr_weak: ASR of Cascade-W.
        llm: The shared backbone (Cascade-S, Cascade-W, text ceiling; the speech LLM's backbone).
        llm_other: The mismatched backbone (Cascade-M).
        speech_llm: The end-to-end model, a ``make_speech_llm`` spec.
        speech_backbone: Backbone id of the speech LLM (None: ``backbone_of(llm)``).
        whisper_control: The Whisper encoder captured as the probes' control model.
    """

    asr_strong: str = "faster-whisper:base"
    asr_weak: str = "faster-whisper:tiny.en"
    llm: str = "gemma-3-270m"
    llm_other: str = "smollm2-135m-instruct"
    speech_llm: str = "ultravox-native:bundled"
    speech_backbone: str | None = None
    whisper_control: str = "whisper:base"

    def backbone(self) -> str:
        """The speech LLM's backbone id (what matches it with Cascade-S)."""
        return self.speech_backbone or backbone_of(self.llm)


@dataclass(frozen=True)
class Plan:
    """Everything ``casceq reproduce`` does, as data (hashed: a resumed folder must hold the same plan).

    Attributes:
        n: Items per task (text tasks are spoken by each voice; RAVDESS has one clip per item).
        conditions: Audio conditions.
        voices: TTS voices of the text tasks.
        models: Model specs.
        few_shot: Shots per task of both LLM backbones (the measured defaults).
        mech: Whether to run the mechanistic suite.
        mech_n: Utterances per capture, items per implicit/erasure task.
        seed: Items, shots, noise and bootstrap seed.
        calibration_n: Held-out calibration items per task.
        bootstrap: Bootstrap resamples for the CIs.
        batch_size: Runner batch size.
        subjects: The models every claim is judged for (``OFFLINE_SUBJECTS``); empty: the one speech LLM
            ``models.speech_llm`` (named ``Speech-LLM``) with no known answers.
        splits: Source split per task (``{"ravdess": "test"}``: actors no subject was trained on).
    """

    n: Mapping[str, int]
    conditions: tuple[str, ...] = CONDITIONS
    voices: tuple[str, ...] = ()
    models: Models = field(default_factory=Models)
    few_shot: Mapping[str, int] = field(default_factory=dict)
    mech: bool = True
    mech_n: int = DEFAULT_MECH_N
    seed: int = 0
    calibration_n: int = 64
    bootstrap: int = 1000
    batch_size: int = 8
    subjects: tuple[Subject, ...] = ()
    splits: Mapping[str, str] = field(default_factory=dict)

    @property
    def all_subjects(self) -> tuple[Subject, ...]:
        """The subjects, the first always the run's ``Speech-LLM`` (``models.speech_llm``)."""
        return self.subjects or (Subject(PRIMARY, self.models.speech_llm, "the speech LLM under test"),)

    def suffix(self, subject: Subject) -> str:
        """The tail of a subject's stage names and mechanistic folder.

        ``""`` for the first subject (the names of a one-subject reproduction), else ``"-<slug>"``
        (``lens-speech-llm-c``, ``mech-speech-llm-c``).
        """
        return "" if subject.name == self.all_subjects[0].name else f"-{subject.slug}"

    @property
    def speech_subjects(self) -> tuple[Subject, ...]:
        """Subjects that are speech LLMs of the run (not stand-ins)."""
        return tuple(s for s in self.all_subjects if s.stand_in is None)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Tasks in table order (text-sufficient first)."""
        return tuple(t for t in (*TEXT_TASKS, *SPEECH_TASKS) if t in self.n)

    def to_dict(self) -> dict[str, object]:
        """Plain-data form (JSON)."""
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d.update(n=dict(self.n), few_shot=dict(self.few_shot), models=asdict(self.models))
        d["conditions"], d["voices"] = list(self.conditions), list(self.voices)
        # absent when empty: a one-subject plan hashes as before subjects existed (old folders resume)
        d.pop("subjects"), d.pop("splits")
        if self.subjects:
            d["subjects"] = [s.to_dict() for s in self.subjects]
        if self.splits:
            d["splits"] = dict(self.splits)
        return d

    def hash(self) -> str:
        """SHA-256 of the canonical JSON form."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def clips(self, task: str) -> int:
        """Clips of a task per condition (items x voices for text tasks)."""
        return self.n[task] * (len(self.voices) if task in TEXT_TASKS else 1)


def default_plan(
    n: int | None = None,
    n_ravdess: int | None = None,
    *,
    conditions: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    mech: bool = True,
    mech_n: int | None = None,
    models: Models | None = None,
    voices: Sequence[str] | None = None,
    subjects: Sequence[Subject] | None = None,
    n_task: Mapping[str, int] | None = None,
) -> Plan:
    """The reproduction plan with the measured defaults, optionally smaller (``--n``, dev flags).

    ``n_task`` sets the size of single tasks (``--n-task ag_news=200``): items of a text task, clips of RAVDESS.

    ``subjects``: the models judged (default: ``OFFLINE_SUBJECTS`` with the default models, else the one
    speech LLM of ``models``). The first must be the run's ``Speech-LLM`` with ``models.speech_llm``. With a
    subject trained on RAVDESS actors, RAVDESS is drawn from its held-out ``test`` actors for every system.

    Raises:
        InputError: Unknown tasks, sizes below the minimum, or a first subject that is not ``models.speech_llm``.
    """
    chosen = tuple(tasks) if tasks else (*TEXT_TASKS, *SPEECH_TASKS)
    unknown = [t for t in chosen if t not in (*TEXT_TASKS, *SPEECH_TASKS)]
    if unknown:
        raise InputError(f"unknown tasks {unknown}; the reproduction has {[*TEXT_TASKS, *SPEECH_TASKS]}")
    n_text = DEFAULT_N if n is None else n
    n_speech = DEFAULT_N_RAVDESS if n_ravdess is None else n_ravdess
    sizes = {t: n_speech if t in SPEECH_TASKS else n_text for t in chosen}
    stray = sorted(set(n_task or {}) - set(chosen))
    if stray:
        raise InputError(f"--n-task names tasks that are not in the plan: {stray} (tasks: {list(chosen)})")
    sizes.update(n_task or {})
    if any(v <= 0 for v in sizes.values()) or (mech_n is not None and mech_n < 5):
        raise InputError("--n and --n-ravdess must be positive and the mechanistic n at least 5")
    shots = default_backend_kwargs(chosen)["few_shot"]
    models = models or Models()
    chosen_subjects = tuple(OFFLINE_SUBJECTS if subjects is None and models == Models() else subjects or ())
    if chosen_subjects and (
        chosen_subjects[0].name != PRIMARY or chosen_subjects[0].spec != models.speech_llm
    ):
        raise InputError(
            f"the first subject must be {PRIMARY} = {models.speech_llm}, not {chosen_subjects[0]}"
        )
    names = [s.name for s in chosen_subjects]
    if len(set(names)) != len(names):
        raise InputError(f"subjects named twice: {names}")
    splits = {"ravdess": "test"} if "ravdess" in sizes and trained_on("ravdess", chosen_subjects) else {}
    return Plan(
        subjects=chosen_subjects,
        splits=splits,
        n=sizes,
        conditions=tuple(conditions or CONDITIONS),
        voices=tuple(voices or DEFAULT_VOICES[:N_VOICES]),
        models=models,
        few_shot=dict(shots),
        mech=mech,
        mech_n=DEFAULT_MECH_N if mech_n is None else mech_n,
    )


def plan_from_dict(data: Mapping[str, object]) -> Plan:
    """Inverse of ``Plan.to_dict`` (a reproduction folder's ``plan.json``); same hash."""
    d = dict(data)
    return Plan(
        n=dict(d["n"]),  # type: ignore[call-overload]
        conditions=tuple(d["conditions"]),  # type: ignore[arg-type]
        voices=tuple(d["voices"]),  # type: ignore[arg-type]
        models=Models(**d["models"]),  # type: ignore[arg-type]
        few_shot=dict(d.get("few_shot") or {}),  # type: ignore[call-overload]
        mech=bool(d["mech"]),
        mech_n=int(d["mech_n"]),  # type: ignore[call-overload]
        seed=int(d["seed"]),  # type: ignore[call-overload]
        calibration_n=int(d["calibration_n"]),  # type: ignore[call-overload]
        bootstrap=int(d["bootstrap"]),  # type: ignore[call-overload]
        batch_size=int(d["batch_size"]),  # type: ignore[call-overload]
        subjects=tuple(Subject.from_dict(s) for s in d.get("subjects") or ()),  # type: ignore[attr-defined]
        splits=dict(d.get("splits") or {}),  # type: ignore[call-overload]
    )


@dataclass(frozen=True)
class Costs:
    """Seconds per clip and condition of each task, per mechanistic utterance, and fixed; with their source.

    ``source`` is ``"constants"`` (``COSTS``, measured once and written down) or the ``timings.json`` they were
    read from (``measured_costs``).
    """

    per_clip: Mapping[str, float] = field(default_factory=lambda: dict(COSTS))
    mech_per_utterance: float = MECH_SECONDS_PER_UTTERANCE
    fixed: float = FIXED_SECONDS
    source: str = "constants"


MECH_STAGES = ("capture-", "probes-", "lens", "implicit", "erasure", "diagnostic")
"""Prefixes of the mechanistic stages in ``timings.json``."""


def measured_costs(folder: str | Path) -> Costs:
    """Costs read from a finished reproduction folder: its ``plan.json`` and ``timings.json``.

    The behavioural stage's wall seconds are spread over the tasks in the proportions of ``COSTS`` (the relative
    cost of a task's clip does not change with the machine; its absolute cost does; loading, synthesis and
    calibration are inside that stage's time, so the fixed cost is the report's); the mechanistic stages'
    seconds divided by ``mech_n`` give the cost per utterance. Stages that did not run (skipped, resumed with
    0 s) leave the constants in place, as does a behavioural stage that resumed rows of earlier starts (its
    seconds time only the rest). Loading costs are thus spread per clip: an estimate for a much smaller
    plan than the measured one is low.

    Raises:
        InputError: No plan or timings in the folder.
    """
    folder = Path(folder)
    try:
        plan_data = json.loads((folder / "plan.json").read_text())["plan"]
        timings = json.loads((folder / "timings.json").read_text())
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"no reproduction plan and timings here ({exc})", path=str(folder)) from exc
    plan = plan_from_dict(plan_data)
    stage = timings.get("behavioural", {})
    behaviour = float(stage.get("seconds", 0.0))
    # a stage resumed over rows of earlier starts timed only this start's rows: no measure of the plan's cost
    # (folders before the counts were recorded say so in the detail: "N rows written, M already done")
    done = stage.get("rows_done")
    if done is None:
        found = re.search(r"(\d+) already done", str(stage.get("detail", "")))
        done = int(found.group(1)) if found else 0
    if int(done) > 0:
        behaviour = 0.0
    per_clip = dict(COSTS)
    predicted = _behaviour_seconds(plan, Costs())
    if behaviour > 0 and predicted > 0:
        per_clip = {t: c * behaviour / predicted for t, c in COSTS.items()}
    mech = sum(float(v.get("seconds", 0.0)) for k, v in timings.items() if k.startswith(MECH_STAGES))
    per_utt = (
        mech / (plan.mech_n * len(plan.speech_subjects))
        if plan.mech and mech > 0
        else MECH_SECONDS_PER_UTTERANCE
    )
    # loading, synthesis and calibration happen inside the behavioural stage's wall time: only the report is extra
    fixed = float(timings.get("report", {}).get("seconds", 0.0)) if behaviour > 0 else FIXED_SECONDS
    return Costs(per_clip, per_utt, fixed, str(folder / "timings.json"))


def _behaviour_seconds(plan: Plan, costs: Costs) -> float:
    extra = len(plan.speech_subjects) - 1  # further speech LLMs answer every clip as Speech-LLM does
    return sum(
        plan.clips(t)
        * (costs.per_clip[t] + extra * SPEECH_COSTS[t] * costs.per_clip[t] / COSTS[t])
        * len(plan.conditions)
        for t in plan.tasks
    )


def estimate_minutes(plan: Plan, costs: Costs | None = None) -> dict[str, float]:
    """Expected wall minutes of the behavioural run, the mechanistic suite and the total.

    ``costs``: measured ones (``measured_costs``); default the ``COSTS`` constants.
    """
    costs = costs or Costs()
    behaviour = _behaviour_seconds(plan, costs)
    # each speech-LLM subject runs the suite (the Whisper control's share is counted once per subject: an overestimate)
    mech = costs.mech_per_utterance * plan.mech_n * len(plan.speech_subjects) if plan.mech else 0.0
    return {
        "behavioural": behaviour / 60,
        "mechanistic": mech / 60,
        "total": (behaviour + mech + costs.fixed) / 60,
    }


EXPERIMENT_TOML = "experiment.toml"
"""The behavioural experiment as a TOML file in the reproduction folder (``casceq run`` can re-run it)."""

EXPERIMENT_COMMENT = "casceq reproduce: the behavioural experiment (written by casceq.reproduce.plan)."
"""First line of the ``experiment.toml`` a reproduction folder holds."""


def experiment_config(plan: Plan) -> ExperimentConfig:
    """The behavioural experiment of the plan (what ``casceq run`` would read from ``experiment_toml``)."""
    m = plan.models
    shots = {"few_shot": dict(plan.few_shot)} if plan.few_shot else {}
    systems = [
        SystemSpec.cascade("Cascade-S", m.asr_strong, m.llm, settings=shots),
        SystemSpec.cascade("Cascade-W", m.asr_weak, m.llm, settings=shots),
        SystemSpec.cascade("Cascade-M", m.asr_strong, m.llm_other, settings=shots),
        SystemSpec.speech_llm("Speech-LLM", m.speech_llm, backbone=m.backbone()),
        *(
            SystemSpec.speech_llm(s.name, s.spec, backbone=m.backbone())
            for s in plan.speech_subjects[1:]
            if s.spec is not None
        ),
        SystemSpec.text("Text", m.llm, settings=shots),
    ]
    tasks: Mapping[str, int] | list[TaskSpec] = {t: plan.n[t] for t in plan.tasks}
    if plan.splits:
        tasks = [TaskSpec(t, plan.n[t], split=plan.splits.get(t)) for t in plan.tasks]
    return ExperimentConfig.build(
        "reproduce",
        systems,
        tasks,
        seed=plan.seed,
        batch_size=plan.batch_size,
        answer_mode="score",
        calibration="heldout",
        calibration_n=plan.calibration_n,
        bootstrap=plan.bootstrap,
        voices=tuple(plan.voices),
        conditions=tuple(plan.conditions),
    )


def experiment_toml(plan: Plan) -> str:
    """The behavioural experiment of the plan as a ``casceq run`` TOML config (the folder's ``experiment.toml``)."""
    return experiment_config(plan).to_toml(EXPERIMENT_COMMENT)


SHIPPED_SPEECH_LLMS = ("bundled", "continuous", "acoustic-control", "listener")
"""Names of the speech LLMs shipped as package data (``casceq.systems.speech_llm.shipped.SHIPPED``)."""


def check_offline(models: Models, subjects: Sequence[Subject] = ()) -> None:
    """Refuse any spec that is neither bundled weights nor a local path (a hub id would need the network).

    ``subjects``: the plan's subjects, whose speech LLM specs are checked too.

    Raises:
        InputError: Naming the spec and what ``--offline`` accepts.
    """

    def local(target: str) -> bool:
        return Path(target).expanduser().exists()

    checks = [
        (models.asr_strong, ASR_BUNDLED, ("faster-whisper", "hf-whisper")),
        (models.asr_weak, ASR_BUNDLED, ("faster-whisper", "hf-whisper")),
        (models.whisper_control, ASR_BUNDLED, ("whisper",)),
        (models.llm, LLM_BUNDLED, ("hf", "gguf", "bundled", "")),
        (models.llm_other, LLM_BUNDLED, ("hf", "gguf", "bundled", "")),
        (models.speech_llm, SHIPPED_SPEECH_LLMS, ("ultravox-native",)),
        *((s.spec, SHIPPED_SPEECH_LLMS, ("ultravox-native",)) for s in subjects if s.spec is not None),
    ]
    for spec, bundled, kinds in checks:
        kind, sep, target = spec.partition(":")
        if not sep:
            kind, target = "", spec
        if kind in kinds and (target in bundled or local(target)):
            continue
        raise InputError(
            f"--offline: {spec!r} is neither bundled weights nor a local folder (a hub id needs the network); "
            f"offline specs: {', '.join(f'{k}:{b}' for k in kinds if k for b in bundled) or ', '.join(bundled)}"
        )


def with_models(plan: Plan, models: Models) -> Plan:
    """The same plan on other models (tests use tiny stand-ins)."""
    return replace(plan, models=models)
