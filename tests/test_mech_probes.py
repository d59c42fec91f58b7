"""Probes: streamed ridge equals sklearn; split by utterance; positive and shuffled controls; a real-speech check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casceq.errors import InputError
from casceq.mech.probes import ALPHABET, ProbeResults, group_of, run_probes, split_parts
from casceq.mech.ridge import ALPHAS, RidgeFitter
from casceq.mech.shards import CaptureMeta, CaptureReader, ShardWriter, UtteranceRecord

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def _data(seed: int = 0, n: int = 3000, d: int = 24, t: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # A large common offset and very different scales: the cases that break naive moment formulas.
    x = rng.normal(size=(n, d)) * rng.uniform(0.01, 50.0, d) + rng.uniform(-1e3, 1e3, d)
    y = (x - x.mean(0)) / x.std(0) @ rng.normal(size=(d, t)) + rng.normal(size=(n, t)) + 7.0
    return x, y


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("alpha", [0.1, 10.0, 1e4])
def test_streamed_ridge_equals_sklearn_on_standardised_inputs(alpha: float) -> None:
    x, y = _data()
    fit = RidgeFitter(x.shape[1], y.shape[1])
    for start in range(0, 2000, 137):  # uneven batches
        stop = min(start + 137, 2000)
        fit.update("fit", x[start:stop], y[start:stop])
    fit.update("test", x[2000:], y[2000:])
    probe = fit.probe(alpha=alpha)
    scaler = StandardScaler().fit(x[:2000])
    ref = Ridge(alpha=alpha).fit(scaler.transform(x[:2000]), y[:2000])
    assert _rel(probe.coef * probe.scale[:, None], ref.coef_.T) < 1e-6
    pred = ref.predict(scaler.transform(x[2000:]))
    assert _rel(probe(x[2000:]), pred) < 1e-6
    np.testing.assert_allclose(
        fit.r2(probe, "test"), r2_score(y[2000:], pred, multioutput="raw_values"), rtol=1e-6
    )


def test_alpha_is_the_validation_best_then_refit_on_fit_plus_val() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 60))
    y = x[:, :3].sum(1, keepdims=True) + 2.0 * rng.normal(size=(300, 1))  # noisy: a real penalty wins
    fit = RidgeFitter(60, 1)
    fit.update("fit", x[:150], y[:150])
    fit.update("val", x[150:250], y[150:250])
    probe = fit.probe()
    sc = StandardScaler().fit(x[:150])
    val = [
        r2_score(
            y[150:250], Ridge(alpha=a).fit(sc.transform(x[:150]), y[:150]).predict(sc.transform(x[150:250]))
        )
        for a in ALPHAS
    ]
    assert probe.alpha == ALPHAS[int(np.argmax(val))] and probe.val_r2 == pytest.approx(max(val), rel=1e-6)
    sc2 = StandardScaler().fit(x[:250])
    ref = Ridge(alpha=probe.alpha).fit(sc2.transform(x[:250]), y[:250])
    assert _rel(probe(x[250:]).ravel(), ref.predict(sc2.transform(x[250:])).ravel()) < 1e-6


@settings(max_examples=60, deadline=None)
@given(n=st.integers(5, 300), seed=st.integers(0, 10_000), repeat=st.integers(1, 5))
def test_split_is_by_group_seeded_and_order_independent(n: int, seed: int, repeat: int) -> None:
    groups = [f"utt{i}" for i in range(n)] * repeat  # every utterance has several positions
    parts = split_parts(groups, seed)
    assert set(parts) == set(groups)  # one part per utterance: its positions can never be split
    positions = {(g, k): parts[g] for k in range(repeat) for g in groups}
    for g in set(groups):
        assert len({positions[(g, k)] for k in range(repeat)}) == 1
    n_test = sum(v == "test" for v in parts.values())
    assert n_test == max(1, round(0.2 * n)) and "fit" in parts.values() and "val" in parts.values()
    assert split_parts(list(reversed(groups)), seed) == parts


def test_split_needs_enough_groups() -> None:
    with pytest.raises(InputError, match="only 4 split groups"):
        split_parts(["a", "b", "c", "d"] * 10)


def _charvec(text: str) -> np.ndarray:
    return np.array([text.count(c) for c in ALPHABET], dtype=np.float64)


WORDS = ["red", "blue", "green", "tall", "dog", "cat", "sky", "sea", "sun", "moon", "hat", "box"]


def _synthetic_capture(folder: Path, *, shuffle: bool, n_utts: int = 90, d: int = 48, seed: int = 0) -> None:
    """States whose fixed random directions linearly encode energy, log F0, characters (CTC one-hots), plus noise.

    With ``shuffle`` the stored targets are permuted across utterances (energy, F0 and transcripts), so the
    states carry no information about the targets they are paired with: the negative control.
    """
    rng = np.random.default_rng(seed)
    n_chars = len(ALPHABET)
    w_energy, w_f0 = rng.normal(size=d), rng.normal(size=d)
    w_chars = rng.normal(size=(n_chars + 1, d)) * 3.0
    items = []
    for i in range(n_utts):
        text = " ".join(rng.choice(WORDS, size=rng.integers(1, 4)))
        ids = [ALPHABET.index(c) + 1 for c in text]
        seq = [c for cid in ids for c in (cid, cid, 0)]  # each character held 2 positions, then a blank
        p = len(seq)
        energy = rng.normal(-30, 8, size=p)
        f0 = np.exp(rng.normal(5.0, 0.3, size=p))
        voiced = (rng.random(p) < 0.7).astype(np.float64)
        x = (
            np.outer(energy + 30, w_energy) / 8
            + np.outer(np.log(f0) - 5.0, w_f0) / 0.3
            + w_chars[seq]
            + 0.3 * rng.normal(size=(p, d))
        )
        items.append((f"u{i:03d}", text, x, energy, f0, voiced))
    if shuffle:
        order = rng.permutation(n_utts)
        # Another utterance's transcript, energy and F0 (cycled to this utterance's length).
        items = [
            (u, items[j][1], x, np.resize(items[j][3], len(x)), np.resize(items[j][4], len(x)), vo)
            for (u, _t, x, _e, _f, vo), j in zip(items, order, strict=True)
        ]
    meta = CaptureMeta(
        "synthetic", "toy", "0" * 64, (0,), 1, d, 0.02, None, "float32", "synthetic", "synthetic"
    )
    with ShardWriter(folder, meta, shard_positions=400) as writer:
        for uid, text, x, energy, f0, voiced in items:
            p = len(x)
            frames = np.stack(
                [
                    np.arange(p) * 0.02,
                    np.arange(1, p + 1) * 0.02,
                    energy[:p],
                    np.where(voiced > 0, f0[:p], np.nan),
                    voiced,
                ],
                axis=1,
            )
            rec = UtteranceRecord(uid, text, "", p * 0.02, False, 0, 0, 0, {"speaker": uid[-1]})
            writer.add(rec, x[None].astype(np.float32), frames)


def test_positive_control_decodes_every_planted_target(tmp_path: Path) -> None:
    _synthetic_capture(tmp_path / "cap", shuffle=False)
    assert len(CaptureReader(tmp_path / "cap").shards) > 3  # the probes really stream several shards
    res = run_probes(tmp_path / "cap", ctc_epochs=20)
    assert res.score("energy", 0) > 0.95 and res.score("pitch", 0) > 0.95
    assert res.score("ctc", 0) > 0.9 and res.score("boc", 0) > 0.6
    s = next(s for s in res.scores if s.probe == "energy")
    assert s.n_train_utterances + s.n_test_utterances == 90 and s.dim == 48 and s.n_test_utterances == 18
    assert ProbeResults.from_json(res.to_json()) == res
    assert json.loads(res.to_json())["split_by"] == "utterance"


def test_shuffled_targets_give_nothing(tmp_path: Path) -> None:
    _synthetic_capture(tmp_path / "cap", shuffle=True)
    res = run_probes(tmp_path / "cap", ctc_epochs=20)
    for probe in ("energy", "pitch", "boc"):
        assert res.score(probe, 0) < 0.1, probe
    assert res.score("ctc", 0) < 0.5


def test_split_by_meta_field_holds_out_whole_groups(tmp_path: Path) -> None:
    _synthetic_capture(tmp_path / "cap", shuffle=False, n_utts=60)
    recs = CaptureReader(tmp_path / "cap").utterances
    parts = split_parts([group_of(r, "speaker") for r in recs], 0)
    assert len({parts[group_of(r, "speaker")] for r in recs if r.id.endswith("7")}) == 1
    with pytest.raises(InputError, match="no meta field 'actor'"):
        run_probes(tmp_path / "cap", ["energy"], split_by="actor")


def test_too_few_utterances_for_the_dimension_warns(tmp_path: Path) -> None:
    _synthetic_capture(tmp_path / "cap", shuffle=False, n_utts=30)
    res = run_probes(tmp_path / "cap", ["boc", "energy"])
    boc = next(s for s in res.scores if s.probe == "boc")
    assert "only 24 training utterances for 48 dimensions" in boc.warning
    assert next(s for s in res.scores if s.probe == "energy").warning == ""


@pytest.mark.slow
def test_whisper_tiny_energy_is_linearly_decodable_from_real_speech(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("parselmouth")
    from casceq.paths import datasets_dir

    root = datasets_dir()
    if root is None or not (root / "ravdess").is_dir():
        pytest.skip("../shared/datasets/ravdess not found")
    try:
        from casceq.systems.asr.convert import converted_whisper

        folder = converted_whisper("tiny.en")
    except Exception as exc:  # the weights package is an optional extra
        pytest.skip(f"bundled Whisper tiny.en unavailable: {exc}")
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from casceq.mech.capture import capture
    from casceq.stages.capture import subsample, utterances_from_task

    model = WhisperForConditionalGeneration.from_pretrained(str(folder)).eval()
    utts = subsample(utterances_from_task("ravdess", None), 40, seed=0)
    capture(
        model,
        utts,
        str(tmp_path / "cap"),
        model="whisper:tiny.en",
        layers=[0],
        feature_extractor=WhisperFeatureExtractor.from_pretrained(str(folder)),
        pitch=False,
    )
    res = run_probes(tmp_path / "cap", ["energy"])
    assert res.score("energy", 0) > 0.8, res.scores


def test_probe_command_writes_json_table_and_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from casceq.cli import main

    _synthetic_capture(tmp_path / "cap", shuffle=False, n_utts=40)
    out = tmp_path / "res"
    assert main(["probe", str(tmp_path / "cap"), "--probes", "energy", "boc", "--out", str(out)]) == 0
    res = ProbeResults.from_json((out / "probes.json").read_text())
    table = (out / "table.md").read_text()
    assert table.splitlines()[0] == "| layer | Energy R² | BoC R² |"
    assert f"| 0 | {res.score('energy', 0):.3f} | {res.score('boc', 0):.3f} |" in table
    assert (out / "figure.png").stat().st_size > 1000 and (out / "figure.svg").read_text().startswith("<?xml")
    assert (
        main(["probe", str(tmp_path / "cap"), "--probes", "pitch", "--out", str(out), "--layers", "3"]) == 2
    )
