"""The continuous-interface recipe (``casceq.train.continuous``) on tiny random projectors.

Targets against a numpy computation of the posterior mixtures, the initial read-out against an independent
ridge fit, learning a teacher (held-out error falls well below the initial read-out's, and a student taught by
another teacher does not match this one), a resumed run equal to a straight one, the config's refusals, and the
teacher loader refusing a projector trained against another backbone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

D, LLM, K, STACK, HIDDEN = 12, 10, 7, 2, 32


def _proj(head: str, seed: int) -> Any:
    import torch

    from casceq.systems.speech_llm.ultravox_projector import ProjectorConfig, build_projector

    torch.manual_seed(seed)
    cfg = ProjectorConfig(
        encoder_dim=D,
        llm_dim=LLM,
        stack_factor=STACK,
        hidden_dim=HIDDEN,
        head=head,
        vocab_size=K,  # type: ignore[arg-type]
    )
    p = build_projector(cfg)
    if head == "ctc":
        with torch.no_grad():
            p.linear_2.weight.mul_(8.0)  # peaked posteriors, as a trained head has
        p.attach_table(torch.randn(K + 1, LLM, generator=torch.Generator().manual_seed(seed + 1)) * 3)
    return p


def _frames(n: int, seed: int) -> list[Any]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(int(t), D, generator=gen) for t in torch.randint(6, 30, (n,), generator=gen)]


def _cfg(**kw: Any) -> Any:
    from casceq.train.config import TrainConfig

    base = dict(
        head="embed",
        stack_factor=STACK,
        hidden_dim=HIDDEN,
        imitate="teacher",
        imitate_steps=200,
        imitate_lr=1e-2,
        align_steps=0,
        steps=0,
        align_batch=8,
        warmup=5,
        checkpoint_every=25,
        threads=1,
    )
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_targets_are_the_posterior_mixtures_at_every_group() -> None:
    import torch

    from casceq.train.continuous import teacher_embeddings

    teacher = _proj("ctc", 0)
    f = _frames(1, 3)[0]
    logits = teacher.hidden(f).detach().numpy().astype(np.float64)
    table = teacher.table.numpy().astype(np.float64)
    p = _softmax(logits)
    groups = teacher_embeddings(teacher, f, "groups").numpy()
    assert groups.shape == (-(-f.shape[0] // STACK), LLM)
    np.testing.assert_allclose(groups, p @ table, rtol=1e-4, atol=1e-4)
    rest = p[:, 1:] / p[:, 1:].sum(-1, keepdims=True)
    np.testing.assert_allclose(
        teacher_embeddings(teacher, f, "nonblank").numpy(), rest @ table[1:], atol=1e-4
    )
    with pytest.raises(Exception, match="imitate_target"):
        teacher_embeddings(teacher, f, "segments")
    assert torch.is_tensor(teacher_embeddings(teacher, f, "groups"))


def test_initial_read_out_is_the_ridge_fit_and_copies_the_shared_layers() -> None:
    import torch

    from casceq.train import continuous as co

    teacher, student = _proj("ctc", 0), _proj("embed", 5)
    frames = _frames(40, 1)
    fit = co.init_from_teacher(student, teacher, frames, "groups", progress=lambda _m: None)
    for name in ("ln_pre", "linear_1"):
        for (a, p), (_, q) in zip(
            getattr(student, name).state_dict().items(),
            getattr(teacher, name).state_dict().items(),
            strict=True,
        ):
            assert torch.equal(p, q), (name, a)
    # independent ridge: numpy on the same features (recomputed by hand) and targets
    h_parts, t_parts = [], []
    for f in frames:
        x = np.pad(f.numpy(), ((0, (-f.shape[0]) % STACK), (0, 0))).reshape(-1, STACK * D).astype(np.float64)
        x = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * teacher.ln_pre.weight.detach().numpy()
        z = x @ teacher.linear_1.weight.detach().numpy().T
        value, gate = z[:, : HIDDEN // 2], z[:, HIDDEN // 2 :]
        h_parts.append(gate / (1 + np.exp(-gate)) * value)
        t_parts.append(co.teacher_embeddings(teacher, f, "groups").numpy())
    h, t = np.concatenate(h_parts), np.concatenate(t_parts)
    gram = h.T @ h
    w = np.linalg.solve(gram + co.RIDGE * np.mean(np.diag(gram)) * np.eye(len(gram)), h.T @ t)
    rel = float(((h @ w - t) ** 2).sum() / (t**2).sum())
    assert fit["ridge_rel_error"] == pytest.approx(rel, rel=1e-3)
    assert rel < 0.9  # a real read-out: far better than emitting zeros (1.0)
    np.testing.assert_allclose(student.linear_2.weight.detach().numpy(), w.T, rtol=1e-3, atol=1e-4)


def test_imitation_learns_its_teacher_on_held_out_frames_and_not_another(tmp_path: Path) -> None:
    from casceq.train import continuous as co

    cfg = _cfg()
    teacher, other = _proj("ctc", 0), _proj("ctc", 7)
    train, held = _frames(60, 1), _frames(30, 2)
    quiet = {"progress": lambda _m: None}

    student = _proj("embed", 5)
    co.init_from_teacher(student, teacher, train, "groups", progress=lambda _m: None)
    start = co.held_out_error(student, teacher, held, "groups")
    student = _proj("embed", 5)
    co.run_imitate(student, teacher, train, cfg, tmp_path / "a", **quiet)
    learnt = co.held_out_error(student, teacher, held, "groups")
    assert learnt < 0.6 * start, (start, learnt)

    control = _proj("embed", 5)  # same data and steps, another teacher: it must not match this one
    co.run_imitate(control, other, train, cfg, tmp_path / "b", **quiet)
    assert co.held_out_error(control, teacher, held, "groups") > 2 * learnt
    log = (tmp_path / "a" / co.LOG_FILE).read_text().splitlines()
    assert len(log) == cfg.imitate_steps


def test_imitation_resumed_equals_straight_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from casceq.train import continuous as co

    class Killed(Exception):
        pass

    cfg = _cfg(imitate_steps=40, checkpoint_every=10, ctc_time_masks=1, ctc_dropout=0.1)
    teacher, frames = _proj("ctc", 0), _frames(30, 1)
    quiet = {"progress": lambda _m: None}
    a = _proj("embed", 5)
    co.run_imitate(a, teacher, frames, cfg, tmp_path / "a", **quiet)
    real = co.finish_step

    def killed_at_22(*args: Any, **kw: Any) -> int:  # killed two steps after the checkpoint at step 20
        step = real(*args, **kw)
        if step == 22:
            raise Killed
        return step

    monkeypatch.setattr(co, "finish_step", killed_at_22)
    with pytest.raises(Killed):
        co.run_imitate(_proj("embed", 5), teacher, frames, cfg, tmp_path / "b", **quiet)
    monkeypatch.setattr(co, "finish_step", real)
    c = _proj("embed", 9)  # a new process: other weights, resumed from the checkpoint at step 20
    co.run_imitate(c, teacher, frames, cfg, tmp_path / "b", resume=True, **quiet)
    for (name, p), (_, q) in zip(a.state_dict().items(), c.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    assert len((tmp_path / "b" / co.LOG_FILE).read_text().splitlines()) == 40


@pytest.mark.parametrize(
    "bad",
    [
        {"head": "ctc", "align_steps": 5},
        {"imitate_steps": 0},
        {"align_steps": 100},
        {"imitate_target": "segments"},
    ],
)
def test_config_refuses_an_imitation_that_cannot_run(bad: dict[str, Any]) -> None:
    from casceq.errors import InputError

    with pytest.raises(InputError):
        _cfg(**bad)
    assert _cfg().imitate == "teacher"  # the positive control builds


def test_teacher_loader_checks_fingerprints_and_head(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from casceq.errors import InputError
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig
    from casceq.train.ctc import ctc_vocab
    from casceq.train.pipeline import load_teacher
    from tests import tiny_models as tm

    whisper, lm, lm2 = tm.tiny_whisper(tmp_path / "w"), tm.tiny_causal_lm(tmp_path / "lm"), None
    ucfg = UltravoxNativeConfig(
        encoder=str(whisper), backbone=str(lm), encoder_mode="unpadded", stack_factor=2, hidden_dim=64
    )
    ctc = UltravoxNativeBackend.create(ucfg, seed=0)
    ctc.use_ctc_head(ctc_vocab(ctc.tokenizer, ["good film", "bad plot"])[0])
    ctc.save(tmp_path / "teacher")
    student = UltravoxNativeBackend.create(ucfg, seed=1)
    teacher = load_teacher(_cfg(imitate=str(tmp_path / "teacher"), stack_factor=2, hidden_dim=64), student)
    assert teacher.config.head == "ctc" and teacher.table.shape[0] == teacher.config.vocab_size + 1
    student.save(tmp_path / "embed")
    with pytest.raises(ValueError, match="'ctc' head"):
        load_teacher(_cfg(imitate=str(tmp_path / "embed")), student)
    lm2 = tm.tiny_causal_lm(tmp_path / "lm2", seed=3)
    other = UltravoxNativeBackend.create(dataclasses.replace(ucfg, backbone=str(lm2)), seed=1)
    with pytest.raises(InputError, match="different backbone"):
        load_teacher(_cfg(imitate=str(tmp_path / "teacher")), other)


def test_shipped_names_resolve_to_their_own_folders() -> None:
    from casceq.errors import InputError
    from casceq.run.build import native_folder
    from casceq.systems.speech_llm.shipped import SHIPPED, shipped_folder

    folders = {name: shipped_folder(name) for name in SHIPPED}
    assert len(set(folders.values())) == len(SHIPPED)  # no two names share weights
    assert native_folder("ultravox-native:continuous") == folders["continuous"]
    assert native_folder("ultravox-native:bundled") == shipped_folder()
    with pytest.raises(InputError, match="no shipped speech LLM"):
        shipped_folder("nope")


def test_warm_cosine_warms_up_then_decays_to_a_tenth() -> None:
    from casceq.train.checkpoint import warm_cosine

    assert warm_cosine(0, 1000, 100) == pytest.approx(0.01 * 1.0)  # first warm-up step, cosine still 1
    assert warm_cosine(99, 1000, 100) == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * 99 / 999)))
    assert warm_cosine(999, 1000, 100) == pytest.approx(0.1)  # the last step reaches 10% of the peak
    assert warm_cosine(0, 1, 0) == pytest.approx(1.0)  # no warm-up, one step: the peak
