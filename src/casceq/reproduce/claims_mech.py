"""Mechanistic claims (f-h), judged from the typed results of the lens, erasure and implicit stages.

Each function takes the stage's result as read back by its reader (``casceq.stages.lens.read_lens`` and
``LensControl``, ``casceq.stages.erase.read_erasure``, ``casceq.stages.implicit.read_implicit``; None when the
stage did not run) and a reason to give when it is missing (``"stage skipped (--skip-mech)"``,
``"stage failed: ..."``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from casceq.mech.erasure_concepts import ErasureResult, TaskAccuracy
from casceq.mech.implicit import ImplicitResult, ImplicitRow
from casceq.mech.lens import LensResult
from casceq.reproduce.rules import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    REFERENCE,
    REPRODUCED,
    Claim,
    TaskVerdict,
    chance_of_labels,
    combine,
    directional,
    equivalence,
    fmt,
    item_of,
    wilson_low,
)
from casceq.stages.lens import LensControl
from casceq.stats.agreement import bootstrap_pairwise_kappa, encode
from casceq.stats.cluster import clustered_proportion_ci, item_index, paired_difference_ci, per_item_sums
from casceq.stats.power import se_from_ci
from casceq.tasks import get_task

LENS_MARGIN = REFERENCE["f"]
"""Reference rise of lens precision: the best upper-half layer over the control and over the first layer."""

LENS_CLAIM = (
    "Logit lens: literal transcript text emerges in the speech LLM's hidden states at the audio positions as depth "
    "increases."
)


def _lens_se(p_a: float, p_b: float, n_a: int, n_b: int) -> float:
    """Conservative SE of a difference of two lens precisions over ``n_a``, ``n_b`` utterances (Agresti-Caffo).

    The result stores token counts per layer only, and the tokens of one utterance are not independent; the
    worst case (every token of an utterance alike) leaves one observation per utterance, so each precision is
    taken as a proportion over ``n`` utterances. Adding one hit and one miss to each (Agresti & Caffo 2000)
    keeps the SE above 0 at precisions of 0 or 1. The two precisions come from the same utterances and are
    positively correlated, so adding their variances overstates the difference's: the interval is wide, never
    narrow.
    """
    pa, pb = (p_a * n_a + 1) / (n_a + 2), (p_b * n_b + 1) / (n_b + 2)
    return math.sqrt(pa * (1 - pa) / (n_a + 2) + pb * (1 - pb) / (n_b + 2))


def claim_lens(lens: LensResult | None, control: LensControl | None, missing: str) -> Claim:
    """(f) Lens precision at audio positions rises with depth above the deranged-transcript control."""
    rule = (
        "Bag-of-tokens precision of lens tokens vs the utterance's transcript (casceq.mech.lens), per captured "
        "layer; control = the same tokens scored against another utterance's transcript. Two differences at the "
        "best layer of the upper half: its precision minus the control's there, and minus the first captured "
        "layer's. 95% CIs treat each precision as a proportion over the utterances, not the tokens (the worst "
        "case of tokens clustered in utterances; the result stores per-layer counts only), Agresti-Caffo. "
        f"Reproduced when both CIs lie above 0; contradicted when one lies below {LENS_MARGIN}; else inconclusive "
        "(MDE printed). The best layer is chosen by its precision, which favours it a little."
    )
    if lens is None or control is None:
        return Claim("f", "Logit lens", LENS_CLAIM, rule, INCONCLUSIVE, missing)
    prec = {r.layer: r.precision for r in lens.layers if r.precision is not None}
    ctrl = {r.layer: r.precision for r in control.layers if r.precision is not None}
    if not prec:
        return Claim("f", "Logit lens", LENS_CLAIM, rule, INCONCLUSIVE, "no lens token was scored")
    tokens = {r.layer: r.n_tokens for r in lens.layers}
    layers = sorted(prec)
    upper = [la for la in layers if la >= layers[-1] / 2]
    best = max(upper, key=lambda la: prec[la])
    first = layers[0]
    n = lens.n_utterances
    name = f"{n} utterances"
    nums = ", ".join(f"L{la} {fmt(prec[la])} (control {fmt(ctrl.get(la))})" for la in layers)
    if n < 2 or best not in ctrl:
        why = "no utterance count or no control at the best layer: no interval"
        return Claim(
            "f",
            "Logit lens",
            LENS_CLAIM,
            rule,
            INCONCLUSIVE,
            why,
            (TaskVerdict(name, NOT_TESTABLE, why, nums),),
        )
    # one observation per utterance at most, and never more than the tokens a layer scored
    units = {la: min(n, tokens.get(la) or n) for la in layers}
    tests = [
        directional(name, prec[best] - ctrl[best], _lens_se(prec[best], ctrl[best], units[best], units[best]),
                    LENS_MARGIN, "", f"L{best} precision − control"),
        directional(name, prec[best] - prec[first], _lens_se(prec[best], prec[first], units[best], units[first]),
                    LENS_MARGIN, "", f"L{best} − L{first} precision"),
    ]  # fmt: skip
    verdicts = {t.verdict for t in tests}
    verdict = (
        CONTRADICTED if CONTRADICTED in verdicts else REPRODUCED if verdicts == {REPRODUCED} else INCONCLUSIVE
    )
    why = "; ".join(t.reason for t in tests if t.verdict == verdict) or "; ".join(t.reason for t in tests)
    m = max(t.mde for t in tests if t.mde is not None)
    task = TaskVerdict(name, verdict, why, nums + "".join(t.numbers for t in tests), m, m <= LENS_MARGIN)
    return Claim("f", "Logit lens", LENS_CLAIM, rule, task.verdict, why, (task,))


def _clusters(ids: Sequence[str] | None, n: int) -> np.ndarray:
    """Item codes of n clips from their example ids (``example@voice``); every clip its own item without ids."""
    names = [item_of(i) for i in ids] if ids is not None and len(ids) == n else [str(i) for i in range(n)]
    return item_index(names)[0]


def _item_low(correct: Sequence[bool], ids: Sequence[str] | None) -> float:
    """Lower end of the item-clustered 95% Wilson interval of an accuracy (``clustered_proportion_ci``)."""
    x = np.asarray(correct, dtype=np.int64)
    clusters = _clusters(ids, len(x))
    sums = per_item_sums(np.vstack([x, np.ones_like(x)]), clusters)
    return clustered_proportion_ci(sums[0], sums[1])[0]


def _drop_difference(
    none: TaskAccuracy,
    text: TaskAccuracy,
    controls: Sequence[TaskAccuracy],
    ids: Sequence[str] | None = None,
) -> tuple[float, float | None]:
    """(text drop) − (mean control drop) = mean control accuracy − text accuracy, with its standard error.

    Paired over items when the rows hold per-clip ``correct`` answers (the clips are the same in every condition):
    the Obuchowski variance of ``casceq.stats.cluster.paired_difference_ci``, with the clips of one item (``ids``,
    ``example@voice``) as one cluster; with one clip per item it is the sample SD of the paired differences over
    √n. Otherwise the independent-binomial standard error, which overstates it (answers under two erasures of
    one model are positively correlated), so the verdict errs towards inconclusive.

    With several controls (random-subspace draws) the claim is about a random subspace, not these k: the
    between-draw variance of their accuracies over k is added (a draw that happens to hit the task's directions
    shifts every item at once, which the per-item variance cannot see).
    """
    est = float(np.mean([c.accuracy for c in controls])) - text.accuracy
    n = int(text.n)
    if text.correct and all(c.correct for c in controls) and n > 1:
        ctrl = np.mean([np.asarray(c.correct, dtype=float) for c in controls], axis=0)
        txt = np.asarray(text.correct, dtype=float)
        clusters = _clusters(ids, len(txt))
        sums = per_item_sums(np.vstack([ctrl, txt, np.ones_like(txt)]), clusters)
        if len(sums[2]) < 2:
            return est, None
        se = paired_difference_ci(sums[0], sums[1], sums[2]).se
        se = float(np.sqrt(se**2 + _between_draws(controls)))
        return est, se if se > 0 else None
    pc = float(np.mean([c.accuracy for c in controls]))
    var = (pc * (1 - pc) / len(controls) + text.accuracy * (1 - text.accuracy)) / max(n, 1)
    var += _between_draws(controls)
    return est, float(np.sqrt(var)) if var > 0 else None


def _between_draws(controls: Sequence[TaskAccuracy]) -> float:
    """Variance of the mean of k control draws' accuracies, ``s^2 / k`` (0 for a single control)."""
    accs = [float(c.accuracy) for c in controls]
    return float(np.var(accs, ddof=1)) / len(accs) if len(accs) > 1 else 0.0


def claim_erasure(erasure: ErasureResult | None, missing: str) -> Claim:
    """(g) LEACE text erasure costs much more accuracy than random-subspace (and acoustic) erasure."""
    ref = REFERENCE["g"]
    claim = (
        "LEACE erasure of text representations collapses the speech LLM's accuracy (text is causally necessary), "
        "while erasing a random subspace of the same rank does not."
    )
    rule = (
        "Accuracy drops from no erasure to each erasure (all captured layers, every position), on items disjoint "
        "from the erasers' fitting utterances. Testable where the unerased accuracy is above chance. For each "
        "control (the mean of the random-subspace draws; acoustic): the text drop minus the control drop, with a "
        "95% CI paired over items (the voices of an item one cluster; for the random draws plus their "
        "between-draw variance). Reproduced when both CIs lie above 0; contradicted when one lies below "
        f"{ref}; else inconclusive (MDE printed). The spread of the random draws is printed."
    )
    if erasure is None:
        return Claim("g", "Erasure", claim, rule, INCONCLUSIVE, missing)
    acc: dict[str, dict[str, TaskAccuracy]] = {}
    for r in erasure.accuracy:
        acc.setdefault(r.task, {})[r.condition] = r
    gold = erasure.gold
    fit = set(erasure.fit_items)
    out = []
    for task, rows in acc.items():
        none = rows.get("none")
        randoms = [r for c, r in rows.items() if c == "random" or c.startswith("random-")]
        if none is None or "text" not in rows or not randoms:
            out.append(TaskVerdict(task, NOT_TESTABLE, "no unerased, text-erased or random-erased answers"))
            continue
        drops = {c: none.accuracy - r.accuracy for c, r in rows.items() if c != "none"}
        rand = [none.accuracy - r.accuracy for r in randoms]
        nums = f"none {fmt(none.accuracy)} (n {none.n}); text drop {fmt(drops['text'])}; " + (
            f"random drop over {len(rand)} draws mean {fmt(float(np.mean(rand)))} "
            f"(min {fmt(min(rand))}, max {fmt(max(rand))})"
        )
        if "acoustic" in drops:
            nums += f"; acoustic drop {fmt(drops['acoustic'])}"
        ids = erasure.items.get(task)
        evaluated = {item_of(i) for i in ids or ()}
        if fit & evaluated:
            why = f"{len(fit & evaluated)} evaluated items are the erasers' fitting utterances"
            out.append(TaskVerdict(task, NOT_TESTABLE, why, nums))
            continue
        c = len(get_task(task).labels)
        chance = chance_of_labels(gold[task], c) if gold.get(task) else 1 / c
        low = (
            _item_low(none.correct, ids)
            if none.correct
            else wilson_low(round(none.accuracy * none.n), none.n)
        )
        if low <= chance:
            out.append(
                TaskVerdict(
                    task,
                    NOT_TESTABLE,
                    f"unerased accuracy is not shown above chance {fmt(chance)} (95% lower bound)",
                    nums,
                )
            )
            continue
        tests = [
            directional(
                task, *_drop_difference(none, rows["text"], randoms, ids), ref, "", "text − random drop"
            )
        ]
        if "acoustic" in rows:
            tests.append(
                directional(
                    task,
                    *_drop_difference(none, rows["text"], [rows["acoustic"]], ids),
                    ref,
                    "",
                    "text − acoustic drop",
                )
            )
        nums += "".join(t.numbers for t in tests)
        mdes = [t.mde for t in tests if t.mde is not None]
        m = max(mdes) if mdes else None
        powered = None if m is None else m <= ref
        verdicts = {t.verdict for t in tests}
        reason = "; ".join(t.reason for t in tests)
        if CONTRADICTED in verdicts:
            v = CONTRADICTED
        elif verdicts == {REPRODUCED} and not (fit and evaluated):
            # a result that cannot show its erasers were fitted on other items cannot reproduce the claim
            v, reason = (
                INCONCLUSIVE,
                reason + "; but the result predates the fitting/evaluation disjointness record",
            )
        elif verdicts == {REPRODUCED}:
            v = REPRODUCED
        elif NOT_TESTABLE in verdicts:
            v = NOT_TESTABLE
        else:
            v = INCONCLUSIVE
        out.append(TaskVerdict(task, v, reason, nums, m, powered))
    verdict, reason = combine(out)
    return Claim("g", "Erasure", claim, rule, verdict, reason, tuple(out))


def kappa_difference_ci(
    rows: Sequence[ImplicitRow], n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile item bootstrap CI of κ(implicit, speech) − κ(cascade, speech) (NaN resamples dropped).

    Rows whose ``id`` share the example before "@" (its voices) are one item: resampled together
    (``casceq.stats.agreement.bootstrap_pairwise_kappa``). With one row per item this is the row bootstrap of
    ``default_rng(seed).integers(0, n, size=(n_boot, n))``.
    """
    systems = ("speech", "implicit", "cascade")
    categories = sorted({str(getattr(r, s)) for r in rows for s in systems})
    codes = np.stack([encode([str(getattr(r, s)) for r in rows], categories) for s in systems])
    clusters = _clusters([str(r.id) for r in rows], len(rows))
    boot = bootstrap_pairwise_kappa(
        codes, np.array([[1, 0], [2, 0]]), len(categories), clusters, n_boot, seed
    )
    diffs = boot[:, 0] - boot[:, 1]
    diffs = diffs[np.isfinite(diffs)]
    if not len(diffs):
        return float("nan"), float("nan")
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def claim_implicit(implicit: Sequence[ImplicitResult] | None, missing: str) -> Claim:
    """(h) The implicit cascade (lens text → backbone) agrees with the speech LLM as well as the explicit one.

    ``implicit``: every task's result (``read_implicit(path).results``).
    """
    margin = REFERENCE["h"]
    claim = (
        "Implicit cascade: decoding the speech LLM's own hidden states with the logit lens and giving that text to "
        "its backbone reproduces the speech LLM's answers about as well as the explicit Whisper cascade "
        "(κ_impl vs κ_casc)."
    )
    rule = (
        "Per task, where the speech LLM and the explicit cascade are above chance: equivalence of κ_impl and "
        f"κ_casc by two one-sided tests at 0.05 with margin ±{margin} (standard error from the item bootstrap of "
        "κ_impl − κ_casc). Reproduced when the 90% CI lies within the margin; contradicted when it lies wholly "
        "beyond it; else inconclusive (the smallest margin this n could establish is printed)."
    )
    if implicit is None:
        return Claim("h", "Implicit cascade", claim, rule, INCONCLUSIVE, missing)
    out = []
    for r in implicit:
        n, task = r.n, r.task
        nums = (
            f"κ_impl {fmt(r.kappa_impl)}, κ_casc {fmt(r.kappa_casc)}; accuracy speech "
            f"{fmt(r.accuracy_speech)}, implicit {fmt(r.accuracy_implicit)}, cascade {fmt(r.accuracy_cascade)} (n {n})"
        )
        c = len(get_task(task).labels)
        chance = chance_of_labels([row.gold for row in r.rows], c) if r.rows else 1 / c
        low = [s for s in ("speech", "cascade") if _accuracy_low(r, s) <= chance]
        if low:
            why = f"{' and '.join(low)} not shown above chance ({fmt(chance)}): κ is uninformative"
            out.append(TaskVerdict(task, NOT_TESTABLE, why, nums))
            continue
        if math.isnan(r.kappa_impl) or math.isnan(r.kappa_casc):  # undefined (null in the file)
            out.append(TaskVerdict(task, NOT_TESTABLE, "κ_impl or κ_casc undefined", nums))
            continue
        se = se_from_ci(*kappa_difference_ci(r.rows))
        out.append(
            equivalence(
                task, r.kappa_impl - r.kappa_casc, se, margin, nums, "κ_impl − κ_casc", two_sided=True
            )
        )
    verdict, reason = combine(out)
    return Claim("h", "Implicit cascade", claim, rule, verdict, reason, tuple(out))


def _accuracy_low(result: ImplicitResult, system: str) -> float:
    """Lower end of the 95% interval of an implicit result's accuracy, item-clustered from its rows.

    Rows carry labels and ``id``; their correctness (label = gold) must give back the stored accuracy, else
    (open-answer scoring, older results) the clip-level Wilson bound of the stored accuracy is used.
    """
    n, acc = int(result.n), float(getattr(result, f"accuracy_{system}"))
    rows = result.rows
    if len(rows) == n and n:
        correct = [getattr(row, system) == row.gold for row in rows]
        if abs(float(np.mean(correct)) - acc) < 1e-9:
            return _item_low(correct, [str(row.id) for row in rows])
    return wilson_low(round(acc * n), n)
