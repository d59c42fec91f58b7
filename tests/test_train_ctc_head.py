"""The CTC projector head on tiny random-weight models: greedy-CTC segmentation against an independent decoder,
the cascade identity when the posteriors spell the transcript, learning a learnable mapping (and not a random
one), fp16 export round trip with its token ids, and position times for the mechanistic captures."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests import tiny_models as tm

TEXTS = ["good film", "bad plot", "so fun", "dull day", "a joy", "awful film"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ctc")
    return {"whisper": tm.tiny_whisper(root / "whisper"), "lm": tm.tiny_causal_lm(root / "lm")}


def _cfg(**kw: Any) -> Any:
    from casceq.train.config import TrainConfig

    base = dict(
        stack_factor=2,
        hidden_dim=64,
        head="ctc",
        steps=0,
        align_steps=60,
        align_batch=6,
        align_lr=1e-2,
        checkpoint_every=20,
        threads=1,
        tasks=("sst2",),
        prompt="matched",
        teacher_few_shot=2,
    )
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def _backend(parts: dict[str, Path], cfg: Any, texts: list[str] = TEXTS) -> Any:
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig
    from casceq.train.ctc import ctc_vocab

    ucfg = UltravoxNativeConfig(
        encoder=str(parts["whisper"]),
        backbone=str(parts["lm"]),
        encoder_mode="unpadded",
        stack_factor=cfg.stack_factor,
        hidden_dim=cfg.hidden_dim,
        prompt="matched",
        few_shot={"sst2": 2, "ag_news": 2},
    )
    backend = UltravoxNativeBackend.create(ucfg, seed=cfg.seed)
    backend.use_ctc_head(ctc_vocab(backend.tokenizer, texts)[0], seed=cfg.seed)
    return backend


def _greedy(best: list[int]) -> list[int]:
    """Textbook greedy CTC: collapse repeats, then drop blanks (index 0)."""
    return [k for k, _ in itertools.groupby(best) if k != 0]


def _spelling(targets: list[int], k: int, width: int = 3, sharp: float = 30.0) -> Any:
    """Logits [n, k] whose argmax spells ``targets`` with blanks and repeats between them."""
    import torch

    path: list[int] = [0]
    for t in targets:
        path += [t] * width + [0]
    logits = torch.zeros(len(path), k)
    logits[torch.arange(len(path)), torch.tensor(path)] = sharp
    return logits


def test_segments_follow_greedy_ctc_decoding(parts: dict[str, Path]) -> None:
    import torch

    backend = _backend(parts, _cfg())
    k = backend.projector.config.vocab_size + 1
    rng = np.random.default_rng(0)
    for _ in range(50):
        logits = torch.from_numpy(rng.normal(size=(int(rng.integers(1, 30)), k))).float()
        logits[:, 0] += float(rng.uniform(0, 3))  # often blank, as a trained head is
        best = logits.argmax(-1).tolist()
        segs = backend.projector.segments(logits)
        assert [best[a] for a, _ in segs] == _greedy(best)
        # Segments are disjoint, ordered, and each covers one run of its token.
        for (a, b), (c, _) in itertools.pairwise(segs):
            assert a < b <= c
        assert all(len(set(best[a:b])) == 1 for a, b in segs)


def test_reading_posteriors_that_spell_the_transcript_scores_as_the_cascade(parts: dict[str, Path]) -> None:
    """Peaked posteriors on the transcript's tokens give the cascade's prompt: the matched cascade's scores."""
    import torch

    from casceq.systems.compose import speech_prompt
    from casceq.systems.llm.hf import HFCausalLM
    from casceq.tasks import get_task
    from casceq.train.ctc import ctc_vocab
    from casceq.types import Example

    backend = _backend(parts, _cfg())
    task = get_task("sst2")
    ex = Example(id="x", task=task.name, text="", label=task.labels[0])
    vocab, targets = ctc_vocab(backend.tokenizer, TEXTS)
    assert backend.projector.vocab_ids.tolist() == vocab
    cascade = HFCausalLM(str(parts["lm"]), chat_template="plain", few_shot=2)
    k = len(vocab)

    def scores(i: int) -> Any:
        backend.projector.hidden = lambda _f: _spelling(targets[i], k)  # type: ignore[method-assign]
        return backend.score_options(
            [np.zeros(3200, np.float32)], [speech_prompt(task, ex)], [list(task.labels)]
        )

    for i in (0, 3, 5):
        want = cascade.score_options([task.prompt(TEXTS[i])], [list(task.labels)])
        np.testing.assert_allclose(scores(i), want, atol=1e-4)
    # Control: another text's posteriors give other scores.
    assert (
        np.abs(scores(1) - cascade.score_options([task.prompt(TEXTS[0])], [list(task.labels)])).max() > 1e-3
    )
    # An all-blank clip reads as the single blank token (a space), not as nothing.
    backend.projector.hidden = lambda _f: torch.zeros(5, k).index_fill_(1, torch.tensor([0]), 9.0)  # type: ignore[method-assign]
    assert backend.audio_embeddings(np.zeros(3200, np.float32)).shape[0] == 1


HELD_OUT = ["bad film", "good plot", "fun day"]
"""Texts not trained on, spelt with the training texts' tokens (a character-level tokeniser here)."""


def _learnable(backend: Any, texts: list[str], noise: float, seed: int = 0) -> list[Any]:
    """Frames where each target token has one fixed random pattern (2 groups each, blank groups between)."""
    import torch

    _, targets = ctc_vocab_of(backend, texts)
    d, k = 32, backend.projector.config.stack_factor
    pattern = torch.randn(len(backend.projector.vocab_ids), d, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in targets:
        path = [0]
        for tok in t:
            path += [tok, tok, 0]
        x = pattern[torch.tensor(path)].repeat_interleave(k, 0)
        out.append(x + noise * torch.randn(x.shape, generator=gen))
    return out


def ctc_vocab_of(backend: Any, texts: list[str]) -> tuple[list[int], list[list[int]]]:
    """The targets of ``texts`` in the head's vocabulary (which must hold all their tokens)."""
    from casceq.train.matched import query_ids

    vocab = backend.projector.vocab_ids.tolist()
    index = {tid: k for k, tid in enumerate(vocab) if k > 0}
    return vocab, [[index[i] for i in query_ids(backend.tokenizer, t)] for t in texts]


def test_ctc_stage_generalises_a_learnable_mapping_and_not_noise(
    parts: dict[str, Path], tmp_path: Path
) -> None:
    """Trained on token patterns, the head transcribes held-out texts; trained on noise, it does not."""
    import torch

    from casceq.train.align import run_align

    cfg = _cfg(align_steps=150, align_cosine=True)
    quiet = {"progress": lambda _m: None}

    def decoded(backend: Any, frames: list[Any]) -> list[list[int]]:
        with torch.no_grad():
            return [_greedy(backend.projector.hidden(f).argmax(-1).tolist()) for f in frames]

    backend = _backend(parts, cfg)
    _, held_targets = ctc_vocab_of(backend, HELD_OUT)
    run_align(backend, _learnable(backend, TEXTS, noise=0.1), TEXTS, cfg, tmp_path / "a", **quiet)
    assert decoded(backend, _learnable(backend, HELD_OUT, noise=0.1, seed=1)) == held_targets
    # Control: trained on frames unrelated to the text (noise of the same shapes), it has nothing to generalise.
    control = _backend(parts, cfg)
    noise = [
        torch.randn(f.shape, generator=torch.Generator().manual_seed(i))
        for i, f in enumerate(_learnable(control, TEXTS, noise=0.1))
    ]
    run_align(control, noise, TEXTS, cfg, tmp_path / "b", **quiet)
    held_noise = [
        torch.randn(f.shape, generator=torch.Generator().manual_seed(99 + i))
        for i, f in enumerate(_learnable(control, HELD_OUT, noise=0.1))
    ]
    got = decoded(control, held_noise)
    assert got != held_targets
    same = sum(a == b for g, t in zip(got, held_targets, strict=True) for a, b in zip(g, t, strict=False))
    assert same < sum(map(len, held_targets)) / 2


def test_ctc_head_export_round_trip_keeps_token_ids(parts: dict[str, Path], tmp_path: Path) -> None:
    import json

    import torch

    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend
    from casceq.train.align import run_align
    from casceq.train.pipeline import export

    cfg = _cfg(align_steps=40)
    backend = _backend(parts, cfg)
    frames = _learnable(backend, TEXTS, noise=0.1)
    run_align(backend, frames, TEXTS, cfg, tmp_path / "run", progress=lambda _m: None)
    folder = export(backend, tmp_path / "model", cfg, {"steps": 40})
    record = json.loads((folder / "projector.json").read_text())
    assert record["projector"]["head"] == "ctc"
    assert record["projector"]["vocab_size"] == len(backend.projector.vocab_ids) - 1
    loaded = UltravoxNativeBackend.from_checkpoint(folder)
    assert loaded.projector.vocab_ids.dtype == torch.long
    assert torch.equal(loaded.projector.vocab_ids, backend.projector.vocab_ids)
    backend.projector.eval()
    with torch.no_grad():
        for f in frames[:3]:
            want, got = backend.projector(f), loaded.projector(f)
            assert want.shape == got.shape
            assert torch.allclose(want, got, atol=3e-2), (want - got).abs().max()
    # The embeddings are rows of the backbone's own (scaled) table where the posterior is peaked.
    table = loaded.model.get_input_embeddings()(loaded.projector.vocab_ids)
    assert torch.allclose(loaded.projector.table, table)


def test_position_seconds_cover_each_segment(parts: dict[str, Path]) -> None:
    import torch

    backend = _backend(parts, _cfg())
    k = backend.projector.config.vocab_size + 1
    backend.projector.hidden = lambda _f: _spelling([1, 2, 2], k, width=2)  # type: ignore[method-assign]
    starts, ends = backend.audio_position_seconds(np.zeros(16000, np.float32))
    group = 0.02 * backend.config.stack_factor
    # Path: blank, 1 1, blank, 2 2, blank, 2 2, blank -> segments [1,3), [4,6), [7,9).
    np.testing.assert_allclose(starts, np.array([1, 4, 7]) * group)
    np.testing.assert_allclose(ends, np.array([3, 6, 9]) * group)
    assert len(starts) == backend.audio_embeddings(np.zeros(16000, np.float32)).shape[0]
    assert torch.is_tensor(backend.projector.table)


def test_mech_capture_uses_the_ctc_segments_as_positions(parts: dict[str, Path]) -> None:
    """Captured states have one row per CTC segment, and the per-position frames carry the segments' times."""
    from casceq.mech.adapters import layout_of
    from casceq.mech.capture import position_frames, run_clip

    backend = _backend(parts, _cfg())
    k = backend.projector.config.vocab_size + 1
    backend.projector.hidden = lambda _f: _spelling([1, 2, 2, 3], k, width=2)  # type: ignore[method-assign]
    audio = np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32)
    layout = layout_of(backend)
    states = run_clip(backend, layout, audio, [0, 1])
    assert states.shape[:2] == (2, 4)  # uniform 40 ms positions would give 50
    # Layer 0 holds the audio embeddings themselves.
    np.testing.assert_allclose(states[0], backend.audio_embeddings(audio).float().numpy(), atol=1e-5)
    frames = position_frames(audio, layout, 4, pitch=False)[0]
    group = 0.02 * backend.config.stack_factor
    np.testing.assert_allclose(frames[:, 0], np.array([1, 4, 7, 10]) * group)
    np.testing.assert_allclose(frames[:, 1], np.array([3, 6, 9, 12]) * group)


def test_ctc_transcript_decodes_the_peaked_tokens(parts: dict[str, Path]) -> None:
    from casceq.train.ctc import ctc_vocab

    backend = _backend(parts, _cfg())
    vocab, targets = ctc_vocab(backend.tokenizer, TEXTS)
    for i in (0, 4):
        backend.projector.hidden = lambda _f, i=i: _spelling(targets[i], len(vocab))  # type: ignore[method-assign]
        assert backend.ctc_transcript(np.zeros(3200, np.float32)) == TEXTS[i]


def test_ctc_vocab_keeps_tokens_seen_min_count_times(parts: dict[str, Path]) -> None:
    from casceq.train.ctc import ctc_vocab
    from casceq.train.matched import query_ids

    backend = _backend(parts, _cfg())
    texts = ["aaa b", "aaa c", "aaa b"]
    vocab, targets = ctc_vocab(backend.tokenizer, texts, min_count=2)
    counts: dict[int, int] = {}
    for t in texts:
        for i in query_ids(backend.tokenizer, t):
            counts[i] = counts.get(i, 0) + 1
    assert vocab[1:] == sorted(i for i, c in counts.items() if c >= 2)
    c_id = query_ids(backend.tokenizer, "c")[-1]
    assert counts[c_id] == 1 and c_id not in vocab[1:]
    # Targets are the texts' tokens minus the rare ones, as indices into the vocabulary.
    for t, tgt in zip(texts, targets, strict=True):
        assert [vocab[k] for k in tgt] == [i for i in query_ids(backend.tokenizer, t) if counts[i] >= 2]
    assert ctc_vocab(backend.tokenizer, texts)[0][1:] == sorted(counts)


def test_spoken_targets_are_what_the_voice_said() -> None:
    from casceq.audio.textnorm import spoken_text
    from casceq.train.ctc import spoken_targets

    raw = "Apple #39;s profit jumps \\$2 billion"
    got = spoken_targets(["ag_news/ag-1", "meld/m-1"], [raw, "Oh my God!"])
    assert got == [spoken_text(raw, "ag_news"), "Oh my God!"]
    assert "#39;" not in got[0] and "'s" in got[0]


def test_ctc_batches_are_seeded_buckets_of_similar_length() -> None:
    from casceq.train.ctc import BUCKET_ROWS, batch_of

    cfg = _cfg(align_batch=4)
    lengths = np.random.default_rng(0).integers(50, 1500, size=400)
    order = sorted(range(400), key=lambda i: int(lengths[i]))
    rank = {c: r for r, c in enumerate(order)}
    for step in range(30):
        picks = batch_of(step, order, cfg)
        assert picks == batch_of(step, order, cfg)  # a pure function of (seed, step)
        assert len(set(picks)) == 4
        ranks = [rank[p] for p in picks]
        assert max(ranks) - min(ranks) < BUCKET_ROWS * 4
    assert batch_of(0, order, cfg) != batch_of(1, order, cfg)
    assert sorted(batch_of(0, order[:3], cfg)) == sorted(order[:3])  # fewer clips than a batch: all of them


def test_ctc_augment_masks_time_and_is_seeded() -> None:
    import torch

    from casceq.train.ctc import augment

    x = torch.ones(200, 8)
    cfg = _cfg(ctc_time_masks=2, ctc_mask_frames=10, ctc_dropout=0.0)
    a = augment(x, 3, 1, cfg)
    assert torch.equal(a, augment(x, 3, 1, cfg))
    zeros = [int((augment(x, s, 0, cfg).abs().sum(-1) == 0).sum()) for s in range(20)]
    assert max(zeros) <= 20 and sum(z > 0 for z in zeros) >= 15  # 2 masks of 0-10 frames each
    assert not torch.equal(augment(x, 3, 1, cfg), augment(x, 4, 1, cfg))
    assert torch.equal(x, torch.ones(200, 8))  # the cached frames are not modified
    assert torch.equal(augment(x, 3, 1, _cfg()), x)  # no masks, no dropout: unchanged
    d = augment(x, 0, 0, _cfg(ctc_dropout=0.5))
    assert 0.4 < float((d == 0).float().mean()) < 0.6
    assert torch.allclose(d.mean(), torch.tensor(1.0), atol=0.05)  # inverted dropout keeps the scale


def test_ctc_stage_resumed_equals_straight_run(parts: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from casceq.train.align import run_align

    cfg = _cfg(align_steps=30, checkpoint_every=10, ctc_time_masks=1, ctc_dropout=0.1, warmup=5)
    quiet = {"progress": lambda _m: None}
    a = _backend(parts, cfg)
    frames = _learnable(a, TEXTS, noise=0.1)
    run_align(a, frames, TEXTS, cfg, tmp_path / "a", **quiet)
    b = _backend(parts, cfg)
    import dataclasses

    run_align(b, frames, TEXTS, dataclasses.replace(cfg, align_steps=20), tmp_path / "b", **quiet)
    c = _backend(parts, cfg)  # a new process: fresh weights, resumed from the checkpoint at step 20
    run_align(c, frames, TEXTS, cfg, tmp_path / "b", resume=True, **quiet)
    for (name, p), (_, q) in zip(
        a.projector.state_dict().items(), c.projector.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), name
    log = (tmp_path / "b" / "align_log.jsonl").read_text().splitlines()
    assert len(log) == 30


def test_matched_distillation_after_the_ctc_stage_uses_the_spoken_targets(
    parts: dict[str, Path], tmp_path: Path
) -> None:
    # Distillation on top of a CTC head (steps > 0): the CTC stage and the transcription rows use what each voice
    # said (spoken_targets), the teacher the written text. With the written texts the head's vocabulary would not
    # be the CTC stage's, which stopped this path before any step (found measuring it on the shipped recipe).
    import json

    from casceq.train.ctc import spoken_targets
    from casceq.train.data import Clip
    from casceq.train.loop import read_log
    from casceq.train.pipeline import _train_matched

    written = [
        "Apple #39;s profit jumps \\$2 billion",
        "bad plot",
        "so fun",
        "dull day",
        "a joy",
        "awful film",
    ]
    ids = [f"ag_news/a{i}" for i in range(len(written))]
    spoken = spoken_targets(ids, written)
    assert spoken[0] != written[0]  # the two texts differ, and so would their vocabularies
    cfg = _cfg(steps=3, align_steps=4, batch_size=2, asr_weight=0.0, asr_only_steps=1, checkpoint_every=2)
    backend = _backend(parts, cfg, spoken)
    out = tmp_path / "out"
    out.mkdir()
    (out / "timings.json").write_text("{}")
    clips = []
    for i, (cid, text, x) in enumerate(
        zip(ids, written, _learnable(backend, spoken, noise=0.1), strict=True)
    ):
        np.save(out / f"f{i}.npy", x.numpy().astype(np.float16))
        clips.append(Clip(cid, text, "espeak-us", None, str(out / f"f{i}.npy")))
    model = _train_matched(cfg, out, backend, clips, spoken, False, lambda *_a: None, lambda _m: None)
    assert (model / "projector.safetensors").is_file()
    log = read_log(out)
    assert [r["step"] for r in log] == [0, 1, 2] and all(np.isfinite(r["loss"]) for r in log)
    assert [r["task"] for r in log] == ["asr", "sst2", "sst2"]  # a transcription row first, then distillation
    assert len(json.loads((out / "align_log.jsonl").read_text().splitlines()[-1])) > 0  # the CTC stage ran
    # the written texts as alignment targets: a vocabulary the head was not built with, refused
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "timings.json").write_text("{}")
    with pytest.raises(ValueError, match="vocabulary is not the one of these texts"):
        _train_matched(cfg, tmp_path / "w", backend, clips, written, False, lambda *_a: None, lambda _m: None)
