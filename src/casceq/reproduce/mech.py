"""The mechanistic stages of ``casceq reproduce``: captures, probes, logit lens (+ control), implicit cascade, erasure.

Each stage calls the library functions the ``casceq capture|probe|lens|implicit|erase`` commands call, on one
speech-LLM backend loaded once (``MechContext.backend``), and writes where those commands write, under
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

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.reproduce.plan import Plan

LENS_CONTROL_FILE = "lens_control.json"
"""The lens scored against other utterances' transcripts (the chance level of lens precision)."""

ERASE_CONCEPTS = ("text", "acoustic", "random")
"""Erasure conditions: the text concept and its two controls."""

CAPTURE_DTYPE = "float32"
"""Storage dtype of captures: Gemma 3's residual stream exceeds the float16 range on real clips (seen here)."""

IMPLICIT_TASKS = ("sst2", "ag_news")
ERASE_TASKS = ("sst2", "ag_news")
ERASE_RANDOM_DRAWS = 5
"""Draws of the random-subspace control of the erasure stage (their spread is on the findings page)."""


@dataclass
class MechContext:
    """What the mechanistic stages share: the plan, the folders and the lazily loaded models."""

    plan: Plan
    out: Path
    run_dir: Path
    _backend: Any = None
    _items: dict[tuple[str, frozenset[str]], tuple[list[Any], list[Any]]] = field(default_factory=dict)
    _offsets: dict[str, dict[str, Any]] | None = None

    @property
    def mech_dir(self) -> Path:
        """``DIR/mech``."""
        return self.out / "mech"

    def backend(self) -> Any:
        """The speech LLM (loaded on first use, then shared by every stage)."""
        if self._backend is None:
            from casceq.run.build import run_settings
            from casceq.systems.speech_llm.registry import SpeechLLMSpec, make_speech_llm

            m = self.plan.models
            opts = run_settings(m.speech_llm, {}, self.plan.seed)  # the run's Speech-LLM: same shots
            self._backend = make_speech_llm(
                SpeechLLMSpec.parse(m.speech_llm, backbone=m.backbone(), options=opts)
            )
        return self._backend

    def text_llm(self) -> Any:
        """The backbone as the run's Cascade-S loads it (same few-shot prompt and shots), for the implicit stage."""
        from casceq.run.build import run_settings
        from casceq.systems.llm import make_llm

        settings = {"few_shot": dict(self.plan.few_shot)} if self.plan.few_shot else {}
        return make_llm(self.plan.models.llm, **run_settings(None, settings, self.plan.seed))

    def offsets(self, system: str) -> dict[str, Any]:
        """The behavioural run's calibration offsets of ``system`` per task ({} before the run exists).

        Read once per context: the stages run after the behavioural run, which no longer changes them.
        """
        from casceq.run.calibrate import run_offsets

        if self._offsets is None:
            found = (self.run_dir / "config.json").is_file()
            self._offsets = run_offsets(self.run_dir) if found else {}
        return self._offsets.get(system, {})

    def items(self, task: str, exclude: frozenset[str] = frozenset()) -> tuple[list[Any], list[Any]]:
        """The mechanistic items of a task: (examples with audio, 16 kHz waveforms).

        ``exclude``: items (ids before "@") to skip, taking the next ones of the seeded ranking instead (the
        erasure stage evaluates on items its erasers were not fitted on). Checked at run time against the
        behavioural run's calibration items (an overlap is an error).
        """
        key = (task, exclude)
        if key not in self._items:
            from casceq.audio.io import load_audio
            from casceq.run.items import natural_items, spoken_items
            from casceq.tasks import load_examples, sample_rank

            n, seed = self.plan.mech_n, self.plan.seed
            pool = load_examples(task, n=n + len(exclude), seed=seed)  # file order
            ranked = sorted(pool, key=lambda ex: sample_rank(ex.id, seed))
            keep_ids = {ex.id for ex in [ex for ex in ranked if ex.id not in exclude][:n]}
            base = [ex for ex in pool if ex.id in keep_ids]
            from casceq.run.leakage import check_not_trained_on

            check_not_trained_on(self.plan.models.speech_llm, base)
            if (self.run_dir / "config.json").is_file():
                from casceq.run.calibrate import check_not_fitted

                check_not_fitted(self.run_dir, task, [ex.id for ex in base])
            if base and base[0].audio is not None:
                items = natural_items(base)
            else:
                voice = self.plan.voices[:1]
                items = spoken_items(base, voice, self.mech_dir / "audio" / task)
            examples = [it.example for it in items]
            audios = [load_audio(it.audio.path, 16000) for it in items if it.audio is not None]
            self._items[key] = (examples, audios)
        return self._items[key]


def capture_stage(ctx: MechContext, model: str, task: str, out: Path) -> None:
    """Capture ``model`` (the speech LLM spec or ``whisper:...``) on a task's items into ``out``; resumable."""
    import importlib.util

    from casceq.mech.capture import Utterance, capture
    from casceq.mech.shards import META_FILE, PARTIAL_META_FILE, CaptureReader

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
    if model == ctx.plan.models.speech_llm:
        obj, fe = ctx.backend(), None
    else:
        from casceq.commands.capture import load_model

        obj, fe = load_model(model, None)
    capture(
        obj,
        todo,
        str(out),
        model=model,
        dtype=CAPTURE_DTYPE,
        pitch=importlib.util.find_spec("parselmouth") is not None,
        feature_extractor=fe,
        extra={"command": f"casceq reproduce (capture {model} on {task})", "seed": ctx.plan.seed},
        first_shard=first,
    )


def capture_complete(ctx: MechContext, out: Path, task: str) -> bool:
    """Whether a capture folder holds every planned utterance of the task."""
    from casceq.mech.shards import META_FILE, CaptureReader

    if not (out / META_FILE).is_file():
        return False
    return len(CaptureReader(out).utterances) >= len(ctx.items(task)[0])


def _scalar(v: Any) -> bool:
    return isinstance(v, str | int | float) and not isinstance(v, bool)


def probe_stage(capture_dir: Path, out: Path, split_by: str, seed: int) -> None:
    """Run every probe on a capture; writes ``probes.json``, ``table.md`` (and the figure when possible)."""
    from casceq.errors import MissingDependency
    from casceq.mech.probes import run_probes
    from casceq.mech.probes_report import probe_figure, probe_table

    results = run_probes(capture_dir, seed=seed, split_by=split_by)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(probe_table(results), encoding="utf-8")
    with contextlib.suppress(MissingDependency):  # the numbers matter; the figure is optional
        probe_figure(results, out / "figure")
    _atomic_text(out / "probes.json", results.to_json())


def lens_stage(ctx: MechContext, capture_dir: Path, out: Path) -> None:
    """Logit lens over the speech LLM's capture, and the same lens scored against deranged transcripts."""
    import dataclasses

    from casceq.mech.lens import lens_capture

    backend = ctx.backend()
    result = lens_capture(backend, backend.tokenizer, capture_dir)
    shadow = out / "control-capture"
    deranged_capture(capture_dir, shadow)
    control = lens_capture(backend, backend.tokenizer, shadow)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "kind": "lens-control",
        "what": "lens precision against the transcript of the next utterance (a derangement): chance level",
        "layers": [dataclasses.asdict(r) for r in control.layers],
    }
    _atomic_text(out / LENS_CONTROL_FILE, json.dumps(data, indent=1))
    result.write(out)


def deranged_capture(src: Path, dst: Path) -> None:
    """A view of capture ``src`` in ``dst`` whose utterance i carries the transcript of utterance i + 1.

    States and frames are symbolic links (nothing is copied); only the records are rewritten.
    """
    from casceq.mech.shards import META_FILE, CaptureReader

    reader = CaptureReader(src)
    recs = reader.utterances
    if len(recs) < 2:
        raise InputError("the lens control needs at least 2 utterances", path=str(src))
    shifted = {r.id: recs[(i + 1) % len(recs)].transcript for i, r in enumerate(recs)}
    dst.mkdir(parents=True, exist_ok=True)
    for path in [src / META_FILE, *src.glob("shard-*.npy")]:
        link = dst / path.name
        if not link.exists():
            os.symlink(path.resolve(), link)
    for number, shard in reader.shards:
        lines = [
            json.dumps({**dataclasses_asdict(r), "transcript": shifted[r.id]}, ensure_ascii=False)
            for r in shard
        ]
        (dst / f"shard-{number:05d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def dataclasses_asdict(rec: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict (its ``meta`` mapping as a plain dict)."""
    import dataclasses

    d = dataclasses.asdict(rec)
    d["meta"] = dict(rec.meta)
    return d


def run_transcripts(ctx: MechContext, task: str, examples: list[Any], audios: list[Any]) -> list[str]:
    """Cascade-S transcripts of the clips (clean) from the behavioural run; missing ones transcribed now."""
    found: dict[str, str] = {}
    if (ctx.run_dir / "predictions.jsonl").is_file():
        from casceq.io.interchange import read_predictions

        for p in read_predictions([ctx.run_dir / "predictions.jsonl"]):
            if p.system == "Cascade-S" and p.task == task and p.condition == "clean" and p.transcript:
                found[p.example_id] = p.transcript
    missing = [i for i, ex in enumerate(examples) if ex.id not in found]
    if missing:
        from casceq.systems.asr import make_asr

        asr = make_asr(ctx.plan.models.asr_strong)
        for i, t in zip(missing, asr.transcribe([audios[i] for i in missing]), strict=True):
            found[examples[i].id] = t.text
    return [found[ex.id] for ex in examples]


def implicit_stage(ctx: MechContext, out: Path, provenance: dict[str, Any]) -> None:
    """The implicit cascade on the text tasks of ``IMPLICIT_TASKS`` present in the plan."""
    from casceq.mech.implicit import implicit_cascade, write_results
    from casceq.tasks import get_task

    backend = ctx.backend()
    # The text copy of the backbone: the same weights loaded as a text LLM, as Cascade-S loads them (its few-shot
    # prompt), so the explicit cascade here is Cascade-S. SpeechBackboneLLM computes full-vocabulary logits at
    # every position (Gemma: 262k), which measured ~24 s per item here; HFCausalLM unembeds only the labels.
    llm = ctx.text_llm()
    # The run's decision rule: its held-out calibration of the speech LLM and of Cascade-S (raw argmax of a
    # tiny backbone is one label for nearly everything, which leaves kappa undefined).
    speech_off, text_off = ctx.offsets("Speech-LLM"), ctx.offsets("Cascade-S")
    results = []
    for name in [t for t in IMPLICIT_TASKS if t in ctx.plan.n]:
        examples, audios = ctx.items(name)
        transcripts = run_transcripts(ctx, name, examples, audios)
        results.append(
            implicit_cascade(
                backend,
                llm,
                get_task(name),
                examples,
                audios,
                transcripts,
                model=ctx.plan.models.speech_llm,
                asr=ctx.plan.models.asr_strong,
                speech_offsets=speech_off.get(name),
                text_offsets=text_off.get(name),
            )
        )
    write_results(out, results, provenance)


def erasure_stage(ctx: MechContext, fit_capture: Path, out: Path, provenance: dict[str, Any]) -> None:
    """LEACE erasure fitted on the speech LLM's SST-2 capture; answered on ``ERASE_TASKS`` of the plan."""
    import dataclasses

    from casceq.audio.io import load_audio
    from casceq.mech.erasure import FitClip, run_erasure
    from casceq.mech.shards import CaptureReader
    from casceq.tasks import get_task

    reader = CaptureReader(fit_capture)
    clips = [FitClip(r.id, load_audio(r.audio, 16000), r.transcript) for r in reader.utterances]
    fitted = frozenset(c.id.split("@")[0] for c in clips)
    evaluations = []
    for name in [t for t in ERASE_TASKS if t in ctx.plan.n]:
        examples, audios = ctx.items(name, fitted)  # never the utterances the erasers were fitted on
        evaluations.append((get_task(name), examples, audios))
    result = run_erasure(
        ctx.backend(),
        clips,
        evaluations,
        layers=reader.meta.layers,
        concepts=list(ERASE_CONCEPTS),
        seed=ctx.plan.seed,
        model=ctx.plan.models.speech_llm,
        offsets=ctx.offsets("Speech-LLM"),  # the run's decision rule, in every condition
        n_random=ERASE_RANDOM_DRAWS,
    )
    dataclasses.replace(result, extra=provenance).write(out)


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
