"""vLLM's offline engine as an ``LLMBackend`` (optional: ``pip install 'casceq[vllm]'``; GPU machines).

Prompts are rendered exactly as ``HFCausalLM`` renders them (``prompting.render``: chat template or plain
format, the same k shots), so a vLLM run and a transformers run of one backbone see identical token ids.

Scoring uses vLLM's ``prompt_logprobs``: each (prompt, option) becomes one token-id prompt
``context + option``, generated with ``SamplingParams(max_tokens=1, prompt_logprobs=0)``; the result's
``prompt_logprobs`` holds, per prompt position, a dict ``{token_id: Logprob}`` that always contains the actual
prompt token (position 0 is None). The option's score is the sum over its positions. vLLM's automatic prefix
caching makes the shared context of the C options of one item cost one prefill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from casceq.errors import MissingDependency
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


class VLLMBackend:
    """An ``LLMBackend`` over ``vllm.LLM``.

    Args:
        model: Hub id or local folder (bundled names and ``.gguf`` files are resolved like ``HFCausalLM``'s).
        chat_template: ``"auto"``, ``"chat"`` or ``"plain"`` (see ``prompting.choose_format``).
        few_shot: Automatic k shots, for every task or per task (see ``HFCausalLM``).
        few_shot_seed: Ranking seed of the shots.
        exclude_ids: Example ids never used as shots.
        system_prompt: System message for chat models.
        **engine_kwargs: Passed to ``vllm.LLM`` (``dtype``, ``max_model_len``, ``gpu_memory_utilization`` ...);
            ``enable_prefix_caching`` defaults to True.
    """

    def __init__(
        self,
        model: str,
        *,
        chat_template: ChatMode = "auto",
        few_shot: int | Mapping[str, int] = 0,
        few_shot_seed: int = 0,
        exclude_ids: Sequence[str] = (),
        system_prompt: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise MissingDependency("vllm", "the vLLM back end", extra="vllm") from exc
        path, self.backbone = resolve_llm(model)
        engine_kwargs.setdefault("enable_prefix_caching", True)
        self._vllm = vllm
        self.engine = vllm.LLM(model=path, **engine_kwargs)
        self.tokenizer = self.engine.get_tokenizer()
        self.format = choose_format(self.tokenizer, chat_template, system_prompt)
        self.shots_for = AutoShots(few_shot, few_shot_seed, exclude_ids)

    def context(self, prompt: str, shots: Sequence[Shot] | None = None) -> str:
        """Return the rendered text after which the answer starts (automatic shots unless ``shots`` is given)."""
        if shots is None:
            shots = self.shots_for(prompt)
        return render(self.tokenizer, self.format, prompt, shots)

    def score_options(
        self, prompts: Sequence[str], options: Sequence[Sequence[str]], *, shots: Sequence[Shot] | None = None
    ) -> np.ndarray:
        """Return the summed log-probability [N, C] of each option after each rendered prompt."""
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        requests: list[dict[str, Any]] = []
        spans: list[tuple[int, int]] = []
        for prompt, opts in zip(prompts, options, strict=True):
            ctx = self.context(prompt, shots)
            ctx_ids = encode(self.tokenizer, self.format, ctx)
            for opt in opts:
                tail = option_ids(self.tokenizer, self.format, ctx, ctx_ids, opt)
                requests.append({"prompt_token_ids": ctx_ids + tail})
                spans.append((len(ctx_ids), len(ctx_ids) + len(tail)))
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.engine.generate(requests, params, use_tqdm=False)
        flat = [
            sum_prompt_logprobs(out.prompt_logprobs, req["prompt_token_ids"], span)
            for out, req, span in zip(outputs, requests, spans, strict=True)
        ]
        width = len(options[0]) if options else 0
        return np.asarray(flat, dtype=np.float64).reshape(len(prompts), width)

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        *,
        shots: Sequence[Shot] | None = None,
        stop_at_newline: bool = True,
    ) -> list[str]:
        """Greedy answers (prompt stripped; cut at the first newline when ``stop_at_newline``)."""
        requests = [
            {"prompt_token_ids": encode(self.tokenizer, self.format, self.context(p, shots))} for p in prompts
        ]
        params = self._vllm.SamplingParams(max_tokens=max_new_tokens, temperature=0.0)
        outputs = self.engine.generate(requests, params, use_tqdm=False)
        texts = [str(out.outputs[0].text).strip() for out in outputs]
        return [t.split("\n", 1)[0].strip() for t in texts] if stop_at_newline else texts


def sum_prompt_logprobs(
    prompt_logprobs: Sequence[Any], token_ids: Sequence[int], span: tuple[int, int]
) -> float:
    """Sum the log-probabilities of ``token_ids[start:end]`` from vLLM's per-position ``prompt_logprobs``.

    Args:
        prompt_logprobs: One entry per prompt position (None at position 0), each a mapping
            ``token_id -> Logprob`` (an object with ``.logprob``) or ``token_id -> float``.
        token_ids: The prompt's token ids.
        span: ``(start, end)`` positions of the option.
    """
    total = 0.0
    for pos in range(*span):
        entry = prompt_logprobs[pos][token_ids[pos]]
        total += float(getattr(entry, "logprob", entry))
    return total
