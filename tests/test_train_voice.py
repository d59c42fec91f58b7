"""The listener built on the CTC model (``casceq.train.voice`` and the projector's voice classifier).

- the classifier fit equals scikit-learn's multinomial logistic regression with the same penalty;
- cross-validation holds whole actors out: labels that only identify the actor are at chance, while a split
  that mixes an actor's clips (the positive control) reads them perfectly;
- the projector appends exactly the classifier's soft word after the CTC tokens, spanning the chunk;
- the token path is refused when it changed (positive control: one weight perturbed);
- the shipped listener's token path is the shipped CTC model's bit for bit, its classifier was fitted on
  training actors only with the CV's best penalty, and its training ids are exactly those actors' clips;
- refitting from the recipe on the real data gives the shipped classifier (slow).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")


def _data(seed: int = 0, n: int = 240, d: int = 6, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(classes, d))
    y = np.array([rng.choice(classes, p=np.exp(r) / np.exp(r).sum()) for r in x @ w.T])
    return x, y


def test_the_classifier_fit_is_sklearns_multinomial_logistic_regression() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    from casceq.train.voice import fit_logistic

    x, y = _data()
    l2 = 0.01
    w, b = fit_logistic(x, y, 4, l2)
    # mean CE + l2·||W||²  ==  (sum CE + n·l2·||W||²) / n  ==  sklearn's C = 1 / (2·n·l2)
    ref = sklearn.LogisticRegression(C=1 / (2 * len(y) * l2), tol=1e-10, max_iter=10_000).fit(x, y)
    mine = np.exp(x @ w.T + b)
    mine /= mine.sum(1, keepdims=True)
    np.testing.assert_allclose(mine, ref.predict_proba(x), atol=2e-4)
    np.testing.assert_allclose(w, ref.coef_, atol=2e-3)


def test_cross_validation_holds_whole_actors_out() -> None:
    from casceq.train.voice import VoiceConfig, grouped_cv

    rng = np.random.default_rng(1)
    actors = np.repeat(np.arange(1, 17), 20)
    label_of = rng.permutation(np.arange(16) % 8)  # each actor has one label: only the actor identifies it
    y = label_of[actors - 1]
    x = np.eye(16)[actors - 1] * 3 + rng.normal(scale=0.1, size=(len(actors), 16))
    cfg = VoiceConfig(l2=(1e-3,))
    held_out = grouped_cv(x, y, actors, 8, cfg)[1e-3]
    assert held_out < 0.3  # a new actor's identity says nothing about its label (chance 1/8)
    mixed = grouped_cv(x, y, np.arange(len(y)) % 16, 8, cfg)[1e-3]  # positive control: folds mix actors
    assert mixed > 0.95


def _tiny_projector(voice: int) -> Any:
    import torch

    from casceq.systems.speech_llm.ultravox_projector import ProjectorConfig, build_projector

    cfg = ProjectorConfig(
        encoder_dim=8, llm_dim=6, stack_factor=2, hidden_dim=16, head="ctc", vocab_size=5, voice_classes=voice
    )
    torch.manual_seed(0)
    p = build_projector(cfg)
    with torch.no_grad():
        p.linear_2.bias[1:] += 3.0  # some non-blank segments
        p.vocab_ids.copy_(torch.arange(6))
        p.attach_table(torch.randn(6, 6))
        if voice:
            p.voice_ids.copy_(torch.arange(voice))
            p.voice_mean.copy_(torch.randn(16))
            p.voice_scale.copy_(torch.rand(16) + 0.5)
            p.attach_voice_table(torch.randn(voice, 6))
    return p


def test_the_projector_appends_the_classifiers_soft_word_after_the_tokens() -> None:
    import torch

    plain, listener = _tiny_projector(0), _tiny_projector(3)
    listener.load_state_dict(plain.state_dict(), strict=False)
    listener.attach_table(plain.table)
    frames = torch.randn(9, 8)
    tokens, segs = plain.compress(frames)
    embeds, spans = listener.compress(frames)
    assert torch.equal(embeds[:-1], tokens) and spans[:-1] == segs
    assert spans[-1] == (0, 5)  # ceil(9 / 2) groups: the soft word spans the chunk
    stats = torch.cat([frames.mean(0), frames.std(0, correction=0)])  # independent of voice_stats
    z = (stats - listener.voice_mean) / listener.voice_scale
    probs = torch.softmax(listener.voice.weight @ z + listener.voice.bias, -1)
    torch.testing.assert_close(embeds[-1], probs @ listener.voice_table)
    assert (
        listener.compress(frames[:0])[0].shape[0] == plain.compress(frames[:0])[0].shape[0]
    )  # no statistics


def test_a_changed_token_path_is_refused(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from casceq.errors import InputError
    from casceq.train.voice import keep_token_path

    plain, listener = _tiny_projector(0), _tiny_projector(3)
    source = tmp_path / "projector.safetensors"
    save_file({k: v.half().contiguous() if v.is_floating_point() else v for k, v in plain.state_dict().items()},
              str(source))  # fmt: skip
    listener.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():  # stored in float16 as the shipped checkpoints are
        for name, t in listener.state_dict(keep_vars=True).items():
            if not name.startswith("voice") and t.is_floating_point():
                t.data = t.data.half().float()
    keep_token_path(listener, source)
    assert listener.linear_1.weight.dtype == torch.float16 and listener.voice.weight.dtype == torch.float32
    with torch.no_grad():
        listener.linear_1.weight[0, 0] += 1.0
    with pytest.raises(InputError, match=r"linear_1\.weight"):
        keep_token_path(listener, source)


def _shipped(name: str) -> Path:
    from casceq.systems.speech_llm.shipped import shipped_folder

    return shipped_folder(name)


def test_the_shipped_listener_reads_words_as_the_ctc_model_and_was_fitted_on_training_actors() -> None:
    import torch
    from safetensors.torch import load_file

    from casceq.tasks.speech_loaders import ACTOR_SPLITS

    ctc = load_file(str(_shipped("bundled") / "projector.safetensors"))
    listener = load_file(str(_shipped("listener") / "projector.safetensors"))
    assert set(listener) - set(ctc) == {
        "voice.weight",
        "voice.bias",
        "voice_ids",
        "voice_mean",
        "voice_scale",
    }
    for name, tensor in ctc.items():
        assert torch.equal(listener[name], tensor), name
    record = json.loads((_shipped("listener") / "projector.json").read_text())
    fit = record["training"]["listener"]
    assert fit["actors"] == list(ACTOR_SPLITS["train"])
    cv = {float(k): v for k, v in fit["cv_accuracy"].items()}
    assert fit["chosen_l2"] == max(cv, key=lambda k: (cv[k], k))
    assert min(cv.values()) > 0.5  # well above chance 1/8 on actors the fold did not see
    ids = (_shipped("listener") / "training_ids.txt").read_text().split()
    assert len(ids) == fit["clips"] == 960
    assert {int(i.rsplit("-", 1)[-1]) for i in ids} == set(ACTOR_SPLITS["train"])


def test_a_plan_with_the_listener_evaluates_held_out_actors() -> None:
    from casceq.reproduce.plan import default_plan, offline_subjects

    subjects = offline_subjects(["listener", "cascade-w"])
    assert [s.name for s in subjects] == ["Speech-LLM", "Speech-LLM-L", "Cascade-W"]
    plan = default_plan(subjects=subjects, tasks=("sst2", "ravdess"))
    assert dict(plan.splits) == {"ravdess": "test"}
    alone = default_plan(subjects=offline_subjects(["ctc"]), tasks=("sst2", "ravdess"))
    assert dict(alone.splits) == {}  # positive control: no subject trained on RAVDESS


@pytest.mark.slow
@pytest.mark.shared
def test_the_recipe_refits_the_shipped_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    import torch
    from safetensors.torch import load_file

    from casceq.cli import main
    from casceq.paths import datasets_dir
    from casceq.systems.llm.bundled import resolve_llm

    root = datasets_dir()
    if root is None or not (root / "ravdess").is_dir():
        pytest.skip("../shared/datasets/ravdess not found")
    resolve_llm("gemma-3-270m")  # the offline weights are part of the test install
    assert main(["train", "listener", "--out", str(tmp_path)]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert folder == tmp_path / "model"
    mine, shipped = (load_file(str(f / "projector.safetensors")) for f in (folder, _shipped("listener")))
    for name in ("voice_mean", "voice_scale", "voice_ids"):
        assert torch.equal(mine[name], shipped[name]), name
    torch.testing.assert_close(mine["voice.weight"], shipped["voice.weight"], atol=1e-4, rtol=1e-3)
    assert (folder / "training_ids.txt").read_text() == (
        _shipped("listener") / "training_ids.txt"
    ).read_text()
