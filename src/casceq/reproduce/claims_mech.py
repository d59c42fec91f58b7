"""Mechanistic claims (f-h), judged from the JSON results of the lens, erasure and implicit stages.

Each function takes the parsed result (None when the stage did not run) and a reason to give when it is
missing (``"stage skipped (--skip-mech)"``, ``"stage failed: ..."``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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
    wilson_low,
)
from casceq.stats.power import se_from_ci

LENS_MARGIN = 0.05
"""Lens precision at the best upper-half layer must exceed the control and the first captured layer by this."""

LENS_CLAIM = (
    "Logit lens: literal transcript text emerges in the speech LLM's hidden states at the audio positions as depth "
    "increases."
)


def claim_lens(lens: Mapping[str, Any] | None, control: Mapping[str, Any] | None, missing: str) -> Claim:
    """(f) Lens precision at audio positions rises with depth above the deranged-transcript control."""
    rule = (
        "Bag-of-tokens precision of lens tokens vs the utterance's transcript (casceq.mech.lens), per captured "
        "layer; control = the same tokens scored against another utterance's transcript. Reproduced when the best "
        f"layer of the upper half beats both the control at that layer and the first captured layer by ≥ {LENS_MARGIN}; "
        "contradicted when it does not beat one of them at all; else inconclusive. The lens result stores per-layer "
        "precision only, so this rule has no interval."
    )
    if lens is None or control is None:
        return Claim("f", "Logit lens", LENS_CLAIM, rule, INCONCLUSIVE, missing)
    prec = {r["layer"]: r["precision"] for r in lens["layers"] if r["precision"] is not None}
    ctrl = {r["layer"]: r["precision"] for r in control["layers"] if r["precision"] is not None}
    if not prec:
        return Claim("f", "Logit lens", LENS_CLAIM, rule, INCONCLUSIVE, "no lens token was scored")
    layers = sorted(prec)
    upper = [la for la in layers if la >= layers[-1] / 2]
    best = max(upper, key=lambda la: prec[la])
    first = layers[0]
    nums = ", ".join(f"L{la} {fmt(prec[la])} (control {fmt(ctrl.get(la))})" for la in layers)
    over_ctrl = prec[best] - ctrl.get(best, 0.0)
    over_first = prec[best] - prec[first]
    if over_ctrl >= LENS_MARGIN and over_first >= LENS_MARGIN:
        verdict = REPRODUCED
    elif over_first <= 0 or over_ctrl <= 0:
        verdict = CONTRADICTED  # precision falls with depth, or the control reads as well
    else:
        verdict = INCONCLUSIVE
    why = (
        f"best upper-half layer L{best}: precision {fmt(prec[best])} (control {fmt(ctrl.get(best))}); first "
        f"captured layer L{first}: {fmt(prec[first])}"
    )
    task = TaskVerdict(f"{lens.get('n_utterances', '?')} utterances", verdict, why, nums)
    return Claim("f", "Logit lens", LENS_CLAIM, rule, task.verdict, why, (task,))


def _drop_difference(
    none: Mapping[str, Any], text: Mapping[str, Any], controls: Sequence[Mapping[str, Any]]
) -> tuple[float, float | None]:
    """(text drop) − (mean control drop) = mean control accuracy − text accuracy, with its standard error.

    Paired over items when the rows hold per-item ``correct`` lists (the items are the same in every
    condition); otherwise the independent-binomial standard error, which overstates it (answers under two
    erasures of one model are positively correlated), so the verdict errs towards inconclusive.
    """
    est = float(np.mean([c["accuracy"] for c in controls])) - text["accuracy"]
    n = int(text["n"])
    if text.get("correct") and all(c.get("correct") for c in controls) and n > 1:
        ctrl = np.mean([np.asarray(c["correct"], dtype=float) for c in controls], axis=0)
        d = ctrl - np.asarray(text["correct"], dtype=float)
        sd = float(d.std(ddof=1))
        return est, sd / np.sqrt(n) if sd > 0 else None
    pc = float(np.mean([c["accuracy"] for c in controls]))
    var = (pc * (1 - pc) / len(controls) + text["accuracy"] * (1 - text["accuracy"])) / max(n, 1)
    return est, float(np.sqrt(var)) if var > 0 else None


def claim_erasure(erasure: Mapping[str, Any] | None, missing: str) -> Claim:
    """(g) LEACE text erasure costs much more accuracy than random-subspace (and acoustic) erasure."""
    from casceq.tasks import get_task

    ref = REFERENCE["g"]
    claim = (
        "LEACE erasure of text representations collapses the speech LLM's accuracy (text is causally necessary), "
        "while erasing a random subspace of the same rank does not."
    )
    rule = (
        "Accuracy drops from no erasure to each erasure (all captured layers, every position), on items disjoint "
        "from the erasers' fitting utterances. Testable where the unerased accuracy is above chance. For each "
        "control (the mean of the random-subspace draws; acoustic): the text drop minus the control drop, with a "
        "95% CI paired over items. Reproduced when both CIs lie above 0; contradicted when one lies below "
        f"{ref}; else inconclusive (MDE printed). The spread of the random draws is printed."
    )
    if erasure is None:
        return Claim("g", "Erasure", claim, rule, INCONCLUSIVE, missing)
    acc: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in erasure["accuracy"]:
        acc.setdefault(r["task"], {})[r["condition"]] = r
    gold = erasure.get("gold", {})
    fit = set(erasure.get("fit_items") or ())
    out = []
    for task, rows in acc.items():
        none = rows.get("none")
        randoms = [r for c, r in rows.items() if c == "random" or c.startswith("random-")]
        if none is None or "text" not in rows or not randoms:
            out.append(TaskVerdict(task, NOT_TESTABLE, "no unerased, text-erased or random-erased answers"))
            continue
        drops = {c: none["accuracy"] - r["accuracy"] for c, r in rows.items() if c != "none"}
        rand = [none["accuracy"] - r["accuracy"] for r in randoms]
        nums = f"none {fmt(none['accuracy'])} (n {none['n']}); text drop {fmt(drops['text'])}; " + (
            f"random drop over {len(rand)} draws mean {fmt(float(np.mean(rand)))} "
            f"(min {fmt(min(rand))}, max {fmt(max(rand))})"
        )
        if "acoustic" in drops:
            nums += f"; acoustic drop {fmt(drops['acoustic'])}"
        evaluated = {i.split("@")[0] for i in erasure.get("items", {}).get(task, ())}
        if fit & evaluated:
            why = f"{len(fit & evaluated)} evaluated items are the erasers' fitting utterances"
            out.append(TaskVerdict(task, NOT_TESTABLE, why, nums))
            continue
        c = len(get_task(task).labels)
        chance = chance_of_labels(gold[task], c) if gold.get(task) else 1 / c
        if wilson_low(round(none["accuracy"] * none["n"]), none["n"]) <= chance:
            out.append(TaskVerdict(task, NOT_TESTABLE, f"unerased accuracy is at chance {fmt(chance)}", nums))
            continue
        tests = [
            directional(task, *_drop_difference(none, rows["text"], randoms), ref, "", "text − random drop")
        ]
        if "acoustic" in rows:
            tests.append(
                directional(
                    task,
                    *_drop_difference(none, rows["text"], [rows["acoustic"]]),
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
    rows: Sequence[Mapping[str, str]], n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap CI of κ(implicit, speech) − κ(cascade, speech) over items (NaN resamples dropped)."""
    from casceq.stats.agreement import kappa

    speech = np.array([r["speech"] for r in rows])
    impl = np.array([r["implicit"] for r in rows])
    casc = np.array([r["cascade"] for r in rows])
    idx = np.random.default_rng(seed).integers(0, len(rows), size=(n_boot, len(rows)))
    diffs = np.array([kappa(impl[i], speech[i]) - kappa(casc[i], speech[i]) for i in idx])
    diffs = diffs[np.isfinite(diffs)]
    if not len(diffs):
        return float("nan"), float("nan")
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def claim_implicit(implicit: Mapping[str, Any] | None, missing: str) -> Claim:
    """(h) The implicit cascade (lens text → backbone) agrees with the speech LLM as well as the explicit one."""
    from casceq.tasks import get_task

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
    for r in implicit["results"]:
        n, task = r["n"], r["task"]
        nums = (
            f"κ_impl {fmt(r['kappa_impl'])}, κ_casc {fmt(r['kappa_casc'])}; accuracy speech "
            f"{fmt(r['accuracy_speech'])}, implicit {fmt(r['accuracy_implicit'])}, cascade {fmt(r['accuracy_cascade'])} (n {n})"
        )
        c = len(get_task(task).labels)
        chance = chance_of_labels([row["gold"] for row in r["rows"]], c) if r.get("rows") else 1 / c
        low = [s for s in ("speech", "cascade") if wilson_low(round(r[f"accuracy_{s}"] * n), n) <= chance]
        if low:
            why = f"{' and '.join(low)} at chance ({fmt(chance)}): κ is uninformative"
            out.append(TaskVerdict(task, NOT_TESTABLE, why, nums))
            continue
        if r["kappa_impl"] is None or r["kappa_casc"] is None:
            out.append(TaskVerdict(task, NOT_TESTABLE, "κ_impl or κ_casc undefined", nums))
            continue
        se = se_from_ci(*kappa_difference_ci(r["rows"]))
        out.append(
            equivalence(
                task, r["kappa_impl"] - r["kappa_casc"], se, margin, nums, "κ_impl − κ_casc", two_sided=True
            )
        )
    verdict, reason = combine(out)
    return Claim("h", "Implicit cascade", claim, rule, verdict, reason, tuple(out))
