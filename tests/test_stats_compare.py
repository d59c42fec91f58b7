"""compare(): every reported number against sklearn/statsmodels, alignment errors, JSON schema, the CLI."""

from __future__ import annotations

import json
import warnings
from itertools import combinations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from casceq.errors import InputError
from casceq.stats.align import InferredTask
from casceq.stats.compare import compare
from casceq.types import INVALID, Prediction
from tests.stats_reference import loop_delta_kappa_ci

SST2 = InferredTask("sst2", ("negative", "positive"))
MELD = InferredTask("meld", ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"))
TASKS = {"sst2": SST2, "meld": MELD}


def make(system, task, labels, gold, *, condition="clean", backbone=None, transcript=None, ids=None):
    ids = ids or [f"{task}-{i:04d}" for i in range(len(labels))]
    return [
        Prediction(system, task, condition, i, lab, lab, g, transcript=transcript, backbone=backbone)
        for i, lab, g in zip(ids, labels, gold, strict=True)
    ]


def simulated(seed=0, n=120):
    """A matched cascade/speech-LLM pair (backbone A), a mismatched cascade (B), on a 2- and a 7-class task."""
    rng = np.random.default_rng(seed)
    preds = []
    for task in (SST2, MELD):
        labels = (*task.labels, INVALID)
        gold = rng.choice(task.labels, n)
        base_a = np.where(rng.random(n) < 0.7, gold, rng.choice(labels, n))
        casc_a = base_a
        slm_a = np.where(rng.random(n) < 0.8, base_a, rng.choice(labels, n))
        casc_b = np.where(rng.random(n) < 0.6, gold, rng.choice(labels, n))
        preds += make("casc-A", task.name, casc_a, gold, backbone="A", transcript="words")
        preds += make("slm-A", task.name, slm_a, gold, backbone="A")
        preds += make("casc-B", task.name, casc_b, gold, backbone="B", transcript="words")
    return preds


def sk_kappa(a, b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(a, b))


def test_every_number_matches_independent_references():
    preds = simulated()
    res = compare(preds, tasks=TASKS, n_bootstrap=200, seed=3)
    by = {(p.system, p.task, p.example_id): p for p in preds}
    assert len(res.pairs) == 6  # 3 pairs x 2 tasks
    for r in res.pairs:
        ids = sorted({p.example_id for p in preds if p.task == r.task})
        la = [by[(r.a, r.task, i)].label for i in ids]
        lb = [by[(r.b, r.task, i)].label for i in ids]
        gold = [by[(r.a, r.task, i)].gold for i in ids]
        ca = [x == g for x, g in zip(la, gold, strict=True)]
        cb = [x == g for x, g in zip(lb, gold, strict=True)]
        assert r.kappa == pytest.approx(sk_kappa(la, lb), abs=1e-12)
        both = [i for i in range(len(ids)) if not ca[i] and not cb[i]]
        assert r.both_wrong == len(both)
        assert r.same_wrong == sum(la[i] == lb[i] for i in both)
        assert r.overlap == pytest.approx(r.same_wrong / r.both_wrong)
        c = TASKS[r.task].n_classes
        assert r.overlap_chance == pytest.approx(1 / (c - 1))
        assert r.overlap_ratio == pytest.approx(r.overlap * (c - 1))
        table = [
            [
                sum(x and y for x, y in zip(ca, cb, strict=True)),
                sum(x and not y for x, y in zip(ca, cb, strict=True)),
            ],
            [sum(y and not x for x, y in zip(ca, cb, strict=True)), len(both)],
        ]
        assert (r.a_right_b_wrong, r.a_wrong_b_right) == (table[0][1], table[1][0])
        assert r.mcnemar_p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
        assert r.kappa_ci is not None and r.kappa_ci[0] <= r.kappa <= r.kappa_ci[1]
        assert r.matched == ((r.a, r.b) == ("casc-A", "slm-A"))
    q = multipletests([r.mcnemar_p for r in res.pairs], method="fdr_bh")[1]
    assert np.allclose([r.q_value for r in res.pairs], q, rtol=1e-12)
    for acc in res.accuracy:
        rows = [p for p in preds if p.system == acc.system and p.task == acc.task]
        k = sum(p.label == p.gold for p in rows)
        assert (acc.n, acc.correct, acc.accuracy) == (len(rows), k, k / len(rows))
        assert np.allclose(acc.ci, proportion_confint(k, len(rows), method="wilson"), atol=1e-12)


def test_bootstrap_ci_is_the_percentile_of_sklearn_over_one_shared_index_matrix():
    preds = simulated(seed=1, n=40)
    res = compare(preds, tasks=TASKS, n_bootstrap=100, seed=7)
    for task in ("sst2", "meld"):
        ids = sorted({p.example_id for p in preds if p.task == task})
        by = {(p.system, p.example_id): p.label for p in preds if p.task == task}
        lab = {s: np.array([by[(s, i)] for i in ids]) for s in ("casc-A", "slm-A", "casc-B")}
        idx = np.random.default_rng(7).integers(
            0, len(ids), size=(100, len(ids))
        )  # same matrix for all pairs
        for r in (r for r in res.pairs if r.task == task):
            ks = np.array([sk_kappa(lab[r.a][row], lab[r.b][row]) for row in idx])
            expected = np.percentile(ks[~np.isnan(ks)], [2.5, 97.5])
            assert np.allclose(r.kappa_ci, expected, atol=1e-12)


def test_bootstrap_is_reproducible_and_depends_on_the_seed():
    preds = simulated(seed=2)

    def cis(res):  # pair orientation follows the order of first appearance, so key by the unordered pair
        return {(frozenset((r.a, r.b)), r.task): r.kappa_ci for r in res.pairs}

    a = compare(preds, tasks=TASKS, n_bootstrap=150, seed=11)
    assert cis(a) == cis(compare(preds, tasks=TASKS, n_bootstrap=150, seed=11))
    assert cis(a) == cis(compare(list(reversed(preds)), tasks=TASKS, n_bootstrap=150, seed=11))  # row order
    assert cis(a) != cis(compare(preds, tasks=TASKS, n_bootstrap=150, seed=12))
    assert compare(preds, tasks=TASKS, n_bootstrap=0).pairs[0].kappa_ci is None


def test_degenerate_cases_tiny_constant_and_all_invalid():
    preds = make("x", "sst2", ["positive"], ["positive"]) + make("y", "sst2", ["positive"], ["positive"])
    (r,) = compare(preds, tasks=TASKS, n_bootstrap=50).pairs
    assert np.isnan(r.kappa) and np.isnan(sk_kappa(["positive"], ["positive"]))
    assert r.kappa_ci is not None and np.isnan(r.kappa_ci).all()  # every resample is undefined too
    assert (r.both_wrong, r.overlap, r.mcnemar_p) == (0, None, 1.0)
    row = json.loads(compare(preds, tasks=TASKS, n_bootstrap=50).to_json())["pairs"][0]
    assert row["kappa"] is None and row["kappa_ci"] == [None, None] and row["overlap"] is None

    gold = ["negative", "positive", "positive"]
    preds = make("x", "sst2", [INVALID] * 3, gold) + make("y", "sst2", [INVALID] * 3, gold)
    res = compare(preds, tasks=TASKS, n_bootstrap=20)
    (r,) = res.pairs
    assert np.isnan(r.kappa)
    assert (r.both_wrong, r.same_wrong, r.overlap) == (3, 3, 1.0)  # two INVALIDs are the same wrong answer
    assert [i.n_invalid for i in res.invalid] == [3, 3] and res.invalid[0].share == 1.0
    assert res.accuracy[0].accuracy == 0.0 and res.accuracy[0].ci[0] == 0.0

    labels = ["negative", "positive", "positive", "negative"]
    res = compare(
        make("x", "sst2", labels, labels) + make("y", "sst2", labels, labels), tasks=TASKS, n_bootstrap=30
    )
    assert res.pairs[0].kappa == 1.0 and sk_kappa(labels, labels) == 1.0


def test_json_schema_keys_exactly():
    doc = json.loads(compare(simulated(), tasks=TASKS, n_bootstrap=20).to_json())
    assert list(doc) == ["accuracy", "pairs", "backbone_confound", "invalid", "label_distribution"]
    assert set(doc["accuracy"][0]) == {
        "system",
        "task",
        "condition",
        "n",
        "n_items",
        "n_clips",
        "accuracy",
        "ci",
    }
    assert set(doc["pairs"][0]) == {
        "a", "b", "task", "condition", "n", "n_items", "n_clips", "kappa", "kappa_ci", "both_wrong", "same_wrong",
        "overlap", "overlap_ci", "overlap_chance", "overlap_ratio", "overlap_p", "a_right_b_wrong",
        "a_wrong_b_right", "mcnemar_p", "q_value", "matched",
    }  # fmt: skip
    assert set(doc["invalid"][0]) == {"system", "task", "condition", "n_invalid", "share"}
    assert set(doc["backbone_confound"][0]) == {
        "speech_llm", "backbone", "task", "condition", "n_items", "n_clips", "matched", "mismatched",
        "mismatched_backbone", "kappa_matched", "kappa_mismatched", "delta_kappa", "delta_ci",
    }  # fmt: skip
    dist = doc["label_distribution"][1]
    assert dist["labels"] == [*MELD.labels, INVALID]
    assert sum(dist["gold"]) == 120 and all(sum(c) == 120 for c in dist["systems"].values())


def test_backbone_confound_is_the_difference_of_pair_kappas():
    preds = simulated()
    res = compare(preds, tasks=TASKS, n_bootstrap=100, seed=4)
    assert len(res.backbone_confound) == 2
    for c in res.backbone_confound:
        assert (c.speech_llm, c.matched, c.mismatched, c.backbone) == ("slm-A", "casc-A", "casc-B", "A")
        ids = sorted({p.example_id for p in preds if p.task == c.task})
        by = {(p.system, p.example_id): p.label for p in preds if p.task == c.task}
        s, m, x = ([by[(name, i)] for i in ids] for name in ("slm-A", "casc-A", "casc-B"))
        # Independent: sklearn kappas, and a plain-loop bootstrap of the difference on shared resamples.
        assert c.kappa_matched == pytest.approx(sk_kappa(s, m), abs=1e-12)
        assert c.kappa_mismatched == pytest.approx(sk_kappa(s, x), abs=1e-12)
        assert c.delta_kappa == pytest.approx(sk_kappa(s, m) - sk_kappa(s, x), abs=1e-12)
        assert c.delta_ci == pytest.approx(loop_delta_kappa_ci(s, m, x, ids, 100, 4), abs=1e-12)
        assert (c.n_items, c.n_clips) == (120, 120)
    # Declaring the speech LLM a text system removes it from the confound; pairs are unchanged.
    res_text = compare(simulated(), tasks=TASKS, n_bootstrap=0, kinds={"slm-A": "text"})
    assert res_text.backbone_confound == ()
    with pytest.raises(InputError, match="kind"):
        compare(simulated(), tasks=TASKS, kinds={"slm-A": "robot"})


def test_pairs_restrict_the_rows_and_the_bh_family():
    preds = simulated()
    res = compare(preds, tasks=TASKS, pairs=[("slm-A", "casc-A")], n_bootstrap=0)
    assert [(r.a, r.b, r.task) for r in res.pairs] == [
        ("slm-A", "casc-A", "sst2"),
        ("slm-A", "casc-A", "meld"),
    ]
    assert np.allclose(
        [r.q_value for r in res.pairs], multipletests([r.mcnemar_p for r in res.pairs], method="fdr_bh")[1]
    )
    assert len(res.backbone_confound) == 2  # the confound still uses every cascade
    gold = ["negative", "positive"]
    alone = make("x", "sst2", gold, gold) + make("y", "meld", ["joy"], ["joy"])
    res = compare(alone, tasks=TASKS, pairs=[("x", "y")], n_bootstrap=0)
    assert res.pairs == () and "pair x:y shares no classification task and condition" in res.notes
    with pytest.raises(InputError, match="unknown system 'nobody'"):
        compare(preds, tasks=TASKS, pairs=[("slm-A", "nobody")])


def test_different_example_ids_raise_unless_intersect():
    gold = ["negative", "positive", "negative"]
    preds = make("x", "sst2", gold, gold, ids=["a", "b", "c"]) + make(
        "y", "sst2", gold, gold, ids=["a", "b", "d"]
    )
    with pytest.raises(InputError, match=r"x lacks 1: d.*y lacks 1: c"):
        compare(preds, tasks=TASKS)
    res = compare(preds, tasks=TASKS, intersect=True, n_bootstrap=0)
    assert res.pairs[0].n == 2 and any("kept 2 of 4" in n for n in res.notes)
    assert res.disagreements("x", "y", "sst2", "clean").labels_differ == ()


def test_bad_input_is_named():
    gold = ["negative", "positive"]
    with pytest.raises(InputError, match=r"duplicate prediction.*'e'"):
        compare(make("x", "sst2", gold, gold, ids=["e", "e"]), tasks=TASKS)
    with pytest.raises(InputError, match="'maybe' is not one of"):
        compare(make("x", "sst2", ["maybe", "positive"], gold), tasks=TASKS)
    with pytest.raises(InputError, match="disagree on gold labels of sst2-0001"):
        compare(
            make("x", "sst2", gold, gold) + make("y", "sst2", gold, ["negative", "negative"]), tasks=TASKS
        )
    with pytest.raises(InputError, match="several backbones"):
        compare(
            make("x", "sst2", gold, gold, backbone="A") + make("x", "meld", ["joy"], ["joy"], backbone="B")
        )
    with pytest.raises(InputError, match="no predictions"):
        compare([])


def test_open_answer_tasks_get_accuracy_only():
    preds = [
        Prediction(s, "triviaqa", "clean", f"q{i}", "x", "x", "y", correct=c)
        for s, flags in (("a", [True, False, True]), ("b", [False, False, True]))
        for i, c in enumerate(flags)
    ]
    res = compare(preds, n_bootstrap=10)  # the registry's triviaqa: open_answer
    assert res.pairs == () and res.label_distribution == ()
    assert [(a.system, a.correct) for a in res.accuracy] == [("a", 2), ("b", 1)]


def test_disagreements_accessor():
    preds = simulated(n=30)
    res = compare(preds, tasks=TASKS, n_bootstrap=0)
    d = res.disagreements("casc-A", "slm-A", "meld", "clean")
    r = next(r for r in res.pairs if (r.a, r.b, r.task) == ("casc-A", "slm-A", "meld"))
    assert len(d.both_wrong_same) == r.same_wrong
    assert len(d.both_wrong_same) + len(d.both_wrong_different) == r.both_wrong
    assert (len(d.a_right_b_wrong), len(d.a_wrong_b_right)) == (r.a_right_b_wrong, r.a_wrong_b_right)
    assert set(d.both_wrong_different) <= set(d.labels_differ)
    with pytest.raises(KeyError):
        res.disagreements("casc-A", "slm-A", "meld", "babble@10")


def test_all_pairs_by_default():
    preds = simulated()
    res = compare(preds, tasks=TASKS, n_bootstrap=0)
    assert [(r.a, r.b) for r in res.pairs if r.task == "sst2"] == list(
        combinations(["casc-A", "slm-A", "casc-B"], 2)
    )
