"""The matched-prompt recipe on tiny random-weight models: prompt identity with the cascade, cached-prefix
exactness, the standardised target's baseline, learning with a frozen control, and exact resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests import tiny_models as tm

TEXTS = ["good film", "bad plot", "so fun", "dull", "a joy", "awful"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("matched")
    return {"whisper": tm.tiny_whisper(root / "whisper"), "lm": tm.tiny_causal_lm(root / "lm")}


def _cfg(**kw: Any) -> Any:
    from casceq.train.config import TrainConfig

    base = dict(
        stack_factor=4,
        hidden_dim=64,
        steps=30,
        batch_size=3,
        lr=1e-2,
        warmup=1,
        checkpoint_every=4,
        threads=1,
        tasks=("sst2",),
        teacher_few_shot=2,
        align_steps=0,
        asr_weight=0.0,
        asr_only_steps=0,
    )
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def _backend(parts: dict[str, Path], cfg: Any, few_shot: int = 2) -> Any:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig

    ucfg = UltravoxNativeConfig(
        encoder=str(parts["whisper"]),
        backbone=str(parts["lm"]),
        encoder_mode="unpadded",
        stack_factor=cfg.stack_factor,
        hidden_dim=cfg.hidden_dim,
        prompt="matched",
        few_shot={"sst2": few_shot, "ag_news": few_shot},
    )
    return UltravoxNativeBackend.create(ucfg, seed=cfg.seed)


def _frames() -> list[Any]:
    import torch

    gen = torch.Generator().manual_seed(0)
    return [torch.randn(int(n) * 4, 32, generator=gen).half() for n in (6, 8, 10, 5, 12, 7)]


@pytest.mark.parametrize("task_name", ["sst2", "ag_news"])
def test_matched_speech_llm_reading_the_transcript_scores_as_the_cascade(
    parts: dict[str, Path], task_name: str
) -> None:
    """With the transcript's own token embeddings as 'audio', the matched prompt *is* the cascade's prompt."""
    import torch

    from casceq.systems.compose import speech_prompt
    from casceq.systems.llm.hf import HFCausalLM
    from casceq.tasks import get_task
    from casceq.train.matched import query_ids
    from casceq.types import Example

    backend = _backend(parts, _cfg())
    task = get_task(task_name)
    text = "a quietly moving film"
    emb = backend.model.get_input_embeddings()
    backend.audio_embeddings = lambda _a: emb(torch.tensor(query_ids(backend.tokenizer, text)))  # type: ignore[method-assign]
    ex = Example(id="x", task=task.name, text="", label=task.labels[0])
    got = backend.score_options([np.zeros(1600, np.float32)], [speech_prompt(task, ex)], [list(task.labels)])
    cascade = HFCausalLM(str(parts["lm"]), chat_template="plain", few_shot=2)
    want = cascade.score_options([task.prompt(text)], [list(task.labels)])
    np.testing.assert_allclose(got, want, atol=1e-4)
    # Control: other words in the audio slot change the scores.
    backend.audio_embeddings = lambda _a: emb(torch.tensor(query_ids(backend.tokenizer, "zq xv")))  # type: ignore[method-assign]
    other = backend.score_options(
        [np.zeros(1600, np.float32)], [speech_prompt(task, ex)], [list(task.labels)]
    )
    assert np.abs(other - want).max() > 1e-3


def test_rows_after_a_cached_prefix_equal_the_full_forward(parts: dict[str, Path]) -> None:
    import torch

    from casceq.systems.llm.prompting import few_shot_examples
    from casceq.tasks import get_task
    from casceq.train.matched import prefix_cache, prompt_parts, query_ids, run_rows, suffix_states

    backend = _backend(parts, _cfg())
    lm, tok = backend.model, backend.tokenizer
    pp = prompt_parts(tok, "sst2", few_shot_examples(get_task("sst2"), k=2))
    cache = prefix_cache(lm, pp.prefix)
    emb = lm.get_input_embeddings()
    queries = [query_ids(tok, t) for t in ("good film", "an awful, dull plot")]
    with torch.no_grad():
        out = run_rows(
            lm, cache, len(pp.prefix), [emb(torch.tensor(q + list(pp.suffix))) for q in queries], hidden=True
        )
        got = suffix_states(out, [len(q) for q in queries], len(pp.suffix))
        for i, q in enumerate(queries):
            full = lm.get_decoder()(
                input_ids=torch.tensor([[*pp.prefix, *q, *pp.suffix]]), output_hidden_states=True
            )
            want = torch.stack(full.hidden_states[1:], 2)[0, -len(pp.suffix) :]
            torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-4)


def test_standardiser_scores_the_mean_state_one_and_the_teacher_zero() -> None:
    import torch

    from casceq.train.matched import Standardiser

    rng = np.random.default_rng(0)
    # Positions with very different means and scales, and one nearly constant dimension.
    states = (
        rng.normal(size=(4000, 3, 2, 8)) * np.array([1.0, 50.0, 0.01])[:, None, None]
        + 1000 * np.arange(3)[:, None, None]
    )
    states[..., 0] = 7.0 + 1e-6 * rng.normal(size=states.shape[:-1])
    std = Standardiser.fit(states.astype(np.float32))
    x = torch.from_numpy(states.astype(np.float32))
    mean_err = (std(x.mean(0, keepdim=True).expand_as(x)) - std(x)).pow(2)
    assert float(mean_err[..., 1:].mean()) == pytest.approx(1.0, abs=0.02)
    assert float(mean_err[..., 0].mean()) < 1e-3  # the floor keeps a constant dimension from exploding
    assert float((std(x) - std(x)).pow(2).mean()) == 0.0


def _targets(backend: Any, cfg: Any, out: Path) -> Any:
    from casceq.train.matched_loop import task_targets

    return task_targets(cfg, backend, TEXTS, out, progress=lambda _m: None)


def _eval_loss(backend: Any, targets: Any, cfg: Any) -> float:
    import torch

    from casceq.train.matched_loop import batch_loss

    with torch.no_grad():
        loss, _ = batch_loss(
            backend, backend.projector.float(), targets["sst2"], _frames(), list(range(6)), cfg
        )
    return float(loss)


@pytest.mark.parametrize("lr", [1e-2, 0.0])
def test_matched_loss_decreases_only_when_the_projector_learns(
    parts: dict[str, Path], tmp_path: Path, lr: float
) -> None:
    from casceq.train.loop import read_log
    from casceq.train.matched_loop import run_matched_steps

    cfg = _cfg(lr=lr)
    backend = _backend(parts, cfg)
    targets = _targets(backend, cfg, tmp_path)
    before = _eval_loss(backend, targets, cfg)
    run_matched_steps(backend, _frames(), targets, cfg, tmp_path, progress=lambda _m: None)
    after = _eval_loss(backend, targets, cfg)
    assert len(read_log(tmp_path)) == cfg.steps
    if lr > 0:
        assert after < 0.7 * before, (before, after)
    else:
        assert after == pytest.approx(before, abs=1e-6)


def test_matched_resume_after_kill_equals_uninterrupted_run(parts: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from casceq.train.loop import read_log
    from casceq.train.matched_loop import run_matched_steps

    cfg = _cfg(steps=10)
    straight = _backend(parts, cfg)
    targets = _targets(straight, cfg, tmp_path / "a")
    run_matched_steps(straight, _frames(), targets, cfg, tmp_path / "a", progress=lambda _m: None)
    killed = _backend(parts, cfg)
    run_matched_steps(killed, _frames(), targets, cfg, tmp_path / "b", stop_after=5, progress=lambda _m: None)
    resumed = _backend(parts, cfg)  # a new process: fresh projector, state from the checkpoint
    run_matched_steps(resumed, _frames(), targets, cfg, tmp_path / "b", resume=True, progress=lambda _m: None)
    for (k, a), (_, b) in zip(
        straight.projector.state_dict().items(), resumed.projector.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=k)
    assert [r["step"] for r in read_log(tmp_path / "b")] == list(range(10))


def test_teacher_states_are_cached_by_texts_and_prompt(parts: dict[str, Path], tmp_path: Path) -> None:
    cfg = _cfg()
    backend = _backend(parts, cfg)
    first = _targets(backend, cfg, tmp_path)
    files = sorted(p.name for p in tmp_path.glob("teacher-*.npy"))
    assert len(files) == 1
    again = _targets(backend, cfg, tmp_path)
    np.testing.assert_array_equal(first["sst2"].states, again["sst2"].states)
    assert sorted(p.name for p in tmp_path.glob("teacher-*.npy")) == files
    _targets(backend, _cfg(teacher_few_shot=1), tmp_path)  # other shots: another prompt, another file
    assert len(list(tmp_path.glob("teacher-*.npy"))) == 2
    assert first["sst2"].states.shape[:2] == (len(TEXTS), len(first["sst2"].parts.suffix))


def test_matched_checkpoint_records_its_prompt(parts: dict[str, Path], tmp_path: Path) -> None:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend

    backend = _backend(parts, _cfg(), few_shot=3)
    backend.save(tmp_path / "ck")
    record = json.loads((tmp_path / "ck" / "projector.json").read_text())
    assert record["model"]["prompt"] == "matched" and record["model"]["few_shot"]["sst2"] == 3
    loaded = UltravoxNativeBackend.from_checkpoint(tmp_path / "ck", few_shot_seed=1)
    assert loaded.config.prompt == "matched" and loaded.shots_for.k_for("sst2") == 3
    assert loaded.shots_for.seed == 1


def test_batches_are_deterministic_and_of_similar_length() -> None:
    from casceq.train.matched_loop import batch_plan

    cfg = _cfg(batch_size=4, tasks=("sst2", "ag_news"))
    lengths = [int(x) for x in np.random.default_rng(1).integers(20, 600, size=400)]
    plans = [batch_plan(s, lengths, cfg) for s in range(200)]
    assert plans == [batch_plan(s, lengths, cfg) for s in range(200)]
    assert [t for t, _ in plans[:4]] == ["sst2", "ag_news", "sst2", "ag_news"]
    spread = np.mean([np.ptp([lengths[i] for i in c]) for _, c in plans])
    rng = np.random.default_rng(2)
    random_spread = np.mean([np.ptp(rng.choice(lengths, 4)) for _ in range(200)])
    assert spread < 0.2 * random_spread, (spread, random_spread)
    seen = {i for _, c in plans for i in c}
    assert len(seen) > 0.75 * len(lengths) * (1 - np.exp(-800 / 400))  # every clip can be drawn


def test_a_prompt_of_no_task_keeps_the_trained_layout_without_shots(parts: dict[str, Path]) -> None:
    from casceq.systems.speech_llm._hf import AUDIO

    backend = _backend(parts, _cfg())
    pieces = backend._pieces("Transcribe the audio.")
    assert pieces[-2] is AUDIO and pieces[-1] == "\nAnswer:"
    assert str(pieces[-3]) == "Transcribe the audio.\n\nText:"
    task_pieces = backend._pieces(
        "Classify the sentiment of the following text. Answer with exactly one word: positive or negative."
        "\n\nThe input is the audio.\nAnswer:"
    )
    assert "Answer: " in str(task_pieces[-3])  # the shots, each followed by its answer


def test_sampled_transcript_ce_equals_full_softmax_when_every_id_is_a_candidate(
    parts: dict[str, Path],
) -> None:
    import torch

    from casceq.train.matched import transcript_ce

    backend = _backend(parts, _cfg())
    lm = backend.model
    final = torch.randn(2, 5, lm.config.hidden_size, generator=torch.Generator().manual_seed(0))
    reads, targets = [[1, 2, 3], [0, 4]], [[10, 20, 30], [40, 50]]
    got = transcript_ce(lm, final, reads, targets, torch.arange(lm.config.vocab_size))
    logits = lm.get_output_embeddings()(final)
    want = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 1], logits[0, 2], logits[0, 3], logits[1, 0], logits[1, 4]]),
        torch.tensor([10, 20, 30, 40, 50]),
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lr", [1e-2, 0.0])
def test_transcription_rows_learn_only_when_the_projector_does(
    parts: dict[str, Path], tmp_path: Path, lr: float
) -> None:
    import torch

    from casceq.train.matched_loop import batch_loss, run_matched_steps

    cfg = _cfg(lr=lr, asr_weight=1.0, steps=30)
    backend = _backend(parts, cfg)
    targets = _targets(backend, cfg, tmp_path)
    assert targets["asr"].states is None

    def ce() -> float:
        with torch.no_grad():
            _, p = batch_loss(
                backend, backend.projector.float(), targets["asr"], _frames(), list(range(6)), cfg, TEXTS
            )
        return p["ce"]

    before = ce()
    run_matched_steps(backend, _frames(), targets, cfg, tmp_path, texts=TEXTS, progress=lambda _m: None)
    after = ce()
    if lr > 0:
        # A random tiny LM's byte-level CE sits near ln(259) = 5.56 whatever its input, so the room to fall is
        # small; the frozen control below stays exactly where it was.
        assert after < before - 0.02 and after > np.log(259) - 0.5, (before, after)
    else:
        assert after == pytest.approx(before, abs=1e-6)


def test_loss_plot_of_a_matched_log(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from casceq.train.evaluate import _smooth, plot_losses

    values = list(np.random.default_rng(0).normal(size=60))
    want = [np.mean(values[max(0, i - 24) : i + 1]) for i in range(60)]
    np.testing.assert_allclose(_smooth(values), want, atol=1e-12)

    def write(rows: list[dict[str, Any]]) -> Path:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return plot_losses(folder, folder / "loss.png")

    def width(png: Path) -> int:
        return int.from_bytes(png.read_bytes()[16:20], "big")  # the IHDR width of a PNG

    task_rows = [
        {"step": i, "task": "sst2", "hidden": 2.0 / (i + 1), "kl": 0.1, "loss": 1.0} for i in range(30)
    ]
    asr_rows = [{"step": 30 + i, "task": "asr", "ce": 3.0, "loss": 3.0} for i in range(10)]
    assert width(write(task_rows)) == 1100  # two panels
    assert width(write(task_rows + asr_rows)) == 1650  # and the transcription panel
    assert width(write(asr_rows + task_rows)) == 1650  # a run that starts with transcription steps
