"""The one context the mechanistic stages share: models, items, transcripts, calibration offsets, provenance.

A :class:`StageContext` is built from a frozen :class:`ContextConfig` and loads everything lazily, once: the
same model spec asked for by two stages is loaded once (``casceq reproduce`` shares one speech LLM between the
capture, lens, implicit and erasure stages). It owns

- **model loading** (:meth:`StageContext.model`, :meth:`StageContext.speech_llm`, :meth:`StageContext.text_llm`):
  ``whisper:NAME|DIR`` (a Whisper model and its feature extractor), ``FAMILY:PATH`` speech LLMs (the back ends of
  ``casceq.systems.speech_llm``, whose layers ``casceq.mech.adapters.layout_of`` finds) and text LLMs;
- **items** (:meth:`StageContext.items`): a JSONL file, or a task's seeded examples spoken by TTS voices (or
  their own recordings), checked against the speech LLM's training text and the run's calibration items;
- **transcripts** (:meth:`StageContext.transcripts`) of the explicit cascade: gold text, a run's stored ASR
  transcripts, or an ASR model;
- **calibration offsets** of a finished ``casceq run`` folder, with its seed (another seed is refused: it could
  evaluate the items the offsets were fitted on) and its systems as the run builds them;
- **provenance** (:func:`provenance`): the command line, commit, machine and library versions of result files.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casceq.audio.io import load_audio
from casceq.errors import InputError
from casceq.io.interchange import read_predictions
from casceq.run.build import build_system
from casceq.run.calibrate import check_not_fitted, run_offsets
from casceq.run.config import load_run_config
from casceq.run.items import natural_items, spoken_items
from casceq.run.leakage import check_not_trained_on
from casceq.systems.asr import make_asr
from casceq.systems.asr.bundled import BUNDLED
from casceq.systems.asr.convert import converted_whisper
from casceq.systems.llm import make_llm
from casceq.systems.llm.bundled import resolve_llm
from casceq.systems.speech_llm.registry import SPEECH_LLM_FAMILIES, SpeechLLMSpec, make_speech_llm
from casceq.tasks import get_task, load_examples, sample_rank
from casceq.types import AudioRef, Example

SAMPLE_RATE = 16_000
"""Waveforms of the items are resampled to 16 kHz (every supported speech model's rate)."""


@dataclass(frozen=True)
class ItemsConfig:
    """Where a stage's evaluated items come from.

    Attributes:
        file: JSONL items (``id``, ``audio``, ``label``[, ``text``, ``choices``]) of one task; else the task's
            examples are drawn.
        voices: TTS voices speaking the drawn examples.
        audio_dir: Folder of the synthesised audio.
        n: Examples per task.
        seed: Ranking seed (None: 0, or the calibration run's).
        data_dir: Datasets root (None: ``casceq.paths.datasets_dir()``).
        per_task_audio: Synthesise into ``audio_dir/<task>`` (``casceq reproduce``) instead of ``audio_dir``.
        natural_audio: Tasks whose examples carry recordings use them instead of TTS (``casceq reproduce``).
        splits: ``((task, split), ...)``: the source split of a task (default: the task's default split).
    """

    file: str | None = None
    voices: tuple[str, ...] = ()
    audio_dir: str | None = None
    n: int = 50
    seed: int | None = None
    data_dir: str | None = None
    per_task_audio: bool = False
    natural_audio: bool = False
    splits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ContextConfig:
    """What a :class:`StageContext` loads.

    Attributes:
        model: The speech LLM (or captured model, or lens text LLM) spec.
        dtype: Weights dtype of local models (``"auto"``, ``"float32"``, ``"bfloat16"``).
        backbone: Backbone id of the speech LLM (None: the registry's).
        speech_options: Extra constructor options of the speech LLM (e.g. a run's few-shot seed).
        run_dir: A finished ``casceq run`` folder whose calibration offsets the answers take.
        run_required: The run folder must exist (the commands' ``--calibration``): its seed is enforced and the
            speech LLM is its system's. False in ``casceq reproduce``, whose run is made by an earlier stage: a
            missing run then means no offsets.
        speech_system: The run's speech-LLM system (None: the one on ``model``).
        items: Where the evaluated items come from.
        asr: ASR spec of the explicit cascade's transcripts, or ``"reference"`` (the gold text).
        transcript_system: Take the transcripts this run system stored (clean condition) where it has them.
    """

    model: str
    dtype: str = "auto"
    backbone: str | None = None
    speech_options: Mapping[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    run_required: bool = True
    speech_system: str | None = None
    items: ItemsConfig = field(default_factory=ItemsConfig)
    asr: str = "reference"
    transcript_system: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model: the object stages run (a transformers model or a speech-LLM back end) and its helpers."""

    obj: Any
    tokenizer: Any = None
    feature_extractor: Any = None


class StageContext:
    """Lazily loaded models, items, transcripts and offsets of one :class:`ContextConfig` (see module doc)."""

    def __init__(self, config: ContextConfig) -> None:
        """Hold ``config``; nothing is loaded until asked for."""
        self.config = config
        self._models: dict[str, LoadedModel] = {}
        self._items: dict[tuple[str, frozenset[str]], tuple[list[Example], list[Any]]] = {}
        self._run_config: Any = None
        self._speech_calibration: tuple[Any, dict[str, Any]] | None = None
        self._offsets: dict[str, dict[str, Any]] | None = None

    # -- calibration ------------------------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path | None:
        """The calibration run folder, if any."""
        return Path(self.config.run_dir) if self.config.run_dir else None

    def _run_exists(self) -> bool:
        return self.run_dir is not None and (
            self.config.run_required or (self.run_dir / "config.json").is_file()
        )

    def run_config(self) -> Any:
        """The calibration run's ``ExperimentConfig`` (read once).

        Raises:
            InputError: No run folder given, or not a run folder.
        """
        if self.run_dir is None:
            raise InputError("no calibration run folder given")
        if self._run_config is None:
            self._run_config = load_run_config(self.run_dir)
        return self._run_config

    @property
    def seed(self) -> int:
        """The items' seed: the calibration run's (another one is refused), else the given one or 0.

        Raises:
            InputError: A seed other than the required run's: its calibration items could be evaluated.
        """
        seed = self.config.items.seed
        if self.run_dir is None or not self.config.run_required:
            return 0 if seed is None else seed
        cfg = self.run_config()
        # The run's split: its seed put the evaluated items at the start of the ranking and the calibration
        # items at its far end. Another seed draws other items, some of them ones the offsets were fitted on.
        if seed is not None and seed != cfg.seed:
            raise InputError(
                f"--seed {seed} differs from the run's seed {cfg.seed}: its calibration items could be evaluated; "
                "leave --seed out to take the run's",
                path=str(self.run_dir),
            )
        return int(cfg.seed)

    def speech_calibration(self) -> tuple[Any, dict[str, Any]]:
        """The required run's speech-LLM system (back ends built lazily) and its offsets per task ({} without a run).

        The system is the run's speech LLM on ``model`` (or ``speech_system``), built as the run builds it (its
        settings and seed: a matched prompt draws the same shots). Call it before loading anything: it checks
        the configuration.

        Raises:
            InputError: ``speech_system`` without a run, another seed than the run's, no such system or no unique
                system on ``model``, or a system without a fit (names given).
        """
        cfg = self.config
        if self.run_dir is None and cfg.speech_system:
            raise InputError("--speech-system needs --calibration RUN_DIR")
        if self.run_dir is None or not cfg.run_required:
            return None, {}
        if self._speech_calibration is None:
            run = self.run_config()
            _ = self.seed  # refuses another seed before any model is loaded
            speech = [s for s in run.systems if s.kind == "speech_llm"]
            if cfg.speech_system:
                chosen = [s for s in speech if s.name == cfg.speech_system]
            else:
                chosen = [s for s in speech if s.model == cfg.model]
            if len(chosen) != 1:
                raise InputError(
                    f"pick one speech-LLM system with --speech-system; the run has "
                    f"{[(s.name, s.model) for s in speech]} (--model {cfg.model})",
                    path=str(self.run_dir),
                )
            self._speech_calibration = self._calibrated_system(chosen[0])
        return self._speech_calibration

    def _calibrated_system(self, spec: Any) -> tuple[Any, dict[str, Any]]:
        """The run's system of ``spec`` (back ends built lazily) and its offsets per task.

        Raises:
            InputError: The run holds no calibration of that system.
        """
        found = run_offsets(str(self.run_dir)).get(spec.name)
        if not found:
            raise InputError(f"the run holds no calibration of {spec.name!r}", path=str(self.run_dir))
        return build_system(spec, self.run_config()), found

    def cascade(self, name: str) -> tuple[Any, dict[str, Any]]:
        """The required run's cascade or text system ``name``: its LLM (its settings) and its offsets per task.

        Raises:
            InputError: No run given, or no such cascade or text system (the run's are named).
        """
        if self.run_dir is None or not self.config.run_required:
            raise InputError("--cascade names a system of --calibration RUN_DIR: give both")
        run = self.run_config()
        specs = [s for s in run.systems if s.name == name and s.kind in ("cascade", "text")]
        if not specs:
            names = [s.name for s in run.systems if s.kind in ("cascade", "text")]
            raise InputError(
                f"no cascade or text system {name!r}; the run has {names}", path=str(self.run_dir)
            )
        system, found = self._calibrated_system(specs[0])
        return system.backend("llm"), found

    def speech_offsets(self) -> dict[str, Any]:
        """The speech LLM's offsets per task: its required run system's, else ``speech_system``'s if the run has them.

        Raises:
            InputError: See :meth:`speech_calibration`.
        """
        system, found = self.speech_calibration()
        if system is not None:
            return found
        return self.offsets(self.config.speech_system) if self.config.speech_system else {}

    def offsets(self, system: str) -> dict[str, Any]:
        """The run's calibration offsets of ``system`` per task ({} without a run folder or a fit).

        Read once per context: the stages run after the behavioural run, which no longer changes them.
        """
        if self._offsets is None:
            self._offsets = run_offsets(str(self.run_dir)) if self._run_exists() else {}
        return self._offsets.get(system, {})

    # -- models -----------------------------------------------------------------------------------------------

    def model(self, spec: str | None = None, *, text_llm_ok: bool = True) -> LoadedModel:
        """Load ``spec`` (default: the config's model) once.

        ``whisper:NAME|DIR``: a Whisper model (bundled names and CTranslate2 folders converted to PyTorch once)
        and its feature extractor. ``FAMILY:PATH`` of a speech-LLM family: the back end (the config's model:
        :meth:`speech_llm`). Anything else: a text LLM (``casceq.systems.llm.bundled.resolve_llm`` specs) and its
        tokenizer, or with ``text_llm_ok=False`` a speech LLM of that family (an unknown family is an error).

        Raises:
            InputError: A malformed spec, or a folder that is not a model (named).
        """
        spec = spec or self.config.model
        if spec not in self._models:
            family, sep, target = spec.partition(":")
            if sep and family == "whisper" and target:
                self._models[spec] = _load_whisper(target)
            elif sep and (family in SPEECH_LLM_FAMILIES or not text_llm_ok):
                if not target:
                    raise InputError(f"model spec {spec!r} is not 'whisper:NAME|DIR' or 'FAMILY:PATH'")
                backend = self._load_speech(spec)
                self._models[spec] = LoadedModel(backend, getattr(backend, "tokenizer", None))
            elif not text_llm_ok:
                raise InputError(f"model spec {spec!r} is not 'whisper:NAME|DIR' or 'FAMILY:PATH'")
            else:
                self._models[spec] = _load_text_lm(spec, self.config.dtype)
        return self._models[spec]

    def speech_llm(self) -> Any:
        """The config's speech LLM: the required run's system's back end, else loaded by :meth:`model`."""
        return self.model().obj

    def _load_speech(self, spec: str) -> Any:
        if spec == self.config.model:
            system, _ = self.speech_calibration()
            if system is not None:
                return system.backend("speech")
            cfg = self.config
            parsed = SpeechLLMSpec.parse(
                spec, dtype=cfg.dtype, backbone=cfg.backbone, options=dict(cfg.speech_options)
            )
        else:
            parsed = SpeechLLMSpec.parse(spec)
        return make_speech_llm(parsed)

    def text_llm(self, spec: str, settings: Mapping[str, Any] | None = None) -> Any:
        """A text LLM back end (``casceq.systems.llm.make_llm``) with ``settings``, built as a run builds it."""
        return make_llm(spec, **dict(settings or {}))

    # -- items and transcripts --------------------------------------------------------------------------------

    def items(self, task: str, exclude: frozenset[str] = frozenset()) -> tuple[list[Example], list[Any]]:
        """The evaluated items of a task: (examples with audio, 16 kHz waveforms), loaded once.

        ``exclude``: items (ids before "@") to skip, taking the next ones of the seeded ranking instead (the
        erasure stage evaluates on items its erasers were not fitted on). Checked against the speech LLM's
        training text and the calibration run's fitting items (an overlap is a ``LeakageError``).

        Raises:
            InputError: An unreadable items file (file and line named), no voices or audio folder, an item
                without audio.
            LeakageError: Items the speech LLM or the run's offsets were fitted on.
        """
        key = (task, exclude)
        if key not in self._items:
            self._items[key] = self._load_items(task, exclude)
        return self._items[key]

    def _load_items(self, task: str, exclude: frozenset[str]) -> tuple[list[Example], list[Any]]:
        cfg = self.config.items
        if cfg.file:
            examples = read_items(cfg.file, get_task(task))
            self._check_leakage(task, examples)
        else:
            if not cfg.voices or not cfg.audio_dir:
                raise InputError("give --items, or --voice and --audio-dir to speak the task's examples")
            seed = self.seed
            split = dict(cfg.splits).get(task)
            pool = load_examples(  # file order
                task, n=cfg.n + len(exclude), seed=seed, split=split, data_dir=cfg.data_dir
            )
            base = pool
            if exclude:
                ranked = sorted(pool, key=lambda ex: sample_rank(ex.id, seed))
                keep = {ex.id for ex in [ex for ex in ranked if ex.id not in exclude][: cfg.n]}
                base = [ex for ex in pool if ex.id in keep]
            self._check_leakage(task, base)
            if cfg.natural_audio and base and base[0].audio is not None:
                found = natural_items(base)
            else:
                folder = Path(cfg.audio_dir) / task if cfg.per_task_audio else Path(cfg.audio_dir)
                found = spoken_items(base, list(cfg.voices), folder)
            examples = [it.example for it in found]
        audios = []
        for ex in examples:
            if ex.audio is None:
                raise InputError(f"item {ex.id} has no audio")
            audios.append(load_audio(ex.audio.path, SAMPLE_RATE))
        return examples, audios

    def _check_leakage(self, task: str, examples: Sequence[Example]) -> None:
        check_not_trained_on(self.config.model, examples)
        if self._run_exists():
            check_not_fitted(str(self.run_dir), task, [ex.id for ex in examples])

    def transcripts(self, task: str, examples: Sequence[Example], audios: Sequence[Any]) -> list[str]:
        """Transcripts of the explicit cascade (the gold text with ``asr="reference"``).

        Else the run system's stored clean transcripts of these clips (``transcript_system``), with the missing
        ones transcribed by ``asr``.
        """
        cfg = self.config
        if cfg.asr == "reference":
            return [ex.text for ex in examples]
        found: dict[str, str] = {}
        predictions = self.run_dir / "predictions.jsonl" if self.run_dir else None
        if cfg.transcript_system and predictions is not None and predictions.is_file():
            for p in read_predictions([predictions]):
                if (
                    p.system == cfg.transcript_system
                    and p.task == task
                    and p.condition == "clean"
                    and p.transcript
                ):
                    found[p.example_id] = p.transcript
        missing = [i for i, ex in enumerate(examples) if ex.id not in found]
        if missing:
            asr = make_asr(cfg.asr)
            for i, t in zip(missing, asr.transcribe([audios[i] for i in missing]), strict=True):
                found[examples[i].id] = t.text
        return [found[ex.id] for ex in examples]


def read_items(path: str, task: Any) -> list[Example]:
    """Examples with audio from a JSONL file (errors name the file and line)."""
    file = Path(path)
    if not file.is_file():
        raise InputError("items file not found", path=path)
    out = []
    for no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio = Path(row["audio"])
            audio = audio if audio.is_absolute() else file.parent / audio
            ex = Example(
                str(row["id"]),
                task.name,
                str(row.get("text", "")),
                str(row["label"]),
                tuple(row.get("choices", ())),
                AudioRef(str(audio)),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"bad item ({exc!r}); need id, audio, label", path=path, line=no) from exc
        if task.labels and ex.label not in task.labels:
            raise InputError(f"label {ex.label!r} is not one of {list(task.labels)}", path=path, line=no)
        out.append(ex)
    if not out:
        raise InputError("no items", path=path)
    return out


def _load_whisper(target: str) -> LoadedModel:
    """A Whisper model (bundled name, CTranslate2 or transformers folder) and its feature extractor."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    folder = Path(target)
    if target in BUNDLED or (folder / "model.bin").is_file():
        folder = converted_whisper(target)
    elif not (folder / "config.json").is_file():
        raise InputError("not a Whisper folder (no config.json or model.bin)", path=target)
    model = WhisperForConditionalGeneration.from_pretrained(str(folder)).eval()
    return LoadedModel(model, None, WhisperFeatureExtractor.from_pretrained(str(folder)))


def _load_text_lm(spec: str, dtype: str) -> LoadedModel:
    """A transformers causal LM of a text LLM spec (``resolve_llm``: bundled names, folders, ``.gguf``, hub ids)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = resolve_llm(spec)
    torch_dtype = getattr(torch, "float32" if dtype == "auto" else dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).eval()
    return LoadedModel(model, AutoTokenizer.from_pretrained(path))


def provenance(argv: Sequence[str]) -> dict[str, Any]:
    """Collect the command line, git commit of the checkout (if any), machine and library versions, for result files."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    import torch
    import transformers

    return {
        "command": " ".join(argv),
        "commit": commit,
        "machine": f"{platform.machine()} {_cpu_model()}".strip(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo ('' if none): platform.processor() is empty on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
