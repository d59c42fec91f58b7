"""Behavioural claims (a-e) of the paper, judged from a run's ``compare.json`` (and its predictions for noise).

System names are those of ``casceq.reproduce.plan.SYSTEMS``. Every rule is documented in its claim's ``rule``
text and in docs/reproduce.md; ``casceq.reproduce.rules`` says how task verdicts combine.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from casceq.reproduce.rules import (
    ALPHA,
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    REFERENCE,
    REPRODUCED,
    Claim,
    CompareView,
    TaskVerdict,
    combine,
    directional,
    equivalence,
    family_q_values,
    fmt,
    fmt_ci,
    item_of,
)
from casceq.stats.cluster import (
    cluster_bootstrap_weights,
    clustered_proportion_ci,
    design_effect,
    item_index,
    paired_difference_ci,
    per_item_sums,
)
from casceq.stats.power import mde, se_from_ci
from casceq.tasks import get_task

SPEECH, STRONG, WEAK, MISMATCHED = "Speech-LLM", "Cascade-S", "Cascade-W", "Cascade-M"
CASCADES = (STRONG, WEAK, MISMATCHED)
CLEAN = "clean"

LabelTable = Mapping[tuple[str, str, str], Mapping[str, tuple[str, str]]]
"""``{(system, task, condition): {example_id: (label, gold)}}`` (``label_table``)."""

Items = Mapping[str, str]
"""``{example_id: item}`` (``item_table``): the clips of one item are resampled and tested together."""


def n_classes(task: str) -> int:
    """Number of labels of a registered task."""
    return len(get_task(task).labels)


def paired_accuracy_difference(row: Mapping[str, Any]) -> tuple[float, float | None]:
    """acc(a) - acc(b) of a compare.json pair row and its standard error from the discordant counts.

    The variance of a mean of paired differences d in {-1, 0, 1}: (b + c - (b - c)^2 / n) / n^2. That treats
    the n clips as independent, so a row whose clips come from fewer items (``n_items < n``: several voices per
    item) gets no standard error: the counts alone cannot give the item-clustered one (pass the predictions).
    """
    b, c, n = row["a_right_b_wrong"], row["a_wrong_b_right"], row["n"]
    if n <= 1:
        return float("nan"), None
    if row.get("n_items") is not None and row["n_items"] < n:
        return (b - c) / n, None
    var = (b + c - (b - c) ** 2 / n) / (n * (n - 1))
    return (b - c) / n, math.sqrt(var) if var > 0 else None


Correctness = Mapping[tuple[str, str, str], Mapping[str, bool]]
"""``{(system, task, condition): {example_id: correct}}`` (``correctness_table``)."""


def clustered_difference(
    correct: Correctness, a: str, b: str, task: str, condition: str, items: Items | None
) -> tuple[float, float | None] | None:
    """acc(a) − acc(b) on the clips both answered, with its item-clustered standard error (Obuchowski)."""
    ca, cb_ = correct.get((a, task, condition)), correct.get((b, task, condition))
    ids = [i for i in ca or {} if i in (cb_ or {})]
    if not ca or not cb_ or len(ids) < 2:
        return None
    (xa, xb), clips = per_item({i: [ca[i], cb_[i]] for i in ids}, items)
    if len(clips) < 2:
        return None
    d = paired_difference_ci(xa, xb, clips)
    return d.estimate, d.se if d.se > 0 else None


def claim_ceiling(
    cmp: CompareView,
    text_tasks: Sequence[str],
    bh_family: str = "paper",
    correct: Correctness | None = None,
    items: Items | None = None,
) -> Claim:
    """(a) The speech LLM does not beat Cascade-S, nor Cascade-W Cascade-S (non-superiority, clean).

    With ``correct`` (and ``items``) the paired differences are item-clustered; without, from the McNemar
    counts of ``compare.json``, which is only valid with one clip per item (else the task is not testable).
    """
    margin = REFERENCE["a"]
    q = family_q_values(cmp.data.get("pairs", ()), bh_family, SPEECH, CASCADES)
    out = []
    for t in text_tasks:
        rows = {s: cmp.accuracy(s, t, CLEAN) for s in (SPEECH, STRONG, WEAK)}
        nums = ", ".join(f"{s} {fmt(r['accuracy'])} {fmt_ci(r['ci'])}" for s, r in rows.items() if r)
        ok, words = cmp.gate((SPEECH, STRONG, WEAK), t, CLEAN, n_classes(t))
        vs, sw = cmp.pair(SPEECH, STRONG, t, CLEAN), cmp.pair(WEAK, STRONG, t, CLEAN)
        if vs is None or sw is None:
            out.append(TaskVerdict(t, NOT_TESTABLE, "missing systems", nums))
            continue
        if not ok:
            out.append(
                TaskVerdict(
                    t,
                    NOT_TESTABLE,
                    f"a system is not shown above chance (95% lower bound ≤ chance): {words}",
                    nums,
                )
            )
            continue
        q_vs = q.get((SPEECH, STRONG, t, CLEAN), q.get((STRONG, SPEECH, t, CLEAN), vs["q_value"]))
        verdicts = []
        for (x, y), r in (((SPEECH, STRONG), vs), ((WEAK, STRONG), sw)):
            diff = clustered_difference(correct, x, y, t, CLEAN, items) if correct else None
            est, se = diff if diff is not None else paired_accuracy_difference(r)
            what = f"acc({x}) − acc({y})"
            v = equivalence(t, est, se, margin, "", what, two_sided=False)
            if diff is None and se is None and r.get("n_items") is not None and r["n_items"] < r["n"]:
                why = f"no item-clustered interval for {what} without the run's predictions ({r['n_items']} items)"
                v = TaskVerdict(t, NOT_TESTABLE, why)
            verdicts.append(v)
        nums += "".join(v.numbers for v in verdicts)
        nums += f"; McNemar q (Speech-LLM vs Cascade-S, BH family {bh_family}) {fmt(q_vs, 4)}"
        mde = max(v.mde for v in verdicts if v.mde is not None) if all(v.mde for v in verdicts) else None
        powered = None if mde is None else mde <= margin
        if vs["a_right_b_wrong"] > vs["a_wrong_b_right"] and q_vs < ALPHA:
            # A significant lead smaller than the margin is what non-superiority with a margin allows: the
            # McNemar test (null: no difference) is reported, the verdict is the interval's against the margin.
            nums += " (the speech LLM is significantly better than Cascade-S)"
        if any(v.verdict == CONTRADICTED for v in verdicts):
            why = "; ".join(v.reason for v in verdicts if v.verdict == CONTRADICTED)
            out.append(TaskVerdict(t, CONTRADICTED, why, nums, mde, powered))
        elif any(v.verdict == NOT_TESTABLE for v in verdicts):
            why = "; ".join(v.reason for v in verdicts if v.verdict == NOT_TESTABLE)
            out.append(TaskVerdict(t, NOT_TESTABLE, why, nums))
        elif all(v.verdict == REPRODUCED for v in verdicts):
            out.append(TaskVerdict(t, REPRODUCED, "both 90% CIs below the margin", nums, mde, powered))
        else:
            why = "; ".join(v.reason for v in verdicts if v.verdict != REPRODUCED)
            out.append(TaskVerdict(t, INCONCLUSIVE, why, nums, mde, powered))
    verdict, reason = combine(out)
    return Claim(
        "a",
        "Ceiling",
        "On text-sufficient tasks the end-to-end speech LLM does not beat the strong-ASR cascade on its backbone, "
        "and the strong-ASR cascade is at least as good as the weak-ASR one.",
        f"Clean; testable where the speech LLM, Cascade-S and Cascade-W are above chance. Non-superiority by two "
        f"one-sided tests at {ALPHA}: reproduced when the 90% CIs of acc(Speech-LLM) − acc(Cascade-S) and of "
        f"acc(Cascade-W) − acc(Cascade-S) (paired, item-clustered) both lie below the margin {margin}; "
        f"contradicted when one lies wholly above the margin; else inconclusive. The McNemar q of Speech-LLM vs "
        f"Cascade-S (BH over the {bh_family} family) is printed: a significant lead smaller than the margin does "
        "not contradict non-superiority.",
        verdict,
        reason,
        tuple(out),
    )


def claim_confound(cmp: CompareView, text_tasks: Sequence[str]) -> Claim:
    """(b) kappa(speech LLM, matched cascade) > kappa(speech LLM, mismatched cascade), from the paired bootstrap."""
    ref = REFERENCE["b"]
    out = []
    for t in text_tasks:
        row = cmp.confound(SPEECH, STRONG, MISMATCHED, t, CLEAN)
        ok, words = cmp.gate((SPEECH, STRONG, MISMATCHED), t, CLEAN, n_classes(t))
        if row is None or not row.get("delta_ci") or row["delta_kappa"] is None:
            out.append(TaskVerdict(t, NOT_TESTABLE, "no confound row (systems or bootstrap missing)"))
            continue
        nums = f"κ matched {fmt(row['kappa_matched'])}, κ mismatched {fmt(row['kappa_mismatched'])}"
        if not ok:
            out.append(
                TaskVerdict(
                    t, NOT_TESTABLE, f"a system is not shown above chance, κ is uninformative: {words}", nums
                )
            )
            continue
        out.append(directional(t, row["delta_kappa"], se_from_ci(*row["delta_ci"]), ref, nums, "Δκ"))
    verdict, reason = combine(out)
    return Claim(
        "b",
        "Backbone confound",
        "A speech LLM agrees more with the cascade built on its own LLM backbone than with a cascade on another "
        "backbone, so cascade comparisons must be backbone-matched.",
        "Δκ = κ(Speech-LLM, Cascade-S) − κ(Speech-LLM, Cascade-M) with its paired bootstrap 95% CI (clean). "
        "Testable where the speech LLM, Cascade-S and Cascade-M are above chance (a cascade at chance makes Δκ > 0 "
        f"automatic). Reproduced when the CI lies above 0; contradicted when it lies below {ref}; else "
        "inconclusive (MDE printed).",
        verdict,
        reason,
        tuple(out),
    )


def item_table(predictions: Sequence[Any]) -> dict[str, str]:
    """``Items`` from prediction rows: their ``item`` field, else the example id before "@" (older runs)."""
    return {p.example_id: item_of(p.example_id, getattr(p, "item", None)) for p in predictions}


def per_item(
    values: Mapping[str, Sequence[float]], items: Items | None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Sum aligned per-clip value lists over items: (per-item sums of each list, clips per item)."""
    ids = list(values)
    clusters, g = item_index([item_of(i, (items or {}).get(i)) for i in ids])
    arr = np.array([values[i] for i in ids], dtype=np.float64).T  # [k, n]
    sums = per_item_sums(arr, clusters, g)
    return list(sums), np.bincount(clusters, minlength=g)


def label_table(predictions: Sequence[Any]) -> dict[tuple[str, str, str], dict[str, tuple[str, str]]]:
    """``LabelTable`` from prediction rows."""
    table: dict[tuple[str, str, str], dict[str, tuple[str, str]]] = {}
    for p in predictions:
        table.setdefault((p.system, p.task, p.condition), {})[p.example_id] = (str(p.label), str(p.gold))
    return table


def bias_overlap_null(a: Mapping[str, tuple[str, str]], b: Mapping[str, tuple[str, str]]) -> float | None:
    """Chance of the same wrong answer given each system's wrong-label shares per gold class.

    For gold class g, ``s_a(l | g)`` is the share of system a's wrong answers on items of class g that are label
    l (INVALID included as a label). Under independence given the gold class, two wrong answers on an item of
    class g coincide with probability ``sum_l s_a(l | g) s_b(l | g)``; the null is its mean over the items both
    get wrong (None when there is none). 0.6 of both systems' wrong answers on one of three wrong labels gives
    0.6^2 + 0.2^2 + 0.2^2 = 0.44.
    """

    def shares(sys: Mapping[str, tuple[str, str]]) -> dict[str, dict[str, float]]:
        by_gold: dict[str, Counter[str]] = {}
        for lab, gold in sys.values():
            if lab != gold:
                by_gold.setdefault(gold, Counter())[lab] += 1
        return {g: {lab: k / sum(c.values()) for lab, k in c.items()} for g, c in by_gold.items()}

    sa, sb = shares(a), shares(b)
    both = [a[i][1] for i in a if i in b and a[i][0] != a[i][1] and b[i][0] != b[i][1]]
    if not both:
        return None
    probs = [sum(p * sb[g].get(lab, 0.0) for lab, p in sa[g].items()) for g in both]
    return sum(probs) / len(probs)


def overlap_interval(
    a: Mapping[str, tuple[str, str]], b: Mapping[str, tuple[str, str]], items: Items | None = None
) -> tuple[int, int, int, tuple[float, float], float]:
    """Same-wrong k of m both-wrong clips, their items, the item-clustered 95% Wilson interval, the design effect.

    ``casceq.stats.cluster.clustered_proportion_ci``: the clips of one item count once their correlation is
    accounted for (design effect); with one clip per item it is the plain Wilson interval.
    """
    both = {i: [float(a[i][0] == b[i][0])] for i in a if i in b and a[i][0] != a[i][1] and b[i][0] != b[i][1]}
    if not both:
        return 0, 0, 0, (float("nan"), float("nan")), 1.0
    (same,), clips = per_item(both, items)
    ci = clustered_proportion_ci(same, clips)
    return int(same.sum()), int(clips.sum()), len(clips), ci, design_effect(same, clips)


def claim_overlap(
    cmp: CompareView, text_tasks: Sequence[str], labels: LabelTable | None = None, items: Items | None = None
) -> Claim:
    """(c) P(same wrong | both wrong) of the speech LLM and Cascade-S above both 1/(C-1) and the label-bias null."""
    ref = REFERENCE["c"]
    out = []
    for t in text_tasks:
        c = n_classes(t)
        row = cmp.pair(SPEECH, STRONG, t, CLEAN)
        ok, words = cmp.gate((SPEECH, STRONG), t, CLEAN, c)
        if row is None:
            out.append(TaskVerdict(t, NOT_TESTABLE, "no Speech-LLM/Cascade-S pair"))
            continue
        k, m = row["same_wrong"], row["both_wrong"]
        a, b = ((labels or {}).get((s, t, CLEAN)) for s in (SPEECH, STRONG))
        bias = bias_overlap_null(a, b) if a and b else None
        null = max(1 / (c - 1), bias) if c >= 3 and bias is not None else 1 / max(c - 1, 1)
        nums = (
            f"overlap {fmt(row['overlap'])} ({k}/{m} shared errors); nulls: uniform 1/(C−1) {fmt(1 / max(c - 1, 1))}, "
            f"label bias {fmt(bias)}"
        )
        if c < 3:
            out.append(TaskVerdict(t, NOT_TESTABLE, "2 classes: every shared error is the same error", nums))
        elif not ok:
            out.append(
                TaskVerdict(
                    t,
                    NOT_TESTABLE,
                    f"a system is not shown above chance (95% lower bound ≤ chance): {words}",
                    nums,
                )
            )
        elif bias is None or m == 0:
            why = "no shared errors" if m == 0 else "no predictions to compute the label-bias null"
            out.append(TaskVerdict(t, NOT_TESTABLE, why, nums))
        else:
            assert a is not None and b is not None
            k, m, g, (lo, hi), deff = overlap_interval(a, b, items)
            # the null's binomial SE on the effective number of shared-error clips (m / design effect)
            mde_ = mde(math.sqrt(null * (1 - null) * deff / m), alpha=ALPHA / 2)
            nums += (
                f"; {m} shared-error clips from {g} items, overlap 95% CI (item-clustered) [{fmt(lo)}, {fmt(hi)}] "
                f"vs null {fmt(null)}, MDE {fmt(mde_)} above the null"
            )
            powered = mde_ <= ref
            if lo > null:
                out.append(TaskVerdict(t, REPRODUCED, "95% CI above both nulls", nums, mde_, powered))
            elif hi < null + ref:
                why = f"95% CI excludes overlap {fmt(null + ref)} (null + {ref})"
                out.append(TaskVerdict(t, CONTRADICTED, why, nums, mde_, powered))
            else:
                why = f"95% CI reaches the null and null + {ref}; MDE at this n {fmt(mde_)}"
                out.append(TaskVerdict(t, INCONCLUSIVE, why, nums, mde_, powered))
    verdict, reason = combine(out)
    return Claim(
        "c",
        "Error overlap",
        "When the speech LLM and its matched cascade are both wrong they mostly give the same wrong answer, far "
        "above the chance rate 1/(C−1).",
        "Clean, tasks with C ≥ 3 where the speech LLM and Cascade-S are above chance. The null is the larger of "
        "1/(C−1) and the label-bias null (the mean, over items both get wrong, of Σ_l s_a(l|g) s_b(l|g): the two "
        "systems' wrong-label shares per gold class g). Reproduced when the 95% Wilson CI of the overlap lies above "
        f"the null; contradicted when it lies below null + {ref}; else inconclusive (MDE printed).",
        verdict,
        reason,
        tuple(out),
    )


def claim_text_insufficient(
    cmp: CompareView, text_tasks: Sequence[str], speech_tasks: Sequence[str]
) -> Claim:
    """(d) kappa(speech LLM, matched cascade) is lower on text-insufficient than on text-sufficient tasks."""
    ref = REFERENCE["d"]
    out = []
    for s_task in speech_tasks:
        rav = cmp.pair(SPEECH, STRONG, s_task, CLEAN)
        ok_r, words_r = cmp.gate((SPEECH,), s_task, CLEAN, n_classes(s_task))
        for t in text_tasks:
            row = cmp.pair(SPEECH, STRONG, t, CLEAN)
            name = f"{s_task} vs {t}"
            ok, words = cmp.gate((SPEECH, STRONG), t, CLEAN, n_classes(t))
            if row is None or rav is None or row["kappa"] is None or rav["kappa"] is None:
                out.append(TaskVerdict(name, NOT_TESTABLE, "κ undefined or pair missing"))
                continue
            nums = f"κ {t} {fmt(row['kappa'])} {fmt_ci(row['kappa_ci'])}, κ {s_task} {fmt(rav['kappa'])} {fmt_ci(rav['kappa_ci'])}"
            if not ok_r:
                # a speech LLM at chance on the emotion task departs from any cascade trivially
                out.append(
                    TaskVerdict(
                        name,
                        NOT_TESTABLE,
                        f"the speech LLM is not shown above chance on {s_task}: {words_r}",
                        nums,
                    )
                )
                continue
            if not ok:
                out.append(TaskVerdict(name, NOT_TESTABLE, f"κ on {t} is uninformative: {words}", nums))
                continue
            se_t, se_r = (se_from_ci(*r["kappa_ci"]) if r["kappa_ci"] else None for r in (row, rav))
            se = math.hypot(se_t, se_r) if se_t is not None and se_r is not None else None
            out.append(directional(name, row["kappa"] - rav["kappa"], se, ref, nums, "κ difference"))
    verdict, reason = combine(out)
    return Claim(
        "d",
        "Text-insufficient tasks",
        "On text-insufficient tasks (emotion from the voice) the speech LLM departs from its matched cascade: "
        "κ is lower than on text-sufficient tasks.",
        "κ(Speech-LLM, Cascade-S) on each text-sufficient task minus on RAVDESS (clean); testable where the speech "
        "LLM is above chance on BOTH tasks and Cascade-S on the text task. Independent items: the difference's "
        "standard error combines the two bootstrap CIs (width / 3.92). Reproduced when its 95% CI lies above 0; "
        f"contradicted when it lies below {ref}; else inconclusive (MDE printed).",
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
    n_items: int = 0

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
    items: Items | None = None,
) -> Degradation | None:
    """Drops clean → ``low`` of systems a and b, with a 95% percentile CI of their difference.

    ``correct[(system, task, condition)]`` maps example ids to correctness; clips present in all four cells are
    used, resampled by item (all voices of an item together, ``items``; default: the id before "@") and
    paired across systems and conditions (``casceq.stats.cluster.cluster_bootstrap_weights``).
    """
    cells = [correct.get((s, task, c)) or {} for s in (a, b) for c in (CLEAN, low)]
    ids = sorted(set.intersection(*[set(c) for c in cells]))
    if not ids:
        return None
    m = np.array([[c[i] for i in ids] for c in cells], dtype=np.float64)
    drops = m[[0, 2]] - m[[1, 3]]  # [2, n] per-item drop of a and b
    per_clip = drops[0] - drops[1]
    clusters, g = item_index([item_of(i, (items or {}).get(i)) for i in ids])
    w = cluster_bootstrap_weights(clusters, n_boot, seed).astype(np.float64)  # [B, n]
    total = w.sum(axis=1)
    boot = (w @ per_clip)[total > 0] / total[total > 0]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Degradation(
        task, a, b, low, len(ids), float(drops[0].mean()), float(drops[1].mean()), (float(lo), float(hi)), g
    )


def claim_noise(
    cmp: CompareView,
    text_tasks: Sequence[str],
    drops: Mapping[str, Degradation | None],
    reversal_sentences: Sequence[str] = (),
) -> Claim:
    """(e) Under babble the speech LLM degrades more than its matched cascade (clean advantages reverse)."""
    ref = REFERENCE["e"]
    out = []
    for t in text_tasks:
        d = drops.get(t)
        ok, words = cmp.gate((SPEECH, STRONG), t, CLEAN, n_classes(t))
        if d is None:
            out.append(TaskVerdict(t, NOT_TESTABLE, "no clean and noisy predictions of both systems"))
            continue
        nums = (
            f"drop clean→{d.condition}: Speech-LLM {fmt(d.drop_a)}, Cascade-S {fmt(d.drop_b)} "
            f"({d.n} clips, {d.n_items} items)"
        )
        if not ok:
            out.append(
                TaskVerdict(
                    t,
                    NOT_TESTABLE,
                    f"a model not shown above chance cannot be shown to degrade: {words}",
                    nums,
                )
            )
            continue
        out.append(directional(t, d.diff, se_from_ci(*d.diff_ci), ref, nums, "difference of drops"))
    if reversal_sentences:
        out.append(TaskVerdict("reversals", NOT_TESTABLE, "informational", " ".join(reversal_sentences)))
    verdict, reason = combine([t for t in out if t.task != "reversals"])
    return Claim(
        "e",
        "Noise",
        "Under babble noise speech LLMs are worse cascades: they lose more accuracy than their matched cascade, so "
        "clean-condition advantages reverse at 0 dB.",
        "Accuracy drop clean → lowest SNR of the speech LLM minus that of Cascade-S on the same items, paired "
        "bootstrap 95% CI; testable where both are above chance on clean audio. Reproduced when the CI lies above "
        f"0; contradicted when it lies below {ref}; else inconclusive (MDE printed). Ranking reversals "
        "(casceq.report.analysis.reversals) are listed as information.",
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
