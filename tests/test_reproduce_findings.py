"""Claim verdicts of ``casceq reproduce`` on synthetic results with known truth: each rule yields "reproduced"
on data built to satisfy the paper's claim, "contradicted" on data built against it, "inconclusive" (with its
minimum detectable effect) on data too small to decide, and "not testable here" on a task where a system it
relies on is at chance. Behavioural inputs go through the real ``compare()``."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from casceq.mech.erasure_concepts import ErasureResult, TaskAccuracy
from casceq.mech.implicit import ImplicitResult, ImplicitRow
from casceq.mech.lens import LensResult
from casceq.mech.lens_tokens import LensLayer
from casceq.reproduce import claims_behaviour as cb
from casceq.reproduce import claims_mech as cm
from casceq.reproduce.rules import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    REPRODUCED,
    CompareView,
    TaskVerdict,
    combine,
    wilson_low,
)
from casceq.stages.lens import LensControl
from casceq.stats.compare import compare
from casceq.types import Prediction

BACKBONES = {"Cascade-S": "g", "Cascade-W": "g", "Cascade-M": "s", "Speech-LLM": "g", "Text": "g"}
KINDS = {"Cascade-S": "cascade", "Cascade-W": "cascade", "Cascade-M": "cascade", "Speech-LLM": "speech_llm"}
LABELS = {"ag_news": ("World", "Sports", "Business", "Sci/Tech"), "sst2": ("negative", "positive")}


def _rows(system: str, task: str, cond: str, gold: list[str], labels: list[str]) -> list[Prediction]:
    return [
        Prediction(
            system, task, cond, f"{task}-{i}", lab, lab, g, None, None, 0.0, BACKBONES[system], lab == g
        )
        for i, (g, lab) in enumerate(zip(gold, labels, strict=True))
    ]


def _noisy(rng: np.random.Generator, base: list[str], labels: tuple[str, ...], flip: float) -> list[str]:
    """A copy of ``base`` with a share ``flip`` of answers replaced by another label."""
    out = list(base)
    for i in rng.choice(len(base), int(flip * len(base)), replace=False):
        out[i] = str(rng.choice([x for x in labels if x != base[i]]))
    return out


def _world(
    speech_copies: str, *, n: int = 200, seed: int = 0, speech_flip: float = 0.1, m_flip: float = 0.40
) -> dict:
    """compare.json of a synthetic run: Cascade-S 85% right, W 75%, M 60% (independent errors), and the speech
    LLM a noisy copy of ``speech_copies`` ("Cascade-S", "Cascade-M", or "random": uniform guesses)."""
    rng = np.random.default_rng(seed)
    preds: list[Prediction] = []
    for task, labels in LABELS.items():
        gold = [str(x) for x in rng.choice(labels, n)]
        sys_labels = {
            "Cascade-S": _noisy(rng, gold, labels, 0.15),
            "Cascade-W": _noisy(rng, gold, labels, 0.25),
            "Cascade-M": _noisy(rng, gold, labels, m_flip),
        }
        if speech_copies == "random":
            sys_labels["Speech-LLM"] = [str(x) for x in rng.choice(labels, n)]
        else:
            sys_labels["Speech-LLM"] = _noisy(rng, sys_labels[speech_copies], labels, speech_flip)
        for s, labs in sys_labels.items():
            preds += _rows(s, task, "clean", gold, labs)
    return json.loads(compare(preds, n_bootstrap=300, seed=0, kinds=KINDS).to_json())


TEXT = ["ag_news", "sst2"]


def _verdicts(claim) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {t.task: t.verdict for t in claim.tasks}


def test_ceiling_three_outcomes() -> None:
    cmp = CompareView(_world("Cascade-S", n=400))
    assert cb.claim_ceiling(cmp, TEXT).verdict == REPRODUCED
    small = cb.claim_ceiling(CompareView(_world("Cascade-S", n=30, speech_flip=0.2)), ["ag_news"])
    assert small.verdict == INCONCLUSIVE, small.reason
    assert small.tasks[0].mde is not None and small.tasks[0].mde > 0.05 and "smallest margin" in small.reason
    assert small.tasks[0].powered is False


def test_ceiling_contradicted_when_the_speech_llm_is_clearly_better() -> None:
    # the speech LLM is always right, Cascade-S wrong on 30%: a significant McNemar difference
    rng = np.random.default_rng(1)
    gold = [str(x) for x in rng.choice(LABELS["ag_news"], 200)]
    preds = _rows("Speech-LLM", "ag_news", "clean", gold, gold)
    preds += _rows("Cascade-S", "ag_news", "clean", gold, _noisy(rng, gold, LABELS["ag_news"], 0.3))
    preds += _rows("Cascade-W", "ag_news", "clean", gold, _noisy(rng, gold, LABELS["ag_news"], 0.4))
    data = json.loads(
        compare(
            preds, n_bootstrap=100, kinds={k: KINDS[k] for k in ("Cascade-S", "Cascade-W", "Speech-LLM")}
        ).to_json()
    )
    claim = cb.claim_ceiling(CompareView(data), ["ag_news"])
    assert claim.verdict == CONTRADICTED and "beyond the margin" in claim.reason
    assert "significantly better than Cascade-S" in claim.tasks[0].numbers


def _ceiling_data(
    speech_wrong: int, strong_wrong: int, weak_wrong: int, n: int = 4000, voices: int = 1
) -> dict:
    """compare.json of nested errors: each system wrong on the first k items (all voices of an item alike)."""
    gold = [LABELS["ag_news"][i % 4] for i in range(n)]
    wrong = {"Speech-LLM": speech_wrong, "Cascade-S": strong_wrong, "Cascade-W": weak_wrong}
    preds = []
    for s, k in wrong.items():
        for i, g in enumerate(gold):
            lab = LABELS["ag_news"][(i + 1) % 4] if i < k else g
            for v in range(voices):
                ex = f"ag-{i}@v{v}"
                preds.append(Prediction(s, "ag_news", "clean", ex, lab, lab, g, None, None, 0.0, "g", lab == g,
                                        item=f"ag-{i}"))  # fmt: skip
    kinds = {k: KINDS[k] for k in wrong}
    return json.loads(compare(preds, n_bootstrap=0, kinds=kinds).to_json())


def test_ceiling_significant_lead_within_the_margin_is_not_contradicted() -> None:
    # The speech LLM is right on 100 of 4000 items Cascade-S gets wrong and never the reverse: McNemar is
    # decisive, but the lead is 0.025 with a 90% CI of about [0.021, 0.029], inside the non-superiority margin
    # 0.05. The three-outcome rule judges the interval against the margin (the old rule said "contradicted").
    claim = cb.claim_ceiling(CompareView(_ceiling_data(400, 500, 600)), ["ag_news"])
    (task,) = claim.tasks
    assert "significantly better than Cascade-S" in task.numbers
    assert claim.verdict == REPRODUCED, claim.reason


def test_ceiling_without_predictions_refuses_clip_level_intervals_for_voiced_items() -> None:
    # Two identical voices per item: the McNemar counts double, and their clip-level SE would be √2 too small.
    one = cb.claim_ceiling(CompareView(_ceiling_data(40, 60, 70, n=400)), ["ag_news"])
    assert one.tasks[0].verdict != NOT_TESTABLE and one.tasks[0].mde is not None  # one clip per item: usable
    two = cb.claim_ceiling(CompareView(_ceiling_data(40, 60, 70, n=400, voices=2)), ["ag_news"])
    assert two.tasks[0].verdict == NOT_TESTABLE and "item-clustered" in two.tasks[0].reason


def test_bh_family_paper_vs_call() -> None:
    pairs = [
        {"a": "Speech-LLM", "b": "Cascade-S", "task": "t", "condition": "clean", "mcnemar_p": 0.01},
        {"a": "Speech-LLM", "b": "Cascade-W", "task": "t", "condition": "clean", "mcnemar_p": 0.04},
    ] + [
        {"a": f"X{i}", "b": "Cascade-S", "task": "t", "condition": "clean", "mcnemar_p": 0.9}
        for i in range(8)
    ]
    from statsmodels.stats.multitest import multipletests

    from casceq.reproduce.rules import family_q_values

    paper = family_q_values(pairs, "paper", "Speech-LLM", ("Cascade-S", "Cascade-W"))
    ref = multipletests([0.01, 0.04], method="fdr_bh")[1]
    assert set(paper) == {
        ("Speech-LLM", "Cascade-S", "t", "clean"),
        ("Speech-LLM", "Cascade-W", "t", "clean"),
    }
    assert paper[("Speech-LLM", "Cascade-S", "t", "clean")] == pytest.approx(ref[0])
    call = family_q_values(pairs, "call", "Speech-LLM", ())
    ref_all = multipletests([r["mcnemar_p"] for r in pairs], method="fdr_bh")[1]
    assert call[("Speech-LLM", "Cascade-S", "t", "clean")] == pytest.approx(ref_all[0])


def test_confound_three_outcomes() -> None:
    conf = cb.claim_confound(CompareView(_world("Cascade-S")), TEXT)
    assert conf.verdict == REPRODUCED, conf.reason
    bad = cb.claim_confound(CompareView(_world("Cascade-M", m_flip=0.2)), TEXT)
    assert bad.verdict == CONTRADICTED, bad.reason
    small = cb.claim_confound(
        CompareView(_world("Cascade-S", n=24, speech_flip=0.35, m_flip=0.2)), ["ag_news"]
    )
    assert small.verdict == INCONCLUSIVE, small.tasks[0].numbers
    assert "MDE" in small.reason


def test_confound_gates_the_mismatched_cascade() -> None:
    # Cascade-M guessing: Δκ > 0 is automatic, so the task is not testable (the old rule passed it)
    conf = cb.claim_confound(CompareView(_world("Cascade-S", m_flip=0.95)), ["ag_news"])
    assert conf.tasks[0].verdict == NOT_TESTABLE and "Cascade-M" in conf.tasks[0].reason
    assert conf.verdict == INCONCLUSIVE


def test_chance_speech_llm_makes_agreement_claims_not_testable() -> None:
    cmp = CompareView(_world("random"))
    for claim in (cb.claim_confound(cmp, TEXT), cb.claim_overlap(cmp, TEXT, {})):
        assert claim.verdict == INCONCLUSIVE
        assert all(t.verdict == NOT_TESTABLE for t in claim.tasks)
        assert any("chance" in t.reason or "2 classes" in t.reason for t in claim.tasks)


def test_one_chance_definition() -> None:
    # 70% of the gold on one label: chance is 0.7 for every gate (the old mech rules used 1/C = 0.5)
    from casceq.reproduce.rules import chance_level, chance_of_labels

    assert chance_level([70, 30], 2) == 0.7 and chance_level([10, 10, 10, 10], 4) == 0.25
    assert chance_of_labels(["a"] * 7 + ["b"] * 3, 2) == 0.7
    n = 100
    rows = [_row(f"r{i}", g, g, g, g) for i, g in enumerate(["negative"] * 70 + ["positive"] * 30)]
    res = [_implicit_result("sst2", n, (1.0, 1.0), (0.76, 0.76, 0.76), rows)]
    # 0.76 has a Wilson lower bound ~0.67 > 0.5 but < 0.7: at chance under the one definition
    assert cm.claim_implicit(res, "").tasks[0].verdict == NOT_TESTABLE


def _bias_preds(n: int, seed: int = 0) -> list[Prediction]:
    """Two systems wrong on half the items independently; each wrong answer is the first wrong label (in label
    order) with probability 0.6, else one of the other two: overlap 0.6² + 0.2² + 0.2² = 0.44 by label bias."""
    rng = np.random.default_rng(seed)
    labels = LABELS["ag_news"]
    gold = [str(x) for x in rng.choice(labels, n)]
    preds: list[Prediction] = []
    for s in ("Speech-LLM", "Cascade-S"):
        out = []
        for g in gold:
            wrong = [x for x in labels if x != g]
            out.append(g if rng.random() < 0.5 else str(rng.choice(wrong, p=[0.6, 0.2, 0.2])))
        preds += _rows(s, "ag_news", "clean", gold, out)
    return preds


def test_bias_overlap_null_hand_value() -> None:
    preds = _bias_preds(4000)
    table = cb.label_table(preds)
    null = cb.bias_overlap_null(
        table[("Speech-LLM", "ag_news", "clean")], table[("Cascade-S", "ag_news", "clean")]
    )
    assert null == pytest.approx(0.44, abs=0.02)


def test_label_bias_overlap_does_not_pass() -> None:
    preds = _bias_preds(3000)
    data = json.loads(
        compare(preds, n_bootstrap=0, kinds={"Speech-LLM": "speech_llm", "Cascade-S": "cascade"}).to_json()
    )
    cmp = CompareView(data)
    row = cmp.pair("Speech-LLM", "Cascade-S", "ag_news", "clean")
    assert row["overlap"] == pytest.approx(0.44, abs=0.04)
    table = cb.label_table(preds)
    k, m, _, (lo, _), _ = cb.overlap_interval(
        table[("Speech-LLM", "ag_news", "clean")], table[("Cascade-S", "ag_news", "clean")]
    )
    assert (k, m) == (row["same_wrong"], row["both_wrong"])
    assert lo > 1 / 3  # the old rule (binomial vs 1/(C-1)) would have passed it
    claim = cb.claim_overlap(cmp, ["ag_news"], cb.label_table(preds))
    assert claim.verdict != REPRODUCED
    assert claim.verdict == CONTRADICTED, claim.tasks[0].numbers


def test_overlap_reproduced_and_inconclusive() -> None:
    rng = np.random.default_rng(4)
    labels = LABELS["ag_news"]

    def run(n: int) -> tuple[CompareView, dict]:
        gold = [str(x) for x in rng.choice(labels, n)]
        casc = _noisy(rng, gold, labels, 0.3)
        speech = [
            c if rng.random() < 0.9 else g for c, g in zip(casc, gold, strict=True)
        ]  # copies its errors
        preds = _rows("Cascade-S", "ag_news", "clean", gold, casc) + _rows(
            "Speech-LLM", "ag_news", "clean", gold, speech
        )
        data = json.loads(
            compare(
                preds, n_bootstrap=0, kinds={"Speech-LLM": "speech_llm", "Cascade-S": "cascade"}
            ).to_json()
        )
        return CompareView(data), cb.label_table(preds)

    cmp, table = run(400)
    assert cb.claim_overlap(cmp, ["ag_news"], table).verdict == REPRODUCED
    cmp, table = run(14)
    small = cb.claim_overlap(cmp, ["ag_news"], table)
    # a handful of shared errors: the CI reaches both the null and null + 0.2, and the MDE says so
    assert small.tasks[0].verdict == INCONCLUSIVE and "MDE" in small.reason, small.tasks[0].numbers
    assert small.tasks[0].mde is not None and small.tasks[0].mde > 0.2 and small.tasks[0].powered is False


RAV = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def _text_insufficient(speech_rav: str, n: int = 200, seed: int = 3) -> CompareView:
    """SST-2: the speech LLM copies Cascade-S. RAVDESS: Cascade-S 70% right; the speech LLM ``"own"`` (70%
    right, independently of the cascade), ``"copies"`` (the cascade's labels) or ``"below"`` (5% right)."""
    rng = np.random.default_rng(seed)
    gold = [str(x) for x in rng.choice(LABELS["sst2"], n)]
    s = _noisy(rng, gold, LABELS["sst2"], 0.1)
    preds = _rows("Cascade-S", "sst2", "clean", gold, s)
    preds += _rows("Speech-LLM", "sst2", "clean", gold, _noisy(rng, s, LABELS["sst2"], 0.05))
    rgold = [str(x) for x in rng.choice(RAV, n)]
    casc = _noisy(rng, rgold, RAV, 0.3)
    speech = {"own": _noisy(rng, rgold, RAV, 0.3), "copies": casc, "below": _noisy(rng, rgold, RAV, 0.95)}[
        speech_rav
    ]
    preds += _rows("Cascade-S", "ravdess", "clean", rgold, casc) + _rows(
        "Speech-LLM", "ravdess", "clean", rgold, speech
    )
    kinds = {"Cascade-S": "cascade", "Speech-LLM": "speech_llm"}
    return CompareView(json.loads(compare(preds, n_bootstrap=300, kinds=kinds).to_json()))


def test_text_insufficient_three_outcomes() -> None:
    assert cb.claim_text_insufficient(_text_insufficient("own"), ["sst2"], ["ravdess"]).verdict == REPRODUCED
    assert (
        cb.claim_text_insufficient(_text_insufficient("copies"), ["sst2"], ["ravdess"]).verdict
        == CONTRADICTED
    )
    small = cb.claim_text_insufficient(_text_insufficient("own", n=12), ["sst2"], ["ravdess"])
    assert small.verdict == INCONCLUSIVE


def test_text_insufficient_below_chance_speech_llm_is_not_reproduced() -> None:
    # the review's case: the speech LLM at 5% on RAVDESS (below 1/8) made (d) "reproduced"
    claim = cb.claim_text_insufficient(_text_insufficient("below"), ["sst2"], ["ravdess"])
    assert claim.verdict != REPRODUCED
    assert (
        claim.tasks[0].verdict == NOT_TESTABLE
        and "not shown above chance on ravdess" in claim.tasks[0].reason
    )


def _table(drop_speech: float, drop_casc: float, base: float = 0.9, n: int = 200) -> dict:
    """Correctness per (system, task, condition): clean accuracy ``base``, minus each drop at babble@0."""
    rng = np.random.default_rng(0)
    table = {}
    for system, drop in (("Speech-LLM", drop_speech), ("Cascade-S", drop_casc)):
        clean = rng.random(n) < base
        noisy = clean & (rng.random(n) >= drop / base)
        table[(system, "sst2", "clean")] = {f"x{i}": bool(c) for i, c in enumerate(clean)}
        table[(system, "sst2", "babble@0")] = {f"x{i}": bool(c) for i, c in enumerate(noisy)}
    return table


def _acc_view(acc: float = 0.9, n: int = 200) -> CompareView:
    from statsmodels.stats.proportion import proportion_confint

    ci = list(proportion_confint(round(acc * n), n, method="wilson"))
    rows = [
        {"system": s, "task": "sst2", "condition": "clean", "n": n, "accuracy": acc, "ci": ci}
        for s in ("Speech-LLM", "Cascade-S")
    ]
    return CompareView({"accuracy": rows})


def test_degradation_matches_direct_computation_and_noise_rule() -> None:
    table = _table(0.4, 0.05)
    d = cb.degradation(table, "sst2", "Speech-LLM", "Cascade-S", "babble@0", n_boot=500)
    assert d is not None and d.n == 200
    ref = {
        s: np.mean(list(table[(s, "sst2", "clean")].values()))
        - np.mean(list(table[(s, "sst2", "babble@0")].values()))
        for s in ("Speech-LLM", "Cascade-S")
    }
    assert d.drop_a == pytest.approx(ref["Speech-LLM"]) and d.drop_b == pytest.approx(ref["Cascade-S"])
    assert d.diff_ci[0] <= d.diff <= d.diff_ci[1]
    cmp = _acc_view()
    assert cb.claim_noise(cmp, ["sst2"], {"sst2": d}).verdict == REPRODUCED
    same = cb.degradation(_table(0.02, 0.02, n=2000), "sst2", "Speech-LLM", "Cascade-S", "babble@0")
    assert cb.claim_noise(cmp, ["sst2"], {"sst2": same}).verdict == CONTRADICTED
    few = cb.degradation(_table(0.1, 0.05, n=30), "sst2", "Speech-LLM", "Cascade-S", "babble@0")
    small = cb.claim_noise(cmp, ["sst2"], {"sst2": few})
    assert small.verdict == INCONCLUSIVE and "MDE" in small.reason
    assert cb.claim_noise(_acc_view(0.5), ["sst2"], {"sst2": d}).tasks[0].verdict == NOT_TESTABLE
    assert cb.claim_noise(cmp, ["sst2"], {"sst2": None}).verdict == INCONCLUSIVE


LENS_TOKENS = 1000
"""Tokens scored per layer in the lens fixtures: more than the 40 utterances, so the utterances bound the units."""


def _layers(prec: dict[int, float]) -> tuple[LensLayer, ...]:
    return tuple(LensLayer(k, LENS_TOKENS, round(v * LENS_TOKENS), v) for k, v in prec.items())


def _lens(prec: dict[int, float]) -> LensResult:
    return LensResult("m:x", "speech:m", "f", "capture", 40, 0, _layers(prec))


def _control(prec: dict[int, float]) -> LensControl:
    return LensControl(_layers(prec))


def test_lens_rule() -> None:
    control = _control({0: 0.05, 9: 0.05, 17: 0.06})
    assert cm.claim_lens(_lens({0: 0.05, 9: 0.2, 17: 0.35}), control, "").verdict == REPRODUCED
    # present from the first layer on and falling (the committed run's 0.824 at layer 0): does not *emerge*
    assert cm.claim_lens(_lens({0: 0.824, 9: 0.01, 17: 0.02}), control, "").verdict == CONTRADICTED
    assert cm.claim_lens(_lens({0: 0.33, 9: 0.34, 17: 0.35}), control, "").verdict == INCONCLUSIVE
    # a 15-point fall over 40 utterances is not evidence against a 5-point rise once tokens are clustered in
    # utterances: the 95% CI of L17 − L0 is about [−0.36, 0.06]
    fall = cm.claim_lens(_lens({0: 0.5, 9: 0.34, 17: 0.35}), control, "")
    assert fall.verdict == INCONCLUSIVE and "MDE" in fall.reason
    # rises of 5 and 6 points met the old point-estimate rule ("reproduced"); over 40 utterances they are
    # not distinguishable from 0
    small = cm.claim_lens(_lens({0: 0.05, 9: 0.08, 17: 0.11}), control, "")
    assert small.verdict == INCONCLUSIVE and small.tasks[0].powered is False
    # by hand: Agresti-Caffo over 40 utterances, L17 − L0 = 0.06 with SE √(p̃(1−p̃)/42 + q̃(1−q̃)/42)
    pt, qt = (0.11 * 40 + 1) / 42, (0.05 * 40 + 1) / 42
    se = np.sqrt(pt * (1 - pt) / 42 + qt * (1 - qt) / 42)
    assert (
        f"L17 − L0 precision 0.060 [{0.06 - 1.959964 * se:.3f}, {0.06 + 1.959964 * se:.3f}]"
        in small.tasks[0].numbers
    )
    # a layer that scored 4 tokens holds at most 4 observations, however many utterances there are
    few = _lens({0: 0.05, 9: 0.2, 17: 0.35})
    few = dataclasses.replace(
        few, layers=tuple(dataclasses.replace(r, n_tokens=4, n_hits=0) for r in few.layers)
    )
    assert cm.claim_lens(few, control, "").verdict == INCONCLUSIVE
    skipped = cm.claim_lens(None, None, "mechanistic suite skipped (--skip-mech)")
    assert skipped.verdict == INCONCLUSIVE and "skip-mech" in skipped.reason


def _erasure(
    none: float, text: float, randoms: list[float], acoustic: float, n: int = 48, seed: int = 0
) -> ErasureResult:
    """Per-item correctness with these accuracies (items right under ``none`` lose answers under erasure)."""
    rng = np.random.default_rng(seed)
    base = np.zeros(n, bool)
    base[rng.choice(n, round(none * n), replace=False)] = True

    def erased(acc: float) -> list[bool]:
        keep = np.flatnonzero(base)
        out = np.zeros(n, bool)
        out[rng.choice(keep, min(round(acc * n), len(keep)), replace=False)] = True
        return out.tolist()

    conds = {"none": base.tolist(), "text": erased(text), "acoustic": erased(acoustic)}
    conds.update({("random" if j == 0 else f"random-{j + 1}"): erased(a) for j, a in enumerate(randoms)})
    gold = ["negative"] * (n // 2) + ["positive"] * (n - n // 2)
    accuracy = tuple(TaskAccuracy("sst2", c, n, float(np.mean(v)), 1.0, tuple(v)) for c, v in conds.items())
    return ErasureResult(
        "m", (), "all", False, "chars", 40, accuracy, (),
        gold={"sst2": gold}, items={"sst2": [f"x{i}@v" for i in range(n)]}, fit_items=[f"f{i}" for i in range(40)],
    )  # fmt: skip


def test_erasure_rule_three_outcomes() -> None:
    good = cm.claim_erasure(_erasure(0.9, 0.3, [0.88, 0.86, 0.9], 0.85, n=200), "")
    assert good.verdict == REPRODUCED, good.reason
    assert "3 draws" in good.tasks[0].numbers and "min 0.000" in good.tasks[0].numbers
    bad = cm.claim_erasure(_erasure(0.9, 0.88, [0.88, 0.86, 0.9], 0.85, n=400), "")
    assert bad.verdict == CONTRADICTED, bad.tasks[0].numbers
    small = cm.claim_erasure(_erasure(0.9, 0.8, [0.85], 0.85, n=20), "")
    assert small.verdict == INCONCLUSIVE and "MDE" in small.reason
    at_chance = cm.claim_erasure(_erasure(0.52, 0.5, [0.5], 0.5), "")
    assert at_chance.tasks[0].verdict == NOT_TESTABLE and "chance" in at_chance.reason
    assert cm.claim_erasure(None, "stage erasure failed: boom").verdict == INCONCLUSIVE


def test_erasure_rule_reads_old_results_without_items() -> None:
    new = _erasure(0.9, 0.3, [0.88], 0.85, n=200)
    # as read from a file written before the per-clip answers, gold labels, item ids and fitting items
    old = dataclasses.replace(
        new,
        accuracy=tuple(dataclasses.replace(r, correct=()) for r in new.accuracy),
        gold={},
        items={},
        fit_items=[],
    )
    judged = cm.claim_erasure(old, "")
    assert judged.tasks[0].verdict == INCONCLUSIVE and "predates" in judged.reason  # cannot show disjointness
    assert (
        "text − random drop 0.580" in judged.tasks[0].numbers
    )  # independent-binomial interval still printed
    # two evaluated items among the fitting utterances
    leaked = dataclasses.replace(_erasure(0.9, 0.3, [0.88], 0.85, n=200), fit_items=["x1", "x2", "f3"])
    assert "2 evaluated items are the erasers' fitting" in cm.claim_erasure(leaked, "").reason


def _row(id_: str, speech: str, implicit: str, cascade: str, gold: str) -> ImplicitRow:
    """One implicit-cascade row (one clip per item: ``id_`` without a voice)."""
    return ImplicitRow(id_, gold, speech, cascade, implicit, "", "")


def _implicit_result(
    task: str,
    n: int,
    kappas: tuple[float | None, float | None],
    accuracies: tuple[float, float, float],
    rows: list[ImplicitRow],
) -> ImplicitResult:
    """A Table 6 row: ``kappas`` (impl, casc; None: undefined), ``accuracies`` (speech, cascade, implicit)."""
    k_impl, k_casc = (math.nan if k is None else k for k in kappas)
    return ImplicitResult(
        "m", "b", task, 0, "score", "reference", n, *accuracies, k_impl, k_casc, tuple(rows)
    )


def _implicit(
    speech: list[str], implicit: list[str], cascade: list[str], gold: list[str]
) -> list[ImplicitResult]:
    from casceq.stats.agreement import kappa

    rows = [
        _row(f"r{j}", s, i, c, g)
        for j, (s, i, c, g) in enumerate(zip(speech, implicit, cascade, gold, strict=True))
    ]

    def acc(labels: list[str]) -> float:
        return float(np.mean([s == g for s, g in zip(labels, gold, strict=True)]))

    kappas = (kappa(implicit, speech), kappa(cascade, speech))
    return [_implicit_result("sst2", len(rows), kappas, (acc(speech), acc(cascade), acc(implicit)), rows)]


def test_implicit_rule_three_outcomes() -> None:
    rng = np.random.default_rng(5)
    labels = LABELS["sst2"]

    def world(n: int, impl_flip: float | None) -> list[ImplicitResult]:
        gold = [str(x) for x in rng.choice(labels, n)]
        speech = _noisy(rng, gold, labels, 0.1)
        impl = (
            [str(x) for x in rng.choice(labels, n)]
            if impl_flip is None
            else _noisy(rng, speech, labels, impl_flip)
        )
        return _implicit(speech, impl, _noisy(rng, speech, labels, 0.05), gold)

    good = cm.claim_implicit(world(1000, 0.05), "")
    assert good.verdict == REPRODUCED, good.tasks[0].numbers
    bad = cm.claim_implicit(world(200, None), "")
    assert bad.verdict == CONTRADICTED and "beyond the margin" in bad.reason
    small = cm.claim_implicit(world(40, 0.05), "")
    assert small.verdict == INCONCLUSIVE and "smallest margin" in small.reason


def test_kappa_difference_ci_matches_an_independent_bootstrap() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(2)
    s = [str(x) for x in rng.choice(["a", "b", "c"], 300)]
    rows = [_row(f"r{i}", x, x, str(rng.choice(["a", "b", "c"])), "") for i, x in enumerate(s)]
    lo, hi = cm.kappa_difference_ci(rows, n_boot=300, seed=7)
    # the same resamples (default_rng(7).integers), kappas from scikit-learn, percentiles by hand
    idx = np.random.default_rng(7).integers(0, len(rows), size=(300, len(rows)))
    sp = np.array(s)
    im = np.array([r.implicit for r in rows])
    ca = np.array([r.cascade for r in rows])
    diffs = np.sort([cohen_kappa_score(im[i], sp[i]) - cohen_kappa_score(ca[i], sp[i]) for i in idx])
    ref = np.percentile(diffs, [2.5, 97.5])
    assert (lo, hi) == pytest.approx(tuple(ref), abs=1e-9)
    point = 1.0 - cohen_kappa_score(ca, sp)
    assert lo < point < hi and hi - lo < 0.25  # implicit copies (κ 1), cascade independent (κ ~0)


def test_wilson_low_matches_statsmodels() -> None:
    from statsmodels.stats.proportion import proportion_confint

    for k, n in ((0, 10), (7, 20), (48, 50), (30, 100)):
        assert wilson_low(k, n) == pytest.approx(proportion_confint(k, n, method="wilson")[0], abs=1e-9)


def test_combine() -> None:
    ok, bad, inc, nt = (
        TaskVerdict(t, v, "r")
        for t, v in (("x", REPRODUCED), ("y", CONTRADICTED), ("w", INCONCLUSIVE), ("z", NOT_TESTABLE))
    )
    assert combine([ok, nt, inc])[0] == REPRODUCED
    assert combine([ok, bad, nt])[0] == CONTRADICTED
    assert combine([nt, inc])[0] == INCONCLUSIVE and combine([])[0] == INCONCLUSIVE


def test_judge_without_any_output_says_why(tmp_path: Path) -> None:
    from casceq.reproduce.findings import judge, write_findings
    from casceq.reproduce.plan import default_plan

    plan = default_plan(4, 4, mech=False)
    claims = judge(tmp_path, plan, {"behavioural": {"status": "failed", "detail": "boom"}})
    assert [c.key for c in claims] == list("abcdefgh")
    assert all(c.verdict == INCONCLUSIVE for c in claims)
    assert "boom" in claims[0].reason and "skip-mech" in claims[-1].reason
    page = write_findings(tmp_path, plan, claims, {"command": "casceq reproduce --offline"}, {}).read_text()
    assert "casceq reproduce --offline" in page and "inconclusive" in page and "powered" in page


def _two_voices(table: dict) -> dict:
    """Every clip duplicated as ``id@v1`` and ``id@v2`` with the same correctness (voices of one item)."""
    return {k: {f"{i}@{v}": c for i, c in cells.items() for v in ("v1", "v2")} for k, cells in table.items()}


def test_rules_treat_voices_of_an_item_as_one_unit() -> None:
    one = _table(0.2, 0.05, n=100)
    two = _two_voices(one)
    d1 = cb.degradation(one, "sst2", "Speech-LLM", "Cascade-S", "babble@0", n_boot=2000, seed=1)
    d2 = cb.degradation(two, "sst2", "Speech-LLM", "Cascade-S", "babble@0", n_boot=2000, seed=1)
    assert d1 is not None and d2 is not None and (d2.n, d2.n_items) == (200, 100)
    # copies of a clip add no information: the item bootstrap gives the same interval, not one √2 narrower
    assert d2.diff == pytest.approx(d1.diff)
    assert d2.diff_ci == pytest.approx(d1.diff_ci, abs=1e-12)
    est1, se1 = cb.clustered_difference(one, "Speech-LLM", "Cascade-S", "sst2", "babble@0", None)  # type: ignore[misc]
    est2, se2 = cb.clustered_difference(two, "Speech-LLM", "Cascade-S", "sst2", "babble@0", None)  # type: ignore[misc]
    assert est2 == pytest.approx(est1) and se2 == pytest.approx(se1, rel=1e-9)
    # the clip-level standard error of the McNemar counts would be ~√2 smaller on the duplicated clips
    a, b = (two[(s, "sst2", "babble@0")] for s in ("Speech-LLM", "Cascade-S"))
    row = {
        "a_right_b_wrong": sum(a[i] and not b[i] for i in a),
        "a_wrong_b_right": sum(b[i] and not a[i] for i in a),
        "n": len(a),
    }
    _, se_clip = cb.paired_accuracy_difference(row)
    assert se_clip is not None and se_clip < se2 / 1.3


def test_compare_bh_family_option_matches_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    from casceq.reproduce.rules import family_q_values

    rng = np.random.default_rng(9)
    preds: list[Prediction] = []
    gold = [str(x) for x in rng.choice(LABELS["ag_news"], 120)]
    for s, flip in (("Cascade-S", 0.15), ("Cascade-W", 0.3), ("Cascade-M", 0.4), ("Speech-LLM", 0.2)):
        preds += _rows(s, "ag_news", "clean", gold, _noisy(rng, gold, LABELS["ag_news"], flip))
    call = compare(preds, n_bootstrap=0, kinds=KINDS)
    paper = compare(preds, n_bootstrap=0, kinds=KINDS, bh_family="speech_vs_cascade")
    p = [r.mcnemar_p for r in call.pairs]
    assert [r.q_value for r in call.pairs] == pytest.approx(
        multipletests(p, method="fdr_bh")[1]
    )  # default kept
    fam = [i for i, r in enumerate(paper.pairs) if "Speech-LLM" in (r.a, r.b)]
    rest = [i for i in range(len(p)) if i not in fam]
    assert len(fam) == 3 and len(rest) == 3
    for idx in (fam, rest):
        ref = multipletests([p[i] for i in idx], method="fdr_bh")[1]
        assert [paper.pairs[i].q_value for i in idx] == pytest.approx(ref)
    # the rules' own family q-values (from stored p-values) agree with compare's
    rows = json.loads(call.to_json())["pairs"]
    q = family_q_values(rows, "paper", "Speech-LLM", ("Cascade-S", "Cascade-W", "Cascade-M"))
    for i in fam:
        r = paper.pairs[i]
        assert q[(r.a, r.b, "ag_news", "clean")] == pytest.approx(r.q_value)
    with pytest.raises(Exception, match="unknown BH family"):
        compare(preds, n_bootstrap=0, kinds=KINDS, bh_family="all")


def _voiced_erasure(result: ErasureResult, voices: int = 2) -> ErasureResult:
    """The erasure result with every evaluated clip spoken by ``voices`` voices answering alike (one item)."""
    return dataclasses.replace(
        result,
        items={
            t: [f"{i.split('@')[0]}@v{v}" for i in ids for v in range(voices)]
            for t, ids in result.items.items()
        },
        gold={t: [g for g in gold for _ in range(voices)] for t, gold in result.gold.items()},
        accuracy=tuple(
            dataclasses.replace(r, correct=tuple(c for c in r.correct for _ in range(voices)), n=r.n * voices)
            for r in result.accuracy
        ),
    )


def test_erasure_rule_counts_the_voices_of_an_item_once() -> None:
    from scipy.stats import norm

    one = _erasure(0.9, 0.8, [0.85, 0.83, 0.86], 0.84, n=60, seed=3)
    single, double = (cm.claim_erasure(r, "").tasks[0] for r in (one, _voiced_erasure(one)))
    assert single.mde is not None and double.mde == pytest.approx(single.mde, rel=1e-9)
    # independent reference: the SD of the per-item paired differences over √G, times z_.975 + z_.8; for the
    # random control plus the between-draw variance of its 3 draws' accuracies over 3; the task's MDE is the
    # larger of its two tests' (random draws' mean, acoustic)
    acc = {r.condition: np.array(r.correct, float) for r in one.accuracy}
    draws = [acc[c] for c in ("random", "random-2", "random-3")]
    paired = [
        (ctrl - acc["text"]).std(ddof=1) / np.sqrt(len(ctrl))
        for ctrl in (np.mean(draws, axis=0), acc["acoustic"])
    ]
    ses = [np.hypot(paired[0], np.std([d.mean() for d in draws], ddof=1) / np.sqrt(3)), paired[1]]
    assert single.mde == pytest.approx((norm.ppf(0.975) + norm.ppf(0.8)) * max(ses), rel=1e-9)
    # the gate: 30 of 48 items right (Wilson low 0.484 < chance 0.5) stays at chance with two voices per item
    # (60 of 96 clips as independent rows would give 0.525 and pass)
    low = _erasure(0.625, 0.5, [0.6], 0.6, n=48)
    assert cm.claim_erasure(low, "").tasks[0].verdict == NOT_TESTABLE
    assert cm.claim_erasure(_voiced_erasure(low), "").tasks[0].verdict == NOT_TESTABLE


def test_implicit_rule_counts_the_voices_of_an_item_once() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(8)
    labels = LABELS["sst2"]
    gold = [str(x) for x in rng.choice(labels, 80)]
    speech = _noisy(rng, gold, labels, 0.1)
    base = _implicit(speech, _noisy(rng, speech, labels, 0.2), _noisy(rng, speech, labels, 0.1), gold)
    rows = [dataclasses.replace(r, id=f"x{i}@v{v}") for i, r in enumerate(base[0].rows) for v in (1, 2)]
    lo, hi = cm.kappa_difference_ci(rows, n_boot=200, seed=4)
    # independent item bootstrap: draw items, take both voices of each, kappas from scikit-learn
    idx = np.random.default_rng(4).integers(0, 80, size=(200, 80))
    col = {
        k: np.array([getattr(r, k) for r in rows]).reshape(80, 2) for k in ("speech", "implicit", "cascade")
    }
    diffs = [
        cohen_kappa_score(col["implicit"][i].ravel(), col["speech"][i].ravel())
        - cohen_kappa_score(col["cascade"][i].ravel(), col["speech"][i].ravel())
        for i in idx
    ]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-9)
    # the chance gate reads items: 30 of 48 right is at chance (0.5) however many voices repeat it
    g48 = ["negative"] * 24 + ["positive"] * 24
    at = [g if i < 30 else ("positive" if g == "negative" else "negative") for i, g in enumerate(g48)]
    res = _implicit(at, at, g48, g48)[0]
    voiced = dataclasses.replace(
        res,
        n=96,
        rows=tuple(dataclasses.replace(r, id=f"y{i}@v{v}") for i, r in enumerate(res.rows) for v in (1, 2)),
    )
    judged = cm.claim_implicit([voiced], "")
    assert (
        judged.tasks[0].verdict == NOT_TESTABLE and "speech not shown above chance" in judged.tasks[0].reason
    )


def test_erasure_rule_counts_the_spread_of_random_draws() -> None:
    # Four random subspaces cost nothing, the fifth as much as text erasure: "a random subspace does not hurt"
    # is then not established by these 200 items, however precisely each draw is measured.
    spread = _erasure(0.9, 0.6, [0.9, 0.9, 0.9, 0.9, 0.3], 0.9, n=200)
    (task,) = cm.claim_erasure(spread, "").tasks
    assert "min 0.000, max 0.600" in task.numbers
    assert task.verdict == INCONCLUSIVE, task.numbers
    # the same mean drop from draws that agree is decided
    steady = _erasure(0.9, 0.6, [0.78] * 5, 0.9, n=200)
    assert cm.claim_erasure(steady, "").tasks[0].verdict == REPRODUCED


def test_judge_recomputes_clip_level_statistics_of_runs_made_before_items(tmp_path: Path) -> None:
    from casceq.io.interchange import write_predictions
    from casceq.reproduce.findings import judge
    from casceq.reproduce.plan import default_plan

    # A run made before items: two voices per item answering alike, rows without ``item``, compare.json of clips
    rng = np.random.default_rng(3)
    labels = LABELS["ag_news"]
    gold = [str(x) for x in rng.choice(labels, 60)]
    answers = {"Cascade-S": _noisy(rng, gold, labels, 0.2), "Cascade-W": _noisy(rng, gold, labels, 0.3)}
    answers["Cascade-M"] = _noisy(rng, gold, labels, 0.35)
    answers["Speech-LLM"] = _noisy(rng, answers["Cascade-S"], labels, 0.15)
    preds = [
        Prediction(s, "ag_news", "clean", f"ag-{i}@{v}", lab, lab, g, None, None, 0.0, BACKBONES[s], lab == g)
        for s, labs in answers.items()
        for i, (g, lab) in enumerate(zip(gold, labs, strict=True))
        for v in ("v1", "v2")
    ]
    run = tmp_path / "run"
    run.mkdir()
    write_predictions(run / "predictions.jsonl", preds)
    kinds = {k: KINDS[k] for k in answers}
    plan = default_plan(60, 4, tasks=["ag_news"], conditions=["clean"], mech=False)
    clip = json.loads(compare(preds, n_bootstrap=plan.bootstrap, seed=plan.seed, kinds=kinds).to_json())
    for r in (*clip["accuracy"], *clip["pairs"]):
        del r["n_items"]  # as the file was written then
    (run / "compare.json").write_text(json.dumps(clip))
    judged = {c.key: c for c in judge(tmp_path, plan, {})}
    # expected: the same statistics with the voices of an item as one unit
    items = [Prediction(**{**p.__dict__, "item": p.example_id.split("@")[0]}) for p in preds]
    item = CompareView(
        json.loads(compare(items, n_bootstrap=plan.bootstrap, seed=plan.seed, kinds=kinds).to_json())
    )
    assert judged["b"].tasks == cb.claim_confound(item, ["ag_news"]).tasks
    # the stale file's clip-level verdict differs
    assert judged["b"].tasks != cb.claim_confound(CompareView(clip), ["ag_news"]).tasks
    # a run that names its items keeps its stored statistics (nothing recomputed)
    from casceq.reproduce.findings import item_statistics

    assert item_statistics(item.data, items, plan) is item.data


def test_task_verdicts_hold_python_scalars_for_the_json_writer() -> None:
    """A rule computing ``powered`` as ``np.float64 <= float`` gives a numpy bool, which ``json`` refuses."""
    verdict = TaskVerdict("sst2", INCONCLUSIVE, "why", mde=np.float64(0.2), powered=np.float64(0.2) <= 0.1)
    assert type(verdict.powered) is bool and type(verdict.mde) is float
    assert json.loads(json.dumps({"powered": verdict.powered, "mde": verdict.mde})) == {
        "powered": False,
        "mde": 0.2,
    }


def test_judge_reads_the_mechanistic_results_through_their_typed_readers(tmp_path: Path) -> None:
    from casceq.mech.implicit import write_results
    from casceq.reproduce.findings import judge
    from casceq.reproduce.plan import default_plan

    mech = tmp_path / "mech"
    lens, control = _lens({0: 0.05, 9: 0.2, 17: 0.35}), _control({0: 0.05, 9: 0.05, 17: 0.06})
    erasure = _erasure(0.9, 0.3, [0.88, 0.86, 0.9], 0.85, n=200)
    rng = np.random.default_rng(5)
    gold = [str(x) for x in rng.choice(LABELS["sst2"], 1000)]
    speech = _noisy(rng, gold, LABELS["sst2"], 0.1)
    copies = [_noisy(rng, speech, LABELS["sst2"], 0.05) for _ in range(2)]
    implicit = _implicit(speech, copies[0], copies[1], gold)
    lens.write(mech / "lens")
    (mech / "lens" / "lens_control.json").write_text(json.dumps(control.to_json()))
    erasure.write(mech / "erasure")
    write_results(mech / "implicit", implicit)
    plan = default_plan(4, 4, mech=True)
    timings = {s: {"status": "done"} for s in ("behavioural", "lens", "erasure", "implicit")}
    claims = {c.key: c for c in judge(tmp_path, plan, timings)}
    # the same verdicts and numbers as the rules on the objects themselves (files are read, not skipped)
    assert claims["f"] == cm.claim_lens(lens, control, "") and claims["f"].verdict == REPRODUCED
    assert claims["g"] == cm.claim_erasure(erasure, "") and claims["g"].verdict == REPRODUCED
    assert claims["h"] == cm.claim_implicit(implicit, "") and claims["h"].verdict == REPRODUCED
    # a file of another shape: the claim names it instead of the whole page failing
    (mech / "erasure" / "mech" / "erasure.json").write_text(json.dumps({"kind": "erasure", "accuracy": [{}]}))
    bad = {c.key: c for c in judge(tmp_path, plan, timings)}["g"]
    assert bad.verdict == INCONCLUSIVE and "unreadable result" in bad.reason and "erasure.json" in bad.reason
