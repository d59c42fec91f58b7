"""The implicit cascade: the speech LLM's own lens text, read by a second copy of its backbone (Table 6).

For every item the speech LLM hears the audio (its answer is the reference of both kappas); the logit lens of
one layer (default: the last) at the audio positions is decoded into text (``casceq.mech.lens.lens_text``:
greedy tokens, specials dropped, repeats collapsed); that text is given as the transcript to a text copy of the
backbone with the task prompt (the *implicit cascade*); the explicit cascade gives it an ASR transcript instead.
Reported: accuracy of all three, ``kappa_impl`` = kappa(implicit, speech LLM) and ``kappa_casc`` =
kappa(explicit cascade, speech LLM), with ``INVALID`` a label of its own (``casceq.stats.agreement.kappa``).

In score mode the answers can be calibrated like a run's (``casceq.run.calibrate``): ``speech_offsets`` are
subtracted from the speech LLM's label scores, ``text_offsets`` from the text copy's (both the explicit and the
implicit cascade: the same backbone and prompt), so the comparison uses the behavioural run's decision rule.
Tiny backbones answer one label for almost everything without it (ASSETS.md), which leaves kappa undefined.

The text copy of the backbone is, by default, the speech LLM's own language model run on text only
(``SpeechBackboneLLM``: same weights, the tokenizer's chat template), or any ``LLMBackend`` (e.g. ``HFCausalLM``
of the released backbone).

``mech/implicit.json``::

    {"kind": "implicit", "version": 1, "extra": {...provenance},
     "results": [{"model": str, "backbone": str, "task": str, "layer": int, "mode": "score"|"generate",
                  "asr": str, "n": int, "accuracy_speech": float, "accuracy_cascade": float,
                  "accuracy_implicit": float, "kappa_impl": float|null, "kappa_casc": float|null,
                  "offsets_speech": [C]|null, "offsets_text": [C]|null,
                  "rows": [{"id", "gold", "speech", "cascade", "implicit", "transcript", "lens_text"}, ...]}]}
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.mech.adapters import layout_of
from casceq.mech.capture import run_clip
from casceq.mech.lens import lens_text, lens_token_ids
from casceq.stats.agreement import kappa
from casceq.systems.answer import answer_batch, check_offsets
from casceq.systems.compose import speech_prompt
from casceq.tasks.base import Task
from casceq.types import Example

IMPLICIT_FILE = "mech/implicit.json"
"""Where ``casceq implicit`` writes its results inside the output folder."""

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class ImplicitRow:
    """One item: gold label, the three systems' labels, the ASR transcript and the lens text."""

    id: str
    gold: str
    speech: str
    cascade: str
    implicit: str
    transcript: str
    lens_text: str


@dataclass(frozen=True)
class ImplicitResult:
    """Table 6 row of one model and task (JSON schema in the module docstring)."""

    model: str
    backbone: str
    task: str
    layer: int
    mode: str
    asr: str
    n: int
    accuracy_speech: float
    accuracy_cascade: float
    accuracy_implicit: float
    kappa_impl: float
    kappa_casc: float
    rows: tuple[ImplicitRow, ...]
    offsets_speech: tuple[float, ...] | None = None
    offsets_text: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (NaN kappas become null)."""
        d = dataclasses.asdict(self)
        for k in ("kappa_impl", "kappa_casc"):
            d[k] = None if math.isnan(d[k]) else d[k]
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImplicitResult:
        """Inverse of :meth:`to_json` (a null kappa reads back as NaN)."""
        fields = dict(data)
        for k in ("kappa_impl", "kappa_casc"):
            fields[k] = math.nan if fields[k] is None else fields[k]
        fields["rows"] = tuple(ImplicitRow(**r) for r in data.get("rows", ()))
        for k in ("offsets_speech", "offsets_text"):
            if fields.get(k) is not None:
                fields[k] = tuple(fields[k])
        return cls(**fields)


def table_markdown(results: Sequence[ImplicitResult]) -> str:
    """Table 6: per model and task, kappa_impl, kappa_casc and the three accuracies."""
    lines = [
        "| model | task | layer | n | κ_impl | κ_casc | acc speech LLM | acc implicit | acc cascade |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        k = [("n/a" if math.isnan(x) else f"{x:.3f}") for x in (r.kappa_impl, r.kappa_casc)]
        lines.append(
            f"| {r.model} | {r.task} | {r.layer} | {r.n} | {k[0]} | {k[1]} | {r.accuracy_speech:.3f} | "
            f"{r.accuracy_implicit:.3f} | {r.accuracy_cascade:.3f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(
    out: str | Path, results: Sequence[ImplicitResult], extra: dict[str, Any] | None = None
) -> Path:
    """Write ``mech/implicit.json`` and ``mech/implicit.md`` under ``out``; returns the JSON path."""
    path = Path(out) / IMPLICIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"kind": "implicit", "version": 1, "extra": extra or {}, "results": [r.to_json() for r in results]}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    path.with_suffix(".md").write_text(table_markdown(results))
    return path


class SpeechBackboneLLM:
    """An ``LLMBackend`` over a speech backend's own language model, fed text only (same weights).

    Prompts are rendered with the tokenizer's chat template when it has one (else the prompt and a newline).
    Scoring runs one forward pass per prompt (and option, for multi-token options); rows are never padded, so
    results do not depend on batching.
    """

    def __init__(self, backend: Any) -> None:
        self.model = backend.model
        self.tokenizer = backend.tokenizer
        self.backbone = str(backend.backbone)

    def _context(self, prompt: str) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            return list(self.tokenizer.encode(str(text), add_special_tokens=False))
        return list(self.tokenizer.encode(prompt + "\n"))

    def _logprobs(self, ids: list[int]) -> Any:
        import torch

        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0]
        return logits.float().log_softmax(-1)

    def score_options(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> np.ndarray:
        """Score [N, C]: summed log-probability of each option's tokens after each rendered prompt."""
        out = np.zeros((len(prompts), len(options[0]) if options else 0))
        for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            ctx = self._context(prompt)
            tails = [list(self.tokenizer.encode(o, add_special_tokens=False)) for o in opts]
            if any(not t for t in tails):
                raise InputError(f"an option of {list(opts)} tokenises to nothing")
            first = self._logprobs(ctx)[-1] if all(len(t) == 1 for t in tails) else None
            for c, tail in enumerate(tails):
                if first is not None:
                    out[i, c] = float(first[tail[0]])
                    continue
                lp = self._logprobs(ctx + tail[:-1])[len(ctx) - 1 :]  # row t predicts tail[t]
                out[i, c] = float(sum(lp[t, tok] for t, tok in enumerate(tail)))
        return out

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy answers, one prompt at a time."""
        import torch

        answers = []
        pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        for prompt in prompts:
            ids = torch.tensor([self._context(prompt)], device=self.model.device)
            with torch.inference_mode():
                new = self.model.generate(
                    input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad
                )[0, ids.shape[1] :]
            answers.append(str(self.tokenizer.decode(new, skip_special_tokens=True)).strip())
        return answers


def lens_transcripts(
    backend: Any,
    audios: Sequence[np.ndarray],
    prompts: Sequence[str],
    *,
    layer: int | None = None,
    ids: Sequence[str] | None = None,
    collapse: bool = True,
) -> list[str]:
    """Lens text at ``layer`` (default: the last) over the audio positions of each clip.

    Clips longer than the model's window are truncated to it (as capture does).

    Raises:
        InputError: Layer out of range (valid range named), NaN states (the utterance named).
    """
    layout = layout_of(backend)
    chosen = layout.check_layers([layout.n_layers if layer is None else layer])[0]
    names = list(ids) if ids is not None else [str(i) for i in range(len(audios))]
    limit = int(layout.window_s * SAMPLE_RATE) if layout.window_s else None
    texts = []
    for name, wav, prompt in zip(names, audios, prompts, strict=True):
        states = run_clip(backend, layout, np.asarray(wav, np.float32)[:limit], [chosen], prompt=prompt)[0]
        if not np.isfinite(states).all():
            raise InputError(f"utterance {name!r}: NaN or infinite states at layer {chosen}")
        texts.append(lens_text(backend.tokenizer, lens_token_ids(layout, states), collapse=collapse))
    return texts


def implicit_cascade(
    backend: Any,
    llm: Any,
    task: Task,
    examples: Sequence[Example],
    audios: Sequence[np.ndarray],
    transcripts: Sequence[str],
    *,
    layer: int | None = None,
    mode: str = "score",
    model: str = "",
    asr: str = "",
    speech_offsets: Sequence[float] | np.ndarray | None = None,
    text_offsets: Sequence[float] | np.ndarray | None = None,
) -> ImplicitResult:
    """Answer ``examples`` with the speech LLM, the implicit cascade and the explicit cascade; compare.

    Args:
        backend: A casceq speech-LLM backend (``make_speech_llm``).
        llm: The text copy of the backbone (any ``LLMBackend``; ``SpeechBackboneLLM(backend)`` by default).
        task: A classification task.
        examples: N items (their ``text`` is not used; ``label`` is the gold).
        audios: N 16 kHz waveforms.
        transcripts: N ASR transcripts for the explicit cascade.
        layer: Lens layer (default: the last).
        mode: ``"score"`` (label log-likelihood) or ``"generate"`` (parsed free text).
        model: Model spec recorded in the result.
        asr: ASR spec recorded in the result.
        speech_offsets: [C] calibration offsets of the speech LLM's label scores (score mode), or None.
        text_offsets: [C] calibration offsets of the text copy's label scores (score mode), or None.
    """
    if task.open_answer:
        raise InputError(f"{task.name} is open-answer: kappa needs a classification task")
    if not (len(examples) == len(audios) == len(transcripts)) or not examples:
        raise InputError(
            f"need as many audios and transcripts as examples (got {len(examples)}, "
            f"{len(audios)}, {len(transcripts)}), at least one"
        )
    layer = layout_of(backend).n_layers if layer is None else layer
    prompts = [speech_prompt(task, ex) for ex in examples]
    wavs = list(audios)
    offsets = {
        role: check_offsets(task, off, f"{role} calibration")
        for role, off in (("speech", speech_offsets), ("text", text_offsets))
        if off is not None and mode == "score"
    }

    def answers(score: Any, generate: Any, role: str) -> list[str]:
        got = answer_batch(
            task=task,
            examples=examples,
            mode=mode,  # type: ignore[arg-type]
            score=score,
            generate=generate,
            offsets=offsets.get(role),
        )
        return [label for _, label, _ in got]

    speech = answers(
        lambda opts: backend.score_options(wavs, prompts, opts),
        lambda k: backend.generate(wavs, prompts, k),
        "speech",
    )
    lens = lens_transcripts(backend, wavs, prompts, layer=layer, ids=[ex.id for ex in examples])

    def text_answers(texts: Sequence[str]) -> list[str]:
        ps = [task.prompt(t, ex) for t, ex in zip(texts, examples, strict=True)]
        return answers(lambda opts: llm.score_options(ps, opts), lambda k: llm.generate(ps, k), "text")

    cascade, implicit = text_answers(transcripts), text_answers(lens)

    def acc(labels: Sequence[str]) -> float:
        return float(np.mean([task.is_correct(lab, ex) for lab, ex in zip(labels, examples, strict=True)]))

    rows = tuple(
        ImplicitRow(ex.id, ex.label, s, c, i, t, lt)
        for ex, s, c, i, t, lt in zip(examples, speech, cascade, implicit, transcripts, lens, strict=True)
    )
    return ImplicitResult(
        model=model,
        backbone=str(getattr(backend, "backbone", "")),
        task=task.name,
        layer=layer,
        mode=mode,
        asr=asr,
        n=len(examples),
        accuracy_speech=acc(speech),
        accuracy_cascade=acc(cascade),
        accuracy_implicit=acc(implicit),
        kappa_impl=kappa(implicit, speech),
        kappa_casc=kappa(cascade, speech),
        rows=rows,
        offsets_speech=tuple(offsets["speech"].tolist()) if "speech" in offsets else None,
        offsets_text=tuple(offsets["text"].tolist()) if "text" in offsets else None,
    )
