"""The §5.4 diagnostic: acoustic erasure reduces text decodability exactly when text lives in the acoustic
subspace (positive control) and not when it is orthogonal; R² and the item bootstrap against sklearn; no leakage."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("concept_erasure")
sk_metrics = pytest.importorskip("sklearn.metrics")

from casceq.errors import InputError, LeakageError  # noqa: E402
from casceq.mech.erasure_diagnostic import (  # noqa: E402
    VERDICTS,
    TextDiagnostic,
    bootstrap_weights,
    r2_mean,
    readout_predictions,
    split_heldout,
    text_decodability,
)

D, P = 16, 10


def _world(
    seed: int, n_items: int = 45, voices: int = 2
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Ids ``item@voice``, transcripts ``a..a b..b`` (counts n1, n2), text features c [N, 2], acoustic [N, P, 2]."""
    rng = np.random.default_rng(seed)
    ids, texts, c = [], [], []
    for i in range(n_items):
        n1, n2 = rng.integers(1, 8, size=2)
        for v in range(voices):
            ids.append(f"it{i}@v{v}")
            texts.append("a" * n1 + " " + "b" * n2)
            c.append([n1, n2])
    cf = np.array(c, dtype=np.float64)
    cf = (cf - cf.mean(0)) / cf.std(0)
    acoustic = rng.standard_normal((len(ids), P, 2))
    return ids, texts, cf, acoustic


def _states(cf: np.ndarray, acoustic: np.ndarray, same: bool, seed: int) -> np.ndarray:
    """States [N, P, D]: acoustic along U; text along U (``same``) or along V orthogonal to U; noise."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((D, 4)))
    u, v = q[:, :2], q[:, 2:]
    text_dir = u if same else v
    x = acoustic @ u.T + (cf @ text_dir.T)[:, None, :] + 0.1 * rng.standard_normal((len(cf), P, D))
    return x.astype(np.float32)


def _diagnose(same_layer: dict[int, bool]) -> tuple[list[Any], dict[str, Any]]:
    from casceq.mech.erasure_concepts import eraser_rank, random_eraser
    from casceq.mech.leace import apply_eraser, fit_eraser

    ids, texts, cf, acoustic = _world(0)
    train, test = split_heldout(ids, 0.4, seed=0)
    means: dict[str, dict[int, np.ndarray]] = {"none": {}, "acoustic": {}, "control": {}}
    ranks: dict[int, int] = {}
    for layer, same in same_layer.items():
        x = _states(cf, acoustic, same, seed=layer)
        eraser = fit_eraser([x[i] for i in train], [acoustic[i].astype(np.float32) for i in train])
        ranks[layer] = eraser_rank(eraser)
        control = random_eraser(D, ranks[layer], seed=100 + layer)
        means["none"][layer] = x.mean(1)
        means["acoustic"][layer] = np.stack([apply_eraser(eraser, s).mean(0) for s in x])
        means["control"][layer] = np.stack([apply_eraser(control, s).mean(0) for s in x])
    rows = text_decodability(
        means,
        texts,
        ids,
        train,
        test,
        concept="acoustic",
        control="control",
        ranks={"acoustic": ranks, "control": ranks},
        n_boot=500,
    )
    return rows, {"ids": ids, "texts": texts, "train": train, "test": test, "means": means}


def test_acoustic_erasure_removes_text_only_when_text_shares_the_acoustic_subspace() -> None:
    rows, _ = _diagnose({0: True, 1: False})
    same, orth = rows
    assert same.rank == orth.rank == 2 and same.control_rank == 2
    assert same.r2_none > 0.8 and orth.r2_none > 0.8  # positive control: text is decodable before erasure
    # text in the acoustic subspace: erasing the acoustic concept destroys it; a random 2-d subspace does not
    assert same.r2_erased < 0.2 and same.r2_control > 0.6
    assert same.excess_ci[0] > 0 and same.verdict == VERDICTS[0]
    assert same.drop_ci[0] <= same.drop <= same.drop_ci[1]
    # text orthogonal to it: the acoustic eraser leaves text decodability as it was
    assert abs(orth.drop) < 0.05 and orth.verdict != VERDICTS[0]


def test_point_r2_equals_sklearn_ridge_on_standardised_inputs() -> None:
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    from casceq.mech.probes import char_counts

    rows, w = _diagnose({0: True})
    x = w["means"]["none"][0]
    y = np.stack([char_counts(t) for t in w["texts"]])
    tr, te = w["train"], w["test"]
    _, alpha = readout_predictions(x[tr], y[tr], x[te], seed=0)
    scaler = StandardScaler().fit(x[tr])
    pred = Ridge(alpha=alpha).fit(scaler.transform(x[tr]), y[tr]).predict(scaler.transform(x[te]))
    varying = y[te].std(0) > 0
    ref = sk_metrics.r2_score(y[te][:, varying], pred[:, varying])  # uniform average over varying characters
    assert rows[0].r2_none == pytest.approx(ref, abs=1e-6)


def test_item_bootstrap_weights_resample_whole_items_and_r2_matches_sklearn() -> None:
    ids = ["a@1", "a@2", "b@1", "c@1", "c@2", "d@1"]
    w = bootstrap_weights(ids, 50, seed=3)
    assert w.shape == (50, 6)
    assert np.array_equal(w[:, 0], w[:, 1]) and np.array_equal(w[:, 3], w[:, 4])  # voices of an item together
    assert np.all(w[:, [0, 2, 3, 5]].sum(1) == 4)  # 4 items drawn per resample
    rng = np.random.default_rng(0)
    y, pred = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    for b in range(5):
        idx = np.repeat(np.arange(6), w[b].astype(int))
        if len(set(idx)) < 2:
            continue
        assert r2_mean(y, pred, w[b : b + 1])[0] == pytest.approx(sk_metrics.r2_score(y[idx], pred[idx]))


def test_heldout_items_never_fitted_on_and_split_by_item() -> None:
    ids, _, _, _ = _world(1, n_items=20)
    fit, held = split_heldout(ids, 0.3, seed=0)
    assert {ids[i].split("@")[0] for i in fit}.isdisjoint({ids[i].split("@")[0] for i in held})
    assert len(held) == 2 * 6 and sorted(fit + held) == list(range(len(ids)))
    with pytest.raises(InputError, match="needs >= 4 held-out"):
        split_heldout(ids[:10], 0.3, seed=0)
    _, w = _diagnose({0: True})
    leaky = [*w["test"][:2], *w["train"]]  # two held-out utterances in the readout's training set
    with pytest.raises(LeakageError, match="held-out items"):
        text_decodability(
            w["means"],
            w["texts"],
            w["ids"],
            leaky,
            w["test"],
            concept="acoustic",
            control="control",
            ranks={"acoustic": {0: 2}, "control": {0: 2}},
        )


def test_json_round_trip_and_old_erasure_files_still_read() -> None:
    from casceq.mech.erasure_concepts import ErasureResult

    rows, _ = _diagnose({0: True, 1: False})
    diag = TextDiagnostic("r", 60, 30, 15, 500, 0.95, 0, ("it1", "it2"), tuple(rows))
    base = ErasureResult("m", (0, 1), "all", False, "x", 60, (), (), diagnostic=diag)
    text = json.dumps(base.to_json(), allow_nan=False)
    back = ErasureResult.from_json(json.loads(text))
    assert back.diagnostic == diag
    assert "reduced more than random" in back.markdown() and "| acoustic | 0 | 2 |" in back.markdown()
    old = {k: v for k, v in base.to_json().items() if k != "diagnostic"}  # a file written before the field
    assert ErasureResult.from_json(old).diagnostic is None


def test_no_reduction_is_claimed_where_text_was_never_decodable() -> None:
    """The verdict is gated on the held-out R² before erasure: a large excess drop on a readout that decodes
    nothing (R² interval not above 0) is "not testable", the same drop on a decodable readout is a reduction."""
    from casceq.mech.erasure_diagnostic import VERDICTS, verdict

    assert verdict((0.12, 2.7), decodable_low=-0.6) == VERDICTS[3]
    assert verdict((0.12, 2.7), decodable_low=float("nan")) == VERDICTS[3]
    assert verdict((0.12, 2.7), decodable_low=0.3) == VERDICTS[0]  # positive control
    assert verdict((-0.5, -0.1), decodable_low=0.3) == VERDICTS[1]
    assert verdict((0.12, 2.7)) == VERDICTS[0]  # ungated call keeps its meaning
