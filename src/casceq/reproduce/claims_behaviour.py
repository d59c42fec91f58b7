"""Behavioural claims (a-e) of the paper, judged from a run's ``compare.json`` (and its predictions for noise).

System names are those of ``casceq.reproduce.plan.SYSTEMS``. Every rule is documented in its claim's ``rule``
text and in docs/reproduce.md; ``casceq.reproduce.rules`` says how task verdicts combine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from casceq.reproduce.rules import (
    ALPHA,
    MIN_BOTH_WRONG,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    Z95,
    Claim,
    CompareView,
    TaskVerdict,
    combine,
    fmt,
    fmt_ci,
)

SPEECH, STRONG, WEAK, MISMATCHED = "Speech-LLM", "Cascade-S", "Cascade-W", "Cascade-M"
CLEAN = "clean"


def n_classes(task: str) -> int:
    """Number of labels of a registered task."""
    from casceq.tasks import get_task

    return len(get_task(task).labels)


def claim_ceiling(cmp: CompareView, text_tasks: Sequence[str]) -> Claim:
    """(a) The speech LLM does not beat Cascade-S, and Cascade-S >= Cascade-W, on clean text-sufficient tasks."""
    out = []
    for t in text_tasks:
        rows = {s: cmp.accuracy(s, t, CLEAN) for s in (SPEECH, STRONG, WEAK)}
        nums = ", ".join(f"{s} {fmt(r['accuracy'])} {fmt_ci(r['ci'])}" for s, r in rows.items() if r)
        ok, words = cmp.above_chance(STRONG, t, CLEAN, n_classes(t))
        vs, sw = cmp.pair(SPEECH, STRONG, t, CLEAN), cmp.pair(STRONG, WEAK, t, CLEAN)
        if not ok or vs is None or sw is None:
            why = f"the ceiling is uninformative: {words}" if vs and sw else "missing systems"
            out.append(TaskVerdict(t, NOT_TESTABLE, why, nums))
            continue
        nums += (
            f"; McNemar q (Speech-LLM vs Cascade-S) {fmt(vs['q_value'], 4)}, (S vs W) {fmt(sw['q_value'], 4)}"
        )
        beats = vs["a_right_b_wrong"] > vs["a_wrong_b_right"] and vs["q_value"] < ALPHA
        weak_wins = sw["a_wrong_b_right"] > sw["a_right_b_wrong"] and sw["q_value"] < ALPHA
        if beats or weak_wins:
            why = (
                "the speech LLM is significantly better than Cascade-S"
                if beats
                else "Cascade-W beats Cascade-S"
            )
            out.append(TaskVerdict(t, NOT_REPRODUCED, why, nums))
        else:
            out.append(TaskVerdict(t, REPRODUCED, "no significant advantage over Cascade-S", nums))
    verdict, reason = combine(out)
    return Claim(
        "a",
        "Ceiling",
        "On text-sufficient tasks the end-to-end speech LLM does not beat the strong-ASR cascade on its backbone, "
        "and the strong-ASR cascade is at least as good as the weak-ASR one.",
        f"Testable where Cascade-S is above chance (clean). Not reproduced when McNemar q < {ALPHA} shows the "
        "speech LLM better than Cascade-S or Cascade-W better than Cascade-S; else reproduced (a null result: no "
        "significant evidence against the claim at this n).",
        verdict,
        reason,
        tuple(out),
    )


def claim_confound(cmp: CompareView, text_tasks: Sequence[str]) -> Claim:
    """(b) kappa(speech LLM, matched cascade) > kappa(speech LLM, mismatched cascade), from the paired bootstrap."""
    out = []
    for t in text_tasks:
        row = cmp.confound(SPEECH, STRONG, MISMATCHED, t, CLEAN)
        ok, words = cmp.above_chance(SPEECH, t, CLEAN, n_classes(t))
        if row is None or not row.get("delta_ci") or row["delta_kappa"] is None:
            out.append(TaskVerdict(t, NOT_TESTABLE, "no confound row (systems or bootstrap missing)"))
            continue
        nums = (
            f"κ matched {fmt(row['kappa_matched'])}, κ mismatched {fmt(row['kappa_mismatched'])}, "
            f"Δκ {fmt(row['delta_kappa'])} {fmt_ci(row['delta_ci'])}"
        )
        lo = row["delta_ci"][0]
        if not ok:
            out.append(TaskVerdict(t, NOT_TESTABLE, f"κ is uninformative: {words}", nums))
        elif lo is not None and lo > 0:
            out.append(TaskVerdict(t, REPRODUCED, "Δκ CI above 0", nums))
        else:
            out.append(TaskVerdict(t, NOT_REPRODUCED, "Δκ CI reaches 0 or below", nums))
    verdict, reason = combine(out)
    return Claim(
        "b",
        "Backbone confound",
        "A speech LLM agrees more with the cascade built on its own LLM backbone than with a cascade on another "
        "backbone, so cascade comparisons must be backbone-matched.",
        "Δκ = κ(Speech-LLM, Cascade-S) − κ(Speech-LLM, Cascade-M) with its paired bootstrap 95% CI (clean). "
        "Testable where the speech LLM is above chance. Reproduced when the CI lies above 0.",
        verdict,
        reason,
        tuple(out),
    )


def claim_overlap(cmp: CompareView, text_tasks: Sequence[str]) -> Claim:
    """(c) P(same wrong | both wrong) of the speech LLM and Cascade-S above chance 1/(C-1)."""
    from scipy.stats import binomtest

    out = []
    for t in text_tasks:
        c = n_classes(t)
        row = cmp.pair(SPEECH, STRONG, t, CLEAN)
        ok, words = cmp.above_chance(SPEECH, t, CLEAN, c)
        if row is None:
            out.append(TaskVerdict(t, NOT_TESTABLE, "no Speech-LLM/Cascade-S pair"))
            continue
        k, m = row["same_wrong"], row["both_wrong"]
        nums = f"overlap {fmt(row['overlap'])} ({k}/{m} shared errors) vs chance {fmt(1 / (c - 1))}"
        if c < 3:
            out.append(TaskVerdict(t, NOT_TESTABLE, "2 classes: every shared error is the same error", nums))
        elif not ok:
            out.append(TaskVerdict(t, NOT_TESTABLE, f"uninformative: {words}", nums))
        elif m < MIN_BOTH_WRONG:
            out.append(TaskVerdict(t, NOT_TESTABLE, f"only {m} shared errors (< {MIN_BOTH_WRONG})", nums))
        else:
            p = float(binomtest(k, m, 1 / (c - 1), alternative="greater").pvalue)
            nums += f", one-sided binomial p {fmt(p, 4)}"
            verdict = REPRODUCED if p < ALPHA else NOT_REPRODUCED
            out.append(TaskVerdict(t, verdict, f"binomial p {'<' if p < ALPHA else '>='} {ALPHA}", nums))
    verdict, reason = combine(out)
    return Claim(
        "c",
        "Error overlap",
        "When the speech LLM and its matched cascade are both wrong they mostly give the same wrong answer, far "
        "above the chance rate 1/(C−1).",
        f"Clean, tasks with C ≥ 3 where the speech LLM is above chance and shares ≥ {MIN_BOTH_WRONG} errors with "
        f"Cascade-S: reproduced when a one-sided binomial test of same-wrong against 1/(C−1) gives p < {ALPHA}.",
        verdict,
        reason,
        tuple(out),
    )


def _se(ci: Sequence[float | None] | None) -> float | None:
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return (float(ci[1]) - float(ci[0])) / (2 * Z95)


def claim_text_insufficient(
    cmp: CompareView, text_tasks: Sequence[str], speech_tasks: Sequence[str]
) -> Claim:
    """(d) kappa(speech LLM, matched cascade) is lower on text-insufficient than on text-sufficient tasks."""
    out = []
    for s_task in speech_tasks:
        rav = cmp.pair(SPEECH, STRONG, s_task, CLEAN)
        for t in text_tasks:
            row = cmp.pair(SPEECH, STRONG, t, CLEAN)
            name = f"{s_task} vs {t}"
            ok, words = cmp.above_chance(SPEECH, t, CLEAN, n_classes(t))
            se_t = _se(row["kappa_ci"]) if row else None
            se_r = _se(rav["kappa_ci"]) if rav else None
            if row is None or rav is None or row["kappa"] is None or rav["kappa"] is None:
                out.append(TaskVerdict(name, NOT_TESTABLE, "κ undefined or pair missing"))
                continue
            diff = row["kappa"] - rav["kappa"]
            nums = f"κ {t} {fmt(row['kappa'])} {fmt_ci(row['kappa_ci'])}, κ {s_task} {fmt(rav['kappa'])} {fmt_ci(rav['kappa_ci'])}"
            if not ok or se_t is None or se_r is None:
                out.append(TaskVerdict(name, NOT_TESTABLE, f"κ on {t} is uninformative: {words}", nums))
                continue
            low = diff - Z95 * math.hypot(se_t, se_r)
            nums += f", difference {fmt(diff)} (lower 95% bound {fmt(low)})"
            verdict = REPRODUCED if low > 0 else NOT_REPRODUCED
            out.append(
                TaskVerdict(
                    name, verdict, "difference lower bound " + (">" if low > 0 else "<=") + " 0", nums
                )
            )
    verdict, reason = combine(out)
    return Claim(
        "d",
        "Text-insufficient tasks",
        "On text-insufficient tasks (emotion from the voice) the speech LLM departs from its matched cascade: "
        "κ is lower than on text-sufficient tasks.",
        "κ(Speech-LLM, Cascade-S) on RAVDESS vs each text-sufficient task where the speech LLM is above chance "
        "(clean); independent items, so the difference's standard error combines the two bootstrap CIs "
        "(width / 3.92). Reproduced when the difference's lower 95% bound is above 0.",
        verdict,
        reason,
        tuple(out),
    )


@dataclass(frozen=True)
class Degradation:
    """Accuracy drop from clean to the lowest SNR of two systems on the same items, with a paired bootstrap."""

    task: str
    a: str
    b: str
    condition: str
    n: int
    drop_a: float
    drop_b: float
    diff_ci: tuple[float, float]

    @property
    def diff(self) -> float:
        """drop_a − drop_b."""
        return self.drop_a - self.drop_b


def degradation(
    correct: Mapping[tuple[str, str, str], Mapping[str, bool]],
    task: str,
    a: str,
    b: str,
    low: str,
    n_boot: int = 1000,
    seed: int = 0,
) -> Degradation | None:
    """Drops clean → ``low`` of systems a and b, with a 95% percentile CI of their difference.

    ``correct[(system, task, condition)]`` maps example ids to correctness; items present in all four cells are
    used and resampled together (paired).
    """
    cells = [correct.get((s, task, c)) or {} for s in (a, b) for c in (CLEAN, low)]
    ids = sorted(set.intersection(*[set(c) for c in cells]))
    if not ids:
        return None
    m = np.array([[c[i] for i in ids] for c in cells], dtype=np.float64)
    drops = m[[0, 2]] - m[[1, 3]]  # [2, n] per-item drop of a and b
    per_item = drops[0] - drops[1]
    idx = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    boot = per_item[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Degradation(
        task, a, b, low, len(ids), float(drops[0].mean()), float(drops[1].mean()), (float(lo), float(hi))
    )


def claim_noise(
    cmp: CompareView,
    text_tasks: Sequence[str],
    drops: Mapping[str, Degradation | None],
    reversal_sentences: Sequence[str] = (),
) -> Claim:
    """(e) Under babble the speech LLM degrades more than its matched cascade (clean advantages reverse)."""
    out = []
    for t in text_tasks:
        d = drops.get(t)
        ok, words = cmp.above_chance(SPEECH, t, CLEAN, n_classes(t))
        if d is None:
            out.append(TaskVerdict(t, NOT_TESTABLE, "no clean and noisy predictions of both systems"))
            continue
        nums = (
            f"drop clean→{d.condition}: Speech-LLM {fmt(d.drop_a)}, Cascade-S {fmt(d.drop_b)}, difference "
            f"{fmt(d.diff)} {fmt_ci(d.diff_ci)} (n {d.n})"
        )
        if not ok:
            out.append(TaskVerdict(t, NOT_TESTABLE, f"a model at chance cannot degrade: {words}", nums))
        elif d.diff_ci[0] > 0:
            out.append(TaskVerdict(t, REPRODUCED, "the speech LLM loses significantly more", nums))
        else:
            out.append(TaskVerdict(t, NOT_REPRODUCED, "difference CI reaches 0 or below", nums))
    if reversal_sentences:
        out.append(TaskVerdict("reversals", NOT_TESTABLE, "informational", " ".join(reversal_sentences)))
    verdict, reason = combine([t for t in out if t.task != "reversals"])
    return Claim(
        "e",
        "Noise",
        "Under babble noise speech LLMs are worse cascades: they lose more accuracy than their matched cascade, so "
        "clean-condition advantages reverse at 0 dB.",
        "Accuracy drop clean → lowest SNR of the speech LLM minus that of Cascade-S on the same items, paired "
        "bootstrap 95% CI; testable where the speech LLM is above chance on clean audio. Reproduced when the CI "
        "lies above 0. Ranking reversals (casceq.report.analysis.reversals) are listed as information.",
        verdict,
        reason,
        tuple(out),
    )


def correctness_table(predictions: Sequence[Any]) -> dict[tuple[str, str, str], dict[str, bool]]:
    """``{(system, task, condition): {example_id: correct}}`` from prediction rows."""
    table: dict[tuple[str, str, str], dict[str, bool]] = {}
    for p in predictions:
        table.setdefault((p.system, p.task, p.condition), {})[p.example_id] = bool(p.correct)
    return table
