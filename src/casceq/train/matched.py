r"""Distillation in the matched cascade's own prompt: dense targets, a shared prefix run once.

The student reads exactly the prompt its matched cascade gives the backbone (the task's instruction, the same
k shots, ``"Text:"``), with the clip's audio embeddings where the cascade puts the transcript, then the same
suffix (``"\\nAnswer:"``). Teacher and student therefore differ only in the query span, and at every suffix
position the student can be asked to *be* the teacher:

- ``hidden``: the teacher's hidden states at the suffix positions at every layer ([S, L, D] per clip and
  task), standardised per position, layer and dimension with the teacher's own statistics (Gemma's hidden
  states have a few dimensions of huge magnitude that would otherwise be all an MSE sees; predicting the
  teacher's mean state scores 1.0);
- ``kl``: KL(teacher || student) of the full next-token distribution at the last suffix position (the one
  that predicts the answer), the teacher's logits recomputed from its stored final hidden state.

A label KL over two to four labels gives a few bits per row; these targets give thousands of numbers per row,
all of them about how the backbone has understood the query.

The prefix (instruction and shots, ~250 tokens) is identical for every clip of a task, so it runs once through
the frozen backbone and its KV cache is reused: a step computes only each row's audio and suffix positions
(~30-80 per row instead of ~300).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from casceq.systems.llm.prompting import PromptFormat, render
from casceq.systems.speech_llm.matched_prompt import MARK, split_rendered
from casceq.tasks import get_task
from casceq.train.config import ASR_INSTRUCTION


@dataclass(frozen=True)
class PromptParts:
    r"""A task's matched prompt cut around its query.

    Attributes:
        task: Task name.
        prefix: Token ids before the query (BOS, instruction, shots, ``"Text:"``).
        suffix: Token ids after it (``"\\nAnswer:"``).
        option_sep: Text before an option when it is scored (``" "`` in the plain format).
    """

    task: str
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    option_sep: str = " "


def prompt_parts(tokenizer: Any, task_name: str, shots: Sequence[tuple[str, str]]) -> PromptParts:
    """The matched prompt of ``task_name`` in the plain format, with ``shots``, cut around the query."""
    task = get_task(task_name)
    before, after = split_rendered(render(tokenizer, PromptFormat(chat=False), task.prompt(MARK), shots))
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prefix = bos + list(tokenizer.encode(before, add_special_tokens=False))
    suffix = list(tokenizer.encode(after, add_special_tokens=False))
    return PromptParts(task_name, tuple(prefix), tuple(suffix))


def query_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of the query text as the cascade's prompt has it (after ``"Text:"``, with its space)."""
    return list(tokenizer.encode(" " + text.strip(), add_special_tokens=False))


def prefix_cache(lm: Any, prefix: Sequence[int]) -> Any:
    """The backbone's KV cache of ``prefix`` (no gradient); copy it before use (a forward appends to it)."""
    import torch

    with torch.no_grad():
        return lm(input_ids=torch.tensor([list(prefix)]), use_cache=True).past_key_values


def run_rows(lm: Any, cache: Any, n_prefix: int, rows: Sequence[Any], *, hidden: bool) -> Any:
    """Run rows of input embeddings (each [T_i, D]) after the cached prefix; right-padded, causal.

    Padding after a row's last real position is never attended by a real position (the mask is causal), so
    the real positions' states do not depend on the padding.

    Returns:
        The decoder output: ``hidden_states`` (L+1 tensors [B, W, D], the last one final-normed) when
        ``hidden``, else ``last_hidden_state`` [B, W, D].
    """
    import torch

    width = max(int(r.shape[0]) for r in rows)
    dim = int(rows[0].shape[1])
    embeds = rows[0].new_zeros((len(rows), width, dim))
    for i, r in enumerate(rows):
        embeds[i, : r.shape[0]] = r
    kv = copy.deepcopy(cache)
    kv.batch_repeat_interleave(len(rows))
    mask = torch.ones((len(rows), n_prefix + width), dtype=torch.long)
    positions = (n_prefix + torch.arange(width))[None].expand(len(rows), -1)
    return lm.get_decoder()(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=kv,
        use_cache=True,
        output_hidden_states=hidden,
    )


def logits_of(lm: Any, final_hidden: Any) -> Any:
    """Next-token logits (float32, soft-capped as the model does) of final-normed hidden states [..., D]."""
    import torch

    logits = lm.get_output_embeddings()(final_hidden).float()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def suffix_states(out: Any, starts: Sequence[int], n_suffix: int) -> Any:
    """Hidden states [B, S, L, D] at each row's suffix positions (layers 1..L; layer 0 is the same token)."""
    import torch

    states = torch.stack(out.hidden_states[1:], 2)  # [B, W, L, D]
    idx = torch.tensor([[s + j for j in range(n_suffix)] for s in starts])
    return states[torch.arange(len(starts))[:, None], idx]


def teacher_states(
    lm: Any, parts: PromptParts, cache: Any, texts: Sequence[str], tokenizer: Any, batch: int = 8
) -> np.ndarray:
    """The teacher's suffix hidden states [N, S, L, D] (float16) for each text, read after the shared prefix."""
    import torch

    emb = lm.get_input_embeddings()
    suffix = list(parts.suffix)
    result = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            ids = [query_ids(tokenizer, t) for t in chunk]
            rows = [emb(torch.tensor(q + suffix)).float() for q in ids]
            out = run_rows(lm, cache, len(parts.prefix), rows, hidden=True)
            states = suffix_states(out, [len(q) for q in ids], len(suffix))
            result.append(states.to(torch.float16).numpy())
    return np.concatenate(result, 0)


@dataclass(frozen=True)
class Standardiser:
    """Per-(suffix position, layer, dimension) mean and scale of the teacher's suffix states, [S, L, D] each.

    Per position, so a student that only learned the teacher's average state scores exactly 1.0: what is
    below it is information about the clip.
    """

    mean: Any
    scale: Any

    @classmethod
    def fit(cls, states: np.ndarray) -> Standardiser:
        """From teacher states [N, S, L, D]: statistics over clips.

        A dimension that hardly varies across clips (early layers read mostly the suffix token itself) gets a
        scale of at least a tenth of its position and layer's median scale, so noise there is not magnified.
        """
        import torch

        x = torch.from_numpy(states.astype(np.float32))
        std = x.std(0)
        floor = 0.1 * std.median(-1, keepdim=True).values
        return cls(x.mean(0), torch.maximum(std, floor).clamp_min(1e-6))

    def __call__(self, x: Any) -> Any:
        """Standardise states [..., S, L, D]."""
        return (x - self.mean) / self.scale


def student_terms(lm: Any, student: Any, teacher: Any, std: Standardiser) -> dict[str, Any]:
    """The two loss terms of a batch: states [B, S, L, D] of student (with grad) and teacher (float).

    Returns:
        ``{"hidden": mean squared error of standardised states, "kl": mean KL(teacher || student) of the
        next-token distribution over the whole vocabulary at the last position (the one that answers; the
        unembedding of a 262k vocabulary is too dear to run at every suffix position)}``.
    """
    hidden = (std(student.float()) - std(teacher)).pow(2).mean()
    t_logp = logits_of(lm, teacher[:, -1, -1]).log_softmax(-1)
    s_logp = logits_of(lm, student[:, -1, -1]).log_softmax(-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()
    return {"hidden": hidden, "kl": kl}


TRANSCRIPT_SUFFIX = "\nWords:"
"""What follows the audio in the transcription rows; the student continues it with the spoken words."""
SAMPLED_VOCAB = 2048
"""Random vocabulary ids added to a batch's target tokens in the transcription cross-entropy."""


def transcript_parts(tokenizer: Any) -> PromptParts:
    r"""The transcription rows' prompt in the matched layout: instruction, ``"Text:"``, audio, ``"\nWords:"``.

    Ultravox's own first signal: after the audio, the frozen backbone must continue with the spoken words,
    which it can only do if every word's embedding got through the projector.
    """
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prefix = bos + list(tokenizer.encode(f"{ASR_INSTRUCTION}\n\nText:", add_special_tokens=False))
    suffix = list(tokenizer.encode(TRANSCRIPT_SUFFIX, add_special_tokens=False))
    return PromptParts("asr", tuple(prefix), tuple(suffix))


def sampled_ids(vocab_size: int, seed: int) -> Any:
    """The fixed random vocabulary ids of the sampled cross-entropy (a pure function of the seed)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(vocab_size, generator=gen)[:SAMPLED_VOCAB]


def transcript_ce(
    lm: Any, final: Any, reads: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], extra: Any
) -> Any:
    """Cross-entropy of the transcript tokens over a sampled vocabulary.

    The softmax runs over the batch's target tokens plus ``extra`` random ids instead of the whole vocabulary
    (Gemma's is 262k: 80 GFLOP a batch): a sampled softmax, which ranks the right word above the others the
    batch could have said and above random words.

    Args:
        lm: The backbone (its unembedding and soft-capping).
        final: Final-normed hidden states [B, W, D].
        reads: Per row, the positions whose next token is the transcript's token.
        targets: Per row, the transcript's token ids (same lengths as ``reads``).
        extra: Extra candidate ids (``sampled_ids``).
    """
    import torch

    cand = torch.unique(torch.cat([torch.tensor([t for ts in targets for t in ts]), extra]))
    index = {int(t): i for i, t in enumerate(cand.tolist())}
    rows = torch.tensor([i for i, r in enumerate(reads) for _ in r])
    cols = torch.tensor([p for r in reads for p in r])
    weight = lm.get_output_embeddings().weight[cand]  # [K, D]
    logits = final[rows, cols].float() @ weight.float().T
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    gold = torch.tensor([index[t] for ts in targets for t in ts])
    return torch.nn.functional.cross_entropy(logits, gold)
