"""Training loop on tiny random-weight models: loss goes down, resume after a kill is exact, export round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests import tiny_models as tm

N_CLIPS = 6


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    return {
        "whisper": tm.tiny_whisper(root / "whisper"),
        "lm": tm.tiny_causal_lm(root / "lm"),
        "lm_other": tm.tiny_causal_lm(root / "lm_other", seed=tm.SEED + 1),
    }


def _cfg(**kw: Any) -> Any:
    from casceq.train.config import TrainConfig

    base = dict(
        stack_factor=4,
        hidden_dim=64,
        steps=12,
        batch_size=4,
        lr=3e-3,
        warmup=1,
        bf16=False,
        checkpoint_every=2,
        threads=1,
        tasks=("sst2",),
        asr_weight=0.5,
        asr_only_steps=2,
        max_text_tokens=12,
    )
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def _backend(parts: dict[str, Path], cfg: Any) -> Any:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    ucfg = UltravoxNativeConfig(
        encoder=str(parts["whisper"]),
        backbone=str(parts["lm"]),
        encoder_mode="unpadded",
        stack_factor=cfg.stack_factor,
        hidden_dim=cfg.hidden_dim,
    )
    return UltravoxNativeBackend.create(ucfg, seed=cfg.seed)


def _data() -> tuple[list[Any], list[str], dict[str, np.ndarray]]:
    import torch

    gen = torch.Generator().manual_seed(0)
    # Long enough (24-50 audio positions) for the audio to move a random tiny LM's answer.
    frames = [torch.randn(int(n) * 8, 32, generator=gen).half() for n in (12, 16, 20, 9, 24, 13)]
    texts = ["good film", "bad plot", "so fun", "dull", "a joy", "awful"]
    teacher = {
        "sst2": np.array([[0.9, 0.1], [0.2, 0.8], [0.85, 0.15], [0.1, 0.9], [0.95, 0.05], [0.05, 0.95]])
    }
    return frames, texts, teacher


def _fixed_loss(backend: Any, cfg: Any) -> float:
    """Loss on every (clip, kind) pair, without gradients: the same measurement before and after training."""
    import torch

    from casceq.train.distill import build_rows, student_loss

    frames, texts, teacher = _data()
    rows = []
    for clip in range(N_CLIPS):
        for kind in ("sst2", "asr"):
            rows += build_rows(
                backend, clip, -(-frames[clip].shape[0] // cfg.stack_factor), kind, texts[clip], cfg
            )
    with torch.no_grad():
        loss, _ = student_loss(
            backend, backend.projector.float(), rows, [frames[r.clip].float() for r in rows], teacher, cfg
        )
    return float(loss)


@pytest.mark.parametrize("lr", [3e-2, 0.0])
def test_loss_decreases_only_when_the_projector_learns(
    parts: dict[str, Path], tmp_path: Path, lr: float
) -> None:
    from casceq.train.loop import read_log, run_steps

    # KL only: the random tiny LM's byte-level transcription loss is near its floor whatever the audio is.
    cfg = _cfg(lr=lr, steps=25, asr_weight=0.0, ce_weight=0.0)
    backend = _backend(parts, cfg)
    before = _fixed_loss(backend, cfg)
    frames, texts, teacher = _data()
    run_steps(backend, frames, texts, teacher, cfg, tmp_path, progress=lambda _m: None)
    after = _fixed_loss(backend, cfg)
    assert len(read_log(tmp_path)) == 25
    if lr > 0:
        assert after < 0.8 * before, (before, after)
    else:  # negative control: a frozen projector leaves the loss exactly where it was
        assert after == pytest.approx(before, abs=1e-6)


def test_resume_after_kill_equals_uninterrupted_run(parts: dict[str, Path], tmp_path: Path) -> None:
    from casceq.train.loop import read_log, run_steps

    cfg = _cfg()
    frames, texts, teacher = _data()
    quiet = {"progress": lambda _m: None}
    straight = _backend(parts, cfg)
    run_steps(straight, frames, texts, teacher, cfg, tmp_path / "a", **quiet)

    out = tmp_path / "b"
    run_steps(_backend(parts, cfg), frames, texts, teacher, cfg, out, stop_after=4, **quiet)
    saved = tmp_path / "ckpt4"
    shutil.copytree(out / "checkpoint", saved)
    # Run on past the checkpoint, then "die" before the next one: the checkpoint on disk is still step 4.
    run_steps(_backend(parts, cfg), frames, texts, teacher, cfg, out, resume=True, stop_after=5, **quiet)
    shutil.rmtree(out / "checkpoint")
    shutil.copytree(saved, out / "checkpoint")
    assert len(read_log(out)) == 5
    resumed = _backend(parts, cfg)  # a fresh process: new model objects, state from disk only
    result = run_steps(resumed, frames, texts, teacher, cfg, out, resume=True, **quiet)

    assert result.step == cfg.steps
    a, b = straight.projector.state_dict(), resumed.projector.state_dict()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    assert [r["loss"] for r in read_log(tmp_path / "a")] == [r["loss"] for r in read_log(out)]
    # Positive control: a different step count gives different weights, so the equality above is informative.
    other = _backend(parts, cfg)
    run_steps(other, frames, texts, teacher, _cfg(steps=cfg.steps - 1), tmp_path / "c", **quiet)
    assert not np.array_equal(
        other.projector.state_dict()["linear_1.weight"].numpy(), a["linear_1.weight"].numpy()
    )


def test_export_round_trip_and_refusal(parts: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from casceq.errors import InputError
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend
    from casceq.train.loop import run_steps
    from casceq.train.pipeline import export

    cfg = _cfg(steps=3)
    backend = _backend(parts, cfg)
    frames, texts, teacher = _data()
    run_steps(backend, frames, texts, teacher, cfg, tmp_path / "run", progress=lambda _m: None)
    folder = export(backend, tmp_path / "model", cfg, {"steps": 3})
    record = json.loads((folder / "projector.json").read_text())
    assert record["training"]["steps"] == 3 and record["model"]["encoder_mode"] == "unpadded"

    loaded = UltravoxNativeBackend.from_checkpoint(folder)
    assert all(p.dtype == torch.float32 for p in loaded.projector.parameters())
    x = frames[0].float()
    with torch.no_grad():
        want, got = backend.projector(x), loaded.projector(x)
    # fp16 storage: equal to the trained weights within half precision, and not equal to a fresh projector.
    assert torch.allclose(want, got, atol=2e-2), (want - got).abs().max()
    fresh = _backend(parts, cfg)
    with torch.no_grad():
        assert not torch.allclose(fresh.projector(x), want, atol=2e-2)
    with pytest.raises(InputError, match="different backbone"):
        UltravoxNativeBackend.from_checkpoint(folder, backbone=str(parts["lm_other"]))


def test_embedding_ctc_alignment_learns_and_resumes(parts: dict[str, Path], tmp_path: Path) -> None:
    import dataclasses

    from casceq.train.align import run_align

    cfg = _cfg(align_steps=30, align_batch=4, align_lr=1e-2, checkpoint_every=10)
    frames, texts, _ = _data()
    quiet = {"progress": lambda _m: None}
    backend = _backend(parts, cfg)
    assert run_align(backend, frames, texts, cfg, tmp_path / "a", **quiet) == 30
    log = [json.loads(ln) for ln in (tmp_path / "a" / "align_log.jsonl").read_text().splitlines()]
    first, last = np.mean([r["ctc"] for r in log[:5]]), np.mean([r["ctc"] for r in log[-5:]])
    assert last < 0.8 * first, (first, last)
    # Interrupted at step 20 (its checkpoint), resumed in a fresh model: the same weights as straight through.
    other = _backend(parts, cfg)
    run_align(other, frames, texts, dataclasses.replace(cfg, align_steps=20), tmp_path / "b", **quiet)
    resumed = _backend(parts, cfg)
    assert run_align(resumed, frames, texts, cfg, tmp_path / "b", resume=True, **quiet) == 30
    a, b = backend.projector.state_dict(), resumed.projector.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
