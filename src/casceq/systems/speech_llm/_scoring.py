"""Option scoring shared by the local speech-LLM adapters: one audio+prompt pass per example, whatever C is.

The prompt (audio included) is run once per example with a KV cache. The log-probability of each option's
first token comes from the prompt's last position; when some option has more tokens, the cache is repeated C
times (``Cache.batch_repeat_interleave``, the same call beam search uses) and the options' remaining tokens,
right-padded, are run against it in one more pass. The audio encoder and the long prompt therefore run once,
not C times (AG News's ``Sci/Tech`` is several tokens in most vocabularies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.systems.speech_llm._hf import HFSpeechLLM, chunks


def score_options(
    backend: HFSpeechLLM,
    audios: Sequence[np.ndarray],
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
) -> np.ndarray:
    """Score options: summed log-probability [N, C] of each option's tokens after audio and instruction."""
    if len(options) != len(prompts):
        raise InputError(f"got {len(options)} option lists for {len(prompts)} prompts")
    sizes = {len(o) for o in options}
    if len(sizes) != 1 or 0 in sizes:
        raise InputError("every example needs the same, non-zero number of options")
    tokens = [[backend._tokens(backend.option_text(o)) for o in opts] for opts in options]
    for opts, toks in zip(options, tokens, strict=True):
        for o, t in zip(opts, toks, strict=True):
            if not t:
                raise InputError(f"option {o!r} tokenises to nothing")
    scores = np.zeros((len(prompts), sizes.pop()))
    for idx in chunks(len(prompts), backend.batch_size):
        batch = backend.encode([audios[i] for i in idx], [prompts[i] for i in idx])
        scores[list(idx)] = _score_batch(backend, batch, [tokens[i] for i in idx])
    return scores


def _score_batch(backend: HFSpeechLLM, batch: Any, tokens: list[list[list[int]]]) -> np.ndarray:
    """Scores [B, C] for one encoded batch of prompts and the token ids of their options."""
    import torch

    n_rows, n_opt = len(tokens), len(tokens[0])
    longest = max(len(t) for row in tokens for t in row)
    with torch.inference_mode():
        out = backend.prompt_pass(batch, cache=longest > 1)
        first = out.logits[:, -1].float().log_softmax(-1)  # [B, V]: predicts each option's first token
        scores = np.array([[float(first[i, t[0]]) for t in row] for i, row in enumerate(tokens)])
        if longest == 1:
            return scores
        cache = out.past_key_values
        cache.batch_repeat_interleave(n_opt)
        width = longest - 1  # the first token is already scored; feed tokens 0..n-2 to predict 1..n-1
        ids = torch.full((n_rows * n_opt, width), backend.pad_token_id, dtype=torch.long)
        opt_mask = torch.zeros((n_rows * n_opt, width), dtype=torch.long)
        for r, toks in enumerate(t for row in tokens for t in row):
            ids[r, : len(toks) - 1] = torch.tensor(toks[:-1])
            opt_mask[r, : len(toks) - 1] = 1
        prompt_mask = batch.attention_mask.repeat_interleave(n_opt, 0)
        start = prompt_mask.sum(1, keepdim=True)  # each row's next position (left padding excluded)
        logits = backend.continue_pass(
            ids, torch.cat([prompt_mask, opt_mask], 1), start + torch.arange(width)[None], cache
        )
        logp = logits.float().log_softmax(-1)  # [B*C, width, V]
    for r, toks in enumerate(t for row in tokens for t in row):
        rest = torch.tensor(toks[1:], device=logp.device)
        if len(rest):
            scores[r // n_opt, r % n_opt] += float(logp[r, : len(rest)].gather(-1, rest[:, None]).sum())
    return scores
