"""Label-scoring throughput of the default backbone: HFCausalLM vs a naive per-example loop.

HFCausalLM (batched, length-sorted, unembedding only at the label position, shared prefix) vs a naive per-example, per-option loop (full forward of prompt + option,
full-vocabulary logits at every position, as one writes it from the transformers docs; transformers pipelines
have no continuation-scoring task, so the loop calls the model the way a text-generation pipeline does, one
text at a time).

Same items, same prompts, same model object, measured side by side; prints items/s and ratios, and checks the
two give the same predictions.

    .venv/bin/python benchmarks/bench_llm.py [--model gemma-3-270m] [--task sst2] [--n 24] [--shots 0]
"""

from __future__ import annotations

import argparse
import time


def naive_scores(llm, prompts, options, shots):  # type: ignore[no-untyped-def]
    import numpy as np
    import torch

    from casceq.systems.llm.prompting import render

    out = np.zeros((len(prompts), len(options[0])))
    special = not llm.format.chat
    for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
        ctx = render(llm.tokenizer, llm.format, prompt, shots)
        n_ctx = len(llm.tokenizer(ctx, add_special_tokens=special)["input_ids"])
        for c, opt in enumerate(opts):
            ids = llm.tokenizer(ctx + llm.format.option_sep + opt, add_special_tokens=special)["input_ids"]
            with torch.inference_mode():
                logits = llm.model(input_ids=torch.tensor([ids])).logits[0].float()
            lp = torch.log_softmax(logits, dim=-1)
            out[i, c] = float(sum(lp[t - 1, ids[t]] for t in range(n_ctx, len(ids))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: casceq's DEFAULT_BACKBONE")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch

    from casceq.systems.llm.bundled import DEFAULT_BACKBONE
    from casceq.systems.llm.hf import HFCausalLM
    from casceq.systems.llm.prompting import few_shot_examples
    from casceq.tasks import get_task, load_examples

    torch.set_num_threads(args.threads)
    llm = HFCausalLM(args.model or DEFAULT_BACKBONE, batch_size=args.batch_size)
    task = get_task(args.task)
    items = load_examples(task.name, n=args.n, seed=0)
    shots = few_shot_examples(task, {ex.id for ex in items}, args.shots, seed=0)
    prompts = [task.prompt(ex.text, ex) for ex in items]
    options = [list(task.labels)] * len(items)

    timings = {}
    results = {}
    llm.score_options(prompts[:2], options[:2], shots=shots)  # warm-up (allocator, first-call overheads)
    for name, setup in [
        ("casceq batched+sorted+prefix", dict(share_prefix=True, batch_size=args.batch_size)),
        ("casceq batched+sorted", dict(share_prefix=False, batch_size=args.batch_size)),
        ("casceq batch 1", dict(share_prefix=False, batch_size=1)),
    ]:
        llm.share_prefix, llm.batch_size = setup["share_prefix"], setup["batch_size"]
        t0 = time.perf_counter()
        results[name] = llm.score_options(prompts, options, shots=shots)
        timings[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["naive per-example loop"] = naive_scores(llm, prompts, options, shots)
    timings["naive per-example loop"] = time.perf_counter() - t0

    base = timings["naive per-example loop"]
    ref = results["naive per-example loop"].argmax(1)
    print(f"{llm.backbone}, {task.name}, n={len(items)}, {args.shots}-shot, {args.threads} threads")
    for name, secs in timings.items():
        same = int((results[name].argmax(1) == ref).sum())
        diff = float(np.abs(results[name] - results["naive per-example loop"]).max())
        print(
            f"{name:32s} {len(items) / secs:7.2f} items/s  x{base / secs:5.2f} vs naive  "
            f"same predictions {same}/{len(items)}  max |score diff| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
