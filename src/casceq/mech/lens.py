"""Logit lens: each captured layer projected through final norm + unembedding (+ soft-capping), greedy tokens.

Raw residual states (``casceq.mech.capture.LayerTap``; never transformers' ``hidden_states[-1]``, which already
has the final norm) go through ``ModelLayout.unembed``; the argmax token of each position is the lens token.
Two sources:

- a capture folder of a speech LLM (``lens_capture``): lens tokens at the audio positions of every utterance,
  scored against the utterance's transcript (the paper's Table 5 / Figure 5);
- text into a text LLM (``lens_texts``): lens tokens at the positions of the input text, scored against the
  text itself, plus how often the lens token *is* the input token at that position (``identity``) or the next
  input token (``next_token``): where input words are still readable and where prediction takes over.

**Bag-of-tokens precision** of a layer = hits / scored tokens over all positions of all utterances. A lens token
is normalised with the model's tokenizer: ``decode([id])``, lower-cased, stripped of whitespace and edge
punctuation; special and ``<...>`` control tokens and tokens with no letter or digit are dropped (not scored). It is a hit when it is
in the reference bag: the normalised tokens of the transcript tokenised as is, lower-cased, and each with a
leading space (so ``"Movie"``, ``" movie"`` and ``"movie"`` all count), plus the transcript's normalised words.

``mech/lens.json`` (``LensResult.to_json``)::

    {"kind": "lens", "version": 1, "model": str, "key": str, "fingerprint": str, "source": "capture"|"text",
     "n_utterances": int, "n_positions": int,
     "layers": [{"layer": int, "n_tokens": int, "n_hits": int, "precision": float|null,
                 "identity": float|null, "next_token": float|null, "top_tokens": [[str, int], ...]}, ...],
     "examples": [{"id": str, "reference": str, "layer": int, "text": str}, ...], "extra": {...}}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.mech.adapters import layout_of
from casceq.mech.capture import LayerTap, fingerprint
from casceq.mech.lens_tokens import LayerTally, LensLayer, TokenNormaliser, lens_text, normalise_text
from casceq.mech.shards import CaptureReader

__all__ = [
    "LayerTally",
    "LensExample",
    "LensLayer",
    "LensResult",
    "TokenNormaliser",
    "lens_capture",
    "lens_text",
    "lens_texts",
    "lens_token_ids",
    "normalise_text",
]

LENS_FILE = "mech/lens.json"
"""Where ``casceq lens`` writes its result inside the output folder."""

CHUNK_POSITIONS = 64
"""Positions unembedded at once (Gemma's 262k vocabulary: 64 x 262k float32 logits = 67 MB)."""

N_EXAMPLES = 5
"""Utterances whose lens text is kept in the result (per layer), for people to read."""


@dataclass(frozen=True)
class LensExample:
    """The lens text of one utterance at one layer (greedy tokens, repeats collapsed)."""

    id: str
    reference: str
    layer: int
    text: str


@dataclass(frozen=True)
class LensResult:
    """A logit lens over layers (see the module docstring for the JSON schema)."""

    model: str
    key: str
    fingerprint: str
    source: str
    n_utterances: int
    n_positions: int
    layers: tuple[LensLayer, ...]
    examples: tuple[LensExample, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (schema in the module docstring)."""
        return {"kind": "lens", "version": 1, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LensResult:
        """Inverse of :meth:`to_json` (``kind`` and ``version`` are dropped)."""
        fields = {k: v for k, v in data.items() if k not in ("kind", "version")}
        fields["layers"] = tuple(layer_from_json(r) for r in data.get("layers", ()))
        fields["examples"] = tuple(LensExample(**e) for e in data.get("examples", ()))
        return cls(**fields)

    def markdown(self) -> str:
        """Table 5 style: precision (and text-mode identity/next-token rates) per layer."""
        text = self.source == "text"
        head = "| layer | tokens scored | precision |" + (" identity | next token |" if text else "")
        lines = [head + " top lens tokens |", "|" + "---|" * (head.count("|"))]
        for r in self.layers:
            row = f"| {r.layer} | {r.n_tokens} | {_fmt(r.precision)} |"
            if text:
                row += f" {_fmt(r.identity)} | {_fmt(r.next_token)} |"
            tops = ", ".join(f"`{t}` {c}" for t, c in r.top_tokens[:6])
            lines.append(row + f" {tops} |")
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> Path:
        """Write ``mech/lens.json`` and ``mech/lens.md`` under ``out``; returns the JSON path."""
        path = Path(out) / LENS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")
        path.with_suffix(".md").write_text(self.markdown())
        return path


def layer_from_json(data: dict[str, Any]) -> LensLayer:
    """A :class:`LensLayer` from its JSON dict (``top_tokens`` pairs as tuples)."""
    return LensLayer(**{**data, "top_tokens": tuple((str(t), int(c)) for t, c in data.get("top_tokens", ()))})


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def lens_token_ids(layout: Any, states: Any) -> np.ndarray:
    """Greedy lens tokens, int64 [P], of raw residual states [P, D] (numpy or torch, any float dtype).

    Runs ``layout.unembed`` (final norm, unembedding, soft-capping) in chunks of ``CHUNK_POSITIONS``.
    """
    import torch

    x = states if isinstance(states, torch.Tensor) else torch.from_numpy(np.array(states, dtype=np.float32))
    if x.ndim != 2 or x.shape[-1] != layout.width:
        raise InputError(f"lens needs states [P, {layout.width}], got {tuple(x.shape)}")
    out = []
    dtype = layout.lm_head.weight.dtype if layout.lm_head is not None else torch.float32
    with torch.inference_mode():
        for start in range(0, x.shape[0], CHUNK_POSITIONS):
            chunk = x[start : start + CHUNK_POSITIONS].to(layout.lm_head.weight.device, dtype)
            out.append(layout.unembed(chunk).argmax(-1).cpu())
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def lens_capture(
    obj: Any, tokenizer: Any, folder: str | Path, layers: Sequence[int] | None = None
) -> LensResult:
    """Logit lens over a capture folder's layers, at the audio positions of every utterance.

    Args:
        obj: The model the capture came from (a casceq speech-LLM backend); its weights' fingerprint must
            match the capture's.
        tokenizer: Its tokenizer (``obj.tokenizer``).
        folder: A capture folder (``casceq.mech.shards``).
        layers: Captured layers to lens (default: all captured).

    Raises:
        InputError: Another model's capture, a layer not captured, an encoder-only model, NaN states.
    """
    reader = CaptureReader(folder)
    layout = layout_of(obj)
    if layout.lm_head is None:
        raise InputError(f"{layout.key} is an encoder: no unembedding to lens through", path=str(folder))
    if fingerprint(obj, layout) != reader.meta.fingerprint:
        raise InputError(
            f"captured from other weights than {reader.meta.model!r} loaded now", path=str(folder)
        )
    chosen = layout.check_layers(layers if layers is not None else reader.meta.layers)
    norm = TokenNormaliser(tokenizer)
    bags: dict[str, frozenset[str]] = {}
    shown = {r.id for r in reader.utterances[:N_EXAMPLES]}
    tallies, examples = [], []
    for layer in chosen:
        reader.meta.layer_slot(layer)
        tally = LayerTally(layer)
        for block in reader.iter_layer(layer):
            for rec in block.records:
                states = block.states[block.rows(rec)]
                if not np.isfinite(states).all():
                    raise InputError(
                        f"utterance {rec.id!r}: NaN or infinite states at layer {layer}", path=str(folder)
                    )
                ids = lens_token_ids(layout, states)
                bag = bags.setdefault(rec.id, norm.reference_bag(rec.transcript))
                tally.add(ids, bag, norm)
                if rec.id in shown:
                    examples.append(LensExample(rec.id, rec.transcript, layer, lens_text(tokenizer, ids)))
        tallies.append(tally.result(text_mode=False))
    n_pos = sum(r.count for r in reader.utterances)
    return LensResult(
        reader.meta.model,
        layout.key,
        reader.meta.fingerprint,
        "capture",
        len(reader.utterances),
        n_pos,
        tuple(tallies),
        tuple(examples),
    )


def lens_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    name: str = "",
    progress: Callable[[int], None] | None = None,
) -> LensResult:
    """Logit lens of a text causal LM over the positions of each input text (see the module docstring).

    Each text is tokenised with the tokenizer's special tokens (Gemma's ``<bos>``), run once with every chosen
    layer tapped; positions holding special tokens are not scored.

    Args:
        model: A transformers causal LM (``casceq.mech.adapters.RULES`` must know its class).
        tokenizer: Its tokenizer.
        texts: Input texts (the reference of each is the text itself).
        layers: Layer indices (default: all, ``0..n_layers``).
        name: Model spec recorded in the result.
        progress: Called with the index of each text done.
    """
    import torch

    layout = layout_of(model)
    chosen = layout.check_layers(layers if layers is not None else range(layout.n_layers + 1))
    if not texts:
        raise InputError("lens needs at least one text")
    norm = TokenNormaliser(tokenizer)
    tallies = {layer: LayerTally(layer) for layer in chosen}
    examples: list[LensExample] = []
    n_pos = 0
    for k, text in enumerate(texts):
        ids = list(tokenizer(text)["input_ids"])
        content = np.array([i not in norm.special for i in ids])
        with LayerTap(layout, chosen) as tap, torch.inference_mode():
            model(input_ids=torch.tensor([ids], device=model.device))
        bag = norm.reference_bag(text)
        arr = np.array(ids)
        n_pos += int(content.sum())
        for layer in chosen:
            states = tap.states[layer][0]
            if not torch.isfinite(states).all():
                raise InputError(f"text {k}: NaN or infinite states at layer {layer}")
            lens = lens_token_ids(layout, states)
            t = tallies[layer]
            t.add(lens[content], bag, norm)
            t.ident += int((lens[content] == arr[content]).sum())
            t.n_pos += int(content.sum())
            nxt = content[:-1] & content[1:]
            t.nxt += int((lens[:-1][nxt] == arr[1:][nxt]).sum())
            t.n_next += int(nxt.sum())
            if k < N_EXAMPLES:
                examples.append(LensExample(f"text-{k}", text, layer, lens_text(tokenizer, lens[content])))
        if progress is not None:
            progress(k)
    return LensResult(
        name,
        layout.key,
        fingerprint(model, layout),
        "text",
        len(texts),
        n_pos,
        tuple(tallies[layer].result(text_mode=True) for layer in chosen),
        tuple(examples),
    )
