"""Implicit cascade on tiny random-weight speech LLMs: lens text, kappas against sklearn, CLI and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sklearn_metrics = pytest.importorskip("sklearn.metrics")

from casceq.errors import InputError  # noqa: E402
from casceq.types import Example  # noqa: E402
from tests import tiny_models as tm  # noqa: E402

SR = 16_000
TEXTS = ["a fine movie", "dull and slow", "great fun", "a mess", "lovely work", "bad plot"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("implicit")
    return {"root": root, "whisper": tm.tiny_whisper(root / "whisper"), "lm": tm.tiny_causal_lm(root / "lm")}


@pytest.fixture(scope="module")
def ultravox(parts: dict[str, Path]) -> Any:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    cfg = UltravoxNativeConfig(encoder=str(parts["whisper"]), backbone=str(parts["lm"]), hidden_dim=64)
    backend = UltravoxNativeBackend.create(cfg, seed=7)
    with torch.no_grad():
        backend.projector.ln_post.weight.mul_(20.0)
    return backend


@pytest.fixture(scope="module")
def qwen2_audio(parts: dict[str, Path]) -> Any:
    from casceq.systems.speech_llm.qwen2_audio import Qwen2AudioBackend

    return Qwen2AudioBackend.from_pretrained(
        str(tm.tiny_qwen2_audio(parts["root"] / "qwen2a")), backbone="tiny"
    )


def _items(n: int = 6) -> tuple[list[Example], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    examples = [Example(f"e{i}", "sst2", TEXTS[i % 6], ("positive", "negative")[i % 2]) for i in range(n)]
    audios = [(0.1 * rng.standard_normal(int((0.6 + 0.2 * i) * SR))).astype(np.float32) for i in range(n)]
    return examples, audios


@pytest.mark.parametrize("which", ["ultravox", "qwen2_audio"])
def test_implicit_cascade_kappas_and_accuracies_match_sklearn(
    which: str, request: pytest.FixtureRequest
) -> None:
    from casceq.mech.implicit import SpeechBackboneLLM, implicit_cascade
    from casceq.tasks import get_task

    backend = request.getfixturevalue(which)
    task = get_task("sst2")
    examples, audios = _items()
    res = implicit_cascade(
        backend, SpeechBackboneLLM(backend), task, examples, audios, [e.text for e in examples]
    )
    speech = [r.speech for r in res.rows]
    for mine, other in (
        (res.kappa_impl, [r.implicit for r in res.rows]),
        (res.kappa_casc, [r.cascade for r in res.rows]),
    ):
        ref = sklearn_metrics.cohen_kappa_score(other, speech)
        assert (np.isnan(mine) and np.isnan(ref)) or mine == pytest.approx(ref, abs=1e-12)
    gold = [e.label for e in examples]
    assert res.accuracy_speech == pytest.approx(sklearn_metrics.accuracy_score(gold, speech))
    assert res.accuracy_implicit == pytest.approx(
        sklearn_metrics.accuracy_score(gold, [r.implicit for r in res.rows])
    )
    assert res.n == 6 and res.layer == 2
    json.dumps(res.to_json())  # NaN kappas must become null


def test_lens_text_is_the_decoded_argmax_of_the_real_logits(ultravox: Any) -> None:
    from casceq.mech.implicit import lens_transcripts

    _, audios = _items(3)
    texts = lens_transcripts(ultravox, audios, ["Q"] * 3)
    tok = ultravox.tokenizer
    for wav, text in zip(audios, texts, strict=True):
        batch = ultravox.encode([wav], ["Q"])
        ids = (
            ultravox.forward_logits(batch)[0][batch.input_ids[0] == ultravox.audio_token_id]
            .argmax(-1)
            .tolist()
        )
        kept = [t for k, t in enumerate(ids) if t not in tok.all_special_ids and (k == 0 or t != ids[k - 1])]
        # A repeat separated only by a special token stays collapsed in lens_text; none occur with this seed.
        assert text == " ".join(tok.decode(kept).split())


def test_speech_backbone_llm_scores_like_the_text_llm_backend(ultravox: Any, parts: dict[str, Path]) -> None:
    """Same weights, two implementations: the speech LLM's own LM on text vs HFCausalLM of the backbone folder."""
    from casceq.mech.implicit import SpeechBackboneLLM
    from casceq.systems.llm.hf import HFCausalLM

    prompts = ["Is it good?\n\nText: fine\nAnswer:", "Topic?\n\nText: goal\nAnswer:"]
    options = [["positive", "negative"], ["yes", "no"]]
    ours = SpeechBackboneLLM(ultravox).score_options(prompts, options)
    ref = HFCausalLM(str(parts["lm"])).score_options(prompts, options)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
    assert len(SpeechBackboneLLM(ultravox).generate(prompts[:1], 3)) == 1


def test_bad_layer_open_task_and_nan_states(ultravox: Any) -> None:
    from casceq.mech.implicit import SpeechBackboneLLM, implicit_cascade, lens_transcripts
    from casceq.tasks import get_task

    examples, audios = _items(2)
    with pytest.raises(InputError, match=r"valid indices are 0\.\.2"):
        lens_transcripts(ultravox, audios, ["Q"] * 2, layer=5)
    with pytest.raises(InputError, match="open-answer"):
        implicit_cascade(
            ultravox, SpeechBackboneLLM(ultravox), get_task("triviaqa"), examples, audios, ["a", "b"]
        )
    layer = ultravox.describe().layers[0]
    handle = layer.register_forward_hook(lambda _m, _a, out: out * float("nan"))
    try:
        with pytest.raises(InputError, match="utterance 'e0'"):
            lens_transcripts(ultravox, audios, ["Q"] * 2, ids=["e0", "e1"])
    finally:
        handle.remove()


def test_cli_writes_table6_json(ultravox: Any, parts: dict[str, Path], tmp_path: Path) -> None:
    import soundfile as sf

    from casceq.cli import main

    ckpt = ultravox.save(tmp_path / "ckpt")
    examples, audios = _items(4)
    lines = []
    for ex, wav in zip(examples, audios, strict=True):
        sf.write(tmp_path / f"{ex.id}.wav", wav, SR)
        lines.append(json.dumps({"id": ex.id, "audio": f"{ex.id}.wav", "text": ex.text, "label": ex.label}))
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = main(
        [
            "implicit",
            "--model",
            f"ultravox-native:{ckpt}",
            "--task",
            "sst2",
            "--items",
            str(tmp_path / "items.jsonl"),
            "--out",
            str(out),
            "--layer",
            "1",
        ]
    )
    assert code == 0
    data = json.loads((out / "mech" / "implicit.json").read_text())
    assert data["kind"] == "implicit" and data["results"][0]["layer"] == 1 and data["results"][0]["n"] == 4
    assert "κ_impl" in (out / "mech" / "implicit.md").read_text()
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "audio": "x.wav", "label": "maybe"}\n')
    bad = [
        "implicit",
        "--model",
        f"ultravox-native:{ckpt}",
        "--task",
        "sst2",
        "--items",
        str(tmp_path / "bad.jsonl"),
    ]
    assert main([*bad, "--out", str(out)]) == 2


def _spread_labels(backend: Any, prompts: list[str], wavs: list[np.ndarray], texts: list[str]) -> None:
    """Rewrite the 'n' unembedding row as 'p' + a direction orthogonal to the mean last states, scaled up.

    A random tiny model gives every input the same label (kappa undefined); afterwards the first-token score
    difference is ±u·(h - mean), which splits the items, so kappa is a real number to check against sklearn.
    """
    from casceq.mech.implicit import SpeechBackboneLLM

    seen: list[Any] = []
    norm = backend.model.model.norm
    handle = norm.register_forward_hook(lambda _m, _a, out: seen.append(out[0, -1].detach().clone()))
    try:
        for wav, p in zip(wavs, prompts, strict=True):
            backend.forward_logits(backend.encode([wav], [p]))
        n_speech = len(seen)
        text_llm = SpeechBackboneLLM(backend)
        for t in texts:
            text_llm._logprobs(text_llm._context(t))
    finally:
        handle.remove()
    h = torch.stack(seen)
    groups = [h[:n_speech], h[n_speech:]]
    centred = torch.cat([g - g.mean(0) for g in groups])
    u = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    means, _ = torch.linalg.qr(torch.stack([g.mean(0) for g in groups], 1))  # [D, 2] orthonormal basis
    u = u - means @ (means.T @ u)  # orthogonal to both groups' mean states
    u = u / u.norm()
    scale = 50.0 / float((centred @ u).std())
    tok = backend.tokenizer
    p_id, n_id = tok.encode("p", add_special_tokens=False)[0], tok.encode("n", add_special_tokens=False)[0]
    with torch.no_grad():
        w = backend.model.lm_head.weight
        w[n_id] = w[p_id] + scale * u


def test_kappas_with_varied_labels_match_sklearn(parts: dict[str, Path]) -> None:
    from casceq.mech.implicit import SpeechBackboneLLM, implicit_cascade, lens_transcripts
    from casceq.systems.compose import speech_prompt
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig
    from casceq.tasks import get_task

    cfg = UltravoxNativeConfig(encoder=str(parts["whisper"]), backbone=str(parts["lm"]), hidden_dim=64)
    backend = UltravoxNativeBackend.create(cfg, seed=11)
    with torch.no_grad():
        backend.projector.ln_post.weight.mul_(20.0)
    task = get_task("sst2")
    examples, audios = _items(8)
    prompts = [speech_prompt(task, ex) for ex in examples]
    lens = lens_transcripts(backend, audios, prompts)
    texts = [
        task.prompt(t, ex)
        for t, ex in zip([e.text for e in examples] + lens, examples + examples, strict=True)
    ]
    _spread_labels(backend, prompts, audios, texts)
    res = implicit_cascade(
        backend, SpeechBackboneLLM(backend), task, examples, audios, [e.text for e in examples]
    )
    speech = [r.speech for r in res.rows]
    assert len(set(speech)) == 2  # the labels vary: kappa is defined
    for mine, other in (
        (res.kappa_impl, [r.implicit for r in res.rows]),
        (res.kappa_casc, [r.cascade for r in res.rows]),
    ):
        ref = sklearn_metrics.cohen_kappa_score(other, speech)
        assert not np.isnan(mine) and mine == pytest.approx(ref, abs=1e-12)


def test_calibration_offsets_shift_each_side_and_are_recorded(ultravox: Any) -> None:
    # The speech LLM's and the text copy's answers are argmax(raw - offsets), each side with its own offsets,
    # checked against raw scores taken from the two back ends directly; a huge offset is a positive control.
    from casceq.mech.implicit import SpeechBackboneLLM, implicit_cascade, lens_transcripts
    from casceq.systems.compose import speech_prompt
    from casceq.tasks import get_task

    task = get_task("sst2")
    examples, audios = _items()
    llm = SpeechBackboneLLM(ultravox)
    prompts = [speech_prompt(task, ex) for ex in examples]
    opts = [list(task.labels)] * len(examples)
    raw_speech = np.asarray(ultravox.score_options(audios, prompts, opts))
    texts = [e.text for e in examples]
    raw_text = llm.score_options([task.prompt(t, ex) for t, ex in zip(texts, examples, strict=True)], opts)
    lens = lens_transcripts(ultravox, audios, prompts)
    raw_impl = llm.score_options([task.prompt(t, ex) for t, ex in zip(lens, examples, strict=True)], opts)
    # offsets that put each side's decision boundary at its median margin: both labels are answered
    s_off = np.array([0.0, float(np.median(raw_speech[:, 1] - raw_speech[:, 0]))])
    t_off = np.array([0.0, float(np.median(raw_text[:, 1] - raw_text[:, 0]))])
    res = implicit_cascade(
        ultravox, llm, task, examples, audios, texts, speech_offsets=s_off, text_offsets=t_off
    )

    def labels(raw: np.ndarray, off: np.ndarray) -> list[str]:
        return [task.labels[int(i)] for i in np.argmax(raw - off, axis=1)]

    assert [r.speech for r in res.rows] == labels(raw_speech, s_off)
    assert [r.cascade for r in res.rows] == labels(raw_text, t_off)
    assert [r.implicit for r in res.rows] == labels(raw_impl, t_off)
    assert res.offsets_speech == tuple(s_off) and res.offsets_text == tuple(t_off)
    assert json.loads(json.dumps(res.to_json()))["offsets_text"] == list(t_off)
    huge = np.array([0.0, -1e6])  # subtracting -1e6 from the second label's score: always the second label
    forced = implicit_cascade(ultravox, llm, task, examples, audios, texts, speech_offsets=huge)
    assert {r.speech for r in forced.rows} == {task.labels[1]}
    assert [r.cascade for r in forced.rows] == labels(raw_text, np.zeros(2))  # text side untouched
    assert forced.offsets_text is None
    with pytest.raises(InputError, match="2 finite numbers"):
        implicit_cascade(ultravox, llm, task, examples, audios, texts, text_offsets=[0.0, 1.0, 2.0])
    with pytest.raises(InputError, match="sst2: speech calibration offsets must be 2 finite numbers"):
        implicit_cascade(ultravox, llm, task, examples, audios, texts, speech_offsets=[0.0, float("nan")])
