"""Erasure concepts as the paper defines them: the continuous 2-d acoustic concept (erased: energy and pitch are
no longer linearly decodable while a planted text direction survives), first-word classes with support, and
the per-dimension fitting counts of every eraser."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("concept_erasure")
linear_model = pytest.importorskip("sklearn.linear_model")

from casceq.errors import InputError  # noqa: E402
from casceq.mech.erasure_concepts import (  # noqa: E402
    ACOUSTIC_DIMS,
    ConceptSupport,
    ErasureResult,
    concept_support,
    define_concept,
)

D = 24


def _frames(rng: np.random.Generator, p: int) -> np.ndarray:
    """Frames [p, 5]: energy ~ N(-30, 8) dB, F0 log-normal around 150 Hz, a third of positions unvoiced."""
    f = np.zeros((p, 5), dtype=np.float32)
    f[:, 2] = rng.normal(-30.0, 8.0, p)
    f0 = np.exp(rng.normal(np.log(150.0), 0.25, p))
    f0[rng.random(p) < 0.33] = np.nan
    f[:, 3], f[:, 4] = f0, np.isfinite(f0)
    return f


def test_acoustic2d_targets_are_standardised_energy_and_pitch() -> None:
    frames = np.array(
        [[0, 0, e, f, 1] for e, f in [(-40.0, 100.0), (-20.0, np.nan), (-30.0, 400.0), (np.nan, 250.0)]],
        dtype=np.float32,
    )
    c = define_concept("acoustic2d", [], [frames])
    assert not c.categorical and c.dim == 2 and c.dims == ACOUSTIC_DIMS
    e_mean, e_sd = np.mean([-40, -20, -30]), np.std([-40, -20, -30])
    lf = np.log([100.0, 400.0, 250.0])
    z = c.targets("", 4, frames)
    np.testing.assert_allclose(z[:3, 0], (np.array([-40, -20, -30]) - e_mean) / e_sd, rtol=1e-5)
    assert z[3, 0] == 0.0  # no energy: 0
    np.testing.assert_allclose(z[[0, 2, 3], 1], (lf - lf.mean()) / lf.std(), rtol=1e-5)
    assert z[1, 1] == 0.0  # unvoiced: the voiced mean
    with pytest.raises(InputError, match="acoustic2d concept needs per-position frames"):
        define_concept("acoustic2d", [])
    with pytest.raises(InputError, match="no class labels"):
        c.labels("", 4, frames)


def test_erasing_acoustic2d_removes_energy_and_pitch_and_keeps_a_planted_text_direction() -> None:
    from casceq.mech.leace import apply_eraser, fit_eraser

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((D, 3)))
    n_utt, p = 80, 12
    frames = [_frames(rng, p) for _ in range(n_utt)]
    concept = define_concept("acoustic2d", [], frames)
    words = rng.integers(0, 2, n_utt)  # a binary "text" property of each utterance
    states, zs = [], []
    for f, w in zip(frames, words, strict=True):
        z = concept.targets("", p, f)
        x = z @ q[:, :2].T * 3.0 + (2.0 * w - 1.0) * q[:, 2] + 0.3 * rng.standard_normal((p, D))
        states.append(x.astype(np.float32))
        zs.append(z)
    eraser = fit_eraser(states, zs)
    x, z = np.concatenate(states), np.concatenate(zs)
    y = np.repeat(words, p)
    xe = apply_eraser(eraser, x)
    for j, name in enumerate(ACOUSTIC_DIMS):
        before = linear_model.LinearRegression().fit(x, z[:, j]).score(x, z[:, j])
        after = linear_model.LinearRegression().fit(xe, z[:, j]).score(xe, z[:, j])
        assert before > 0.9, name  # positive control: energy and pitch are linear in the states
        assert after < 0.02, name
    # the planted text direction survives the erasure
    text_after = linear_model.LogisticRegression(max_iter=2000).fit(xe, y).score(xe, y)
    assert text_after > 0.95


def test_text_concept_classes_need_support_and_supports_are_counted() -> None:
    transcripts = ["hi a", "hi b", "so c", "yes d", "yes e", "yes f", "no g"]
    text = define_concept("text", transcripts)
    assert text.classes == ("yes", "hi", "<other>")  # "so" and "no" start one utterance each
    sup = concept_support(text, [text.carried(t, 3) for t in transcripts])
    assert sup.dims == text.classes and sup.n_utterances == (3, 2, 2) and sup.n_positions == (9, 6, 6)
    assert (sup.total_utterances, sup.total_positions, sup.n_supported) == (7, 21, 3)
    only = define_concept("text", ["hi a", "hi b"])
    assert concept_support(only, [only.carried("hi a", 2)]).n_supported == 1  # <other> has no support
    frames = [np.array([[0, 0, -30, 120, 1], [0, 0, -20, np.nan, 0]], dtype=np.float32)]
    a2 = define_concept("acoustic2d", [], frames)
    assert a2.targets("", 2, frames[0])[0, 1] == 0.0  # the one voiced F0 is the mean: target 0, still carried
    s2 = concept_support(a2, [a2.carried("", 2, frames[0])])
    assert s2.dims == ("energy", "pitch") and s2.n_positions == (2, 1)
    boc = define_concept("boc", [])
    sb = concept_support(boc, [boc.carried("ab", 2), boc.carried("b", 1)])
    assert sb.n_utterances[:3] == (1, 2, 0) and sb.n_positions[:3] == (2, 3, 0)


def test_support_round_trips_and_old_files_read() -> None:
    sup = ConceptSupport("text", ("yes", "<other>"), (3, 0), (30, 0), 3, 30)
    res = ErasureResult("m", (0,), "all", False, "x", 3, (), (), support=(sup,))
    back = ErasureResult.from_json(json.loads(json.dumps(res.to_json())))
    assert back.support == (sup,)
    assert "| text | 1 of 2 | 3 | 30 | `yes` 3 (30), `<other>` 0 (0) |" in back.markdown()
    old = {k: v for k, v in res.to_json().items() if k not in ("support", "diagnostic")}
    assert ErasureResult.from_json(old).support == ()


def test_continuous_heldout_probe_chooses_its_penalty_and_does_not_overfit_few_rows() -> None:
    """Few rows in many dimensions (as real states): noise targets score near 0, not hugely negative, while a
    planted linear target is found (positive control)."""
    from casceq.mech.erasure_concepts import probe_score

    rng = np.random.default_rng(0)
    n, d = 200, 400
    z = rng.standard_normal((n, 2))  # a low-rank signal in the states, as residual streams have
    x = 10.0 * z @ rng.standard_normal((2, d)) + 10.0 * rng.standard_normal((n, d)) + 5.0
    noise = rng.standard_normal((n, 2))
    planted = z + 0.3 * rng.standard_normal((n, 2))
    concept = define_concept("acoustic2d", [], [np.zeros((1, 5), dtype=np.float32)])
    assert probe_score(concept, x[:150], noise[:150], x[150:], noise[150:]) > -0.2  # alpha = 1: -1.06
    assert probe_score(concept, x[:150], planted[:150], x[150:], planted[150:]) > 0.5
