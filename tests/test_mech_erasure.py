"""LEACE erasure through hooks: the concept is gone in-sample at every layer, the random control leaves it,
hooks act on every pass during generation, removing them restores the model bit for bit."""

from __future__ import annotations

import json
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("concept_erasure")
linear_model = pytest.importorskip("sklearn.linear_model")

from casceq.errors import InputError  # noqa: E402
from tests import tiny_models as tm  # noqa: E402

SR = 16_000
WORDS = ("hello", "goodbye", "maybe")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    root = tmp_path_factory.mktemp("erase")
    cfg = UltravoxNativeConfig(
        encoder=str(tm.tiny_whisper(root / "w")),
        backbone=str(tm.tiny_causal_lm(root / "lm")),
        hidden_dim=64,
        encoder_mode="unpadded",  # 9x faster than the 30 s window; the mode does not matter to erasure
    )
    b = UltravoxNativeBackend.create(cfg, seed=7)
    with torch.no_grad():
        b.projector.ln_post.weight.mul_(20.0)
    return b


def _sound(cls: int, seconds: float, seed: int) -> np.ndarray:
    """Class-dependent audio (two tones and noise), so the first-word class is decodable from the states."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    if cls == 2:
        x = 0.3 * rng.standard_normal(t.size)
    else:
        x = 0.5 * np.sin(2 * np.pi * (300.0 if cls == 0 else 2000.0) * t) + 0.02 * rng.standard_normal(t.size)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def clips() -> list[Any]:
    from casceq.mech.erasure import FitClip

    return [
        FitClip(f"u{i}", _sound(i % 3, 1.6 + 0.1 * (i % 4), i), f"{WORDS[i % 3]} there {'abc'[i % 3]}x")
        for i in range(18)
    ]


def _in_sample_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    return float(linear_model.LogisticRegression(max_iter=1000, C=10.0).fit(x, y).score(x, y))


def _labelled(concept: Any, clips: list[Any], states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    y = np.concatenate([concept.labels(c.transcript, len(s)) for c, s in zip(clips, states, strict=True)])
    return np.concatenate(states), y


@pytest.fixture(scope="module")
def text_erasers(backend: Any, clips: list[Any]) -> tuple[Any, dict[int, Any], list[Any]]:
    from casceq.mech.erasure import fit_erasers
    from casceq.mech.erasure_concepts import define_concept

    concept = define_concept("text", [c.transcript for c in clips])
    erasers, checks = fit_erasers(backend, clips, concept, [0, 1, 2])
    return concept, erasers, checks


@pytest.mark.slow
def test_sequential_leace_removes_the_concept_in_sample_at_every_layer(
    backend: Any, clips: list[Any], text_erasers: tuple[Any, dict[int, Any], list[Any]]
) -> None:
    from casceq.mech.adapters import layout_of
    from casceq.mech.erasure import ErasureHooks, collect_layers
    from casceq.mech.erasure_concepts import eraser_rank, random_eraser

    concept, erasers, _ = text_erasers
    layout = layout_of(backend)
    layers = [0, 1, 2]
    plain = collect_layers(backend, layout, clips, layers)
    # All erasers act at once (earlier layers included), as during evaluation.
    with ErasureHooks(backend, layout, erasers):
        erased = collect_layers(backend, layout, clips, layers)
    rand = {k: random_eraser(layout.width, eraser_rank(e), seed=k) for k, e in erasers.items()}
    with ErasureHooks(backend, layout, rand):
        control = collect_layers(backend, layout, clips, layers)
    for layer in layers:
        x, y = _labelled(concept, clips, plain[layer])
        chance = np.bincount(y).max() / len(y)
        assert _in_sample_accuracy(x, y) >= 0.9  # positive control: decodable before erasure
        xe, ye = _labelled(concept, clips, erased[layer])
        assert _in_sample_accuracy(xe, ye) <= chance + 0.05
        xr, yr = _labelled(concept, clips, control[layer])
        assert _in_sample_accuracy(xr, yr) >= 0.9  # a random subspace of the same rank leaves it decodable
    assert all(eraser_rank(e) == len(concept.classes) - 1 or eraser_rank(e) <= 3 for e in erasers.values())


@pytest.mark.slow
def test_heldout_checks_report_before_after_and_chance(
    text_erasers: tuple[Any, dict[int, Any], list[Any]],
) -> None:
    _, _, checks = text_erasers
    assert [c.layer for c in checks] == [0, 1, 2]
    for c in checks:
        assert c.metric == "accuracy" and c.n_test == 3 and c.n_train == 15
        assert c.after <= c.chance + 0.2
    # Positive control where held-out decoding is sure to work: the audio embeddings themselves (layer 0).
    # (Deeper layers of a random tiny LM need not generalise across utterances; in-sample is tested above.)
    assert checks[0].before >= 0.8


def _logits(backend: Any, wav: np.ndarray) -> Any:
    return backend.forward_logits(backend.encode([wav], ["Sentiment?"]))


def test_hooks_change_outputs_and_removing_them_restores_exactly(backend: Any, clips: list[Any]) -> None:
    from casceq.mech.adapters import layout_of
    from casceq.mech.erasure import ErasureHooks
    from casceq.mech.erasure_concepts import random_eraser

    layout = layout_of(backend)
    wav = clips[0].audio
    before_logits = _logits(backend, wav)
    before_text = backend.generate([wav], ["Sentiment?"], 6)
    erasers = {0: random_eraser(layout.width, 8, 0), 2: random_eraser(layout.width, 8, 1)}
    for positions in ("all", "audio"):
        with ErasureHooks(backend, layout, erasers, positions):  # type: ignore[arg-type]
            during = _logits(backend, wav)
        assert not torch.equal(during, before_logits)  # positive control: the hooks act
        assert "encode" not in backend.__dict__
    assert torch.equal(_logits(backend, wav), before_logits)  # bitwise
    assert backend.generate([wav], ["Sentiment?"], 6) == before_text


def test_generation_erases_every_pass_prompt_and_new_tokens(backend: Any, clips: list[Any]) -> None:
    from casceq.mech.adapters import layout_of
    from casceq.mech.erasure import ErasureHooks
    from casceq.mech.erasure_concepts import random_eraser

    layout = layout_of(backend)
    eraser = random_eraser(layout.width, 8, 3)
    raw: list[Any] = []
    erased: list[Any] = []
    target = layout.layers[0]  # layer index 1 = output of layers[0]
    h1 = target.register_forward_hook(lambda _m, _a, out: raw.append(out.detach().clone()))
    try:
        with ErasureHooks(backend, layout, {1: eraser}):
            h2 = target.register_forward_hook(lambda _m, _a, out: erased.append(out.detach().clone()))
            try:
                backend.generate([clips[0].audio], ["Sentiment?"], 4)
            finally:
                h2.remove()
    finally:
        h1.remove()
    assert len(raw) == len(erased) >= 3 and raw[0].shape[1] > 1 and all(r.shape[1] == 1 for r in raw[1:])
    for r, e in zip(raw, erased, strict=True):
        torch.testing.assert_close(e, eraser(r))


def test_tuple_layer_outputs_are_handled() -> None:
    from casceq.mech.erasure import ErasureHooks
    from casceq.mech.erasure_concepts import random_eraser

    class TupleLayer(torch.nn.Module):
        def forward(self, h: Any) -> tuple[Any, Any]:
            return h * 2.0, "attn"

    layers = torch.nn.ModuleList([TupleLayer()])
    layout = types.SimpleNamespace(layers=layers, check_layers=lambda ls: tuple(sorted(ls)))
    eraser = random_eraser(6, 2, 0)
    x = torch.randn(1, 3, 6)
    with ErasureHooks(types.SimpleNamespace(), layout, {0: eraser, 1: eraser}):
        out, extra = layers[0](x)
    torch.testing.assert_close(out, eraser(eraser(x) * 2.0))
    assert extra == "attn"


@pytest.mark.slow
def test_run_erasure_end_to_end_json(backend: Any, clips: list[Any], tmp_path: Path) -> None:
    from casceq.mech.erasure import answer_labels, run_erasure
    from casceq.tasks import get_task
    from casceq.types import Example

    task = get_task("sst2")
    examples = [Example(f"e{i}", "sst2", "x", ("positive", "negative")[i % 2]) for i in range(4)]
    audios = [c.audio for c in clips[:4]]
    with pytest.warns(UserWarning, match=r"want >= 320 positions"):
        res = run_erasure(
            backend,
            clips[:12],
            [(task, examples, audios)],
            layers=[0, 2],
            concepts=["text", "ctc", "boc", "random"],
            n_random=2,
        )
    conds = [a.condition for a in res.accuracy]
    assert conds == ["none", "text", "ctc", "boc", "random", "random-2"]
    for a in res.accuracy:  # per-item correctness is stored (the claim's paired interval reads it)
        assert len(a.correct) == 4 and np.mean(a.correct) == a.accuracy
    assert res.gold == {"sst2": [ex.label for ex in examples]}
    none = answer_labels(backend, task, examples, audios, "score")
    assert res.accuracy[0].accuracy == np.mean(
        [lab == ex.label for lab, ex in zip(none, examples, strict=True)]
    )
    assert res.accuracy[0].same_as_none == 1.0
    assert {(p.concept, p.metric) for p in res.probes} == {
        ("text", "accuracy"),
        ("ctc", "accuracy"),
        ("boc", "r2"),
    }
    # every fitted eraser's data per concept dimension, against an independent recount
    sup = {s.concept: s for s in res.support}
    assert set(sup) == {"text", "ctc", "boc"}
    first = Counter(c.transcript.split()[0] for c in clips[:12])
    assert dict(zip(sup["text"].dims, sup["text"].n_utterances, strict=True)) == {**first, "<other>": 0}
    n_pos = sum(len(x) for x in _positions(backend, clips[:12]))
    assert all(s.total_positions == n_pos and s.total_utterances == 12 for s in sup.values())
    assert sum(sup["ctc"].n_positions) == n_pos  # one character per position
    path = res.write(tmp_path)
    data = json.loads(path.read_text())
    assert data["kind"] == "erasure" and data["layers"] == [0, 2] and data["affine"] is False
    md = (tmp_path / "mech" / "erasure.md").read_text()
    assert "| task | none | text |" in md and "| text | 3 of 4 | 12 |" in md


@pytest.mark.slow
def test_run_erasure_applies_calibration_offsets_in_every_condition(backend: Any, clips: list[Any]) -> None:
    # Every condition answers argmax(raw - offsets) with the unerased model's offsets; raw scores are taken
    # from the backend directly under the same hooks. A huge offset forces one label (positive control).
    from casceq.mech.adapters import layout_of
    from casceq.mech.erasure import ErasureHooks, fit_erasers, run_erasure
    from casceq.mech.erasure_concepts import define_concept
    from casceq.systems.compose import speech_prompt
    from casceq.tasks import get_task
    from casceq.types import Example

    task = get_task("sst2")
    examples = [Example(f"e{i}", "sst2", "x", task.labels[i % 2]) for i in range(6)]
    audios = [c.audio for c in clips[:6]]
    prompts = [speech_prompt(task, ex) for ex in examples]
    opts = [list(task.labels)] * len(examples)
    raw = np.asarray(backend.score_options(audios, prompts, opts))
    off = np.array([0.0, float(np.median(raw[:, 1] - raw[:, 0]))])
    with pytest.warns(UserWarning, match=r"want >= 320 positions"):
        res = run_erasure(
            backend,
            clips[:12],
            [(task, examples, audios)],
            layers=[2],
            concepts=["text"],
            offsets={"sst2": off},
        )
        erasers, _ = fit_erasers(
            backend, clips[:12], define_concept("text", [c.transcript for c in clips[:12]], None), [2]
        )
    with ErasureHooks(backend, layout_of(backend), erasers):
        erased = np.asarray(backend.score_options(audios, prompts, opts))
    for cond, scores in (("none", raw), ("text", erased)):
        want = np.mean(
            [task.labels[int(np.argmax(s - off))] == ex.label for s, ex in zip(scores, examples, strict=True)]
        )
        (row,) = [a for a in res.accuracy if a.condition == cond]
        assert row.accuracy == pytest.approx(want)
    assert res.calibration == {"sst2": off.tolist()} and res.to_json()["calibration"]["sst2"] == off.tolist()
    with pytest.warns(UserWarning, match=r"want >= 320 positions"):
        forced = run_erasure(
            backend,
            clips[:12],
            [(task, examples, audios)],
            layers=[2],
            concepts=["text"],
            offsets={"sst2": np.array([0.0, -1e6])},
        )
    assert all(a.accuracy == pytest.approx(0.5) and a.same_as_none == 1.0 for a in forced.accuracy)
    with pytest.raises(InputError, match=r"2 finite numbers \(one per label\), got shape \(3,\)"):
        run_erasure(
            backend, clips[:12], [(task, examples, audios)], layers=[2], offsets={"sst2": np.zeros(3)}
        )


def test_erasers_are_never_fitted_on_evaluated_items(backend: Any, clips: list[Any]) -> None:
    from casceq.mech.erasure import run_erasure
    from casceq.tasks import get_task
    from casceq.types import Example

    task = get_task("sst2")
    # two of the evaluated items are fitting utterances (one of them in another voice: same item)
    examples = [Example(i, "sst2", "x", "positive") for i in ("u0", "u1@voice-b", "e9")]
    with pytest.raises(InputError, match=r"2 of the 3 evaluated items are among the erasers' 18 fitting"):
        run_erasure(backend, clips, [(task, examples, [c.audio for c in clips[:3]])], concepts=["text"])
    with pytest.raises(InputError, match="n_random must be >= 1"):
        run_erasure(backend, clips, [(task, examples[2:], [clips[0].audio])], concepts=["text"], n_random=0)


def test_bad_input(backend: Any, clips: list[Any]) -> None:
    from casceq.mech.adapters import layout_of
    from casceq.mech.erasure import collect_states, fit_erasers
    from casceq.mech.erasure_concepts import define_concept

    concept = define_concept("text", [c.transcript for c in clips])
    with pytest.raises(InputError, match=r"valid indices are 0\.\.2"):
        fit_erasers(backend, clips[:3], concept, [0, 7])
    with pytest.raises(InputError, match="unknown concept"):
        define_concept("colour", [])
    layer = backend.describe().layers[0]
    handle = layer.register_forward_hook(lambda _m, _a, out: out * float("nan"))
    try:
        with pytest.raises(InputError, match="utterance 'u0'"):
            collect_states(backend, layout_of(backend), clips[:2], 1)
    finally:
        handle.remove()


@pytest.mark.slow
def test_cli_erase_writes_json(backend: Any, clips: list[Any], tmp_path: Path) -> None:
    import soundfile as sf

    from casceq.cli import main
    from casceq.mech.capture import Utterance, capture

    ckpt = backend.save(tmp_path / "ckpt")
    lines = []
    for i, clip in enumerate(clips[:12]):
        sf.write(tmp_path / f"{clip.id}.wav", clip.audio, SR)
        label = ("positive", "negative")[i % 2]
        lines.append(
            json.dumps({"id": clip.id, "audio": f"{clip.id}.wav", "text": clip.transcript, "label": label})
        )
    (tmp_path / "items.jsonl").write_text("\n".join(lines[:6]) + "\n")
    # the erasers' fitting utterances: a capture of six OTHER clips
    fit = [Utterance(c.id, str(tmp_path / f"{c.id}.wav"), c.transcript, {}) for c in clips[6:12]]
    capture(backend, fit, str(tmp_path / "fit"), model="tiny", layers=[1, 2], pitch=False)
    args = [
        "erase",
        "--model",
        f"ultravox-native:{ckpt}",
        "--task",
        "sst2",
        "--items",
        str(tmp_path / "items.jsonl"),
    ]
    # fitting on the evaluated items themselves (the old default) is refused
    assert main([*args, "--out", str(tmp_path / "leak"), "--concepts", "text"]) == 2
    fit_args = ["--fit", str(tmp_path / "fit"), "--layers", "1", "2", "--concepts", "text", "random"]
    with pytest.warns(UserWarning, match="LEACE fitted on"):
        code = main([*args, *fit_args, "--n-random", "1", "--out", str(tmp_path / "out")])
    assert code == 0
    data = json.loads((tmp_path / "out" / "mech" / "erasure.json").read_text())
    assert [a["condition"] for a in data["accuracy"]] == ["none", "text", "random"]
    assert data["n_fit_utterances"] == 6 and data["extra"]["commit"]
    assert main([*args, "--fit", str(tmp_path / "fit"), "--out", str(tmp_path / "o2"), "--layers", "9"]) == 2
    # --diagnostic: 40% of the twelve fitting items held out of eraser fitting, scored by the text readout
    more = [Utterance(c.id, str(tmp_path / f"{c.id}.wav"), c.transcript, {}) for c in clips[6:]]
    for c in clips[12:]:
        sf.write(tmp_path / f"{c.id}.wav", c.audio, SR)
    capture(backend, more, str(tmp_path / "fit12"), model="tiny", layers=[1, 2], pitch=False)
    diag_args = ["--fit", str(tmp_path / "fit12"), "--concepts", "text", "--n-random", "1", "--diagnostic"]
    with pytest.warns(UserWarning, match="LEACE fitted on"):
        code = main([*args, *diag_args, "--diagnostic-fraction", "0.4", "--out", str(tmp_path / "d")])
    assert code == 0
    data = json.loads((tmp_path / "d" / "mech" / "erasure.json").read_text())
    assert data["n_fit_utterances"] == 7 and data["diagnostic"]["n_test"] == 5
    assert set(data["diagnostic"]["test_items"]).isdisjoint(data["fit_items"])
    assert [r["layer"] for r in data["diagnostic"]["rows"]] == [1, 2]
    assert (
        "Does erasing the acoustic concept reduce text decodability"
        in (tmp_path / "d" / "mech" / "erasure.md").read_text()
    )


def test_concept_targets_known_values() -> None:
    from casceq.mech.erasure_concepts import define_concept
    from casceq.mech.probes import ALPHABET

    ctc = define_concept("ctc", [])
    assert "".join(ALPHABET[i] for i in ctc.labels("Ab c", 8)) == "AAbb  cc".lower()  # uniform alignment
    boc = define_concept("boc", []).targets("aab", 3)
    assert boc.shape == (3, len(ALPHABET)) and np.allclose(boc.sum(1), 1.0)
    assert boc[0, ALPHABET.index("a")] == pytest.approx(2 / 3)
    text = define_concept("text", ["Hi there", "hi you", "Bye now", "so what"])
    assert text.classes[:1] == ("hi",) and text.classes[-1] == "<other>"
    assert text.labels("HI!", 2).tolist() == [0, 0]
    assert text.labels("zebra", 1).tolist() == [len(text.classes) - 1]  # unseen first word: <other>
    # frames columns: start, end, energy_db, f0_hz (NaN unvoiced), voiced_fraction
    frames = np.array(
        [
            [0, 0, e, f, 1]
            for e, f in [(-60, np.nan), (-40, 100.0), (-20, 300.0), (-50, 300.0), (-10, np.nan), (-30, 90.0)]
        ],
        dtype=np.float32,
    )
    acoustic = define_concept("acoustic", [], [frames])
    assert acoustic.f0_median == pytest.approx(200.0)  # median of the voiced 100, 300, 300, 90
    labels = acoustic.labels("", 6, frames)
    energy_bin, pitch = labels // 3, labels % 3
    assert pitch.tolist() == [0, 1, 2, 2, 0, 1]  # unvoiced, <= median, > median
    assert energy_bin.tolist() == [0, 1, 2, 0, 2, 1]  # tertiles of the six energies
    z = acoustic.targets("", 6, frames)
    assert z.shape == (6, 9) and (z.sum(1) == 1).all()
    with pytest.raises(InputError, match="needs per-position frames"):
        define_concept("acoustic", [])


@pytest.mark.slow
def test_acoustic_concept_end_to_end(backend: Any, clips: list[Any]) -> None:
    """Energy/pitch classes from the clips' own frames (needs the pitch tracker, an optional GPL extra)."""
    pytest.importorskip("parselmouth")
    from casceq.mech.adapters import layout_of
    from casceq.mech.erasure import clip_frames, run_erasure
    from casceq.tasks import get_task
    from casceq.types import Example

    frames = clip_frames(layout_of(backend), clips[:6])
    assert [len(f) for f in frames] == [len(a) for a in _positions(backend, clips[:6])]
    task = get_task("sst2")
    examples = [Example("e0", "sst2", "x", "positive"), Example("e1", "sst2", "x", "negative")]
    with pytest.warns(UserWarning, match="LEACE fitted on"):
        res = run_erasure(
            backend,
            clips[:6],
            [(task, examples, [c.audio for c in clips[:2]])],
            layers=[1],
            concepts=["acoustic", "acoustic2d"],
        )
    assert [a.condition for a in res.accuracy] == ["none", "acoustic", "acoustic2d"]
    check, cont = res.probes
    assert check.concept == "acoustic" and check.metric == "accuracy"
    # erased: the held-out probe is at most near chance, and not better than before erasure
    assert check.after <= check.chance + 0.2 and check.after <= check.before + 1e-9
    # the continuous [energy, pitch] concept: ridge R², removed down to (at most) nothing decodable
    assert cont.concept == "acoustic2d" and cont.metric == "r2" and cont.rank <= 2
    assert cont.after <= max(cont.before, 0.0) + 1e-9 and cont.after < 0.1
    sup = {s.concept: s for s in res.support}
    n_pos = sum(len(f) for f in frames)
    assert sup["acoustic2d"].dims == ("energy", "pitch") and sup["acoustic2d"].n_positions[0] == n_pos
    voiced = sum(int((np.isfinite(f[:, 3]) & (np.nan_to_num(f[:, 3]) > 0)).sum()) for f in frames)
    assert sup["acoustic2d"].n_positions[1] == voiced
    assert sum(sup["acoustic"].n_positions) == n_pos


def _positions(backend: Any, clips: list[Any]) -> list[Any]:
    from casceq.mech.adapters import layout_of
    from casceq.mech.erasure import collect_states

    return collect_states(backend, layout_of(backend), clips, 0)


def test_frames_one_row_off_are_conformed_to_the_positions(backend: Any, clips: list[Any]) -> None:
    """A projector can emit one position fewer than the duration's ceil: frames are recomputed to match."""
    from casceq.mech.adapters import layout_of
    from casceq.mech.capture import position_frames
    from casceq.mech.erasure import clip_frames, conform_frames, fit_erasers
    from casceq.mech.erasure_concepts import define_concept

    layout = layout_of(backend)
    frames = clip_frames(layout, clips[:6])
    longer = [np.vstack([f, f[-1:]]) for f in frames]  # one row more than the model's positions
    concept = define_concept("acoustic", [c.transcript for c in clips[:6]], frames)
    with pytest.raises(IndexError):  # positive control: unconformed frames do not fit the states
        concept.targets(clips[0].transcript, len(frames[0]), longer[0])
    n = len(frames[0]) - 1
    fixed = conform_frames(layout, clips[0], longer[0], n)
    assert fixed is not None and len(fixed) == n
    np.testing.assert_array_equal(fixed, position_frames(clips[0].audio, layout, n)[0])
    assert conform_frames(layout, clips[0], frames[0], len(frames[0])) is frames[0]  # right length: kept
    with pytest.warns(UserWarning, match="LEACE fitted on"):
        erasers, _ = fit_erasers(backend, clips[:6], concept, [1], frames=longer)
    assert set(erasers) == {1}


@pytest.mark.slow
def test_run_erasure_text_diagnostic_on_heldout_clips(backend: Any, clips: list[Any]) -> None:
    """The §5.4 diagnostic runs on held-out clips only (an overlap is refused), with a rank-matched control."""
    from casceq.errors import LeakageError
    from casceq.mech.erasure import run_erasure
    from casceq.mech.erasure_concepts import ErasureResult
    from casceq.tasks import get_task
    from casceq.types import Example

    pytest.importorskip("parselmouth")
    task = get_task("sst2")
    examples = [Example("e0", "sst2", "x", "positive"), Example("e1", "sst2", "x", "negative")]
    evaluation = [(task, examples, [c.audio for c in clips[:2]])]
    with pytest.warns(UserWarning, match="LEACE fitted on"):
        res = run_erasure(
            backend, clips[:12], evaluation, layers=[0, 2], concepts=["text"], heldout=clips[12:], n_boot=200
        )
    # the acoustic erasers are fitted for the diagnostic only: not an answered condition
    assert [a.condition for a in res.accuracy] == ["none", "text"]
    diag = res.diagnostic
    assert diag is not None and (diag.n_train, diag.n_test, diag.n_test_items) == (12, 6, 6)
    assert diag.test_items == tuple(sorted(c.id for c in clips[12:]))
    assert [(r.concept, r.layer) for r in diag.rows] == [("acoustic", 0), ("acoustic", 2)]
    # a later layer may have nothing left to erase once the earlier layers' erasers act (rank 0 there)
    assert diag.rows[0].rank >= 1
    for r in diag.rows:
        assert r.rank == r.control_rank and 0 <= r.rank <= 8
        assert r.excess == pytest.approx(r.r2_control - r.r2_erased)
        assert r.verdict in ("reduced more than random", "reduced less than random", "inconclusive")
    assert ErasureResult.from_json(json.loads(json.dumps(res.to_json()))).diagnostic == diag
    with pytest.raises(LeakageError, match="held-out items"):
        run_erasure(backend, clips[:12], evaluation, layers=[0], concepts=["text"], heldout=clips[10:14])
