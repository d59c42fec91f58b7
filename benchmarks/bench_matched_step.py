"""One training step of the matched-prompt recipe: KV-cached prefix vs running the whole prompt every step.

The matched prompt's prefix (instruction and 4 shots: 138 tokens for SST-2, 351 for AG News) is the same for
every clip. ``casceq.train.matched`` runs it once and continues each batch from its cache; the naive step runs
prefix + audio + suffix through the backbone for every row, forward and backward. Both compute the same loss
on the same batch (checked: loss and projector gradients agree), measured side by side, interleaved, on the
bundled Gemma 3 270M with a fresh projector and random encoder frames of a typical clip length.

    .venv/bin/python benchmarks/bench_matched_step.py [--task ag_news] [--batch 8] [--positions 45] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    import numpy as np
    import torch

    from casceq.systems.llm.prompting import few_shot_examples
    from casceq.tasks import get_task
    from casceq.train.config import TrainConfig
    from casceq.train.matched import (
        Standardiser,
        prefix_cache,
        prompt_parts,
        run_rows,
        student_terms,
        suffix_states,
    )
    from casceq.train.pipeline import make_backend

    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="ag_news")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--positions", type=int, default=45, help="audio embeddings per clip")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(prompt="matched", tasks=(args.task,))
    backend = make_backend(cfg)
    lm, tok = backend.model, backend.tokenizer
    for p in lm.parameters():
        p.requires_grad_(False)
    projector = backend.projector.float().train()
    parts = prompt_parts(tok, args.task, few_shot_examples(get_task(args.task), k=4))
    cache = prefix_cache(lm, parts.prefix)
    emb = lm.get_input_embeddings()
    gen = torch.Generator().manual_seed(0)
    k = cfg.stack_factor
    frames = [torch.randn(args.positions * k, 512, generator=gen) for _ in range(args.batch)]
    n_suf = len(parts.suffix)
    fake = np.random.default_rng(0).normal(
        size=(64, n_suf, lm.config.num_hidden_layers, lm.config.hidden_size)
    )
    std = Standardiser.fit(fake.astype(np.float32))
    teacher = torch.from_numpy(fake[: args.batch].astype(np.float32)) * std.scale + std.mean
    suffix = emb(torch.tensor(list(parts.suffix))).float()
    prefix = emb(torch.tensor(list(parts.prefix))).float()

    def cached() -> tuple[float, torch.Tensor]:
        audio = [projector(f) for f in frames]
        out = run_rows(lm, cache, len(parts.prefix), [torch.cat([a, suffix]) for a in audio], hidden=True)
        st = suffix_states(out, [int(a.shape[0]) for a in audio], n_suf)
        return _step(projector, student_terms(lm, st, teacher, std))

    def naive() -> tuple[float, torch.Tensor]:
        audio = [projector(f) for f in frames]
        rows = torch.stack([torch.cat([prefix, a, suffix]) for a in audio])  # same lengths: no padding needed
        out = lm.get_decoder()(inputs_embeds=rows, output_hidden_states=True)
        st = torch.stack(out.hidden_states[1:], 2)[:, -n_suf:]
        return _step(projector, student_terms(lm, st, teacher, std))

    times: dict[str, list[float]] = {"cached": [], "naive": []}
    results = {}
    for _ in range(args.reps):
        for name, fn in (("cached", cached), ("naive", naive)):
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    (lc, gc), (ln, gn) = results["cached"], results["naive"]
    cos = float(torch.nn.functional.cosine_similarity(gc, gn, dim=0))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"task {args.task}: prefix {len(parts.prefix)} tokens, {args.batch} rows x ({args.positions} audio + {n_suf}) positions"
    )
    print(
        f"cached prefix: {med['cached']:.2f} s/step   naive full prompt: {med['naive']:.2f} s/step   (medians of {args.reps})"
    )
    print(
        f"speed-up: {med['naive'] / med['cached']:.2f}x; loss {lc:.6f} vs {ln:.6f}; gradient cosine {cos:.6f}"
    )
    assert abs(lc - ln) <= 1e-3 * max(1.0, abs(ln)) and cos > 0.999, "the two steps disagree"


def _step(projector, terms):  # type: ignore[no-untyped-def]
    import torch

    loss = terms["kl"] + terms["hidden"]
    projector.zero_grad(set_to_none=True)
    loss.backward()
    grad = torch.cat([p.grad.reshape(-1) for p in projector.parameters()])
    return float(loss), grad.clone()


if __name__ == "__main__":
    main()
