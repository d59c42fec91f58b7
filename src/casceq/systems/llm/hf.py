"""A transformers causal LM as an ``LLMBackend``: label scoring by log-likelihood, and greedy generation.

Scoring feeds ``context + option[:-1]`` and reads the option's tokens at the last positions. Rows are
left-padded (so every continuation is right-aligned and its positions are the same in every row) with
position ids counted from the first real token, which makes results independent of batch size and padding.
Identical input rows are computed once: when every option is a single token (SST-2, AG News, CSQA letters in
both bundled tokenizers) that is one forward pass per item for all C options. The unembedding is applied only
to the needed positions (Gemma's vocabulary has 262k rows), Gemma's final logit soft-capping included; a check
at load time compares this against the model's own logits and falls back to ``logits_to_keep`` for
architectures whose output head does something else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from casceq.systems.llm.batching import common_prefix_len, left_pad, length_sorted_batches, line_done
from casceq.systems.llm.bundled import resolve_llm
from casceq.systems.llm.prompting import (
    AutoShots,
    ChatMode,
    Shot,
    choose_format,
    encode,
    option_ids,
    render,
)
from casceq.systems.loading import checked_load, resolve_dtype_device

log = logging.getLogger(__name__)
Precision = Literal["auto", "float32", "bfloat16", "bfloat16-autocast"]
MIN_SHARED_PREFIX = 16
"""Shorter common prefixes are not worth a separate forward pass and cache copies."""


class HFCausalLM:
    """An ``LLMBackend`` over ``AutoModelForCausalLM`` (CPU or CUDA).

    Args:
        model: A bundled name (``"gemma-3-270m"``, ``"smollm2-135m-instruct"``), a transformers folder, a
            ``.gguf`` file or a hub id (see ``casceq.systems.llm.bundled.resolve_llm``).
        dtype: ``"auto"`` (bfloat16 weights on a GPU, float32 on CPU), ``"float32"``, ``"bfloat16"``, or
            ``"bfloat16-autocast"`` (float32 weights, bf16 matmuls: 2.1x faster on CPUs with AMX/avx512_bf16,
            same predictions in ASSETS' test).
        device: Torch device (``"auto"``: CUDA when available).
        batch_size: Rows per forward pass.
        chat_template: ``"auto"`` (the tokenizer's chat template if it has one), ``"chat"``, ``"plain"``, or
            ``"chatml"`` (an explicit ChatML template, for a chat model whose tokenizer has none).
        few_shot: k shots for every task, or a mapping task -> k; drawn by ``prompting.AutoShots`` for the
            task recognised from each prompt's instruction (0: zero-shot). Explicit ``shots=`` arguments
            override this.
        few_shot_seed: Ranking seed of the shots (use the run's seed: shots then never overlap its items).
        exclude_ids: Example ids never used as shots (the evaluated items).
        system_prompt: System message for chat models (None: the template's default).
        threads: ``torch.set_num_threads`` value (None: leave as is).
        share_prefix: Compute the token prefix common to all rows of a call (instruction and shots) once and
            reuse its KV cache: k-shot scoring then costs about what zero-shot does.
        trust_remote_code: Run the model repository's own Python code (opt-in; e.g. ``Qwen/Qwen-7B-Chat``).

    Raises:
        WeightsError: The checkpoint lacks weights the model needs (they would be randomly initialised).
    """

    def __init__(
        self,
        model: str = "gemma-3-270m",
        *,
        dtype: Precision = "auto",
        device: str = "auto",
        batch_size: int = 8,
        chat_template: ChatMode = "auto",
        few_shot: int | Mapping[str, int] = 0,
        few_shot_seed: int = 0,
        exclude_ids: Sequence[str] = (),
        system_prompt: str | None = None,
        threads: int | None = None,
        share_prefix: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in ("auto", "float32", "bfloat16", "bfloat16-autocast"):
            raise ValueError(
                f"dtype must be 'auto', 'float32', 'bfloat16' or 'bfloat16-autocast', got {dtype!r}"
            )
        weights, device = resolve_dtype_device("float32" if dtype == "bfloat16-autocast" else dtype, device)
        if threads is not None:
            torch.set_num_threads(threads)
        path, self.backbone = resolve_llm(model)
        remote = {"trust_remote_code": True} if trust_remote_code else {}
        self.tokenizer = AutoTokenizer.from_pretrained(path, **remote)
        self.tokenizer.padding_side = "left"
        model_obj, self.load_report = checked_load(
            AutoModelForCausalLM.from_pretrained, path, dtype=weights, device=device, **remote
        )
        self.model = model_obj.eval()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self.format = choose_format(self.tokenizer, chat_template, system_prompt)
        self.shots_for = AutoShots(few_shot, few_shot_seed, exclude_ids)
        self.share_prefix = share_prefix
        self.fast_unembed = self._check_unembedding()

    # ----- prompts -------------------------------------------------------------------------------------------
    def context(self, prompt: str, shots: Sequence[Shot] | None = None) -> str:
        """Return the rendered text after which the answer starts (automatic shots unless ``shots`` is given)."""
        return render(self.tokenizer, self.format, prompt, self.shots_for(prompt) if shots is None else shots)

    def _encode(self, text: str) -> list[int]:
        return encode(self.tokenizer, self.format, text)

    # ----- forward ---------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.dtype == "bfloat16-autocast":
            return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batch(self, rows: Sequence[Sequence[int]], past: int = 0) -> tuple[Any, Any, Any]:
        ids, mask, pos = left_pad(rows, int(self.pad_id), past)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    def _prefix(self, prefix: Sequence[int]) -> Any:
        """Compute the KV cache of a token prefix shared by every row of a call (the instruction and the shots)."""
        import torch

        ids = torch.tensor([list(prefix)], device=self.device)
        with torch.inference_mode(), self._autocast():
            return self.model.base_model(input_ids=ids, use_cache=True).past_key_values

    def _last_logprobs(
        self,
        rows: Sequence[Sequence[int]],
        n_last: int,
        fast: bool | None = None,
        prefix: Any = None,
        past: int = 0,
    ) -> Any:
        """Log-probabilities [B, n_last, V] (float32) of the next token at each row's last ``n_last`` positions.

        With ``prefix`` (the cache of ``past`` shared tokens), ``rows`` are the rows after that prefix.
        """
        import copy

        import torch

        ids, mask, pos = self._batch(rows, past)
        kw: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
        if prefix is not None:
            cache = copy.deepcopy(prefix)  # the forward appends to it
            cache.batch_repeat_interleave(len(rows))
            kw |= {"past_key_values": cache, "use_cache": True}
        with torch.inference_mode(), self._autocast():
            if fast if fast is not None else self.fast_unembed:
                hidden = self.model.base_model(**kw)[0]
                logits = self.model.get_output_embeddings()(hidden[:, -n_last:])
                cap = getattr(self.model.config, "final_logit_softcapping", None)
                if cap:
                    logits = torch.tanh(logits / cap) * cap
            else:
                logits = self.model(**kw, logits_to_keep=n_last).logits[:, -n_last:]
        return torch.log_softmax(logits.float(), dim=-1)

    def _prefix_groups(
        self, rows: Sequence[Sequence[int]], need: Sequence[int]
    ) -> list[tuple[list[int], int]]:
        """Split rows into groups, each with the length of a token prefix computed once for it (0: none).

        With a cached prefix the padding sits between prefix and row, which would stretch a sliding window
        (Gemma 3: 512): rows longer than the window therefore go in a group without a shared prefix, where
        left padding shifts every index alike and the window is exact.
        """
        everything = list(range(len(rows)))
        if not self.share_prefix or len(rows) < 2:
            return [(everything, 0)]
        window = getattr(self.model.config, "sliding_window", None) or float("inf")
        short = [i for i in everything if len(rows[i]) <= window]
        long = [i for i in everything if len(rows[i]) > window]
        groups = [(long, 0)] if long else []
        if short:
            n = common_prefix_len([rows[i] for i in short], [need[i] for i in short])
            groups.append((short, n if n >= MIN_SHARED_PREFIX and len(short) > 1 else 0))
        return groups

    def _check_unembedding(self) -> bool:
        """Whether hidden states -> output embedding (-> soft-cap) reproduces the model's own logits."""
        import torch

        row = self._encode("The answer is")[:8] or [int(self.pad_id)]
        fast = self._last_logprobs([row], 1, fast=True)
        ids = torch.tensor([row], device=self.device)
        with torch.inference_mode(), self._autocast():
            ref = torch.log_softmax(self.model(input_ids=ids).logits[:, -1:].float(), dim=-1)
        ok = bool(torch.allclose(fast, ref, atol=1e-3, rtol=1e-3))
        if not ok:
            log.warning(
                "%s: output head is not embedding+softcap; scoring with full logits_to_keep", self.backbone
            )
        return ok

    def _length_sorted(self, n: int, lengths: Sequence[int]) -> Iterator[list[int]]:
        return length_sorted_batches(lengths, self.batch_size)

    # ----- LLMBackend -------------------------------------------------------------------------------------------
    def score_options(
        self, prompts: Sequence[str], options: Sequence[Sequence[str]], *, shots: Sequence[Shot] | None = None
    ) -> np.ndarray:
        """Return the summed log-probability of each option continuation after each rendered prompt.

        Args:
            prompts: N user messages.
            options: N lists of C option strings (e.g. the task's labels; multi-token options are fine).
            shots: Explicit k-shot examples for every prompt (default: the automatic ``few_shot`` shots).

        Returns:
            float64 array [N, C].
        """
        import torch

        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        if not prompts:
            return np.zeros((0, 0))
        width = len(options[0])
        if any(len(o) != width for o in options):
            raise ValueError("every prompt needs the same number of options")
        # rows: unique input token tuples; wants: (item i, option c, row index, option token ids)
        row_index: dict[tuple[int, ...], int] = {}
        need: list[int] = []
        wants: list[tuple[int, int, int, list[int]]] = []
        for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            ctx = self.context(prompt, shots)
            ctx_ids = self._encode(ctx)
            for c, opt in enumerate(opts):
                tail = option_ids(self.tokenizer, self.format, ctx, ctx_ids, opt)
                key = tuple(ctx_ids + tail[:-1])
                r = row_index.setdefault(key, len(row_index))
                if r == len(need):
                    need.append(0)
                need[r] = max(need[r], len(tail))
                wants.append((i, c, r, tail))
        rows = list(row_index)
        by_row: list[list[tuple[int, int, list[int]]]] = [[] for _ in rows]
        for i, c, r, tail in wants:
            by_row[r].append((i, c, tail))
        out = np.zeros((len(prompts), width), dtype=np.float64)
        for members, past in self._prefix_groups(rows, need):
            prefix = self._prefix(rows[members[0]][:past]) if past else None
            for batch in self._length_sorted(len(members), [len(rows[m]) for m in members]):
                idx = [members[b] for b in batch]
                n_last = max(need[r] for r in idx)
                lp = self._last_logprobs([rows[r][past:] for r in idx], n_last, prefix=prefix, past=past)
                # Read scalars now: keeping [n_last, V] slices would hold V floats per row (262k for Gemma).
                for j, r in enumerate(idx):
                    for i, c, tail in by_row[r]:
                        # A right-aligned continuation of k tokens: position n_last - k + t predicts token t.
                        pos = torch.arange(n_last - len(tail), n_last)
                        out[i, c] = float(lp[j, pos, torch.tensor(tail)].sum())
        return out

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        *,
        shots: Sequence[Shot] | None = None,
        stop_at_newline: bool = True,
    ) -> list[str]:
        """Greedy answers, prompt stripped; stops at EOS and (``stop_at_newline``) at the first line break.

        Args:
            prompts: N user messages.
            max_new_tokens: Generation budget per answer.
            shots: Explicit k-shot examples (default: the automatic ``few_shot`` shots).
            stop_at_newline: Cut the answer at its first newline (label answers are one line; a base model
                otherwise goes on to invent the next example).
        """
        import torch

        encoded = [self._encode(self.context(p, shots)) for p in prompts]
        answers = [""] * len(prompts)
        for idx in self._length_sorted(len(prompts), [len(e) for e in encoded]):
            ids, mask, _ = self._batch([encoded[i] for i in idx])
            kwargs: dict[str, Any] = {}
            if stop_at_newline:
                kwargs["stopping_criteria"] = [line_done(self.tokenizer, ids.shape[1])]
            with torch.inference_mode(), self._autocast():
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=int(self.pad_id),
                    **kwargs,
                )
            for j, i in enumerate(idx):
                text = str(self.tokenizer.decode(out[j, ids.shape[1] :], skip_special_tokens=True))
                answers[i] = text.strip().split("\n", 1)[0].strip() if stop_at_newline else text.strip()
        return answers
