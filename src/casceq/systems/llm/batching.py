"""Batching helpers of the transformers back end: left padding, shared prefixes, length-sorted batches, stops."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, past: int = 0) -> tuple[Any, Any, Any]:
    """Left-pad token rows into ``input_ids`` [B, L], ``attention_mask`` [B, past + L], ``position_ids`` [B, L].

    Left padding right-aligns every row, so "the last k positions" are the same indices in all rows. ``past``
    real tokens (a shared cached prefix) precede every row: the padding then sits between that prefix and the
    row, masked. Positions count real tokens only, so a padded row sees the positions of the unpadded one (RoPE
    would not mind a shift; absolute-position models would).
    """
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), past + width), dtype=torch.long)
    mask[:, :past] = 1
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
        mask[i, past + width - len(r) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]
    return ids, mask, pos


def common_prefix_len(rows: Sequence[Sequence[int]], need: Sequence[int]) -> int:
    """Length of the token prefix shared by all rows, leaving each row its last ``need[i]`` tokens outside it.

    The scored positions must be computed in the per-row pass, so the prefix stops ``need[i]`` tokens before
    the end of every row.
    """
    first = rows[0]
    n = min(len(r) - k for r, k in zip(rows, need, strict=True))
    for r in rows[1:]:
        n = next((i for i in range(max(n, 0)) if r[i] != first[i]), n)  # first mismatch
    return max(n, 0)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Yield indices in batches of similar length, longest first (little padding; memory errors surface at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def line_done(tokenizer: Any, prompt_len: int) -> Any:
    r"""Make a ``StoppingCriteria``: a row is done once its answer has text followed by a newline.

    Unlike ``stop_strings=["\n"]`` a leading newline (a base model's habit after ``Answer:``) does not end the
    answer before it starts.
    """
    import torch
    from transformers import StoppingCriteria

    class LineDone(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            return torch.tensor([("\n" in t.lstrip()) for t in texts], device=input_ids.device)

    return LineDone()
