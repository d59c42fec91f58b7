"""Mechanistic claims (f-h), judged from the JSON results of the lens, erasure and implicit stages.

Each function takes the parsed result (None when the stage did not run) and a reason to give when it is
missing (``"stage skipped (--skip-mech)"``, ``"stage failed: ..."``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from casceq.reproduce.rules import (
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    Claim,
    TaskVerdict,
    combine,
    fmt,
    fmt_ci,
    wilson_low,
)

LENS_MARGIN = 0.05
"""Lens precision at the best upper-half layer must exceed the control and the first captured layer by this."""

ERASE_MARGIN = 0.10
"""Text erasure must cost this much more accuracy than either control ("much more")."""

LENS_CLAIM = (
    "Logit lens: literal transcript text emerges in the speech LLM's hidden states at the audio positions as depth "
    "increases."
)


def claim_lens(lens: Mapping[str, Any] | None, control: Mapping[str, Any] | None, missing: str) -> Claim:
    """(f) Lens precision at audio positions rises with depth above the deranged-transcript control."""
    rule = (
        "Bag-of-tokens precision of lens tokens vs the utterance's transcript (casceq.mech.lens), per captured "
        "layer; control = the same tokens scored against another utterance's transcript. Reproduced when the best "
        f"layer of the upper half beats both the control at that layer and the first captured layer by ≥ {LENS_MARGIN}."
    )
    if lens is None or control is None:
        return Claim("f", "Logit lens", LENS_CLAIM, rule, NOT_TESTABLE, missing)
    prec = {r["layer"]: r["precision"] for r in lens["layers"] if r["precision"] is not None}
    ctrl = {r["layer"]: r["precision"] for r in control["layers"] if r["precision"] is not None}
    if not prec:
        return Claim("f", "Logit lens", LENS_CLAIM, rule, NOT_TESTABLE, "no lens token was scored")
    layers = sorted(prec)
    upper = [la for la in layers if la >= layers[-1] / 2]
    best = max(upper, key=lambda la: prec[la])
    first = layers[0]
    nums = ", ".join(f"L{la} {fmt(prec[la])} (control {fmt(ctrl.get(la))})" for la in layers)
    over_ctrl = prec[best] - ctrl.get(best, 0.0)
    over_first = prec[best] - prec[first]
    ok = over_ctrl >= LENS_MARGIN and over_first >= LENS_MARGIN
    why = (
        f"best upper-half layer L{best}: precision {fmt(prec[best])} (control {fmt(ctrl.get(best))}); first "
        f"captured layer L{first}: {fmt(prec[first])}"
    )
    task = TaskVerdict(
        f"{lens.get('n_utterances', '?')} utterances", REPRODUCED if ok else NOT_REPRODUCED, why, nums
    )
    return Claim("f", "Logit lens", LENS_CLAIM, rule, task.verdict, why, (task,))


def claim_erasure(erasure: Mapping[str, Any] | None, missing: str) -> Claim:
    """(g) LEACE text erasure costs much more accuracy than random (and acoustic) erasure."""
    from casceq.tasks import get_task

    claim = (
        "LEACE erasure of text representations collapses the speech LLM's accuracy (text is causally necessary), "
        "while erasing a random subspace of the same rank does not."
    )
    rule = (
        "Accuracy drops from no erasure to each erasure (all captured layers, every position). Testable where the "
        "unerased accuracy is above chance (Wilson lower bound > 1/C). Reproduced when the text drop exceeds the "
        f"random and the acoustic drop by ≥ {ERASE_MARGIN}."
    )
    if erasure is None:
        return Claim("g", "Erasure", claim, rule, NOT_TESTABLE, missing)
    acc: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in erasure["accuracy"]:
        acc.setdefault(r["task"], {})[r["condition"]] = r
    out = []
    for task, rows in acc.items():
        none = rows.get("none")
        if none is None or "text" not in rows:
            out.append(TaskVerdict(task, NOT_TESTABLE, "no unerased or text-erased answers"))
            continue
        drops = {c: none["accuracy"] - r["accuracy"] for c, r in rows.items() if c != "none"}
        nums = f"none {fmt(none['accuracy'])} (n {none['n']}); " + ", ".join(
            f"{c} {fmt(rows[c]['accuracy'])} (drop {fmt(d)})" for c, d in drops.items()
        )
        chance = 1 / len(get_task(task).labels)
        if wilson_low(round(none["accuracy"] * none["n"]), none["n"]) <= chance:
            out.append(
                TaskVerdict(task, NOT_TESTABLE, "unerased accuracy is at chance: nothing to erase", nums)
            )
            continue
        controls = [drops[c] for c in ("random", "acoustic") if c in drops]
        margin = drops["text"] - max(controls) if controls else float("nan")
        ok = bool(controls) and margin >= ERASE_MARGIN
        why = f"text drop − largest control drop = {fmt(margin)}"
        out.append(TaskVerdict(task, REPRODUCED if ok else NOT_REPRODUCED, why, nums))
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

    claim = (
        "Implicit cascade: decoding the speech LLM's own hidden states with the logit lens and giving that text to "
        "its backbone reproduces the speech LLM's answers about as well as the explicit Whisper cascade "
        "(κ_impl vs κ_casc)."
    )
    rule = (
        "Per task, where the speech LLM is above chance: reproduced when κ_impl is defined and above 0 and the "
        "bootstrap 95% CI of κ_impl − κ_casc reaches 0 or above (the implicit cascade is not significantly worse)."
    )
    if implicit is None:
        return Claim("h", "Implicit cascade", claim, rule, NOT_TESTABLE, missing)
    out = []
    for r in implicit["results"]:
        n, task = r["n"], r["task"]
        nums = (
            f"κ_impl {fmt(r['kappa_impl'])}, κ_casc {fmt(r['kappa_casc'])}; accuracy speech "
            f"{fmt(r['accuracy_speech'])}, implicit {fmt(r['accuracy_implicit'])}, cascade {fmt(r['accuracy_cascade'])} (n {n})"
        )
        chance = 1 / len(get_task(task).labels)
        if wilson_low(round(r["accuracy_speech"] * n), n) <= chance:
            out.append(
                TaskVerdict(task, NOT_TESTABLE, "the speech LLM is at chance: κ is uninformative", nums)
            )
            continue
        if r["kappa_impl"] is None or r["kappa_casc"] is None:
            out.append(TaskVerdict(task, NOT_REPRODUCED, "κ_impl or κ_casc undefined", nums))
            continue
        ci = kappa_difference_ci(r["rows"])
        nums += f"; κ_impl − κ_casc {fmt(r['kappa_impl'] - r['kappa_casc'])} {fmt_ci(ci)}"
        ok = r["kappa_impl"] > 0 and ci[1] >= 0
        if ok:
            why = "κ_impl > 0 and not significantly below κ_casc"
        elif r["kappa_impl"] <= 0:
            why = "κ_impl ≤ 0: the lens text carries none of the speech LLM's answers"
        else:
            why = "κ_impl − κ_casc CI lies below 0: the implicit cascade agrees less than the explicit one"
        out.append(TaskVerdict(task, REPRODUCED if ok else NOT_REPRODUCED, why, nums))
    verdict, reason = combine(out)
    return Claim("h", "Implicit cascade", claim, rule, verdict, reason, tuple(out))
