"""Claim verdicts of ``casceq reproduce`` on synthetic results: each rule yields "reproduced" on data built to
satisfy the paper's claim, "not reproduced" on data built to contradict it, and "not testable here" when data are
missing or the speech LLM is at chance. Behavioural inputs go through the real ``compare()``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from casceq.reproduce import claims_behaviour as cb
from casceq.reproduce import claims_mech as cm
from casceq.reproduce.rules import (
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    CompareView,
    TaskVerdict,
    combine,
    wilson_low,
)
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


def _world(speech_copies: str, *, n: int = 200, seed: int = 0, speech_flip: float = 0.1) -> dict:
    """compare.json of a synthetic run: Cascade-S 85% right, W 75%, M 60% (independent errors), and the speech
    LLM a noisy copy of ``speech_copies`` ("Cascade-S", "Cascade-M", or "random": uniform guesses)."""
    rng = np.random.default_rng(seed)
    preds: list[Prediction] = []
    for task, labels in LABELS.items():
        gold = [str(x) for x in rng.choice(labels, n)]
        sys_labels = {
            "Cascade-S": _noisy(rng, gold, labels, 0.15),
            "Cascade-W": _noisy(rng, gold, labels, 0.25),
            "Cascade-M": _noisy(rng, gold, labels, 0.40),
        }
        if speech_copies == "random":
            sys_labels["Speech-LLM"] = [str(x) for x in rng.choice(labels, n)]
        else:
            sys_labels["Speech-LLM"] = _noisy(rng, sys_labels[speech_copies], labels, speech_flip)
        for s, labs in sys_labels.items():
            preds += _rows(s, task, "clean", gold, labs)
    return json.loads(compare(preds, n_bootstrap=300, seed=0, kinds=KINDS).to_json())


TEXT = ["ag_news", "sst2"]


def test_ceiling_and_confound_reproduced_when_speech_llm_copies_its_matched_cascade() -> None:
    cmp = CompareView(_world("Cascade-S"))
    assert cb.claim_ceiling(cmp, TEXT).verdict == REPRODUCED
    conf = cb.claim_confound(cmp, TEXT)
    assert conf.verdict == REPRODUCED, conf.reason
    assert all(t.verdict == REPRODUCED for t in conf.tasks)
    over = cb.claim_overlap(cmp, TEXT)
    assert over.verdict == REPRODUCED  # AG News: shared errors are copies; SST-2 not testable (2 classes)
    assert {t.task: t.verdict for t in over.tasks}["sst2"] == NOT_TESTABLE


def test_confound_not_reproduced_when_speech_llm_copies_the_mismatched_cascade() -> None:
    cmp = CompareView(_world("Cascade-M"))
    conf = cb.claim_confound(cmp, TEXT)
    assert conf.verdict == NOT_REPRODUCED
    row = cmp.confound("Speech-LLM", "Cascade-S", "Cascade-M", "ag_news", "clean")
    assert row["delta_ci"][1] < 0  # the rule follows the CI compare() computed


def test_ceiling_not_reproduced_when_the_speech_llm_is_clearly_better() -> None:
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
    assert claim.verdict == NOT_REPRODUCED and "better than Cascade-S" in claim.reason


def test_chance_speech_llm_makes_agreement_claims_not_testable() -> None:
    cmp = CompareView(_world("random"))
    for claim in (cb.claim_confound(cmp, TEXT), cb.claim_overlap(cmp, TEXT)):
        assert claim.verdict == NOT_TESTABLE
        assert any("chance" in t.reason or "2 classes" in t.reason for t in claim.tasks)


def test_text_insufficient_kappa_rule_both_ways() -> None:
    rng = np.random.default_rng(3)
    preds: list[Prediction] = []
    gold = [str(x) for x in rng.choice(LABELS["sst2"], 200)]
    s = _noisy(rng, gold, LABELS["sst2"], 0.1)
    preds += _rows("Cascade-S", "sst2", "clean", gold, s) + _rows(
        "Speech-LLM", "sst2", "clean", gold, _noisy(rng, s, LABELS["sst2"], 0.05)
    )
    rav_labels = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    rgold = [str(x) for x in rng.choice(rav_labels, 200)]
    casc = [str(x) for x in rng.choice(rav_labels, 200)]
    independent = _rows("Cascade-S", "ravdess", "clean", rgold, casc) + _rows(
        "Speech-LLM", "ravdess", "clean", rgold, [str(x) for x in rng.choice(rav_labels, 200)]
    )
    copying = _rows("Cascade-S", "ravdess", "clean", rgold, casc) + _rows(
        "Speech-LLM", "ravdess", "clean", rgold, casc
    )
    kinds = {"Cascade-S": "cascade", "Speech-LLM": "speech_llm"}
    low = CompareView(json.loads(compare(preds + independent, n_bootstrap=300, kinds=kinds).to_json()))
    same = CompareView(json.loads(compare(preds + copying, n_bootstrap=300, kinds=kinds).to_json()))
    assert cb.claim_text_insufficient(low, ["sst2"], ["ravdess"]).verdict == REPRODUCED
    assert cb.claim_text_insufficient(same, ["sst2"], ["ravdess"]).verdict == NOT_REPRODUCED


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
    acc = {
        "accuracy": [
            {
                "system": "Speech-LLM",
                "task": "sst2",
                "condition": "clean",
                "n": 200,
                "accuracy": 0.9,
                "ci": [0.85, 0.93],
            }
        ]
    }
    cmp = CompareView(acc)
    assert cb.claim_noise(cmp, ["sst2"], {"sst2": d}).verdict == REPRODUCED
    same = cb.degradation(_table(0.1, 0.1), "sst2", "Speech-LLM", "Cascade-S", "babble@0")
    assert cb.claim_noise(cmp, ["sst2"], {"sst2": same}).verdict == NOT_REPRODUCED
    chance = CompareView({"accuracy": [dict(acc["accuracy"][0], accuracy=0.5)]})
    assert cb.claim_noise(chance, ["sst2"], {"sst2": d}).verdict == NOT_TESTABLE
    assert cb.claim_noise(cmp, ["sst2"], {"sst2": None}).verdict == NOT_TESTABLE


def _lens(prec: dict[int, float]) -> dict:
    return {"n_utterances": 40, "layers": [{"layer": k, "precision": v} for k, v in prec.items()]}


def test_lens_rule() -> None:
    control = _lens({0: 0.05, 9: 0.05, 17: 0.06})
    assert cm.claim_lens(_lens({0: 0.05, 9: 0.2, 17: 0.35}), control, "").verdict == REPRODUCED
    # present from the first layer on: does not *emerge* with depth
    assert cm.claim_lens(_lens({0: 0.33, 9: 0.34, 17: 0.35}), control, "").verdict == NOT_REPRODUCED
    # no better than another utterance's transcript
    assert cm.claim_lens(_lens({0: 0.0, 9: 0.05, 17: 0.08}), control, "").verdict == NOT_REPRODUCED
    skipped = cm.claim_lens(None, None, "mechanistic suite skipped (--skip-mech)")
    assert skipped.verdict == NOT_TESTABLE and "skip-mech" in skipped.reason


def _erasure(none: float, text: float, random: float, acoustic: float, n: int = 48) -> dict:
    conds = {"none": none, "text": text, "random": random, "acoustic": acoustic}
    return {
        "accuracy": [
            {"task": "sst2", "condition": c, "n": n, "accuracy": a, "same_as_none": 1.0}
            for c, a in conds.items()
        ]
    }


def test_erasure_rule() -> None:
    assert cm.claim_erasure(_erasure(0.9, 0.5, 0.88, 0.85), "").verdict == REPRODUCED
    assert cm.claim_erasure(_erasure(0.9, 0.85, 0.88, 0.85), "").verdict == NOT_REPRODUCED
    at_chance = cm.claim_erasure(_erasure(0.52, 0.5, 0.5, 0.5), "")
    assert at_chance.verdict == NOT_TESTABLE and "chance" in at_chance.reason
    assert cm.claim_erasure(None, "stage erasure failed: boom").verdict == NOT_TESTABLE


def _implicit(speech: list[str], implicit: list[str], cascade: list[str], gold: list[str]) -> dict:
    from casceq.stats.agreement import kappa

    rows = [
        {"speech": s, "implicit": i, "cascade": c} for s, i, c in zip(speech, implicit, cascade, strict=True)
    ]
    acc = float(np.mean([s == g for s, g in zip(speech, gold, strict=True)]))
    return {
        "results": [
            {
                "task": "sst2",
                "n": len(rows),
                "kappa_impl": kappa(implicit, speech),
                "kappa_casc": kappa(cascade, speech),
                "accuracy_speech": acc,
                "accuracy_implicit": 0.0,
                "accuracy_cascade": 0.0,
                "rows": rows,
            }
        ]
    }


def test_implicit_rule() -> None:
    rng = np.random.default_rng(5)
    gold = [str(x) for x in rng.choice(LABELS["sst2"], 120)]
    speech = _noisy(rng, gold, LABELS["sst2"], 0.1)
    good = _implicit(
        speech, _noisy(rng, speech, LABELS["sst2"], 0.05), _noisy(rng, speech, LABELS["sst2"], 0.1), gold
    )
    bad = _implicit(
        speech,
        [str(x) for x in rng.choice(LABELS["sst2"], 120)],
        _noisy(rng, speech, LABELS["sst2"], 0.05),
        gold,
    )
    assert cm.claim_implicit(good, "").verdict == REPRODUCED
    judged = cm.claim_implicit(bad, "")
    assert judged.verdict == NOT_REPRODUCED
    # the reason names which part of the rule failed: random implicit labels (κ_impl near 0), or a weaker one
    k = bad["results"][0]["kappa_impl"]
    assert judged.tasks[0].reason.startswith("κ_impl ≤ 0" if k <= 0 else "κ_impl − κ_casc CI lies below 0")
    weak = _implicit(
        speech, _noisy(rng, speech, LABELS["sst2"], 0.35), _noisy(rng, speech, LABELS["sst2"], 0.02), gold
    )
    assert weak["results"][0]["kappa_impl"] > 0
    assert cm.claim_implicit(weak, "").tasks[0].reason.startswith("κ_impl − κ_casc CI lies below 0")
    assert cm.claim_implicit(good, "").tasks[0].reason == "κ_impl > 0 and not significantly below κ_casc"
    chance = _implicit([str(x) for x in rng.choice(LABELS["sst2"], 120)], speech, speech, gold)
    assert cm.claim_implicit(chance, "").verdict == NOT_TESTABLE


def test_kappa_difference_ci_is_centred_on_the_point_difference() -> None:
    rng = np.random.default_rng(2)
    s = [str(x) for x in rng.choice(["a", "b", "c"], 300)]
    rows = [{"speech": x, "implicit": x, "cascade": str(rng.choice(["a", "b", "c"]))} for x in s]
    lo, hi = cm.kappa_difference_ci(rows, n_boot=300)
    assert lo < 1.0 - 0.0 and hi > 0.8  # implicit copies (κ 1), cascade independent (κ ~0): difference ~1


def test_wilson_low_matches_statsmodels() -> None:
    from statsmodels.stats.proportion import proportion_confint

    for k, n in ((0, 10), (7, 20), (48, 50), (30, 100)):
        assert wilson_low(k, n) == pytest.approx(proportion_confint(k, n, method="wilson")[0], abs=1e-9)


def test_combine() -> None:
    ok, bad, nt = (
        TaskVerdict(t, v, "r") for t, v in (("x", REPRODUCED), ("y", NOT_REPRODUCED), ("z", NOT_TESTABLE))
    )
    assert combine([ok, nt])[0] == REPRODUCED
    assert combine([ok, bad, nt])[0] == NOT_REPRODUCED
    assert combine([nt])[0] == NOT_TESTABLE and combine([])[0] == NOT_TESTABLE


def test_judge_without_any_output_says_why(tmp_path: Path) -> None:
    from casceq.reproduce.findings import judge, write_findings
    from casceq.reproduce.plan import default_plan

    plan = default_plan(4, 4, mech=False)
    claims = judge(tmp_path, plan, {"behavioural": {"status": "failed", "detail": "boom"}})
    assert [c.key for c in claims] == list("abcdefgh")
    assert all(c.verdict == NOT_TESTABLE for c in claims)
    assert "boom" in claims[0].reason and "skip-mech" in claims[-1].reason
    page = write_findings(tmp_path, plan, claims, {"command": "casceq reproduce --offline"}, {}).read_text()
    assert "casceq reproduce --offline" in page and "not testable here" in page
