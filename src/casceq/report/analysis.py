"""Numbers the report derives from ``compare()`` and the rows: error attribution, noise reversals, cost, gaps.

Nothing here re-implements a statistic of ``casceq.stats``: accuracy, kappa, overlap and the confound come from
:func:`casceq.stats.compare.compare`; this module only joins them with texts, transcripts, timings and audio
durations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from casceq.audio.conditions import SOURCES, parse_condition
from casceq.report.data import Key, ReportData
from casceq.report.wer import transcript_right, wer
from casceq.stats.results import CompareResult
from casceq.types import CLEAN, Prediction


@dataclass(frozen=True)
class SharedError:
    """One example both systems of a pair got wrong, with the cascade's transcript and its WER."""

    task: str
    condition: str
    example_id: str
    text: str | None
    gold: str
    label_a: str
    label_b: str
    output_a: str
    output_b: str
    transcript: str | None
    wer: float | None
    transcript_right: bool | None


@dataclass(frozen=True)
class Attribution:
    """Shared errors of a (non-cascade, cascade) pair on one task and condition, split by transcript WER.

    ``asr`` counts shared errors whose cascade transcript is wrong (WER > 0 after normalisation), ``llm`` those
    whose transcript is right, ``unknown`` those without example text or transcript.
    """

    a: str
    b: str
    cascade: str
    task: str
    condition: str
    n: int
    asr: int
    llm: int
    unknown: int
    examples: tuple[SharedError, ...]

    @property
    def shared(self) -> int:
        """Number of shared errors (both systems wrong)."""
        return len(self.examples)


def prediction_index(preds: Sequence[Prediction]) -> dict[Key, Prediction]:
    """Rows by (system, task, condition, example_id)."""
    return {(p.system, p.task, p.condition, p.example_id): p for p in preds}


def attributions(data: ReportData, result: CompareResult) -> list[Attribution]:
    """Shared errors of every compared pair with exactly one cascade, per task and condition."""
    index = prediction_index(data.predictions)
    out: list[Attribution] = []
    for pr in result.pairs:
        cascades = [s for s in (pr.a, pr.b) if data.kinds.get(s) == "cascade"]
        if len(cascades) != 1:
            continue
        casc = cascades[0]
        d = result.disagreements(pr.a, pr.b, pr.task, pr.condition)
        shared = [*d.both_wrong_same, *d.both_wrong_different]
        examples = []
        for eid in sorted(shared):
            pa = index[(pr.a, pr.task, pr.condition, eid)]
            pb = index[(pr.b, pr.task, pr.condition, eid)]
            pc = pa if casc == pr.a else pb
            texts = data.text_of(pr.task, eid)
            ref = texts[1] if texts else None
            w = wer(ref, pc.transcript) if ref is not None and pc.transcript is not None else None
            right = transcript_right(ref, pc.transcript) if ref is not None else None
            examples.append(
                SharedError(
                    pr.task,
                    pr.condition,
                    eid,
                    texts[0] if texts else None,
                    pa.gold,
                    pa.label,
                    pb.label,
                    pa.output,
                    pb.output,
                    pc.transcript,
                    w,
                    right,
                )
            )
        asr = sum(e.transcript_right is False for e in examples)
        llm = sum(e.transcript_right is True for e in examples)
        out.append(
            Attribution(
                pr.a,
                pr.b,
                casc,
                pr.task,
                pr.condition,
                pr.n,
                asr,
                llm,
                len(examples) - asr - llm,
                tuple(examples),
            )
        )
    return out


@dataclass(frozen=True)
class NoisePoint:
    """Accuracy of one system on one task under one condition; ``snr`` is None for clean audio."""

    system: str
    task: str
    condition: str
    snr: float | None
    n: int
    accuracy: float
    ci: tuple[float, float]


def snr_of(condition: str) -> float | None:
    """SNR in dB of a default-source babble condition, None for clean; raises ValueError for any other."""
    c = parse_condition(condition)
    if c.kind == CLEAN:
        return None
    if c.source not in (None, SOURCES[0]) or c.snr_db is None:
        raise ValueError(f"condition {condition!r} is not default-source babble")
    return float(c.snr_db)


def noise_points(result: CompareResult) -> list[NoisePoint]:
    """Accuracy points of every clean and default-source babble condition (others are left out)."""
    out = []
    for r in result.accuracy:
        try:
            snr = snr_of(r.condition)
        except Exception:  # unparsable or other-source conditions are not on the curve
            continue
        out.append(NoisePoint(r.system, r.task, r.condition, snr, r.n, r.accuracy, r.ci))
    return out


@dataclass(frozen=True)
class Reversal:
    """A clean-audio ranking of two systems that flips under the lowest SNR.

    ``a`` is better than ``b`` on clean audio by ``clean_gap`` points; at ``snr`` dB ``b`` is better by
    ``noisy_gap`` points.
    """

    task: str
    a: str
    b: str
    clean_a: float
    clean_b: float
    condition: str
    snr: float
    noisy_a: float
    noisy_b: float

    @property
    def clean_gap(self) -> float:
        """Points by which a beats b on clean audio."""
        return 100 * (self.clean_a - self.clean_b)

    @property
    def noisy_gap(self) -> float:
        """Points by which b beats a at the lowest SNR."""
        return 100 * (self.noisy_b - self.noisy_a)

    def sentence(self) -> str:
        """Return the finding in words."""
        return (
            f"{self.task}: choosing {self.a} over {self.b} on clean audio reverses by {self.noisy_gap:.1f} points "
            f"at {self.snr:g} dB ({self.a} {self.clean_a:.1%} vs {self.b} {self.clean_b:.1%} clean; "
            f"{self.a} {self.noisy_a:.1%} vs {self.b} {self.noisy_b:.1%} at {self.snr:g} dB)."
        )


def reversals(points: Sequence[NoisePoint], kinds: dict[str, str] | None = None) -> list[Reversal]:
    """Every pair of audio systems whose clean ranking is strictly reversed at the task's lowest common SNR.

    Text systems do not hear the audio and are left out (their accuracy does not depend on the condition).
    """
    kinds = kinds or {}
    out: list[Reversal] = []
    for task in dict.fromkeys(p.task for p in points):
        pts = [p for p in points if p.task == task and kinds.get(p.system) != "text"]
        clean = {p.system: p for p in pts if p.snr is None}
        noisy = [p for p in pts if p.snr is not None]
        if not clean or not noisy:
            continue
        systems = list(clean)
        snrs = sorted({p.snr for p in noisy if p.snr is not None})
        low = next(
            (s for s in snrs if all(any(p.system == x and p.snr == s for p in noisy) for x in systems)), None
        )
        if low is None:
            continue
        at = {p.system: p for p in noisy if p.snr == low}
        for a in systems:
            for b in systems:
                ca, cb, na, nb = clean[a].accuracy, clean[b].accuracy, at[a].accuracy, at[b].accuracy
                if ca > cb and nb > na:
                    out.append(Reversal(task, a, b, ca, cb, at[a].condition, low, na, nb))
    return out


@dataclass(frozen=True)
class Cost:
    """Wall time of one system on one task (all conditions), and its accuracy clean and at the lowest SNR.

    ``per_audio_second`` is seconds of compute per second of input audio (None for text systems or without
    manifest durations); ``audio_seconds`` sums the durations of the items with a known duration.
    """

    system: str
    kind: str
    task: str
    n: int
    seconds: float
    per_item: float
    audio_seconds: float
    per_audio_second: float | None
    accuracy_clean: float | None
    accuracy_noisy: float | None
    noisy_condition: str | None


def costs(data: ReportData, result: CompareResult) -> list[Cost]:
    """Seconds per item and per audio second of every system and task, next to clean and noisy accuracy."""
    points = noise_points(result)
    out = []
    for system in data.systems:
        for task in data.tasks:
            rows = [p for p in data.predictions if p.system == system and p.task == task]
            if not rows:
                continue
            secs = sum(p.seconds for p in rows)
            durs = [data.audio.get((task, p.example_id)) for p in rows]
            known = [(p.seconds, a.duration) for p, a in zip(rows, durs, strict=True) if a and a.duration]
            audio_s = sum(d for _, d in known)
            kind = data.kinds.get(system, "?")
            per_audio = sum(s for s, _ in known) / audio_s if audio_s > 0 and kind != "text" else None
            mine = [p for p in points if p.system == system and p.task == task]
            clean = next((p.accuracy for p in mine if p.snr is None), None)
            noisy = min((p for p in mine if p.snr is not None), key=lambda p: p.snr or 0.0, default=None)
            out.append(
                Cost(
                    system,
                    kind,
                    task,
                    len(rows),
                    secs,
                    secs / len(rows),
                    audio_s,
                    per_audio,
                    clean,
                    noisy.accuracy if noisy else None,
                    noisy.condition if noisy else None,
                )
            )
    return out


def missing(data: ReportData) -> list[str]:
    """Sentences naming every expected system, task or (system, task, condition) without predictions."""
    have = {(p.system, p.task, p.condition) for p in data.predictions}
    exp = data.expected
    systems = exp.systems if exp else data.systems
    tasks = exp.tasks if exp and exp.tasks else data.tasks
    conditions = exp.conditions if exp and exp.conditions else data.conditions
    out = [f"system {s} has no predictions at all" for s in systems if s not in data.systems]
    out += [f"task {t} has no predictions" for t in tasks if t not in data.tasks]
    for s in (s for s in systems if s in data.systems):
        for t in (t for t in tasks if t in data.tasks):
            gone = [c for c in conditions if (s, t, c) not in have]
            if gone:
                out.append(f"system {s} has no predictions on {t} under {', '.join(gone)}")
    return out
